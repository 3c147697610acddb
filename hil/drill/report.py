"""The drill's report, from what the operations centre received (host only).

    verdict = build("out/typhoon")     # writes summary.md, summary.json, timeline.png there
    python -m hil.drill.report out/typhoon

Inputs (hil/drill/runner.py writes them): run.json, events.jsonl, truth.jsonl, noc.jsonl (every
message the operations centre's subscriber received, raw), agent.log, backlog.jsonl.

Criteria (docs/drill.md says why each is measured this way):
1. No confirmed reading lost. Confirmed, per boot: the seqs from the store's first seq of that
   boot (the uplink's "started confirmed_seq=X" line, X + 1) up to its last "stored
   confirmed_seq=Y" line. Each must have reached the operations centre, or still be in the store
   at the end (backlog.jsonl), or be covered by the store's own declared thinning and dropping
   (agent.queue.thinned, agent.queue.dropped, which it reports upstream).
2. Every alarm event delivered within 30 s of a link to any broker being usable: usable means the
   agent has power, and some broker is running behind a link that is up. The latency counts
   from the later of the event's time and the start of the usable span it arrived in; a usable
   span of 30 s or more that it waited through counts against it from that span's start.
3. The current site state retained upstream within 30 s: after every change of mains and every
   start of usability, the retained `state` the centre holds 30 s later (plus one poll
   interval, the time the agent needs to see a change) shows the site's power source as it is.
4. The backlog inside the backup link's byte budget: per budget window, the bytes received
   through each metered broker, counted as the agent counts them (PUBLISH packets of data,
   alarm, state and alarms; status and replies are not budgeted), never pass the limit with
   routine data (alarm events and state may overdraw it).
5. The runtime estimate within 10 % of the emulator's truth over the last half of each
   discharge (estimates with at least 5 minutes left: near the end a minute is a large share;
   estimates made while the drill had stepped the site's clock carry a wrong time and are left
   out, counted).
6. Heap or RSS without growth: within the longest boot, the median of the last quarter of the
   agent.rss (board: agent.heap_free) samples within 10 % of the second quarter's.
"""

import json
import os
import sys

LIMIT_S = 30.0
RUNTIME_TOL = 0.10
RUNTIME_MARGIN_S = 300.0
RSS_TOL = 0.10
NO_ESTIMATE_S = 3 * 3600.0  # a discharge this long must have estimates in its last half


# --- loading -------------------------------------------------------------------------------------


def _open(path):
    """A text file, or its gzipped copy (path + ".gz", as the reference report keeps them)."""
    if not os.path.exists(path) and os.path.exists(path + ".gz"):
        import gzip

        return gzip.open(path + ".gz", "rt", errors="replace")
    return open(path, errors="replace")


def _lines(path):
    out = []
    if not os.path.exists(path) and not os.path.exists(path + ".gz"):
        return out
    with _open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass  # a line cut by a kill
    return out


class Run:
    def __init__(self, out):
        self.out = out
        with open(os.path.join(out, "run.json")) as f:
            self.meta = json.load(f)
        self.events = _lines(os.path.join(out, "events.jsonl"))
        self.truth = _lines(os.path.join(out, "truth.jsonl"))
        self.noc = _lines(os.path.join(out, "noc.jsonl"))
        self.backlog = _lines(os.path.join(out, "backlog.jsonl"))
        self.log_path = os.path.join(out, "agent.log")
        self.scale = self.meta["scale"]
        self.origin = self.meta["origin"]
        self.epoch = self.meta["epoch"]
        self.end_rt = self.truth[-1]["rt"] if self.truth else self.origin
        self._jumps = self._clock_jumps()

    def t_of_rt(self, rt):
        return (rt - self.origin) * self.scale

    def rt_of_t(self, t):
        return self.origin + t / self.scale

    def t_of_record(self, rec):
        """Site seconds from the start for a record's time, the drill's clock steps taken out."""
        t = rec.get("time")
        if not isinstance(t, (int, float)):
            return None
        t = t - self.epoch
        for a, b, step in self._jumps:
            if a + step <= t < b + step:
                return t - step
        return t

    def in_clock_step(self, rec, margin=300.0):
        """Whether a record was made while the drill had stepped the site's clock (or just
        after: the agent sees a step within a poll): its time says nothing reliable then."""
        t = rec.get("time")
        if not isinstance(t, (int, float)):
            return False
        t -= self.epoch
        return any(a <= t <= b + max(step, 0) + margin for a, b, step in self._jumps)

    def _clock_jumps(self):
        """[(t from, t to, step)] while the agent's clock carried a drill's step. The Pi's system
        clock follows the drill's step file at once; the board takes its time from SNTP, so it
        carries a step from its next sync after the drill's server stepped until its first sync
        after the server came back (its log's `clock: step` line) or its next boot."""
        out, start, step = [], None, 0.0
        for e in self.events:
            if e["do"] == "clock_jump":
                start, step = e["t"], step + float(e.get("by", 0) and _signed(e.get("by")))
            elif e["do"] == "clock_back" and start is not None:
                out.append((start, e["t"], step))
                start, step = None, 0.0
        if start is not None:
            out.append((start, float("inf"), step))
        if self.meta.get("agent") == "board":
            out = [(a, self._board_step_end(b, step), step) for a, b, step in out]
        return out

    def _board_step_end(self, t_back, step):
        """When the board's clock left a step the drill's server took back at t_back."""
        if t_back == float("inf"):
            return t_back
        boots = [e["t"] for e in self.events if e["do"] == "agent_boot" and e["t"] >= t_back]
        end = min(boots) if boots else float("inf")
        for rt, by in _log_steps(self.log_path):
            t = self.t_of_rt(rt)
            if t >= t_back and abs(by + step) <= max(5.0, 0.01 * abs(step)):
                return min(end, t)
        return end


def _log_steps(log_path):
    """[(real time, seconds)] of the agent's `clock: step by_s=` lines. The log's times are whole
    seconds: each is taken as the end of its second (the latest the step can have been)."""
    import calendar
    import time

    out = []
    if not os.path.exists(log_path) and not os.path.exists(log_path + ".gz"):
        return out
    with _open(log_path) as f:
        for line in f:
            if " clock: step " not in line or "by_s=" not in line:
                continue
            try:
                when = calendar.timegm(time.strptime(line.split()[0], "%Y-%m-%dT%H:%M:%SZ"))
                by = float(line.split("by_s=", 1)[1].split()[0])
            except (ValueError, IndexError):
                continue
            out.append((when + 1.0, by))
    return out


def _signed(text):
    from hil.drill.spec import duration

    return duration(text, "by", [], signed=True)


# --- intervals of usability ----------------------------------------------------------------------


def usability(run):
    """[(rt start, rt end)] during which the agent had power and some broker was reachable."""
    links = {n: bool(s.get("up", True)) for n, s in run.meta["links"].items()}
    brokers = {b["name"]: True for b in run.meta["brokers"]}
    link_of = {b["name"]: b["link"] for b in run.meta["brokers"]}
    agent = False
    changes = []

    def ok():
        return agent and any(brokers[b] and links[link_of[b]] for b in brokers)

    state = False
    for e in sorted(run.events, key=lambda e: e["rt"]):
        do = e["do"]
        if do in ("link_up", "link_down"):
            links[e["link"]] = do == "link_up"
        elif do == "link_shape" and "up" in e:
            links[e["link"]] = bool(e["up"])
        elif do in ("broker_up", "broker_down"):
            brokers[e["broker"]] = do == "broker_up"
        elif do == "agent_boot":
            agent = True
        elif do in ("power_cut", "supply_lost", "agent_exited", "agent_stop"):
            agent = False
        now = ok()
        if now != state:
            changes.append((e["rt"], now))
            state = now
    spans, start = [], None
    for rt, up in changes:
        if up:
            start = rt
        elif start is not None:
            spans.append((start, rt))
            start = None
    if start is not None:
        spans.append((start, float("inf")))
    return spans


def usable_from(spans, rt):
    """The earliest real time >= rt at which a link was usable (None: never again)."""
    for a, b in spans:
        if b > rt:
            return max(a, rt)
    return None


# --- the criteria --------------------------------------------------------------------------------


def confirmed_by_boot(log_path):
    """[(first seq, last confirmed seq)] per boot, from the agent's log."""
    boots = []
    cur = None
    if not os.path.exists(log_path) and not os.path.exists(log_path + ".gz"):
        return boots
    with _open(log_path) as f:
        for line in f:
            if line.startswith("### drill: boot"):
                if cur is not None:
                    boots.append(cur)
                cur = [None, None]
                continue
            if cur is None or "confirmed_seq=" not in line:
                continue
            value = line.split("confirmed_seq=", 1)[1].split()[0]
            try:
                seq = int(value)
            except ValueError:
                continue  # "None": a queue without a notion of it
            if " uplink: started" in line and cur[0] is None:
                cur[0] = seq + 1
            elif " uplink: stored" in line:
                cur[1] = seq if cur[1] is None else max(cur[1], seq)
    if cur is not None:
        boots.append(cur)
    return [(a, b) for a, b in boots if a is not None and b is not None and b >= a]


def check_loss(run):
    received = {}
    declared = {"agent.queue.thinned": 0, "agent.queue.dropped": 0}
    for m in run.noc:
        if m.get("topic") not in ("data", "alarm"):
            continue
        for r in m.get("records") or ():
            s = r.get("seq")
            if s is not None:
                received[s] = received.get(s, 0) + 1
            if r.get("metric") in declared and isinstance(r.get("value"), int):
                declared[r["metric"]] = max(declared[r["metric"]], r["value"])
    backlog = {r.get("seq") for r in run.backlog}
    confirmed = 0
    missing = []
    for a, b in confirmed_by_boot(run.log_path):
        for s in range(a, b + 1):
            confirmed += 1
            if s not in received and s not in backlog:
                missing.append(s)
    excused = declared["agent.queue.thinned"] + declared["agent.queue.dropped"]
    lost = max(0, len(missing) - excused)
    return {
        "pass": lost == 0 and confirmed > 0,
        "confirmed": confirmed,
        "received_unique": len(received),
        "received_twice_or_more": sum(1 for n in received.values() if n > 1),
        "in_store_at_end": len(backlog),
        "missing": len(missing),
        "missing_first": missing[:10],
        "declared_thinned": declared["agent.queue.thinned"],
        "declared_dropped": declared["agent.queue.dropped"],
        "lost": lost,
    }


def _dist(values):
    if not values:
        return {"n": 0}
    v = sorted(values)

    def q(p):
        return v[min(len(v) - 1, int(round(p * (len(v) - 1))))]

    return {"n": len(v), "min": v[0], "median": q(0.5), "p95": q(0.95), "max": v[-1]}


def latency(spans, made, arrived):
    """Seconds an alarm waited while it could have gone: from the start of the usable span in
    which it arrived (or from when it was made, if later). A span of at least LIMIT_S that it
    waited through counts from that span's start instead: it should have gone then. Usable
    spans shorter than that (a link that flapped) are not held against it."""
    for a, b in spans:
        if b <= made:
            continue
        start = max(a, made)
        if arrived < b:
            return max(0.0, arrived - start), start
        if b - start >= LIMIT_S:
            return arrived - start, start
    return None, None


def alarm_deliveries(run, spans):
    first = {}
    for m in run.noc:
        if m.get("topic") != "alarm":
            continue
        for r in m.get("records") or ():
            if r.get("seq") is not None and r["seq"] not in first:
                first[r["seq"]] = (m["rt"], m["broker"], r)
    out = []
    for seq, (arrived, broker, r) in sorted(first.items()):
        t = run.t_of_record(r)
        made = run.rt_of_t(t) if t is not None else None
        lat, start = latency(spans, made, arrived) if made is not None else (None, None)
        out.append({"seq": seq, "alarm": r.get("alarm"), "event": r.get("event"), "t": t,
                    "made_rt": made, "usable_rt": start, "arrived_rt": arrived,
                    "broker": broker, "latency_s": lat})  # fmt: skip
    return out


def check_alarms(run, spans):
    d = alarm_deliveries(run, spans)
    lat = [a["latency_s"] for a in d if a["latency_s"] is not None]
    late = [a for a in d if a["latency_s"] is not None and a["latency_s"] > LIMIT_S]
    stuck = [r for r in run.backlog if r.get("lane") == "alarm"]
    return {
        "pass": bool(d) and not late and not stuck,
        "events": len(d),
        "latency_s": _dist(lat),
        "late": [{"alarm": a["alarm"], "event": a["event"], "latency_s": round(a["latency_s"], 1),
                  "t_h": round(a["t"] / 3600, 2)} for a in late][:20],  # fmt: skip
        "undelivered_at_end": len(stuck),
        "deliveries": d,
    }


def _power_source(records):
    for r in records or ():
        if r.get("device") == "site" and r.get("metric") == "site.power_source":
            return r.get("value")
    return None


def check_state(run, spans, poll_real_s):
    """Every change of mains, and every start of usability, is followed by a retained state
    message showing the power source as it is, within 30 s (+ one poll) of usability."""
    states = [(m["rt"], _power_source(m.get("records"))) for m in run.noc
              if m.get("topic") == "state"]  # fmt: skip
    mains_events = [(e["rt"], e["do"] == "mains_on") for e in run.events
                    if e["do"] in ("mains_on", "mains_off") and not e.get("device")]  # fmt: skip
    supply = {e["rt"] for e in run.events if e["do"] in ("supply_lost",)}

    def mains_at(rt):
        on = True
        for when, value in mains_events:
            if when <= rt:
                on = value
        return on

    moments = [rt for rt, _ in mains_events] + [a for a, _b in spans]
    checks = []
    for m in sorted(set(moments)):
        start = usable_from(spans, m)
        if start is None or any(m <= s <= m + 1 for s in supply):
            continue
        end = next((b for a, b in spans if a <= start < b), start)
        deadline = start + LIMIT_S + poll_real_s
        if end < deadline:
            continue  # the link went away again before the deadline: nothing to require
        if any(m < when < deadline for when, _v in mains_events):
            continue  # the truth changed again before the deadline: that change is checked
        want = "mains" if mains_at(start) else "battery"
        # What the centre holds retained at the deadline: the last state received by then.
        held = [src for rt, src in states if rt <= deadline]
        ok = bool(held) and held[-1] == want
        got = next((rt for rt, src in states if rt >= m and src == want), None)
        delay = 0.0 if ok and (got is None or got > deadline) else (
            None if got is None else max(0.0, got - start))  # fmt: skip
        checks.append({"rt": m, "t_h": round(run.t_of_rt(m) / 3600, 2), "want": want,
                       "delay_s": None if delay is None else round(delay, 1),
                       "ok": ok})  # fmt: skip
    bad = [c for c in checks if not c["ok"]]
    delays = [c["delay_s"] for c in checks if c["delay_s"] is not None]
    return {"pass": bool(checks) and not bad, "checks": len(checks), "delay_s": _dist(delays),
            "failed": bad[:20]}  # fmt: skip


def check_budget(run):
    out = {"pass": True, "brokers": []}
    window_s = {"hour": 3600.0, "day": 86400.0}
    for b in run.meta["brokers"]:
        link = run.meta["links"].get(b["link"], {})
        limit = int(link.get("budget_bytes") or 0)
        if not limit:
            continue
        w = window_s[link.get("budget_window", "day")]
        used = {}
        worst = 0
        over = 0
        counted = {"data": 0, "alarm": 0, "state": 0, "alarms": 0}
        status = 0
        for m in run.noc:
            if m.get("broker") != b["name"] or "bytes" not in m:
                continue
            kind = m.get("topic")
            if kind not in counted:
                status += m["bytes"]
                continue
            site_wall = run.epoch + run.t_of_rt(m["rt"])
            win = int(site_wall // w)
            used[win] = used.get(win, 0) + m["bytes"]
            counted[kind] += m["bytes"]
            if kind == "data" and used[win] > limit:
                over += 1
            worst = max(worst, used[win])
        ok = over == 0
        out["pass"] = out["pass"] and ok
        out["brokers"].append({"broker": b["name"], "link": b["link"], "limit": limit,
                               "window": link.get("budget_window", "day"),
                               "worst_window_bytes": worst, "routine_over_limit": over,
                               "bytes_by_topic": counted, "status_reply_bytes": status,
                               "windows": len(used), "pass": ok})  # fmt: skip
        lb = [s.get("link_bytes", {}).get(b["link"]) for s in run.truth]
        lb = [x for x in lb if x and x.get("up") is not None]
        if len(lb) >= 2:
            out["brokers"][-1]["link_bytes_up"] = lb[-1]["up"] - lb[0]["up"]
            out["brokers"][-1]["link_bytes_down"] = lb[-1]["down"] - lb[0]["down"]
    if not out["brokers"]:
        out["pass"] = None  # nothing metered in this rig and scenario
    return out


def _series(run, device, metric, skip_steps=False):
    out = []
    for m in run.noc:
        if m.get("topic") != "data":
            continue
        for r in m.get("records") or ():
            if r.get("device") == device and r.get("metric") == metric:
                if skip_steps and run.in_clock_step(r):
                    continue
                t = run.t_of_record(r)
                if t is not None and isinstance(r.get("value"), (int, float)):
                    out.append((t, r["value"], r.get("seq")))
    seen, uniq = set(), []
    for t, v, s in sorted(out):
        if s not in seen:
            seen.add(s)
            uniq.append((t, v))
    return uniq


def _truth_device(run):
    dev = run.meta.get("powered_by")
    if dev:
        return dev
    for s in run.truth:
        for d in s.get("power", {}):
            return d
    return None


def discharges(run, dev):
    """[(t start, t end, ended by cut-off)] of the device's battery discharges, from the truth."""
    spans, start = [], None
    for s in run.truth:
        st = s.get("power", {}).get(dev)
        if st is None:
            continue
        if st["on_battery"] and start is None:
            start = s["t"]
        elif not st["on_battery"] and start is not None:
            spans.append((start, s["t"], bool(st["cut_off"])))
            start = None
    return spans


def true_left(run, dev, t):
    prev = None
    for s in run.truth:
        st = s.get("power", {}).get(dev)
        if st is None:
            continue
        if s["t"] >= t:
            if prev is None or prev[1] is None or st["runtime_left"] is None:
                return st["runtime_left"] if abs(s["t"] - t) < 1 else None
            (t0, v0), (t1, v1) = prev, (s["t"], st["runtime_left"])
            return v0 + (v1 - v0) * (t - t0) / (t1 - t0) if t1 > t0 else v1
        prev = (s["t"], st["runtime_left"])
    return None


def check_runtime(run):
    dev = _truth_device(run)
    est = _series(run, "site", "site.runtime", skip_steps=True)
    skipped = len(_series(run, "site", "site.runtime")) - len(est)
    result = {"pass": None, "device": dev, "discharges": [], "estimates": len(est),
              "skipped_clock_step": skipped}  # fmt: skip
    if dev is None:
        return result
    worst_all = None
    for a, b, cut in discharges(run, dev):
        mid = (a + b) / 2.0
        errs = []
        for t, v in est:
            if mid <= t <= b:
                truth = true_left(run, dev, t)
                if truth is not None and truth >= RUNTIME_MARGIN_S:
                    errs.append(abs(v - truth) / truth)
        worst = max(errs) if errs else None
        result["discharges"].append({"from_h": round(a / 3600, 2), "to_h": round(b / 3600, 2),
                                     "cut_off": cut, "estimates": len(errs),
                                     "worst_error": worst})  # fmt: skip
        if errs:
            worst_all = max(worst_all or 0.0, worst)
        elif b - a >= NO_ESTIMATE_S:
            result["pass"] = False  # a long discharge and not one estimate in its last half
            result.setdefault("without_estimate", []).append((round(a / 3600, 2),
                                                              round(b / 3600, 2)))  # fmt: skip
    if worst_all is not None and result["pass"] is not False:
        result["pass"] = worst_all <= RUNTIME_TOL
        result["worst_error"] = worst_all
    return result


def check_memory(run):
    boots = sorted(e["t"] for e in run.events if e["do"] == "agent_boot")
    metric = "agent.heap_free" if run.meta.get("agent") == "board" else "agent.rss"
    series = _series(run, "agent", metric)
    segs = []
    for i, start in enumerate(boots):
        end = boots[i + 1] if i + 1 < len(boots) else float("inf")
        segs.append([v for t, v in series if start <= t < end])
    segs = [s for s in segs if len(s) >= 8]
    if not segs:
        return {"pass": None, "metric": metric, "samples": len(series)}
    longest = max(segs, key=len)
    n = len(longest)

    def med(xs):
        xs = sorted(xs)
        return xs[len(xs) // 2]

    q2 = med(longest[n // 4: n // 2])
    q4 = med(longest[3 * n // 4:])
    growth = (q4 - q2) / q2 if metric == "agent.rss" else (q2 - q4) / q2
    return {"pass": growth <= RSS_TOL, "metric": metric, "samples": n, "second_quarter": q2,
            "last_quarter": q4, "growth": growth, "boots": len(boots)}  # fmt: skip


def readings_summary(run):
    per_device, total, seqs = {}, 0, set()
    for m in run.noc:
        if m.get("topic") != "data":
            continue
        for r in m.get("records") or ():
            total += 1
            if r.get("seq") in seqs:
                continue
            seqs.add(r.get("seq"))
            per_device[r.get("device")] = per_device.get(r.get("device"), 0) + 1
    return {"received": total, "unique": len(seqs), "per_device": per_device}


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
