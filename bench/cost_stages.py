"""CPU per reading, stage by stage, of the whole agent on the peers-benchmark site: 5 real device
recordings (3 UPSes, 2 routers) served by snmpsim, SNMP v2c with the `snmp` driver, the durable
store, the JSON uplink to a loopback mosquitto, 5 s polls. Prints a table; asserts nothing.

    .venv/bin/python bench/cost_stages.py [--seconds 60] [--format json|compact] [--devices 5]

It runs the real daemon (agent/host/runner.run_agent) in this process and wraps the synchronous
function of each stage with a CPU timer of the main thread (time.thread_time). Times are
exclusive: a stage called inside another (the registry inside the profile engine) is counted
once, in the inner stage. Stages:

  BER codec        drivers/proto/ber.py: request encoding, response decoding
  profile engine   drivers/profiles/engine.evaluate: raw values -> samples
  registry         agent/core/registry.unit_of: the unit of each sample
  loop record      Loop._record: stamping readings, the latest table, records for the store
  site state       SiteState.feed and .readings (derived site readings)
  alarms           AlarmEngine.poll/.feed and SiteMonitor.record around them
  store append     Store.append; store commit: Store.commit (write + fsync)
  store read-out   Store.next_batch; batch encode: contract.encode_batch / compact2 encode
  publish          paho's publish() as the uplink calls it (main thread)
  uplink pump      Outbox.pump and _fill around the above
  paho thread      everything paho's network thread does (process CPU - main thread CPU)
  rest             the main thread's other CPU: the event loop, timers, UDP datagrams, the
                   SNMP client's coroutines, the health device, the console

The per-reading basis is the device values delivered by the store (not site/agent records),
as the peers harness counts them. The wrappers cost about 0.3 us per call, which the stages
called once per record (store append) include.
"""

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from agent.core import registry  # noqa: E402
from agent.core.log import Log  # noqa: E402
from agent.core.monitor import alarms, pipeline, sitestate  # noqa: E402
from agent.core.poll import loop as poll_loop  # noqa: E402
from agent.core.store import store as store_mod  # noqa: E402
from agent.core.uplink import contract, outbox  # noqa: E402
from agent.host import configfile, runner  # noqa: E402
from agent.host import uplink as host_uplink  # noqa: E402
from drivers.profiles import engine  # noqa: E402
from drivers.proto import ber  # noqa: E402
from hil.broker import Broker  # noqa: E402
from hil.snmpsim import SnmpSim  # noqa: E402

# The peers benchmark's devices (../shared/peers/devices.json) and the profiles it gives them.
DEVICES = (
    ("huawei-gse200m", "UPS/huawei-gse200m", "ups-mib"),
    ("eaton-93e-80", "UPS/eaton-93e-80", "ups-mib"),
    ("eastpower-istars-swv053", "UPS/eastpower-istars-swv053", "ups-mib"),
    ("ubiquiti-m5", "network/wifi/ubiquiti-m5", "if-mib"),
    ("vyatta-unknown", "network/router/vyatta-unknown", "if-mib"),
)
STAGES = (
    "BER codec",
    "profile engine",
    "registry",
    "loop record",
    "site state",
    "alarms",
    "store append",
    "store commit",
    "store read-out",
    "batch encode",
    "publish",
    "uplink pump",
    "paho thread",
    "rest",
)
MAIN = threading.get_ident()


class Timers:
    """Exclusive main-thread CPU per stage: a stage's time less the stages called inside it."""

    def __init__(self):
        self.spent = dict.fromkeys(STAGES, 0.0)
        self.calls = dict.fromkeys(STAGES, 0)
        self.stack = []  # [child time] of the stages running now, innermost last
        self.on = False

    def wrap(self, owner, name, stage):
        fn = getattr(owner, name)
        clock = time.thread_time
        stack = self.stack

        def timed(*args, **kwargs):
            if not self.on or threading.get_ident() != MAIN:
                return fn(*args, **kwargs)
            stack.append(0.0)
            t0 = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                took = clock() - t0
                inner = stack.pop()
                self.spent[stage] += took - inner
                self.calls[stage] += 1
                if stack:
                    stack[-1] += took

        setattr(owner, name, timed)


def instrument(t):
    t.wrap(ber, "encode_request", "BER codec")
    t.wrap(ber, "decode_message", "BER codec")
    t.wrap(engine, "evaluate", "profile engine")
    t.wrap(registry, "unit_of", "registry")
    t.wrap(poll_loop.Loop, "_record", "loop record")
    t.wrap(sitestate.SiteState, "feed", "site state")
    t.wrap(sitestate.SiteState, "readings", "site state")
    t.wrap(alarms.AlarmEngine, "feed", "alarms")
    t.wrap(alarms.AlarmEngine, "poll", "alarms")
    t.wrap(pipeline.SiteMonitor, "record", "alarms")
    t.wrap(store_mod.Store, "append", "store append")
    t.wrap(store_mod.Store, "commit", "store commit")
    t.wrap(store_mod.Store, "next_batch", "store read-out")
    t.wrap(contract, "encode_batch", "batch encode")
    t.wrap(host_uplink.MqttUplink, "_publish", "publish")
    t.wrap(outbox.Outbox, "pump", "uplink pump")
    try:
        from agent.core.uplink import compact2

        t.wrap(compact2.Stream, "encode", "batch encode")
    except ImportError:
        pass


class Counter:
    """Device values the store took (the per-reading basis), from Store.append."""

    def __init__(self, devices):
        self.devices = set(devices)
        self.values = 0
        self.records = 0
        self.on = False

    def hook(self):
        append = store_mod.Store.append
        me = self

        def counted(store, lane, record):
            if me.on:
                me.records += 1
                if record.get("device") in me.devices and not str(record.get("metric", "")
                                                                  ).startswith("agent."):
                    me.values += 1
            return append(store, lane, record)

        store_mod.Store.append = counted


def device_id(i):
    name = DEVICES[i % len(DEVICES)][0]
    return name if i < len(DEVICES) else "%s-%d" % (name, i // len(DEVICES))


def site_toml(sim, broker, data_dir, fmt, n):
    blocks = []
    for i in range(n):
        _name, rec, profile = DEVICES[i % len(DEVICES)]
        dev_id = device_id(i)
        blocks.append('[[devices]]\nid = "%s"\ndriver = "snmp"\n[devices.snmp]\nhost = "127.0.0.1"'
                      '\nport = %d\nversion = "2c"\ncommunity = "%s"\nprofile = "%s"\n'
                      % (dev_id, sim.port, sim.community_for(rec), profile))  # fmt: skip
    return (
        '[site]\nid = "pbench"\nkind = "bts"\nclock = "system"\n\n[defaults]\ninterval = 5\n'
        'timeout = 2\n\n[uplink]\nformat = "%s"\n\n[[uplink.brokers]]\nname = "pbench"\n'
        'host = "%s"\nport = %d\ninsecure = true\n\n[storage]\ndir = "%s"\n\n%s'
        % (fmt, broker.host, broker.port, data_dir, "\n".join(blocks))
    )


async def run(cfg, seconds, warmup, t, counter, prof=None):
    log = Log(write=lambda line: None)
    stop = asyncio.Event()
    task = asyncio.create_task(runner.run_agent(cfg, log, stop))
    await asyncio.sleep(warmup)
    t.on = counter.on = True
    if prof is not None:
        prof.enable()
    p0, m0, w0 = time.process_time(), time.thread_time(), time.monotonic()
    await asyncio.sleep(seconds)
    p1, m1, w1 = time.process_time(), time.thread_time(), time.monotonic()
    if prof is not None:
        prof.disable()
    t.on = counter.on = False
    stop.set()
    await task
    return p1 - p0, m1 - m0, w1 - w0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured window (default 60)")
    ap.add_argument("--warmup", type=float, default=12.0)
    ap.add_argument("--format", default="json", choices=("json", "compact"))
    ap.add_argument("--devices", type=int, default=5, help="devices, cycling the 5 recordings")
    ap.add_argument("--cprofile", metavar="FILE", help="also write a cProfile of the main "
                    "thread's window to FILE (slows every stage; the table is then not a figure)")
    args = ap.parse_args()
    t = Timers()
    counter = Counter([device_id(i) for i in range(args.devices)])
    counter.hook()
    instrument(t)
    with SnmpSim(sorted({d[1] for d in DEVICES})) as sim, Broker() as broker, \
            tempfile.TemporaryDirectory() as tmp:  # fmt: skip
        path = os.path.join(tmp, "site.toml")
        with open(path, "w") as f:
            f.write(site_toml(sim, broker, os.path.join(tmp, "data"), args.format, args.devices))
        cfg = configfile.load(path)
        prof = None
        if args.cprofile:
            import cProfile

            prof = cProfile.Profile()
        proc, main_cpu, wall = asyncio.run(run(cfg, args.seconds, args.warmup, t, counter, prof))
        if prof is not None:
            prof.dump_stats(args.cprofile)
    n = counter.values or 1
    t.spent["paho thread"] = proc - main_cpu
    t.spent["rest"] = main_cpu - sum(t.spent[s] for s in STAGES if s not in ("paho thread",
                                                                             "rest"))  # fmt: skip
    print("site-agent stages, %d devices, %s payloads, %.0f s window (after %.0f s warm-up)"
          % (args.devices, args.format, wall, args.warmup))  # fmt: skip
    print("device values stored: %d (%.1f/s); all records: %d; process CPU %.2f s = %.1f %% of"
          " one core" % (counter.values, counter.values / wall, counter.records, proc,
                         100 * proc / wall))  # fmt: skip
    print()
    print("| stage | us / reading | share | calls |")
    print("|---|---|---|---|")
    for s in STAGES:
        calls = t.calls[s] if s not in ("paho thread", "rest") else ""
        print("| %s | %.1f | %.0f %% | %s |" % (s, 1e6 * t.spent[s] / n, 100 * t.spent[s] / proc,
                                               calls))  # fmt: skip
    print("| **total (process CPU)** | **%.1f** | 100 %% | |" % (1e6 * proc / n))
    print()
    print("CPU ms / reading: %.3f" % (1e3 * proc / n))


if __name__ == "__main__":
    main()
