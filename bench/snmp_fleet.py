"""Figures for a fleet: 20 SNMP devices polled through the real Loop (agent/core/poll/loop.py), one
snmpsim serving several recordings with the 20 devices spread over them. Prints; asserts nothing.

    .venv/bin/python bench/snmp_fleet.py [cycles] [devices]

Each cycle is Loop.poll_all(): every device polled concurrently, readings stamped and appended to
the queue, one commit. Figures:
- readings per second: readings appended / wall time of the cycles (after a warm-up cycle that
  runs profile auto-detection);
- CPU per reading: process CPU (time.process_time, all threads of the agent process; snmpsim is a
  separate process and is not counted) / readings;
- resident memory (psutil RSS) of this process: at start, after importing pysnmp and the driver,
  after building the 20 drivers (v1/v2c devices share one pysnmp engine), and after the run.
The queue is MemoryQueue, so these are the costs of polling, not of the flash store (see
bench/queue_bench.py for that).
"""

import asyncio
import os
import sys
import time

import psutil

PROC = psutil.Process(os.getpid())


def rss_mb():
    return PROC.memory_info().rss / 1e6


RSS = [("start (python + agent core)", None)]

from agent.core.log import Log  # noqa: E402
from agent.core.poll.loop import Loop  # noqa: E402
from agent.core.store.queue import MemoryQueue  # noqa: E402

RSS[0] = (RSS[0][0], rss_mb())

from drivers.snmp import SnmpDriver  # noqa: E402  (imports pysnmp)

RSS.append(("after import of pysnmp + drivers.snmp", rss_mb()))

from hil.snmpsim import SnmpSim  # noqa: E402

RECORDINGS = (
    "UPS/eaton-93e-80",
    "UPS/huawei-gse200m",
    "UPS/phoenixtec-power",
    "UPS/eastpower-istars-swv053",
    "UPS/apc-8932",
    "network/wifi/ubiquiti-m5",
    "network/router/vyatta-unknown",
)


def devices(port, n):
    out = []
    for i in range(n):
        rec = RECORDINGS[i % len(RECORDINGS)]
        out.append(
            {
                "id": "dev%02d" % i,
                "driver": "snmp",
                "interval": 30,
                "timeout": 5,
                "jitter": 0.0,
                "snmp": {"host": "127.0.0.1", "port": port, "community": rec, "version": "2c"},
            }
        )
    return out


def drain(queue):
    while True:
        batch = queue.next_batch(1000)
        if batch is None:
            return
        queue.ack(batch[0])


async def run(port, cycles, n):
    queue = MemoryQueue()
    loop = Loop("bench-site", queue, lambda: 0.0, Log(write=lambda s: None), commit_records=10**6)
    for d in devices(port, n):
        loop.add_device(d, SnmpDriver(d))
    RSS.append(("after building %d SNMP drivers" % n, rss_mb()))
    t0 = time.perf_counter()
    first = await loop.poll_all()  # warm-up: auto-detect profiles, engine discovery
    drain(queue)
    warm = time.perf_counter() - t0
    warm_stale = ["%s: %s" % (d, r.error) for d, r in first.items() if not r.ok]
    stale = []
    readings = 0
    requests0 = sum(drv.requests for drv in loop.drivers.values())
    cpu0 = time.process_time()
    t0 = time.perf_counter()
    cycle_s = []
    for _ in range(cycles):
        t = time.perf_counter()
        results = await loop.poll_all()
        cycle_s.append(time.perf_counter() - t)
        readings += sum(len(r.samples) for r in results.values())
        drain(queue)  # as the uplink would: RSS then shows the agent, not a growing backlog
        stale += ["%s: %s" % (d, r.error) for d, r in results.items() if not r.ok]
    wall = time.perf_counter() - t0
    cpu = time.process_time() - cpu0
    requests = sum(drv.requests for drv in loop.drivers.values()) - requests0
    for drv in loop.drivers.values():
        await drv.close()
    RSS.append(("after %d cycles" % cycles, rss_mb()))
    return warm, warm_stale, wall, cpu, readings, requests, cycle_s, stale, queue.stats()


def main():
    cycles = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    with SnmpSim(list(RECORDINGS)) as sim:
        warm, warm_stale, wall, cpu, readings, requests, cycle_s, stale, depth = asyncio.run(
            run(sim.port, cycles, n)
        )
    cycle_s.sort()
    print("%d devices over %d recordings, one snmpsim; %d cycles of Loop.poll_all() after a "
          "warm-up cycle (%.0f ms)" % (n, len(RECORDINGS), cycles, warm * 1000))  # fmt: skip
    print("readings            %d (%.1f per device per cycle), queue %s"
          % (readings, readings / (n * cycles), depth))  # fmt: skip
    print(
        "SNMP requests       %d (%.1f per device per cycle)" % (requests, requests / (n * cycles))
    )
    print("wall                %.2f s; cycle median %.0f ms, max %.0f ms"
          % (wall, cycle_s[len(cycle_s) // 2] * 1000, cycle_s[-1] * 1000))  # fmt: skip
    print("readings per second %.0f" % (readings / wall))
    print("CPU                 %.2f s: %.0f us per reading, %.1f ms per device poll"
          % (cpu, cpu / readings * 1e6, cpu / (n * cycles) * 1000))  # fmt: skip
    print("stale in warm-up    %d of %d (all auto-detecting at once against one snmpsim)"
          % (len(warm_stale), n))  # fmt: skip
    for line in sorted(set(warm_stale))[:5]:
        print("  " + line)
    print("stale polls         %d of %d" % (len(stale), n * cycles))
    for line in sorted(set(stale))[:5]:
        print("  " + line)
    print("resident memory (RSS, this process):")
    for label, mb in RSS:
        print("  %-40s %6.1f MB" % (label, mb))


if __name__ == "__main__":
    main()
