"""The typhoon nights over contract v2's compact stream, decoded by the routine docs/mqtt.md
prints: every reading comes back exact or within its class's deadband, through what QoS 1 and
the store do to a stream.

The records are those the typhoon tests make (hil/typhoon.py: the BTS night's Eltek plant and
router over SNMP, the Wi-Fi night's Megatec UPS on a pty). They go into the real durable Store,
out through the real Outbox (contract 2, compact), to a model of two brokers with retained
messages, in this order: a first connection; a link lost with messages delivered but never
acknowledged (requeue: duplicates in the next stream); a QoS 1 redelivery of a stream message; a
subscriber that joins mid-stream with only the retained messages; the preferred broker lost and a
backup taken, whose subscriber never saw a birth; an agent restart (the store reopened, the
"current values" read-out first); a long outage that overflows the store's budget (thinned
aggregates), drained alarms first. Subscribers of both brokers decode with the docs routine.
"""

import os
import re

import pytest

from agent.core.log import Log
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store
from agent.core.uplink import contract, deadband, decode2
from agent.core.uplink.backoff import ByteBudget
from agent.core.uplink.outbox import Outbox
from hil.typhoon import SITE_ID, once

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PREFIX = "site-agent/v2"
TOPICS = {k: contract.topic(PREFIX, SITE_ID, k) for k in contract.TOPIC_KINDS}
INTEGRITY = 600.0


def docs_decoder():
    """decode_v2 as docs/mqtt.md prints it, run on its own (no agent import)."""
    text = open(os.path.join(REPO, "docs", "mqtt.md")).read()
    section = text[text.index("### The decoder") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    ns = {"__name__": "docs_decoder"}
    exec(compile(code, "docs/mqtt.md", "exec"), ns)
    return ns["decode_v2"]


def test_docs_print_the_agents_decoder_and_units_table():
    text = open(os.path.join(REPO, "docs", "mqtt.md")).read()
    src = open(os.path.join(REPO, "agent", "core", "uplink", "decode2.py")).read()
    a = src.index("\n", src.index("# --- begin: the routine docs/mqtt.md prints")) + 1
    b = src.index("# --- end: the routine docs/mqtt.md prints")
    assert src[a:b].strip() in text, "docs/mqtt.md does not print decode2.py's routine"
    ns = {}
    section = text[text.index("### The decoder") :]
    exec(re.search(r"```python\n(.*?)```", section, re.S).group(1), ns)
    from agent.core.uplink import jsonv2

    assert ns["UNITS"] == dict(jsonv2.UNITS)


def test_docs_deadband_table_is_the_code_table():
    text = open(os.path.join(REPO, "docs", "mqtt.md")).read()
    rows = {}
    table = text[text.index("**Deadbands**") :]
    for line in table[table.index("| static") :].split("\n"):
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells
    assert list(rows) == [c[0] for c in deadband.CLASSES]
    for name, unit, absolute, relative, names in deadband.CLASSES:
        cells = rows[name]
        assert cells[1] == unit, (name, cells)
        if name not in ("static", "exact"):
            assert float(cells[2] or 0) == absolute and float(cells[3] or 0) == relative, cells
        for n in names:
            assert "`%s`" % n in cells[4], (name, n)


class Broker:
    """Retained messages and subscribers; a subscriber gets what is published while it is on."""

    def __init__(self, name):
        self.name = name
        self.retained = {}
        self.subs = []

    def publish(self, msg):
        if msg.retain:
            self.retained[msg.topic] = msg.payload
        for sub in self.subs:
            sub.deliver(msg.topic, msg.payload)

    def subscribe(self, sub):
        self.subs.append(sub)
        for topic, payload in self.retained.items():
            sub.deliver(topic, payload)


class Sub:
    """An operations centre's subscriber decoding with the docs routine (and, to compare, the
    agent's own decoder on the same messages)."""

    def __init__(self, decode, now):
        self.decode = decode
        self.now = now  # the scenario's clock, read when a message arrives
        self.ctx = {}
        self.ctx_agent = {}
        self.got = {}  # seq -> [(record, arrival time)]
        self.unresolved = []  # (arrival time, record)
        self.alarms = {}
        self.duplicates = 0
        self.data = 0
        self.states = 0

    def deliver(self, topic, payload):
        kind = topic.rsplit("/", 1)[1]
        if kind not in ("data", "alarm", "state", "series"):
            return
        out = self.decode(payload, self.ctx, SITE_ID)
        assert out == decode2.decode_v2(payload, self.ctx_agent, SITE_ID)
        if kind == "alarm":
            for r in out["readings"]:
                self.alarms[r["seq"]] = r
        elif kind == "state":
            self.states += 1
        elif kind == "data":
            self.data += 1
            self.duplicates += out["duplicate"]
            t = self.now()
            for r in out["readings"]:
                self.got.setdefault(r["seq"], []).append((r, t))
            self.unresolved += [(t, r) for r in out["unresolved"]]


class Agent:
    """The store and the Outbox of one agent process; a new one after a restart."""

    def __init__(self, path, now, budget):
        # Segments of a quarter of the budget: a sealed one holds several polls of every series,
        # so the store thins it into 15-minute aggregates rather than dropping it.
        self.store = Store(path, budget, segment_bytes=budget // 4, thin_window=900,
                           log=Log(write=lambda line: None))  # fmt: skip
        self.latest = {}
        for r in self.store.latest():
            self.latest[(r["device"], r["metric"])] = r
        self.out = Outbox(self.store, SITE_ID, TOPICS, Log(write=lambda line: None),
                          batch_max=100, rate_msgs=0, facade=self, contract_version=2,
                          integrity=INTEGRITY, mono=now)  # fmt: skip
        self.clock = None
        self.sessions = 0

    def readings(self):
        return list(self.latest.values())

    def active_alarms(self):
        return []

    def add(self, recs, truth):
        for r in recs:
            r = {k: v for k, v in r.items() if k != "seq"}
            lane = LANE_ALARM if contract.is_alarm_record(r) else LANE_ROUTINE
            self.store.append(lane, r)
            truth[r["seq"]] = r
            if lane == LANE_ROUTINE:
                self.latest[(r["device"], r["metric"])] = r
        self.store.commit()

    def session(self):
        self.sessions += 1

        class S:
            ready = True
            failed = None
            state_sent = False
            where = "model broker"

        s = S()
        s.inflight = {}
        s.nonce = os.urandom(6).hex()  # as the uplinks make it: a new id for every connection
        return s

    def pump(self, s, broker, acks=True, redeliver=None):
        """Publish what the Outbox gives to broker; PUBACK each unless acks is False."""
        mid = [0]
        sent = []

        def publish(msg):
            mid[0] += 1
            broker.publish(msg)
            sent.append(msg)
            return mid[0]

        for _ in range(10000):
            self.out.pump(s, ByteBudget(0, 3600), publish, "compact")
            if not acks or not s.inflight:
                break
            for m in list(s.inflight):
                self.out.on_puback(s, m)
        if redeliver is not None:  # the broker sends one stream message again (QoS 1, DUP)
            again = [m for m in sent if m.topic == TOPICS["data"]]
            if again:
                redeliver.deliver(again[0].topic, again[0].payload)
        return sent


def cycles_of(records):
    """The night's records cut where time jumps (one poll cycle each)."""
    out, cur, last = [], [], None
    for r in records:
        t = r.get("time")
        if cur and last is not None and t is not None and t - last > 2:
            out.append(cur)
            cur = []
        cur.append(r)
        last = t if t is not None else last
    if cur:
        out.append(cur)
    return out


def run_scenario(records, tmp_path, budget):
    cycles = cycles_of(records)
    n = len(cycles)
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    decode = docs_decoder()
    primary, backup = Broker("primary"), Broker("backup")
    live = Sub(decode, clock)  # the centre's persistent subscriber on each broker
    live_backup = Sub(decode, clock)
    primary.subscribe(live)
    backup.subscribe(live_backup)
    joiner = None
    truth = {}
    path = str(tmp_path / "q")
    agent = Agent(path, clock, budget)
    # Phases, as shares of the night (poll cycles): link per cycle and what happens at its end.
    p = [int(n * f) for f in (0.15, 0.30, 0.45, 0.60, 0.70, 0.90)]
    s = agent.session()
    events = []
    for i, recs in enumerate(cycles):
        times = [r["time"] for r in recs if r.get("time") is not None]
        now[0] = max(times) if times else now[0]
        agent.add(recs, truth)
        if i < p[0]:
            agent.pump(s, primary, redeliver=live if i == 3 else None)
        elif i == p[0]:
            # delivered but never acknowledged, then the link drops: requeue
            agent.pump(s, primary, acks=False)
            agent.out.end_session(s)
            s = agent.session()
            events.append("link lost")
        elif i < p[1]:
            agent.pump(s, primary)
            if i == (p[0] + p[1]) // 2:
                joiner = Sub(decode, clock)  # no persistent session: retained messages only
                joiner.joined = now[0]
                primary.subscribe(joiner)
        elif i < p[2]:
            if i == p[1]:  # the preferred broker is gone: a new connection on the backup
                agent.out.end_session(s)
                s = agent.session()
                events.append("failover")
            agent.pump(s, backup)
        elif i == p[2]:
            # the agent restarts: the store is reopened, a new connection to the preferred broker
            agent.store.close()
            agent = Agent(path, clock, budget)
            s = agent.session()
            agent.pump(s, primary)
            events.append("restart")
        elif i < p[3]:
            agent.pump(s, primary)
        elif i < p[4]:
            if i == p[3]:
                agent.out.end_session(s)
                events.append("outage")
        else:
            if i == p[4]:
                s = agent.session()
                events.append("drain")
            agent.pump(s, primary)
    agent.store.close()
    return {"truth": truth, "subs": (live, live_backup), "joiner": joiner, "events": events,
            "thinned": agent.store.thinned, "dropped": agent.store.dropped}  # fmt: skip


def check(result):
    truth = result["truth"]
    live, live_backup = result["subs"]
    got = {}
    for sub in (live, live_backup):
        for seq, seen in sub.got.items():
            got.setdefault(seq, []).extend(seen)
    alarms = dict(live.alarms)
    alarms.update(live_backup.alarms)
    assert live.unresolved == [] and live_backup.unresolved == []
    assert live.duplicates == 1, live.duplicates
    aggregates = [r for seen in got.values() for r, _t in seen if "agg" in r]
    folded = 0
    for seq, made in truth.items():
        if contract.is_alarm_record(made):
            assert alarms.get(seq, {}).get("alarm") == made["alarm"], made
            continue
        seen = got.get(seq)
        if seen is None:
            # thinned by the store: an aggregate of its series spans it
            span = [a for a in aggregates if a["device"] == made["device"]
                    and a["metric"] == made["metric"] and a["time"] <= made["time"]
                    <= a["time_end"] and a["seq"] >= seq]  # fmt: skip
            assert span, ("neither delivered nor thinned", made)
            if isinstance(made["value"], float):
                assert span[0]["min"] <= made["value"] <= span[0]["max"], (made, span[0])
            folded += 1
            continue
        for r, _t in seen:
            assert (r["device"], r["metric"], r["unit"], r["quality"]) == (
                made["device"], made["metric"], made["unit"], made["quality"]), (made, r)
            if "agg" in r:
                continue
            assert abs(r["time"] - made["time"]) < 0.0006, (made, r)
            if r["value"] != made["value"]:
                assert r.get("implied"), ("explicit values are exact", made, r)
                cls = deadband.class_of(made["metric"], made["unit"])
                assert deadband.within(cls, r["value"], made["value"]), (cls, made, r)
    # the joiner: never a wrong value; unresolved only until an integrity period has passed
    joiner = result["joiner"]
    assert joiner.unresolved, "a joiner cannot know the left-out values at once"
    late = [r for t, r in joiner.unresolved if t > joiner.joined + INTEGRITY + 120]
    assert late == [], late[:3]
    for seq, seen in joiner.got.items():
        for r, _t in seen:
            made = truth.get(seq)
            if made is None:  # the store's own counters (agent.queue.thinned, ...)
                assert r["metric"].startswith("agent.queue."), r
                continue
            if r["value"] != made["value"] and "agg" not in r:
                cls = deadband.class_of(made["metric"], made["unit"])
                assert deadband.within(cls, r["value"], made["value"]), (made, r)
    dup = sum(1 for seen in got.values() if len(seen) > 1)
    return {"readings": len(truth), "folded": folded, "duplicates": dup,
            "aggregates": len(aggregates)}  # fmt: skip


@pytest.mark.parametrize("kind,budget", [("bts", 192 * 1024), ("wifi", 64 * 1024)])
def test_typhoon_night_over_the_compact_stream(kind, budget, tmp_path, capsys):
    night = once(kind)
    result = run_scenario(night["site"].made, tmp_path, budget)
    assert result["events"] == ["link lost", "failover", "restart", "outage", "drain"]
    figures = check(result)
    # the outage overflowed the store, which thinned (and dropped nothing)
    assert result["thinned"] > 0 and figures["aggregates"] > 0 and result["dropped"] == 0
    assert figures["duplicates"] > 0  # the requeued batch and the restart's read-out
    with capsys.disabled():
        print("\n%s night over the v2 stream: %s; thinned %d" % (kind, figures, result["thinned"]))
