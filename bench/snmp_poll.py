"""Figures for the SNMP driver against snmpsim on loopback: time and requests per poll, per
profile, and GETBULK against GETNEXT (v1) for the same router tables. Prints; asserts nothing.

    .venv/bin/python bench/snmp_poll.py [polls]
"""

import asyncio
import statistics
import sys
import time

from drivers.snmp import SnmpDriver
from hil.snmpsim import SnmpSim

CASES = (
    ("UPS/eaton-93e-80", "2c"),
    ("UPS/apc-8932", "2c"),
    ("network/wifi/ubiquiti-m5", "2c"),
    ("network/router/vyatta-unknown", "2c"),
    ("network/router/vyatta-unknown", "1"),
)


async def measure(port, recording, version, polls):
    dev = {
        "id": "b",
        "timeout": 2,
        "snmp": {"host": "127.0.0.1", "port": port, "community": recording, "version": version},
    }
    driver = SnmpDriver(dev)
    t0 = time.perf_counter()
    first = await driver.poll(30)
    first_s = time.perf_counter() - t0
    before = driver.requests
    times = []
    for _ in range(polls):
        t = time.perf_counter()
        result = await driver.poll(30)
        times.append(time.perf_counter() - t)
        assert result.ok, result.error
    await driver.close()
    per_poll = (driver.requests - before) / polls
    return driver.profile["name"], len(result.samples), first_s, times, per_poll, first.ok


def main():
    polls = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    with SnmpSim(sorted({r for r, _v in CASES})) as sim:
        print(f"snmpsim on 127.0.0.1:{sim.port}; {polls} polls after the first (auto-detect)")
        print(
            f"{'recording':32} {'v':>2} {'profile':12} {'samples':>7} {'first ms':>9} "
            f"{'median ms':>9} {'max ms':>7} {'req/poll':>8}"
        )
        for recording, version in CASES:
            name, n, first_s, times, reqs, _ok = asyncio.run(
                measure(sim.port, recording, version, polls)
            )
            print(
                f"{recording:32} {version:>2} {name:12} {n:7d} {first_s * 1000:9.1f} "
                f"{statistics.median(times) * 1000:9.1f} {max(times) * 1000:7.1f} {reqs:8.1f}"
            )


if __name__ == "__main__":
    main()
