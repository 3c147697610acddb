"""Bytes on the wire per reading, JSON and compact forms, MQTT 3.1.1 QoS 1 overhead included
(PUBLISH fixed header, topic, packet id, and the PUBACK), for several batch sizes.

    .venv/bin/python bench/wire_bytes.py

The readings imitate a BTS: a DC plant, a UPS and a router polled every 30 s (values drift a
little from poll to poll, as real ones do). TLS adds per record about 22 bytes (TLS 1.3 AEAD:
5-byte header, 1-byte type, 16-byte tag) and is shown in its own column, one record per PUBLISH.
"""

import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agent.core.uplink import contract  # noqa: E402

SITE = "vn-hue-bts-0142"
PREFIX = "site-agent/v1"
TLS_RECORD = 22
SERIES = [
    ("dc-plant", "dc.voltage", "V", 53.6), ("dc-plant", "dc.current", "A", 41.2),
    ("dc-plant", "battery.voltage", "V", 53.5), ("dc-plant", "battery.current", "A", 1.3),
    ("dc-plant", "battery.temperature", "C", 31.0), ("dc-plant", "rectifier.current", "A", 42.5),
    ("dc-plant", "rectifier.utilisation", "%", 35.0), ("dc-plant", "dc.status", "", "normal"),
    ("ups-1", "input.voltage", "V", 228.0), ("ups-1", "output.voltage", "V", 230.0),
    ("ups-1", "ups.load", "%", 34.0), ("ups-1", "battery.charge", "%", 100.0),
    ("ups-1", "ups.status", "", "OL CHRG"), ("router", "if.wan.oper", "", "up"),
    ("router", "if.wan.in_bps", "bit/s", 1.2e6), ("router", "agent.device.stale", "", False),
]  # fmt: skip


def readings(n, rnd):
    out = []
    t = 1760000000.0
    seq = 100000
    while len(out) < n:
        for dev, metric, unit, base in SERIES:
            v = base
            if isinstance(base, float):
                v = round(base * (1 + rnd.uniform(-0.01, 0.01)), 2)
            out.append({"site": SITE, "device": dev, "metric": metric, "value": v, "unit": unit,
                        "time": round(t + rnd.uniform(0, 0.4), 3), "quality": "good",
                        "seq": seq})  # fmt: skip
            seq += 1
        t += 30
    return out[:n]


def main():
    rnd = random.Random(7)
    topic = contract.topic(PREFIX, SITE, "data")
    print("topic %r (%d bytes); per-message MQTT overhead = fixed header + 2 + topic + 2 + "
          "PUBACK 4" % (topic, len(topic)))  # fmt: skip
    print()
    print("%-8s %-8s %10s %12s %14s %16s" % ("batch", "form", "payload B", "wire B/msg",
                                            "wire B/reading", "+TLS B/reading"))  # fmt: skip
    for n in (1, 10, 50, 100, 500):
        recs = readings(n, rnd)
        for fmt in ("json", "compact"):
            payload = contract.encode_batch(SITE, 1, recs, "data", fmt)
            wire = contract.publish_bytes(topic, len(payload))
            print("%-8d %-8s %10d %12d %14.1f %16.1f" % (n, fmt, len(payload), wire, wire / n,
                                                          (wire + TLS_RECORD) / n))  # fmt: skip


if __name__ == "__main__":
    main()
