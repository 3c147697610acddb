"""Bytes on the wire per reading, for every served form: contract v1 JSON and compact, v2 JSON
and compact (report by exception), counted as the peers benchmark counts them.

    .venv/bin/python bench/wire_bytes.py                     # every workload
    .venv/bin/python bench/wire_bytes.py --workload peers --cycles 120

Workloads:
- peers: the device set of the side-by-side benchmark (../shared/peers: devices.json and
  RESULTS.md): 5 snmpsim-data recordings (3 UPSes with profile ups-mib, 2 network devices with
  if-mib) served by a real snmpsim, polled every 5 s by the agent's real SNMP driver through the
  real poll loop, site monitor (kind bts) and the agent's own health device, on a fake clock.
  The recordings are static, as in the peers benchmark: values hardly change between polls.
- typhoon: the scripted typhoon nights of hil/typhoon.py (BTS: Eltek plant and router every 60 s
  for 6 h 15 min; Wi-Fi point: Megatec UPS and gateway probe every 30 s for 110 min): mains
  flaps and fails, the battery discharges, links drop, mains returns.
- drift: 16 BTS-like series every 30 s, every numeric value drifting by up to 1 % per poll (a
  poor case for report by exception).

Each workload's records go through the real Outbox (agent/core/uplink/outbox.py) batch by batch:
a group commit per poll cycle (every 5 s for peers, every poll for the nights), batch_max 100,
every message acknowledged. A reading is a device value in a data message, as the peers harness
counts it: not the agent's own records (device "agent", agent.* metrics) nor the derived site
state (device "site"), whose bytes still count. For v2 compact the readings are what the
documented decoder rebuilds, the ones the stream leaves out (within their deadband) included;
the bench checks that it rebuilds every one. Columns:
- topic+payload B/reading: data messages only (the peers harness's "data messages" figure);
- MQTT B/reading: every PUBLISH the session sends after its start (data, retained state and
  series table, alarms), with its MQTT 3.1.1 header, topic and packet id; PUBACKs apart;
- msgs: data messages; B/msg: their mean topic+payload.
TLS would add about 22 bytes per PUBLISH (TLS 1.3 record: 5-byte header, type, 16-byte tag).
"""

import argparse
import asyncio
import os
import random
import sys
import tempfile

REPO = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "tests", "portable"))  # as pytest's pythonpath: the session

from agent.core.log import Log  # noqa: E402
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue  # noqa: E402
from agent.core.uplink import contract, deadband  # noqa: E402
from agent.core.uplink.backoff import ByteBudget  # noqa: E402
from agent.core.uplink.outbox import Outbox  # noqa: E402

from outbox_session import Session  # noqa: E402

SITE = "pbench"
FORMS = (("v1 json", 1, "json"), ("v1 compact", 1, "compact"), ("v2 json", 2, "json"),
         ("v2 compact", 2, "compact"))  # fmt: skip
# The peers benchmark's devices (../shared/peers/devices.json): recording, agent profile.
PEERS = (
    ("huawei-gse200m", "UPS/huawei-gse200m", "ups-mib"),
    ("eaton-93e-80", "UPS/eaton-93e-80", "ups-mib"),
    ("eastpower-istars-swv053", "UPS/eastpower-istars-swv053", "ups-mib"),
    ("ubiquiti-m5", "network/wifi/ubiquiti-m5", "if-mib"),
    ("vyatta-unknown", "network/router/vyatta-unknown", "if-mib"),
)
EPOCH = 1788000000.0


class _Facade:
    """The retained state: the newest record of every series sent so far."""

    clock = None

    def __init__(self):
        self.latest = {}

    def readings(self):
        return list(self.latest.values())

    def active_alarms(self):
        return []


def is_reading(rec):
    dev = rec.get("device")
    return dev not in ("agent", "site") and not str(rec.get("metric", "")).startswith("agent.")


class Meter:
    """One form over one workload: an Outbox on a MemoryQueue, every message acknowledged."""

    def __init__(self, version, fmt, prefix=None):
        self.version, self.fmt = version, fmt
        self.queue = MemoryQueue()
        self.facade = _Facade()
        prefix = prefix or contract.default_prefix(version)
        topics = {k: contract.topic(prefix, SITE, k) for k in contract.TOPIC_KINDS}
        self.now = 0.0  # the workload's clock: the integrity period counts in it
        self.out = Outbox(self.queue, SITE, topics, Log(write=lambda line: None), batch_max=100,
                          rate_msgs=0, facade=self.facade, contract_version=version,
                          mono=lambda: self.now)  # fmt: skip
        self.session = Session("bench", nonce="%012x" % random.getrandbits(48))
        self.budget = ByteBudget(0, 3600)
        self.ctx = {}
        self.data_bytes = self.data_msgs = self.readings = self.records = 0
        self.mqtt_bytes = self.pubacks = 0
        self.unresolved = self.off_band = 0
        self.truth = {}  # seq -> record as made

    def add(self, records):
        for rec in records:
            rec = {k: v for k, v in rec.items() if k != "seq"}
            lane = LANE_ALARM if contract.is_alarm_record(rec) else LANE_ROUTINE
            self.queue.append(lane, rec)
            self.truth[rec["seq"]] = rec
        self.queue.commit()
        for rec in records:
            if not contract.is_alarm_record(rec):
                self.facade.latest[(rec["device"], rec["metric"])] = rec

    def pump(self):
        s = self.session
        mid = [0]
        sent = []

        def publish(msg):
            mid[0] += 1
            sent.append(msg)
            return mid[0]

        for _ in range(100000):
            self.out.pump(s, self.budget, publish, self.fmt)
            if not s.inflight:
                break
            for m in list(s.inflight):
                self.out.on_puback(s, m)
        for msg in sent:
            self._count(msg)

    def _count(self, msg):
        nbytes = contract.publish_bytes(msg.topic, len(msg.payload)) - contract.PUBACK_BYTES
        self.mqtt_bytes += nbytes
        self.pubacks += contract.PUBACK_BYTES
        kind = msg.topic.rsplit("/", 1)[1]
        if kind not in contract.BATCH_KINDS and kind != contract.KIND_SERIES:
            return
        body = contract.decode(kind, msg.payload, self.ctx, SITE)
        if kind != "data":
            return
        self.data_msgs += 1
        self.data_bytes += len(msg.topic.encode()) + len(msg.payload)
        self.unresolved += len(body.get("unresolved", ()))
        for r in body["readings"]:
            self.records += 1
            if is_reading(r):
                self.readings += 1
                made = self.truth.get(r["seq"])
                if made is not None and r["value"] != made["value"]:
                    cls = deadband.class_of(made["metric"], made.get("unit", ""))
                    if not deadband.within(cls, r["value"], made["value"]):
                        self.off_band += 1

    def row(self, name):
        n = self.readings or 1
        return "%-11s %9d %9d %7d %9.1f %9.1f %9.1f %10d" % (
            name, self.readings, self.records, self.data_msgs,
            self.data_bytes / max(1, self.data_msgs), self.data_bytes / n, self.mqtt_bytes / n,
            self.unresolved + self.off_band)  # fmt: skip


HEADER = "%-11s %9s %9s %7s %9s %9s %9s %10s" % (
    "form", "readings", "records", "msgs", "B/msg", "t+p B/rdg", "MQTT B/rd", "not rebuilt")


def run(name, cycles):
    """cycles: an iterable of record lists, one per group commit. Prints one row per form."""
    meters = [(label, Meter(v, f)) for label, v, f in FORMS]
    for recs in cycles:
        times = [r["time"] for r in recs if r.get("time") is not None]
        for _label, m in meters:
            if times:
                m.now = max(times)
            m.add(recs)
            m.pump()
    print(name)
    print(HEADER)
    for label, m in meters:
        print(m.row(label))
    print()
    return {label: m for label, m in meters}


# --- workloads ---------------------------------------------------------------------------------
def peers_cycles(cycles):
    """Poll the peers benchmark's devices on snmpsim through the real loop, one list of records
    per 5 s cycle (the group commit)."""
    from agent.core.clock import Clock
    from agent.core.config.validate import validate
    from agent.core.monitor.pipeline import SiteMonitor
    from agent.host.health import HealthDriver
    from agent.host.runner import make_loop
    from hil.snmpsim import SnmpSim

    class Fake:
        m = 1000.0

        def mono(self):
            return self.m

        def wall(self):
            return 946684800.0

    with SnmpSim([rec for _d, rec, _p in PEERS]) as sim:
        data = {"site": {"id": SITE, "kind": "bts"}, "defaults": {"interval": 5, "timeout": 2},
                "devices": [{"id": d, "driver": "snmp",
                             "snmp": {"host": "127.0.0.1", "port": sim.port, "version": "2c",
                                      "community": sim.community_for(rec), "profile": prof}}
                            for d, rec, prof in PEERS]}  # fmt: skip
        cfg = validate(data)
        fake = Fake()
        clock = Clock("bench-boot", mono=fake.mono, wall=fake.wall)
        clock.trust(EPOCH, "bench")
        log = Log(write=lambda line: None)
        q = MemoryQueue()
        monitor = SiteMonitor(SITE, "bts", clock)
        loop = make_loop(cfg, q, log, monitor, clock)
        tmp = tempfile.mkdtemp(prefix="wire-bench-")
        health = {"id": "agent", "interval": 60, "timeout": 10}
        loop.add_device(health, HealthDriver(health, tmp, q, None, clock, 64 << 20))
        out = []

        async def poll():
            for c in range(cycles):
                t0 = 1000.0 + 5.0 * c
                for i, (dev, _rec, _prof) in enumerate(PEERS):
                    fake.m = t0 + 0.05 * i  # the poll spread of jitter 0.1
                    await loop.poll_device(dev)
                if c % 12 == 0:
                    fake.m = t0 + 0.4
                    await loop.poll_device("agent")
                q.commit()
                b = q.next_batch(100000)
                recs = [] if b is None else b[1]
                if b is not None:
                    q.ack(b[0])
                out.append(recs)
                fake.m = t0 + 5.0

        asyncio.run(poll())
        return out


def typhoon_cycles(kind):
    from hil.typhoon import once

    cycles = []
    cur = []
    last_t = None
    for rec in once(kind)["site"].made:
        t = rec.get("time")
        if last_t is not None and t is not None and t - last_t > 2 and cur:
            cycles.append(cur)
            cur = []
        cur.append(rec)
        last_t = t if t is not None else last_t
    if cur:
        cycles.append(cur)
    return cycles


DRIFT = [
    ("dc-plant", "dc.voltage", "V", 53.6), ("dc-plant", "dc.current", "A", 41.2),
    ("dc-plant", "battery.voltage", "V", 53.5), ("dc-plant", "battery.current", "A", 1.3),
    ("dc-plant", "battery.temperature", "C", 31.0), ("dc-plant", "rectifier.current", "A", 42.5),
    ("dc-plant", "rectifier.utilisation", "%", 35.0), ("dc-plant", "dc.status", "", "normal"),
    ("ups-1", "input.voltage", "V", 228.0), ("ups-1", "output.voltage", "V", 230.0),
    ("ups-1", "ups.load", "%", 34.0), ("ups-1", "battery.charge", "%", 100.0),
    ("ups-1", "ups.status", "", "OL CHRG"), ("router", "if.wan.oper", "", "up"),
    ("router", "if.wan.in_bps", "bit/s", 1.2e6), ("router", "agent.device.stale", "", False),
]  # fmt: skip


def drift_cycles(n=200):
    rnd = random.Random(7)
    out = []
    seq = 100000
    for c in range(n):
        t = EPOCH + 30 * c
        recs = []
        for dev, metric, unit, base in DRIFT:
            v = base
            if isinstance(base, float):
                v = round(base * (1 + rnd.uniform(-0.01, 0.01)), 2)
            recs.append({"site": SITE, "device": dev, "metric": metric, "value": v, "unit": unit,
                         "time": t + (0.1 if dev == "router" else 0.0), "quality": "good",
                         "seq": seq})  # fmt: skip
            seq += 1
        out.append(recs)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workload", choices=("peers", "typhoon", "drift", "all"), default="all")
    ap.add_argument("--cycles", type=int, default=180,
                    help="peers: 5 s poll cycles (180 = 15 min: one integrity refresh)")
    args = ap.parse_args()
    print(__doc__.split("\n")[0])
    print()
    if args.workload in ("peers", "all"):
        run("peers bench device set: 5 snmpsim recordings, %d cycles of 5 s" % args.cycles,
            peers_cycles(args.cycles))  # fmt: skip
    if args.workload in ("typhoon", "all"):
        run("typhoon night, BTS (Eltek plant + router, 60 s polls, 6 h 15 min)",
            typhoon_cycles("bts"))  # fmt: skip
        run("typhoon night, Wi-Fi point (Megatec UPS + probe, 30 s polls, 110 min)",
            typhoon_cycles("wifi"))  # fmt: skip
    if args.workload in ("drift", "all"):
        run("drift: 16 BTS-like series every 30 s, values drifting up to 1 % a poll",
            drift_cycles())  # fmt: skip


if __name__ == "__main__":
    main()
