# Readings and the in-memory queue: stamping, dict round trips, seq numbering, commit-gated
# read-out, alarm-first order, ack and requeue.
import json

from agent.core import readings as rd
from agent.core.errors import AgentError, ConfigError, DeviceError, DeviceTimeout, ParseError
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue

from support import raises


def _rec(metric, value=1.0):
    return rd.Reading("s1", "ups1", metric, value, "V", 1700000000.0).to_dict()


def test_stamp_turns_samples_into_readings():
    out = rd.stamp([("battery.voltage", 27.3, "V"), ("ups.status", "OL", "")], "s1", "ups1", 99.5)
    assert len(out) == 2
    a, b = out
    assert (a.site, a.device, a.metric, a.value, a.unit) == (
        "s1",
        "ups1",
        "battery.voltage",
        27.3,
        "V",
    )
    assert a.time == 99.5 and a.quality == rd.GOOD and a.seq is None
    assert b.key() == ("ups1", "ups.status")


def test_stamp_carries_the_quality():
    out = rd.stamp([("ups.load", 30.0, "%")], "s1", "ups1", None, rd.EST_TIME)
    assert out[0].quality == rd.EST_TIME and out[0].time is None


def test_dict_round_trip_through_json():
    r = rd.Reading("s1", "plant", "dc.voltage", 53.52, "V", 1700000000.25, rd.STALE, 41)
    d = json.loads(json.dumps(r.to_dict()))
    back = rd.Reading.from_dict(d)
    assert back == r
    assert back.seq == 41 and back.quality == rd.STALE


def test_from_dict_fills_defaults():
    r = rd.Reading.from_dict({"site": "s", "device": "d", "metric": "ups.load", "value": 5})
    assert r.unit == "" and r.time is None and r.quality == rd.GOOD and r.seq is None


def test_equality_compares_every_field():
    a = rd.Reading("s", "d", "ups.load", 5.0, "%", 1.0)
    assert a == rd.Reading("s", "d", "ups.load", 5.0, "%", 1.0)
    assert a != rd.Reading("s", "d", "ups.load", 5.0, "%", 2.0)
    assert a != rd.Reading("s", "d", "ups.load", 5.0, "%", 1.0, rd.STALE)
    assert a != "not a reading"


def test_repr_names_the_series():
    text = repr(rd.Reading("s", "d", "ups.load", 5.0, "%", 1.0, rd.GOOD, 3))
    assert "s/d" in text and "ups.load" in text and "seq=3" in text


def test_error_hierarchy():
    assert issubclass(ParseError, DeviceError) and issubclass(DeviceTimeout, DeviceError)
    assert issubclass(DeviceError, AgentError) and issubclass(ConfigError, AgentError)
    e = ConfigError("site.toml: site.id: a string, got 5")
    assert e.errors == ["site.toml: site.id: a string, got 5"]
    e = ConfigError(["a: x", "b: y"])
    assert str(e) == "a: x\nb: y"


def test_seq_increases_from_first_seq_and_is_set_on_the_record():
    q = MemoryQueue(first_seq=100)
    r1, r2 = _rec("a"), _rec("b")
    assert q.append(LANE_ROUTINE, r1) == 100
    assert q.append(LANE_ALARM, r2) == 101
    assert r1["seq"] == 100 and r2["seq"] == 101
    assert q.confirmed_seq == 99


def test_nothing_leaves_before_commit():
    q = MemoryQueue()
    q.append(LANE_ROUTINE, _rec("a"))
    assert q.next_batch(10) is None
    assert q.commit() == 0 and q.confirmed_seq == 0
    q.append(LANE_ROUTINE, _rec("b"))  # appended after the commit: not yet stored
    _, records = q.next_batch(10)
    assert [r["metric"] for r in records] == ["a"]
    assert q.next_batch(10) is None


def test_alarms_leave_first_then_routine_oldest_first():
    q = MemoryQueue()
    q.append(LANE_ROUTINE, _rec("r1"))
    q.append(LANE_ALARM, _rec("a1"))
    q.append(LANE_ROUTINE, _rec("r2"))
    q.append(LANE_ALARM, _rec("a2"))
    q.commit()
    _, first = q.next_batch(3)
    assert [r["metric"] for r in first] == ["a1", "a2", "r1"]
    _, rest = q.next_batch(3)
    assert [r["metric"] for r in rest] == ["r2"]


def test_ack_removes_and_requeue_restores_in_order():
    q = MemoryQueue()
    for m in ("r1", "r2", "r3", "r4"):
        q.append(LANE_ROUTINE, _rec(m))
    q.commit()
    b1, _ = q.next_batch(2)
    b2, _ = q.next_batch(1)
    assert q.depth() == 4
    assert q.ack(b1) is True
    assert q.ack(b1) is False  # a second PUBACK for the same batch changes nothing
    assert q.depth() == 2
    q.requeue()  # link lost with b2 in flight: r3 comes out again, before r4
    assert q.ack(b2) is False
    _, again = q.next_batch(10)
    assert [r["metric"] for r in again] == ["r3", "r4"]


def test_stats_count_inflight_records_in_their_lane():
    q = MemoryQueue()
    q.append(LANE_ALARM, _rec("a"))
    q.append(LANE_ROUTINE, _rec("r"))
    q.commit()
    q.next_batch(1)
    s = q.stats()
    assert s["depth"] == {LANE_ALARM: 1, LANE_ROUTINE: 1}
    assert s["inflight_batches"] == 1 and s["confirmed_seq"] == 1 and s["next_seq"] == 2
    assert s["durable"] is False


def test_unknown_lane_is_refused():
    q = MemoryQueue()
    e = raises(ValueError, q.append, "bulk", _rec("a"))
    assert "bulk" in str(e)
    assert q.depth() == 0 and q.stats()["next_seq"] == 0


def test_raises_helper_reports_a_missing_exception():
    e = raises(AssertionError, raises, ValueError, lambda: None)
    assert "ValueError" in str(e)
