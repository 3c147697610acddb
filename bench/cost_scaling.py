"""CPU per reading and RSS of the agent for 5, 25 and 100 devices, through the peers benchmark
harness (../shared/peers/run_peer_bench.py: snmpsim replaying the 5 bench recordings, each extra
device under its own community, mosquitto, 5 s polls, 120 s window). Prints a table; asserts
nothing.

    .venv/bin/python bench/cost_scaling.py --harness ../shared/peers/run_peer_bench.py \\
        --sizes 5,25,100 [--site-agent .venv/bin/site-agent] [--tag a] [harness options ...]
    .venv/bin/python bench/cost_scaling.py --results DIR [--results DIR2 ...]   # table only

Each size is one harness run (`site-agent --no-outage --scale N`; from 50 devices on with two
simulator processes, one saturates near 100 devices and the row then measures the simulator).
Options after the known ones go to the harness as they are (ports, --scratch, --snmpsim-venv).
--results prints the table of the site-agent results already in DIR (one row per result file).
"""

import argparse
import glob
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_size(args, extra, n):
    tag = "scale%d%s" % (n, args.tag)
    cmd = [sys.executable, args.harness, "site-agent", "--no-outage", "--scale", str(n),
           "--tag", tag, "--site-agent", args.site_agent,
           "--results-dir", args.results_dir]  # fmt: skip
    if n >= 50:
        cmd += ["--sim-procs", "2"]
    subprocess.run(cmd + extra, check=True, stdout=subprocess.DEVNULL)
    return os.path.join(args.results_dir, "site-agent-%s.json" % tag)


def row(path):
    with open(path) as f:
        d = json.load(f)
    w = d.get("window", {})
    extra = d.get("peer_extra") or {}
    polls = extra.get("window_device_polls") or 0
    devices = len(extra.get("window_values_per_device_poll") or {}) or None
    lat = w.get("delivery_latency_s") or {}
    return {
        "result": os.path.basename(path)[: -len(".json")],
        "devices": devices,
        "load": (d.get("loadavg_window_start") or ["?"])[0],
        "readings_s": w.get("readings_per_s"),
        "nominal_s": w.get("nominal_readings_per_s"),
        "cpu_pct": w.get("cpu_pct_of_one_core"),
        "ms_reading": w.get("cpu_ms_per_reading"),
        "ms_poll": w.get("cpu_ms_per_device_poll"),
        "rss": w.get("rss_steady_mb"),
        "rss_peak": d.get("rss_peak_whole_run_mb"),
        "sim_pct": round(100.0 * (d.get("snmpsim_cpu_s_in_window") or 0) / (w.get("duration_s")
                                                                             or 1), 1),
        "latency": lat.get("median"),
        "missing": (d.get("phases") or {}).get("window", {}).get("missing"),
        "polls": polls,
    }


def table(rows):
    head = ("| result | devices | load 1 min | readings/s (nominal) | CPU % of a core | "
            "**CPU ms / reading** | CPU ms / device-poll | **RSS steady (peak)** | "
            "simulator CPU % | latency median s |")  # fmt: skip
    out = [head, "|" + "---|" * 10]
    for r in sorted(rows, key=lambda r: (r["devices"] or 0, r["result"])):
        out.append("| %s | %s | %s | %s (%s) | %s | **%s** | %s | **%s MB (%s)** | %s | %s |" % (
            r["result"], r["devices"], r["load"], r["readings_s"], r["nominal_s"], r["cpu_pct"],
            r["ms_reading"], r["ms_poll"], r["rss"], r["rss_peak"], r["sim_pct"],
            r["latency"]))  # fmt: skip
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--harness", default=os.path.join(ROOT, "..", "shared", "peers",
                                                      "run_peer_bench.py"))  # fmt: skip
    ap.add_argument("--site-agent", default=os.path.join(ROOT, ".venv", "bin", "site-agent"))
    ap.add_argument("--sizes", default="5,25,100")
    ap.add_argument("--tag", default="")
    ap.add_argument("--results-dir", default="/tmp/cost_scaling/results")
    ap.add_argument("--results", action="append", help="only print the table of DIR's results")
    args, extra = ap.parse_known_args()
    if args.results:
        paths = []
        for d in args.results:
            paths.extend(glob.glob(os.path.join(d, "site-agent*.json")))
    else:
        paths = [run_size(args, extra, int(n)) for n in args.sizes.split(",")]
    print(table([row(p) for p in paths]))


if __name__ == "__main__":
    main()
