"""The drill's report, from what the operations centre received (host only).

    verdict = build("out/typhoon")     # writes summary.md, summary.json, timeline.png there
    python -m hil.drill.report out/typhoon

Inputs (hil/drill/runner.py writes them): run.json, events.jsonl, truth.jsonl, noc.jsonl (every
message the operations centre's subscriber received, raw), agent.log, backlog.jsonl.

The criteria (what each measures and why: docs/drill.md) are in hil/drill/criteria.py, the run's
files as they are read in hil/drill/rundata.py.
"""

import json
import os
import sys

from hil.drill.criteria import (
    check_alarms,
    check_budget,
    check_loss,
    check_memory,
    check_runtime,
    check_state,
    readings_summary,
)
from hil.drill.rundata import Run, usability

# --- the report ----------------------------------------------------------------------------------


def evaluate(out):
    run = Run(out)
    spans = usability(run)
    interval = 60.0
    poll_real = interval / run.scale
    verdict = {
        "loss": check_loss(run),
        "alarms": check_alarms(run, spans),
        "state": check_state(run, spans, poll_real),
        "budget": check_budget(run),
        "runtime": check_runtime(run),
        "memory": check_memory(run),
        "readings": readings_summary(run),
        "usable_spans": [(round(run.t_of_rt(a) / 3600, 3),
                          None if b == float("inf") else round(run.t_of_rt(b) / 3600, 3))
                         for a, b in spans],  # fmt: skip
    }
    crit = [verdict[k]["pass"] for k in ("loss", "alarms", "state", "budget", "runtime", "memory")]
    verdict["pass"] = all(c is not False for c in crit) and any(c for c in crit)
    return run, verdict


def _mark(ok):
    return {True: "PASS", False: "FAIL", None: "n/a"}[ok]


def _fmt_dist(d, unit="s"):
    if not d.get("n"):
        return "none"
    return "n=%d min %.1f%s, median %.1f%s, p95 %.1f%s, max %.1f%s" % (
        d["n"], d["min"], unit, d["median"], unit, d["p95"], unit, d["max"], unit)


def summary_md(run, v):
    m = run.meta
    real_min = (run.end_rt - run.origin) / 60.0
    lines = [
        "# Drill: %s on %s (%s agent)" % (m["scenario_name"], m["rig_name"], m["agent"]),
        "",
        "Verdict: **%s**" % ("PASS" if v["pass"] else "FAIL"),
        "",
        "| run | |",
        "|---|---|",
        "| rig | `%s` |" % m["rig"],
        "| scenario | `%s` |" % m["scenario"],
        "| agent | %s |" % m["agent"],
        "| site time | %.1f h at %gx (%s), %.1f min of real time |" % (
            (m["duration_s"] + m["drain_s"]) / 3600, m["scale"],
            "real time: real hardware" if m["realtime"] else "accelerated", real_min),
        "| network | %s |" % m["network"],
        "| agent data | %s |" % m["disk"],
        "| started | %s |" % m["started"],
        "",
        "| criterion | result | figures |",
        "|---|---|---|",
    ]  # fmt: skip
    lo = v["loss"]
    lines.append("| 0 confirmed readings lost | %s | %d confirmed, %d received (%d more than "
                 "once), %d still in the store, %d missing, declared thinned %d / dropped %d, "
                 "lost **%d** |" % (_mark(lo["pass"]), lo["confirmed"], lo["received_unique"],
                                    lo["received_twice_or_more"], lo["in_store_at_end"],
                                    lo["missing"], lo["declared_thinned"],
                                    lo["declared_dropped"], lo["lost"]))  # fmt: skip
    al = v["alarms"]
    lines.append("| alarms delivered within 30 s of a usable link | %s | %d events; latency %s; "
                 "%d late, %d undelivered |" % (_mark(al["pass"]), al["events"],
                                                _fmt_dist(al["latency_s"]), len(al["late"]),
                                                al["undelivered_at_end"]))  # fmt: skip
    st = v["state"]
    lines.append("| site state retained within 30 s | %s | %d moments checked; delay %s |"
                 % (_mark(st["pass"]), st["checks"], _fmt_dist(st["delay_s"])))  # fmt: skip
    bu = v["budget"]
    figs = "; ".join(
        "%s: worst %s window %d of %d B, routine over the limit %d times, link bytes up %s"
        % (b["broker"], b["window"], b["worst_window_bytes"], b["limit"],
           b["routine_over_limit"], b.get("link_bytes_up", "n/a"))
        for b in bu["brokers"]) or "no metered broker"  # fmt: skip
    lines.append("| backlog inside the backup link's byte budget | %s | %s |"
                 % (_mark(bu["pass"]), figs))  # fmt: skip
    rt = v["runtime"]
    figs = "; ".join("discharge %.1f-%.1f h: %d estimates in the last half, worst %s" % (
        d["from_h"], d["to_h"], d["estimates"],
        "%.1f %%" % (100 * d["worst_error"]) if d["worst_error"] is not None else "n/a")
        for d in rt["discharges"]) or "no discharge"  # fmt: skip
    if rt.get("skipped_clock_step"):
        figs += "; %d estimates made while the clock was stepped left out" % (
            rt["skipped_clock_step"])
    lines.append("| runtime estimate within 10 %% (last half of the discharge) | %s | %s |"
                 % (_mark(rt["pass"]), figs))  # fmt: skip
    me = v["memory"]
    if me.get("second_quarter"):
        figs = "%s over %d samples of the longest boot: %.1f MB then %.1f MB (%+.1f %%)" % (
            me["metric"], me["samples"], me["second_quarter"] / 1e6, me["last_quarter"] / 1e6,
            100 * me["growth"])  # fmt: skip
    else:
        figs = "too few samples (%d)" % me.get("samples", 0)
    lines.append("| heap or RSS without growth | %s | %s |" % (_mark(me["pass"]), figs))
    rd = v["readings"]
    lines += ["", "Readings received upstream: %d (%d unique): %s." % (
        rd["received"], rd["unique"], ", ".join("%s %d" % kv for kv in sorted(
            rd["per_device"].items(), key=lambda kv: str(kv[0]))))]  # fmt: skip
    if al["latency_s"].get("n"):
        lines += ["", "Alarm delivery latency after the link was usable (real seconds):", "",
                  "| alarm | event | at (site h) | latency s | broker |", "|---|---|---|---|---|"]
        for a in al["deliveries"]:
            if a["latency_s"] is None:
                continue
            lines.append("| %s | %s | %.2f | %.1f | %s |" % (
                a["alarm"], a["event"], (a["t"] or 0) / 3600, a["latency_s"], a["broker"]))
    lines += ["", "Events applied (site hours):", ""]
    for e in run.events:
        keys = [k for k in sorted(e) if k not in ("t", "rt", "do", "planned") and e[k] is not None]
        extra = ", ".join("%s=%s" % (k, e[k]) for k in keys)
        lines.append("- %.2f h %s%s" % (e["t"] / 3600, e["do"], " (%s)" % extra if extra else ""))
    lines += ["", "Files: `timeline.png` (the plot), `noc.jsonl` (what the operations centre "
              "received, one message a line), `events.jsonl`, `truth.jsonl`, `agent.log`, "
              "`site.toml`, `summary.json`.", ""]  # fmt: skip
    return "\n".join(lines)


def build(out, plot=True):
    run, v = evaluate(out)
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write(summary_md(run, v))
    slim = dict(v)
    slim["alarms"] = {k: x for k, x in v["alarms"].items() if k != "deliveries"}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(slim, f, indent=1, sort_keys=True, default=repr)
    if plot:
        from hil.drill.plot import timeline

        timeline(run, v, os.path.join(out, "timeline.png"))
    return v


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        sys.stderr.write("usage: python -m hil.drill.report OUT_DIR\n")
        return 2
    v = build(argv[0])
    with open(os.path.join(argv[0], "summary.md")) as f:
        sys.stdout.write(f.read())
    return 0 if v["pass"] else 1


if __name__ == "__main__":
    sys.exit(main())
