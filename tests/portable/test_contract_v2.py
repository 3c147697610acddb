"""Contract v2: the JSON form (one entry per device poll), the compact stream (report by
exception, deadbands, integrity period, statics, in-band numbering) and the one decode entry
point for every served version. Portable: pytest and MicroPython."""

import json

from agent.core.log import Log
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue
from agent.core.uplink import compact2, contract, deadband, decode2, jsonv2
from agent.core.uplink.backoff import ByteBudget
from agent.core.uplink.outbox import Outbox

from support import raises

SITE = "bts-7"
T0 = 1788000000.0
SID = b"\x3f\x9a\x0c\x11\xd2\xe4"


def poll(dev, t, seq, values, quality="good", **extra):
    """Records of one device poll: values [(metric, value, unit)]."""
    out = []
    for metric, v, unit in values:
        r = {"site": SITE, "device": dev, "metric": metric, "value": v, "unit": unit,
             "time": t, "quality": quality, "seq": seq}  # fmt: skip
        r.update(extra)
        out.append(r)
        seq += 1
    return out


def ups_poll(t, seq, volts=53.6, charge=100.0, status="OL", model="Smart-UPS 1500"):
    return poll("ups-1", t, seq, [("battery.voltage", volts, "V"), ("battery.charge", charge, "%"),
                                  ("ups.status", status, ""), ("ups.model", model, ""),
                                  ("ups.seconds_on_battery", 0, "s")])  # fmt: skip


def check_rebuilt(made, got):
    """Every made record is in got (by seq) with its fields, its value exact or within its
    class's deadband."""
    by_seq = {}
    for r in got:
        by_seq[r["seq"]] = r
    for m in made:
        r = by_seq.get(m["seq"])
        assert r is not None, ("not rebuilt", m)
        for k in ("device", "metric", "unit", "quality"):
            assert r[k] == m[k], (k, m, r)
        if m["time"] is None:
            assert r["time"] is None, (m, r)
        else:
            assert abs(r["time"] - m["time"]) < 0.0006, (m, r)
        if r["value"] != m["value"]:
            cls = deadband.class_of(m["metric"], m["unit"])
            assert deadband.within(cls, r["value"], m["value"]), (cls, m, r)
            assert r.get("implied"), ("an explicit value must be exact", m, r)


class Link:
    """A stream sent and decoded message by message (what a subscriber present from the start
    sees)."""

    def __init__(self, integrity=600.0):
        self.st = compact2.Stream(SID, SITE, integrity)
        self.ctx = {}
        self.got = []
        self.sizes = []

    def send(self, records, now, batch=1):
        payload, done = self.st.encode(batch, records, now)
        done()
        self.sizes.append(len(payload))
        out = contract.decode_batch(payload, self.ctx, SITE)
        assert out["unresolved"] == [], out["unresolved"]
        self.got += out["readings"]
        return payload, out


# --- JSON --------------------------------------------------------------------------------------
def test_json_v2_round_trip_keeps_every_field():
    made = ups_poll(T0, 41) + poll("site", T0 + 0.2, 46, [("site.power_source", "mains", "")])
    made += poll("ups-1", None, 47, [("battery.charge", 96.0, "%")], quality="est", boot="b1",
                 mono=812.25)  # fmt: skip
    made += poll("ups-1", T0 + 1, 50, [("experimental.fan_rpm", 2100, "rpm")])
    made += poll("ups-1", T0 + 2, 51, [("battery.voltage", 52.0, "mV")])  # not the table's unit
    ev = dict(made[0], seq=52, alarm="LOW/ups-1/battery.voltage", event="raise", severity="major")
    agg = dict(made[1], seq=60, count=4, agg=900, time_end=T0 + 800, min=90.0, max=100.0)
    made += [ev, agg, dict(made[2], seq=None), dict(made[3], seq=70, site="bts-8")]
    payload = contract.encode_batch(SITE, 9, made, "data", "json", 2)
    body = json.loads(payload)
    assert body["v"] == 2 and body["kind"] == "data" and body["batch"] == 9
    assert body["polls"][0]["values"][0] == ["battery.voltage", 53.6]  # unit from the table
    got = contract.decode_batch(payload)
    assert got["v"] == 2 and got["site"] == SITE
    assert len(got["readings"]) == len(made)
    for m, r in zip(made, got["readings"]):
        assert r == m, (m, r)


def test_json_v2_groups_a_poll_and_splits_where_seqs_or_times_differ():
    made = ups_poll(T0, 100) + ups_poll(T0, 110) + ups_poll(T0 + 5, 115)
    body = json.loads(jsonv2.encode(SITE, 1, made))
    assert [(g["seq"], len(g["values"])) for g in body["polls"]] == [(100, 5), (110, 5), (115, 5)]
    assert "quality" not in body["polls"][0] and "site" not in body["polls"][0]


def test_json_v2_is_under_a_third_of_v1_even_for_small_polls():
    made = []
    for i in range(20):
        made += ups_poll(T0 + 5 * i, 1000 + 5 * i, 53.6 + i / 100)
    v1 = contract.encode_batch(SITE, 1, made, "data", "json", 1)
    v2 = contract.encode_batch(SITE, 1, made, "data", "json", 2)
    assert len(v2) * 3 < len(v1), (len(v1), len(v2))


def test_units_table_is_never_wrong_and_other_units_go_written_out():
    from agent.core import registry

    for unit, names in jsonv2.UNITS:
        for name in names.split():
            row = registry.lookup(name.replace("<n>", "2").replace("<name>", "wan0"))
            assert row is not None and row[1] == unit, (name, unit, row)
    # a name the frozen table lacks (one the registry gains later) keeps its unit on the wire
    made = poll("pdu", T0, 1, [("bank.9.voltage_new", 230.0, "V"), ("battery.charge", 50.0, "%")])
    body = json.loads(jsonv2.encode(SITE, 1, made))
    assert body["polls"][0]["values"] == [["bank.9.voltage_new", 230.0, "V"],
                                          ["battery.charge", 50.0]]  # fmt: skip
    assert contract.decode_batch(jsonv2.encode(SITE, 1, made))["readings"] == made
    assert jsonv2.table_unit("input.voltage.l1") == "V"
    assert jsonv2.table_unit("input.voltage.x1") == ""
    assert jsonv2.table_unit("experimental.x") == ""


# --- deadbands ---------------------------------------------------------------------------------
def test_every_registry_metric_has_a_class_and_statics_are_identity_and_ratings():
    from agent.core import registry

    for row in registry.METRICS:
        name = row[0].replace("<n>", "2").replace("<name>", "wan0")
        cls = deadband.class_of(name)
        a, r = deadband.limits(cls)
        if row[2] in ("str", "bool") or row[1] == "":
            assert (a, r) == (0, 0), (row, cls)
    for name in ("ups.model", "ups.firmware", "ups.rating.voltage"):
        assert deadband.class_of(name) == deadband.STATIC
    assert deadband.class_of("input.voltage.l2") == "ac_voltage"
    assert deadband.class_of("battery.voltage") == "dc_voltage"
    assert deadband.class_of("experimental.x", "bit/s") == "bitrate"


def test_within_deadband():
    w = deadband.within
    assert w("dc_voltage", 53.6, 53.7) and not w("dc_voltage", 53.6, 53.71)
    assert w("bitrate", 1e6, 1.05e6) and not w("bitrate", 1e6, 1.06e6)
    assert w("bitrate", 0.0, 900.0) and not w("bitrate", 0.0, 1100.0)
    assert not w("percent", 97, 97.0)  # int to float: a change of type goes
    assert not w("exact", "OL", "OB") and w("exact", "OL", "OL")
    assert not w("exact", False, 0) and not w("percent", None, 1.0)
    nan = float("nan")
    assert not w("percent", nan, nan) and not w("percent", 1.0, nan)


# --- the compact stream ---------------------------------------------------------------------
def test_stream_rebuilds_every_reading_within_its_deadband():
    link = Link()
    made = []
    pending = []
    seq = 1000
    volts, charge = 53.6, 100.0
    for i in range(200):
        # float, a slow discharge, a status change, jitter inside and outside the deadband
        volts = round(volts - 0.013 + (0.08 if i % 7 == 0 else 0), 3)
        charge = round(max(0.0, charge - 0.4), 1)
        recs = ups_poll(T0 + 30 * i, seq, volts, charge, "OB DISCHRG" if i > 50 else "OL")
        seq += 5
        recs += poll("rtr", T0 + 30 * i + 0.35, seq,
                     [("if.wan0.oper", "up" if i % 40 else "down", ""),
                      ("if.wan0.in_bps", 1.2e6 * (1 + (i % 5) / 100), "bit/s")])  # fmt: skip
        seq += 2
        made += recs
        pending += recs
        if i % 5 == 4:  # a message every 5 polls (35 readings): a metered site's batching
            link.send(pending, 30.0 * i, batch=i)
            pending = []
    check_rebuilt(made, link.got)
    implied = [r for r in link.got if r.get("implied")]
    assert len(implied) > len(made) // 2, len(implied)
    per_reading = sum(link.sizes) / len(made)
    assert per_reading < 3.0, per_reading


def test_integrity_period_carries_every_series_again_but_not_statics():
    link = Link(integrity=600.0)
    seq = 0
    carried = []
    for i in range(40):  # 30 s polls, nothing changes: 20 minutes
        _payload, out = link.send(ups_poll(T0 + 30 * i, seq), 30.0 * i)
        seq += 5
        carried.append([r["metric"] for r in out["readings"] if not r.get("implied")])
    assert carried[0] == ["battery.voltage", "battery.charge", "ups.status", "ups.model",
                          "ups.seconds_on_battery"]  # fmt: skip
    full = [i for i, c in enumerate(carried) if c]
    assert full == [0, 20], full
    assert "ups.model" not in carried[20] and len(carried[20]) == 4


def test_static_change_goes_and_makes_the_series_table_new():
    link = Link()
    link.send(ups_poll(T0, 0), 0.0)
    assert link.st.table_dirty
    payload, done = link.st.table_payload()
    done()
    table = contract.decode("series", payload, link.ctx, SITE)
    assert table["kind"] == "series" and table["stream"] == "3f9a0c11d2e4"
    assert ["ups-1", "ups.model", "", "static"] in table["series"]
    _p, out = link.send(ups_poll(T0 + 30, 5), 30.0)
    assert not link.st.table_dirty and [r for r in out["readings"] if not r.get("implied")] == []
    _p, out = link.send(ups_poll(T0 + 60, 10, model="Smart-UPS 1500 v2"), 60.0)
    assert [r["metric"] for r in out["readings"] if not r.get("implied")] == ["ups.model"]
    assert link.st.table_dirty
    body = json.loads(decode_wrapped(link.st.table_payload()[0]))
    assert "Smart-UPS 1500 v2" in body["static"].values()


def decode_wrapped(payload):
    assert payload[0] == 0xC2 and payload[1] in (2, 3)
    return decode2._inflate(payload[2:]) if payload[1] == 3 else payload[2:]


def test_a_message_that_never_left_changes_nothing():
    st = compact2.Stream(SID, SITE)
    p1, _never = st.encode(1, ups_poll(T0, 0), 0.0)
    p2, done = st.encode(1, ups_poll(T0, 0), 0.0)
    assert p1 == p2 and st.m == 0 and not st.series
    done()
    assert st.m == 1 and len(st.series) == 5
    p3, _ = st.encode(2, ups_poll(T0 + 30, 5), 30.0)
    assert len(p3) < len(p1) // 3, (len(p1), len(p3))


def test_duplicate_message_is_skipped_and_a_gap_is_not_guessed():
    st = compact2.Stream(SID, SITE)
    msgs = []
    seq = 0
    made = []
    for i in range(30):
        recs = ups_poll(T0 + 30 * i, seq, 53.6 - i * 0.05)
        made.append(recs)
        seq += 5
        p, done = st.encode(i, recs, 30.0 * i)
        done()
        msgs.append(p)
        if i == 0:
            table, tdone = st.table_payload()
            tdone()
    ctx = {}
    first = contract.decode_batch(msgs[0], ctx, SITE)
    again = contract.decode_batch(msgs[0], ctx, SITE)
    assert len(first["readings"]) == 5 and again["duplicate"] and again["readings"] == []
    # A consumer that joins at message 3 with the retained table: names and the static value
    # known, every other left-out reading unresolved (never guessed) until carried again.
    joiner = {}
    contract.decode("series", table, joiner, SITE)
    got, unresolved = [], []
    for i in range(3, 30):
        out = contract.decode_batch(msgs[i], joiner, SITE)
        got += out["readings"]
        unresolved += out["unresolved"]
    rebuilt = set(r["seq"] for r in got)
    assert unresolved and not (rebuilt & set(r["seq"] for r in unresolved))
    assert all(r["metric"] == "ups.model" or r["seq"] >= 20 * 5 for r in got), got
    check_rebuilt([r for i in range(20, 30) for r in made[i]], got)
    # The device's poll went whole at the integrity refresh (message 20): from then on in step.
    assert all(r["seq"] < 20 * 5 for r in unresolved)


def test_stream_carries_estimated_times_boot_stamps_and_quality():
    link = Link()
    made = poll("ups-1", None, 10, [("battery.charge", 90.0, "%")], quality="est",
                boot="0f3a9c", mono=812.25)  # fmt: skip
    made += poll("ups-1", T0, 11, [("battery.charge", 90.0, "%")], quality="est", boot="0f3a9c",
                 mono=813.5)  # fmt: skip
    made += poll("ups-1", T0 + 30, 12, [("agent.device.stale", True, "")], quality="stale")
    made += poll("ups-1", T0 + 60, 13, [("battery.charge", 90.0, "%")], quality="odd")
    _p, out = link.send(made, 0.0)
    for m, r in zip(made, out["readings"]):
        for k in ("quality", "time", "seq"):
            assert r[k] == m[k], (k, m, r)
        assert r.get("boot") == m.get("boot") and r.get("mono") == m.get("mono"), (m, r)


def test_stream_whole_records_aggregates_alarm_keys_seq_gaps_and_values():
    link = Link()
    made = ups_poll(T0, 100)
    made.append(dict(made[0], seq=120, count=5, agg=900, time_end=T0 + 800, min=52.0, max=54.0,
                     value=53.1))  # fmt: skip
    made.append(dict(made[1], seq=None))
    made.append(dict(made[2], seq=121, site="bts-8"))
    made += poll("x", T0 + 1, 130, [
        ("experimental.a", 1.5, ""), ("experimental.b", -7, ""), ("experimental.c", 2 ** 70, ""),
        ("experimental.d", 0.1 + 0.2, ""), ("experimental.e", float("inf"), ""),
        ("experimental.f", "Vũng Tàu", ""), ("experimental.g", [1, {"x": 2}], ""),
        ("experimental.h", None, ""), ("experimental.i", 1e300, ""),
        ("experimental.j", -0.000001, "")])  # fmt: skip
    _p, out = link.send(made, 0.0)
    got = out["readings"]
    assert len(got) == len(made)
    for m, r in zip(made, got):
        r = dict(r)
        r.pop("implied", None)
        assert r["time"] == m["time"] or abs(r["time"] - m["time"]) < 0.0006
        r["time"] = m["time"]
        assert r == m, (m, r)
        assert type(r["value"]) is type(m["value"])


def test_nan_is_carried_and_never_within_a_deadband():
    link = Link()
    nan = float("nan")
    link.send(poll("x", T0, 0, [("battery.voltage", nan, "V")]), 0.0)
    _p, out = link.send(poll("x", T0 + 30, 1, [("battery.voltage", nan, "V")]), 30.0)
    v = out["readings"][0]["value"]
    assert v != v and not out["readings"][0].get("implied")


def test_malformed_v2_payloads_raise_value_error():
    st = compact2.Stream(SID, SITE, compress=False)
    good, _ = st.encode(1, ups_poll(T0, 0) + ups_poll(T0 + 30, 5, 50.0), 0.0)
    for cut in range(1, len(good)):
        try:
            contract.decode_batch(good[:cut], {}, SITE)
        except ValueError:
            pass
    for bad in (b"\xc2", b"\xc2\x01garbage", b"\xc2\x02{", b'\xc2\x02{"v":2}', b'{"v":2}',
                b'{"v":2,"site":"s","batch":1,"kind":"data","polls":[{"values":[[]]}]}',
                good[:10] + b"\xff\x07", b"\xc2\x00" + bytes(6) + b"\x01\x01\x00\x00\xe0"):
        raises(ValueError, contract.decode_batch, bad, {}, SITE)
    raises(ValueError, contract.decode, "series", b'{"v":2,"site":"s"}', {}, SITE)
    raises(ValueError, contract.decode, "status", b"[]")


# --- one decode entry point -----------------------------------------------------------------
def test_decode_takes_every_served_version_and_topic():
    recs = ups_poll(T0, 7)
    ctx = {}
    for version, fmt in ((1, "json"), (1, "compact"), (2, "json"), (2, "compact")):
        payload = contract.encode_batch(SITE, 3, recs, "state", fmt, version)
        out = contract.decode("state", payload, ctx, SITE)
        assert out["v"] == version and out["kind"] == "state", (version, fmt)
        check_rebuilt(recs, out["readings"])
    st = compact2.Stream(SID, SITE)
    payload, _ = st.encode(3, recs, 0.0)
    out = contract.decode("data", payload, ctx, SITE)
    assert out["stream"] == "3f9a0c11d2e4" and out["m"] == 1
    check_rebuilt(recs, out["readings"])
    status = contract.decode("status", contract.status_payload("online", session="3f9a0c11d2e4"))
    assert status["state"] == "online"
    alarms = contract.decode("alarms", contract.alarms_payload(SITE, [], 1.0))
    assert alarms["alarms"] == []


# --- the Outbox: a session is a stream ----------------------------------------------------
class Session:
    def __init__(self, nonce):
        self.ready = True
        self.failed = None
        self.inflight = {}
        self.state_sent = False
        self.where = "test broker"
        self.nonce = nonce


class Facade:
    clock = None

    def __init__(self):
        self.latest = {}

    def readings(self):
        return list(self.latest.values())

    def active_alarms(self):
        return []


class Sub:
    """A subscriber: decodes every message published, per topic kind."""

    def __init__(self):
        self.ctx = {}
        self.readings = []
        self.kinds = []

    def take(self, msg):
        kind = msg.topic.rsplit("/", 1)[1]
        self.kinds.append(kind)
        out = contract.decode(kind, msg.payload, self.ctx, SITE)
        if kind == "data":
            assert out["unresolved"] == [], out["unresolved"]
            self.readings += out["readings"]
        return out


def test_outbox_v2_compact_new_stream_per_session_and_nothing_assumed_across():
    q = MemoryQueue()
    fac = Facade()
    now = [0.0]
    topics = dict((k, contract.topic("site-agent/v2", SITE, k)) for k in contract.TOPIC_KINDS)
    out = Outbox(q, SITE, topics, Log(), batch_max=7, rate_msgs=0, facade=fac,
                 contract_version=2, integrity=600.0, mono=lambda: now[0])  # fmt: skip
    sub = Sub()
    made = []

    def add(i):
        for r in ups_poll(T0 + 30 * i, 0, 53.6 - i * 0.02):
            del r["seq"]
            q.append(LANE_ROUTINE, r)
            made.append(r)
            fac.latest[r["metric"]] = r
        q.commit()

    def pump(s, acks=True, budget=None):
        sent = []
        mid = [0]

        def publish(msg):
            mid[0] += 1
            sent.append((mid[0], msg))
            return mid[0]

        for _ in range(200):
            out.pump(s, budget or ByteBudget(0, 3600), publish, "compact")
            if not acks or not s.inflight:
                break
            for m in list(s.inflight):
                out.on_puback(s, m)
        return sent

    s1 = Session("aaaaaaaaaaaa")
    for i in range(6):
        add(i)
        for _mid, msg in pump(s1):
            sub.take(msg)
    add(6)
    add(7)
    # The link drops with a batch in flight: its messages reached the subscriber, no PUBACK came.
    lost = pump(s1, acks=False)
    assert lost and all(m.topic.endswith("/data") or m.retain for _i, m in lost)
    for _mid, msg in lost:
        sub.take(msg)
    out.end_session(s1)
    # A byte budget stops the next session's routine data: nothing it built counts as sent.
    s2 = Session("bbbbbbbbbbbb")
    now[0] = 1000.0
    blocked = pump(s2, budget=ByteBudget(1, 3600))
    assert [m.topic.rsplit("/", 1)[1] for _i, m in blocked] == ["state", "alarms"]
    for _mid, msg in blocked:
        sub.take(msg)
    for _mid, msg in pump(s2):
        sub.take(msg)
    assert q.depth() == 0
    assert "series" in sub.kinds and sub.kinds.index("series") > sub.kinds.index("data")
    streams = set(sub.ctx["streams"])
    assert streams == set(["aaaaaaaaaaaa", "bbbbbbbbbbbb"]), streams
    check_rebuilt(made, sub.readings)
    # the records in flight when the link dropped came twice, each time rebuilt right
    seqs = [r["seq"] for r in sub.readings]
    assert len(seqs) > len(set(seqs)) and set(seqs) == set(r["seq"] for r in made)


def test_outbox_v2_alarm_events_and_state_are_self_contained():
    q = MemoryQueue()
    fac = Facade()
    topics = dict((k, contract.topic("p", SITE, k)) for k in contract.TOPIC_KINDS)
    out = Outbox(q, SITE, topics, Log(), rate_msgs=0, facade=fac, contract_version=2)
    recs = ups_poll(T0, 0)
    for r in recs:
        del r["seq"]
        q.append(LANE_ROUTINE, r)
        fac.latest[r["metric"]] = r
    ev = dict(recs[0], alarm="LOW/ups-1/battery.voltage", event="raise", severity="major")
    q.append(LANE_ALARM, ev)
    q.commit()
    s = Session("cccccccccccc")
    sent = []
    for _ in range(10):
        out.pump(s, ByteBudget(0, 3600), lambda m: sent.append(m) or len(sent), "compact")
        for mid in list(s.inflight):
            out.on_puback(s, mid)
    kinds = [m.topic.rsplit("/", 1)[1] for m in sent]
    assert kinds[:3] == ["alarm", "state", "alarms"], kinds
    alarm = contract.decode("alarm", sent[0].payload)  # no ctx: self-contained
    assert alarm["readings"][0]["event"] == "raise" and alarm["readings"][0]["seq"] == ev["seq"]
    state = contract.decode("state", sent[1].payload)
    check_rebuilt(recs, state["readings"])


def test_outbox_late_end_of_an_old_session_keeps_the_new_stream_and_ids_never_repeat():
    # The host uplink connects to the preferred broker before it closes the backup's session.
    q = MemoryQueue()
    topics = dict((k, contract.topic("p", SITE, k)) for k in contract.TOPIC_KINDS)
    out = Outbox(q, SITE, topics, Log(), rate_msgs=0, contract_version=2)
    sub = Sub()

    def send(s, i):
        for r in ups_poll(T0 + 30 * i, 0, 53.0 + i):
            del r["seq"]
            q.append(LANE_ROUTINE, r)
        q.commit()
        sent = []
        for _ in range(10):
            out.pump(s, ByteBudget(0, 3600), lambda m: sent.append(m) or len(sent), "compact")
            for mid in list(s.inflight):
                out.on_puback(s, mid)
        for m in sent:
            sub.take(m)

    backup, preferred = Session("111111111111"), Session("222222222222")
    send(backup, 0)
    send(preferred, 1)
    out.end_session(backup)  # late: the preferred session's stream goes on
    send(preferred, 2)
    assert set(sub.ctx["streams"]) == set(["111111111111", "222222222222"])
    assert [r["value"] for r in sub.readings if r["metric"] == "battery.voltage"] == [
        53.0, 54.0, 55.0]  # fmt: skip
    again = Session("111111111111")  # a session that reuses a nonce still gets a new stream
    send(again, 3)
    assert len(sub.ctx["streams"]) == 3 and "111111111111" in sub.ctx["streams"]
