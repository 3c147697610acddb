"""The agent daemon's memory on the peers' bench site over time (issue 17 point 2). Prints; asserts
nothing.

    .venv/bin/python bench/cost_memory.py [--minutes 10] [--every 10] [--driver snmp-lite]
                                          [--heap] [--modules]

The bench site is the one of ../shared/peers (RESULTS.md): snmpsim serving the 5 recordings
(3 UPSes with the ups-mib profile, 2 network devices with if-mib), SNMP v2c, 5 s polls, timeout
2 s, a mosquitto on loopback, `clock = "system"`, JSON payloads, the durable store, everything else
the agent's default (health every 60 s, the local socket console). The agent runs as the daemon
does (`site-agent run -c site.toml`, in a child process of its own: the figures are its own,
not this script's).

Every --every seconds a row: RSS (VmRSS), its high-water mark (VmHWM), anonymous memory and the
file-backed part of RSS (/proc/<pid>/smaps_rollup), threads, CPU seconds, the Python heap
(sys.getallocatedblocks(), read inside the agent on SIGUSR1), modules imported, and the readings
the broker delivered so far. At the end: RSS steady (median of the second half), peak, the slope
over the run after the first two minutes (least squares, MiB per hour), and the modules the
daemon had imported, grouped by top-level package (--modules: every one).

--heap starts tracemalloc in the agent (it costs memory and CPU of its own: use it to see where
the heap goes, not for the RSS figures) and prints the traced heap per row, the 25 largest
allocation sites at the end and the 15 that grew most since 120 s. --driver snmp runs the
pysnmp driver instead of the portable client.
"""

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

# What runs inside the agent's process (python -c, so that the daemon compiles nothing more than
# `site-agent run` does): a SIGUSR1 handler that writes one JSON line of heap figures, a SIGUSR2
# handler for the final figures (with --heap the first SIGUSR2 takes tracemalloc's baseline),
# then the daemon's own entry point. argv: heap file, "1" for tracemalloc, config.
CHILD = """
import json, os, signal, sys

out, heap, base = sys.argv[1], sys.argv[2] == "1", []
if heap:
    import tracemalloc

    tracemalloc.start(1)


def write(path, row):
    with open(path + ".tmp", "w") as f:
        json.dump(row, f)
    os.replace(path + ".tmp", path)


def report(_signum, _frame):
    import threading

    row = {"blocks": sys.getallocatedblocks(), "modules": len(sys.modules),
           "threads": threading.active_count()}
    if heap:
        row["traced"], row["traced_peak"] = tracemalloc.get_traced_memory()
    write(out, row)


def final(_signum, _frame):
    if heap and not base:
        base.append(tracemalloc.take_snapshot())
        return
    row = {"modules": sorted(sys.modules)}
    if heap:
        snap = tracemalloc.take_snapshot()
        row["top"] = [(str(s.traceback[0]), s.size, s.count)
                      for s in snap.statistics("lineno")[:25]]
        row["by_file"] = [(str(s.traceback[0].filename), s.size)
                          for s in snap.statistics("filename")[:25]]
        row["growth"] = [(str(d.traceback[0]), d.size_diff, d.count_diff)
                         for d in snap.compare_to(base[0], "lineno")[:15]]
    write(out + ".final", row)


signal.signal(signal.SIGUSR1, report)
signal.signal(signal.SIGUSR2, final)
from agent.host.cli import main

sys.exit(main(["run", "-c", sys.argv[3]]))
"""


MIB = 1024 * 1024  # the peers harness reports MiB as "MB"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# The peers' bench devices: (snmpsim recording, profile).
DEVICES = (
    ("UPS/huawei-gse200m", "ups-mib"),
    ("UPS/eaton-93e-80", "ups-mib"),
    ("UPS/eastpower-istars-swv053", "ups-mib"),
    ("network/wifi/ubiquiti-m5", "if-mib"),
    ("network/router/vyatta-unknown", "if-mib"),
)
CONFIG = """[site]
id = "cmem"
kind = "bts"
clock = "system"

[defaults]
interval = 5
timeout = 2

[uplink]
format = "json"

[[uplink.brokers]]
name = "bench"
host = "127.0.0.1"
port = %(port)d
insecure = true

[storage]
dir = "%(data)s"
"""
DEVICE = """
[[devices]]
id = "%(id)s"
driver = "%(driver)s"
[devices.snmp]
host = "127.0.0.1"
port = %(port)d
version = "2c"
community = "%(community)s"
profile = "%(profile)s"
"""


def proc_figures(pid):
    """RSS, HWM, anonymous and file-backed RSS (bytes), threads and CPU seconds of pid."""
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                out[k] = int(v.split()[0]) * 1024
            elif k == "Threads":
                out[k] = int(v)
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu"] = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return out


def slope_mb_per_hour(ts, values):
    """Least-squares slope of values (bytes) against ts (s), in MiB per hour."""
    if len(ts) < 3:
        return None
    mt, mv = statistics.fmean(ts), statistics.fmean(values)
    den = sum((t - mt) ** 2 for t in ts)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in zip(ts, values)) / den * 3600 / MIB


class Readings:
    """Counts the device readings the broker delivers (data batches, JSON contract)."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt

        self.n = 0
        self.first = None
        self.c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        self.c.on_message = self._msg
        self.c.on_connect = lambda c, *a: c.subscribe("site-agent/v1/cmem/data", 1)
        self.c.connect("127.0.0.1", port)
        self.c.loop_start()

    def _msg(self, _c, _u, msg):
        try:
            recs = json.loads(msg.payload).get("readings", ())
        except ValueError:
            return
        n = sum(1 for r in recs if r.get("device") not in ("site", "agent"))
        if n and self.first is None:
            self.first = time.monotonic()
        self.n += n

    def stop(self):
        self.c.loop_stop()
        self.c.disconnect()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--every", type=float, default=10.0, help="seconds between rows")
    ap.add_argument("--driver", default="snmp-lite", choices=("snmp-lite", "snmp"))
    ap.add_argument("--heap", action="store_true", help="tracemalloc in the agent (costs memory)")
    ap.add_argument("--modules", action="store_true", help="list every module the agent imported")
    args = ap.parse_args()

    from hil.broker import Broker
    from hil.snmpsim import SnmpSim

    tmp = tempfile.mkdtemp(prefix="cost-memory-")
    sim = SnmpSim([r for r, _ in DEVICES]).start()
    broker = Broker(require_mosquitto=True).start()
    agent = None
    try:
        conf = os.path.join(tmp, "site.toml")
        text = CONFIG % {"port": broker.port, "data": os.path.join(tmp, "data")}
        for rec, prof in DEVICES:
            text += DEVICE % {"id": rec.rsplit("/", 1)[1], "driver": args.driver,
                              "port": sim.port, "community": sim.community_for(rec),
                              "profile": prof}  # fmt: skip
        with open(conf, "w") as f:
            f.write(text)
        readings = Readings(broker.port)
        heapfile = os.path.join(tmp, "heap.json")
        log = open(os.path.join(tmp, "agent.log"), "w")
        t0 = time.monotonic()
        agent = subprocess.Popen(
            [sys.executable, "-c", CHILD, heapfile, "1" if args.heap else "0", conf],
            stdout=log, stderr=log, cwd=tmp,
            env=dict(os.environ, PYTHONPATH=ROOT, PYTHONUNBUFFERED="1"),
        )  # fmt: skip
        print("agent pid %d, driver %s, %g min, a row every %g s; config and log in %s"
              % (agent.pid, args.driver, args.minutes, args.every, tmp))  # fmt: skip
        head = "%7s %8s %8s %8s %8s %4s %7s %9s %8s %5s %8s" % (
            "t_s", "rss_MiB", "hwm_MiB", "anon_MiB", "file_MiB", "thr", "cpu_s", "pyblocks",
            "heap_MiB", "mods", "readings")
        print(head)
        rows = []
        based = False
        end = t0 + args.minutes * 60
        while time.monotonic() < end and agent.poll() is None:
            time.sleep(min(args.every, max(0.0, end - time.monotonic())))
            if agent.poll() is not None:
                break
            if args.heap and not based and time.monotonic() - t0 >= 120:
                agent.send_signal(signal.SIGUSR2)  # tracemalloc's baseline for the growth
                based = True
                time.sleep(3)
            agent.send_signal(signal.SIGUSR1)
            time.sleep(0.2)
            p = proc_figures(agent.pid)
            try:
                with open(heapfile) as f:
                    h = json.load(f)
            except (OSError, ValueError):
                h = {}
            t = time.monotonic() - t0
            rows.append((t, p, h))
            traced = h.get("traced")
            print("%7.0f %8.2f %8.2f %8.2f %8.2f %4d %7.2f %9s %8s %5s %8d" % (
                t, p["VmRSS"] / MIB, p["VmHWM"] / MIB, p["RssAnon"] / MIB, p["RssFile"] / MIB,
                p["Threads"], p["cpu"], h.get("blocks", "-"),
                "-" if traced is None else "%.2f" % (traced / MIB), h.get("modules", "-"),
                readings.n), flush=True)  # fmt: skip
        if agent.poll() is not None:
            print("agent exited with %s; log %s" % (agent.returncode, log.name))
            return 1
        agent.send_signal(signal.SIGUSR2)
        final = {}
        for _ in range(100):  # a tracemalloc snapshot takes a few seconds
            time.sleep(0.2)
            try:
                with open(heapfile + ".final") as f:
                    final = json.load(f)
                break
            except (OSError, ValueError):
                pass
        readings.stop()
        summarise(rows, final, readings, t0, args)
    finally:
        if agent is not None and agent.poll() is None:
            agent.terminate()
            try:
                agent.wait(20)
            except subprocess.TimeoutExpired:
                agent.kill()
        broker.stop()
        sim.stop()
    return 0


def summarise(rows, final, readings, t0, args):
    rss = [p["VmRSS"] for _t, p, _h in rows]
    second = rss[len(rss) // 2:]
    late = [(t, p["VmRSS"]) for t, p, _h in rows if t >= 120]
    print()
    print("RSS steady (median of the second half): %.2f MiB" % (statistics.median(second) / MIB))
    print("RSS peak (VmHWM): %.2f MiB" % (max(p["VmHWM"] for _t, p, _h in rows) / MIB))
    s = slope_mb_per_hour([t for t, _ in late], [v for _, v in late])
    if s is not None:
        print("RSS slope after 120 s: %+.2f MiB/hour over %.0f s (%d rows)"
              % (s, late[-1][0] - late[0][0], len(late)))  # fmt: skip
    blk = [(t, h["blocks"]) for t, _p, h in rows if t >= 120 and "blocks" in h]
    if len(blk) >= 3:
        mt = statistics.fmean(t for t, _ in blk)
        mb = statistics.fmean(b for _, b in blk)
        den = sum((t - mt) ** 2 for t, _ in blk)
        if den:
            sb = sum((t - mt) * (b - mb) for t, b in blk) / den * 3600
            print("Python heap blocks: %d at 120 s, %d at the end; slope %+.0f blocks/hour"
                  % (blk[0][1], blk[-1][1], sb))  # fmt: skip
    cpu = rows[-1][1]["cpu"]
    print("readings delivered: %d (first %.1f s after start); agent CPU %.2f s, %.3f ms/reading"
          % (readings.n, (readings.first or t0) - t0, cpu,
             1000 * cpu / readings.n if readings.n else float("nan")))  # fmt: skip
    mods = final.get("modules") or []
    if mods:
        groups = {}
        for m in mods:
            top = m.split(".")[0]
            groups[top] = groups.get(top, 0) + 1
        print("modules imported by the daemon: %d; by package: %s" % (len(mods), ", ".join(
            "%s %d" % kv for kv in sorted(groups.items(), key=lambda kv: (-kv[1], kv[0])))))
        if args.modules:
            print(" ".join(mods))
    for label, key in (("allocation sites", "top"), ("files", "by_file")):
        if final.get(key):
            print("\nlargest traced %s (KB):" % label)
            for entry in final[key]:
                print("%9.1f  %s" % (entry[1] / 1024, entry[0]))
    if final.get("growth"):
        print("\ngrowth of the traced heap since 120 s, by allocation site (KB, blocks):")
        for where, size, count in final["growth"]:
            print("%+9.1f %+7d  %s" % (size / 1024, count, where))


if __name__ == "__main__":
    sys.exit(main())
