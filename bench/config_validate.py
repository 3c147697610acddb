"""Print how long the site config takes to parse and validate on this host (CPython).

    .venv/bin/python bench/config_validate.py

For each example in config/: TOML parse time, validate() time (secrets from a fake environment),
and validate() time for a config with every device invalid (the error path, all messages built).
Figures are medians over repeated runs; the MicroPython heap figures are in bench/mpy_heap.py.
"""

import statistics
import time
from pathlib import Path

import drivers
from agent.core.config.validate import SCHEMA_TABLES, validate
from agent.core.errors import ConfigError
from agent.host.configfile import parse

REPO = Path(__file__).resolve().parents[1]
PIN = "pbkdf2-sha256$200000$a1b2c3d4$" + "0f" * 32


def getenv(name):
    return "bench-secret-value"


def read_file(path):
    return PIN if path.endswith("pin") else "bench-secret-value\n"


def median_ms(fn, n=200):
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000.0


def broken(data, copies=50):
    """`copies` devices, each with five mistakes."""
    data = dict(data)
    data["devices"] = [
        {"id": f"d/{i}", "driver": "snmp", "intervall": 0, "snmp": {"host": "h", "version": "4"},
         "serial": {"port": "x"}}
        for i in range(copies)
    ]  # fmt: skip
    return data


def main():
    fields = sum(len(f) for _, f in SCHEMA_TABLES)
    print(f"schema: {len(SCHEMA_TABLES)} tables, {fields} keys")
    print(f"{'example':22} {'devices':>8} {'parse':>8} {'validate':>12} {'errors':>10}")
    for path in sorted((REPO / "config").glob("*.toml")):
        data = parse(path)
        cfg = validate(data, str(path), getenv, read_file, drivers.load)
        parse_ms = median_ms(lambda p=path: parse(p))
        ok_ms = median_ms(lambda d=data: validate(d, "site.toml", getenv, read_file, drivers.load))
        n = len(cfg.devices)
        print(f"{path.name:22} {n:8d} {parse_ms:6.2f}ms {ok_ms:10.2f}ms {'-':>10}")
        bad = broken(data)
        try:
            validate(bad, "site.toml", getenv, read_file, drivers.load)
        except ConfigError as e:
            count = len(e.errors)

        def run_bad(b=bad):
            try:
                validate(b, "site.toml", getenv, read_file, drivers.load)
            except ConfigError:
                pass

        bad_ms = median_ms(run_bad, n=50)
        print(f"{'  50 broken devices':22} {50:8d} {'':8} {bad_ms:10.2f}ms {count:10d}")


if __name__ == "__main__":
    main()
