"""The fleet consumer (`site-agent fleet`) under 10,000 sites at the contract's normal rates:
CPU on one core, memory, and the cost of the page, /metrics and a cold start.

    .venv/bin/python bench/fleet_consumer.py [--sites 10000] [--measure 120] [--instances 1]
        [--contract 1|2] [--form kind|json|compact] [--split share|partition]

The load: a generator process (`python -m hil.fleet`, the same simulated sites as the demo and
the tests) publishes as `--sites` sites on one mosquitto, 30 % hardened BTS and 70 % community
Wi-Fi points, each with the devices, poll intervals, commit intervals and payload forms of the
example configs (config/bts-hardened.toml: 6 devices every 15-60 s, a JSON batch every 5 s;
config/community-wifi.toml: 6 devices every 30-300 s, a compact batch every 30 s), the derived
site.* readings after every poll and alarm events on changes. Every site first publishes its
birth, retained state and alarm set. The generator uses a few shared connections (10,000
connections would measure the broker), so silence here shows only by age. --contract 2 has
every site speak contract v2 in the same forms (v2 JSON for a BTS, the v2 compact stream with
its series table for a Wi-Fi point; --form json or compact: every site in one form), encoded by
the agent's own contract module; the consumers start before the load, so they read every
stream from its first message.

The consumer runs as its own process, pinned to one core with taskset when there is more than
one; its CPU is its own user + system time over the measuring window (all its threads), as a
share of one core. It keeps up when the records it applied over the window match what the
sites made. Memory: its RSS with no site, and once it knows every site (each site's day of
history is allocated when it is first heard, so this is the steady state).
--instances N runs N consumers that split the live stream: `--split share` (default for
contract 1) gives each `--share bench` (v1 data through mosquitto's shared group; v2 data would
be read in full by each); `--split partition` (default for contract 2) gives each
`--share bench --partition i/N` (each subscribes to the v2 data topics of its own sites only;
v1 data still shared).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import psutil  # noqa: E402

from hil.broker import Broker  # noqa: E402
from hil.net import free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# mosquitto must queue, not drop, what a slow consumer has not taken yet: a lag shows as lag.
BROKER_CONF = "max_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"


def metric(text, name):
    m = re.search(r"^%s (\S+)$" % re.escape(name), text, re.M)
    return float(m.group(1)) if m else None


def get(url, timeout=60):
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        body = r.read()
    return body, time.perf_counter() - t


class Consumer:
    def __init__(self, port, name, share=None, cpu=None, partition=None):
        self.http = free_port()
        cmd = [sys.executable, "-m", "agent.host.cli", "fleet", "--broker", "127.0.0.1:%d" % port,
               "--insecure", "--listen", "127.0.0.1:%d" % self.http, "--client-id", name]
        if share:
            cmd += ["--share", share]
        if partition:
            cmd += ["--partition", "%d/%d" % partition]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.log = open(os.path.join(os.environ.get("TMPDIR", "/tmp"), "fleet-%s.log" % name), "w")
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=self.log, stderr=self.log)
        self.ps = psutil.Process(self.proc.pid)
        self.url = "http://127.0.0.1:%d/" % self.http
        deadline = time.monotonic() + 60
        while True:
            try:
                get(self.url + "healthz", 5)
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError("the consumer did not start; see %s"
                                       % self.log.name) from None
                time.sleep(0.2)

    def cpu(self):
        t = self.ps.cpu_times()  # the python process (taskset execs it in place)
        return t.user + t.system

    def rss(self):
        return self.ps.memory_info().rss

    def metrics(self):
        return get(self.url + "metrics")[0].decode()

    def stats(self):
        """{"sites", "counts": {messages, records_data, records_alarm, records_state, ...}}"""
        return json.loads(get(self.url + "api/stats")[0])

    def live_records(self):
        c = self.stats()["counts"]
        return c.get("records_data", 0) + c.get("records_alarm", 0)

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class Generator:
    def __init__(self, port, sites, cpu=None, contract=1, form="kind", integrity=600.0):
        cmd = [sys.executable, "-m", "hil.fleet", "--port", str(port), "--sites", str(sites),
               "--every", "2", "--contract", str(contract), "--form", form,
               "--integrity", str(integrity)]
        if cpu is not None and shutil.which("taskset"):
            cmd = ["taskset", "-c", str(cpu)] + cmd
        self.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        self.ps = psutil.Process(self.proc.pid)
        self.last = None
        self.first = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                self.last = json.loads(line)
            except ValueError:
                continue
            self.first.set()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(60)
        self.thread.join(10)
        return self.last


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=10000)
    p.add_argument("--warmup", type=float, default=30.0, help="seconds after every site is known")
    p.add_argument("--measure", type=float, default=120.0)
    p.add_argument("--instances", type=int, default=1)
    p.add_argument("--contract", type=int, choices=(1, 2), default=1,
                   help="the contract version every site speaks (default 1)")
    p.add_argument("--form", choices=("kind", "json", "compact"), default="kind",
                   help="kind (default): JSON for a BTS, compact for a Wi-Fi point; or one form")
    p.add_argument("--integrity", type=float, default=600.0, help="v2 compact integrity period")
    p.add_argument("--split", choices=("share", "partition"),
                   help="how N instances split the stream (default: share for contract 1, "
                   "partition for 2)")
    args = p.parse_args()
    split = args.split or ("share" if args.contract == 1 else "partition")
    ncpu = os.cpu_count() or 1
    pin_consumer = 0 if ncpu > 1 else None
    pin_rest = 1 if ncpu > 1 else None
    print("fleet consumer bench: %d sites, contract v%d, form %s, %d consumer(s)%s, %d cores "
          "(consumer pinned to %s)" % (args.sites, args.contract, args.form, args.instances,
                                       " (%s)" % split if args.instances > 1 else "", ncpu,
                                       "core 0" if pin_consumer is not None else "-"))
    with Broker(require_mosquitto=True, extra_conf=BROKER_CONF) as broker:
        if pin_rest is not None and shutil.which("taskset"):
            subprocess.run(["taskset", "-p", "-c", str(pin_rest), str(broker.proc.pid)],
                           capture_output=True)  # fmt: skip
        share = "bench" if args.instances > 1 else None
        parts = [(i, args.instances) if share and split == "partition" else None
                 for i in range(args.instances)]  # fmt: skip
        cons = [Consumer(broker.port, "bench-%d" % i, share, pin_consumer, parts[i])
                for i in range(args.instances)]  # fmt: skip
        time.sleep(2)
        rss0 = [c.rss() for c in cons]
        if parts[0]:
            # An installed fleet: each instance learns its sites from their status and
            # subscribes to their data before they speak (a new site's first messages could
            # come before its subscription).
            subprocess.run([sys.executable, "-m", "hil.fleet", "--port", str(broker.port),
                            "--sites", str(args.sites), "--contract", str(args.contract),
                            "--form", args.form, "--announce"], cwd=ROOT, check=True)
            for c in cons:
                while c.stats()["sites"] < args.sites:
                    time.sleep(0.5)
            time.sleep(2)
        gen = Generator(broker.port, args.sites, pin_rest, args.contract, args.form,
                        args.integrity)  # fmt: skip
        t0 = time.monotonic()
        gen.first.wait(600)
        while True:
            known = [c.stats()["sites"] for c in cons]
            if all(k >= args.sites for k in known):
                break
            if time.monotonic() - t0 > 600:
                raise SystemExit("the consumers know %s of %d sites after 10 min" % (known,
                                                                                    args.sites))
            time.sleep(1)
        first_all = time.monotonic() - t0
        print("every site known %.1f s after the generator started (it publishes every site's "
              "birth, state and alarms first: %.1f s)" % (first_all, gen.last["start_s"]))
        time.sleep(args.warmup)
        # The window: CPU read before and after, nothing else asked of the consumers meanwhile.
        g0, s0, c0, w0 = dict(gen.last), [c.stats() for c in cons], [c.cpu() for c in cons], \
            time.monotonic()
        gc0 = gen.ps.cpu_times()
        time.sleep(args.measure)
        c1, w1, g1, s1 = [c.cpu() for c in cons], time.monotonic(), dict(gen.last), \
            [c.stats() for c in cons]
        gc1 = gen.ps.cpu_times()
        wall = w1 - w0
        gen_wall = g1["t"] - g0["t"]
        made = (g1["records"] - g0["records"]) / gen_wall
        pub = (g1["published"] - g0["published"]) / gen_wall
        print("\nload over %.0f s: %.0f messages/s, %.0f records/s, %.2f MB/s of payload "
              "(%.1f bytes a record); the generator used %.0f %% of a core"
              % (gen_wall, pub, made, (g1["bytes"] - g0["bytes"]) / gen_wall / 1e6,
                 (g1["bytes"] - g0["bytes"]) / max(1, g1["records"] - g0["records"]),
                 100 * (gc1.user + gc1.system - gc0.user - gc0.system) / wall))  # fmt: skip
        rows = []
        for i, c in enumerate(cons):
            a, b = s0[i]["counts"], s1[i]["counts"]
            rec = sum(b.get(k, 0) - a.get(k, 0) for k in ("records_data", "records_alarm",
                                                           "records_state")) / wall
            msgs = (b["messages"] - a["messages"]) / wall
            other = (b.get("messages_elsewhere", 0) - a.get("messages_elsewhere", 0)) / wall
            cpu = (c1[i] - c0[i]) / wall
            rows.append((c, rec, msgs, cpu))
            print("consumer %d: %.0f messages/s, %.0f records/s applied%s, CPU %.1f %% of one "
                  "core, %.1f us per record, %.2f %% of a core per 1,000 sites"
                  % (i, msgs, rec, ", %.0f messages/s of other partitions dropped" % other
                     if other else "", 100 * cpu, 1e6 * cpu / rec if rec else 0,
                     100 * cpu * 1000 / args.sites))  # fmt: skip
        # Memory and the HTTP side, with every site known.
        c = cons[0]
        rss = c.rss()
        print("\nmemory (consumer 0): RSS %.1f MB with no site, %.1f MB with %d sites: %.1f KB "
              "per site (current values, alarms, seq ranges and a day of 5-minute history)"
              % (rss0[0] / 1e6, rss / 1e6, args.sites, (rss - rss0[0]) / args.sites / 1e3))
        cpu_a = c.cpu()
        body, dt = get(c.url + "metrics")
        print("GET /metrics: %.2f s, %.1f MB, %d series (promtool: %s)"
              % (dt, len(body) / 1e6, sum(1 for ln in body.splitlines()
                                          if ln and not ln.startswith(b"#")), promtool(body)))
        body, dt = get(c.url + "api/fleet?limit=500")
        print("GET /api/fleet (the page's refresh, 500 rows + %d map points): %.2f s, %.2f MB"
              % (len(json.loads(body)["map"]["points"]), dt, len(body) / 1e6))
        one = json.loads(body)["sites"][0]["id"]
        body, dt = get(c.url + "api/site/" + one)
        print("GET /api/site/<id> (one site with its day): %.3f s, %.1f KB"
              % (dt, len(body) / 1e3))
        print("CPU for those three requests: %.2f s" % (c.cpu() - cpu_a))
        # A cold start: a new consumer learns the whole fleet from the retained topics.
        t = time.monotonic()
        once = subprocess.run([sys.executable, "-m", "agent.host.cli", "fleet", "--broker",
                               "127.0.0.1:%d" % broker.port, "--insecure", "--once", "--wait",
                               "0", "--json"], cwd=ROOT, capture_output=True, timeout=600)
        n = len(json.loads(once.stdout)["sites"]) if once.returncode == 0 else 0
        print("cold start (--once --wait 0): %d sites from the retained topics in %.1f s"
              % (n, time.monotonic() - t))
        # Drain: stop the load; the consumers must catch up with nothing left behind.
        final = gen.stop()
        t = time.monotonic()
        last = None
        while time.monotonic() - t < 300:
            now = [x.live_records() for x in cons]
            if now == last:
                break
            last = now
            time.sleep(3)
        drained = time.monotonic() - t
        st = [x.stats()["counts"] for x in cons]
        print("\nafter the load stopped (%.0f s to drain): the sites published %d records "
              "(readings and alarm events); the consumer(s) applied %s of them (%d in all), "
              "duplicates %s, bad messages %s, unresolved %s"
              % (drained, final["sent"], last, sum(last),
                 [c.get("duplicates", 0) for c in st], [c.get("bad_messages", 0) for c in st],
                 [c.get("records_unresolved", 0) for c in st]))  # fmt: skip
        for x in cons:
            x.stop()


def promtool(body):
    exe = shutil.which("promtool") or "/usr/bin/promtool"
    if not os.path.exists(exe):
        return "not installed"
    p = subprocess.run([exe, "check", "metrics"], input=body, capture_output=True)
    return "ok" if p.returncode == 0 else (p.stdout + p.stderr).decode()[:200]


if __name__ == "__main__":
    main()
