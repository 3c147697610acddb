"""Portable tests of the durable store over MemFs (files in a dict), so they run unchanged under
pytest and under MicroPython. Crash and power-cut behaviour is tested on real media in
tests/host."""

from agent.core.errors import QueueError
from agent.core.store import codec
from agent.core.store.fsio import MemFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store

from support import raises


def reading(i, metric="battery.charge", device="ups1", t=None):
    return {
        "site": "s1",
        "device": device,
        "metric": metric,
        "value": float(i),
        "unit": "%",
        "time": 1000.0 + i if t is None else t,
        "quality": "good",
        "seq": None,
    }


def alarm(i):
    return {
        "id": "a%d" % i,
        "severity": "major",
        "state": "raise",
        "device": "ups1",
        "metric": "battery.charge",
        "value": 5.0,
        "time": 2000.0 + i,
    }


def open_store(fs, budget=1 << 20, **kw):
    return Store("/q", budget, fs=fs, **kw)


def drain(st, n=7):
    out = []
    while True:
        b = st.next_batch(n)
        if b is None:
            return out
        out.extend(b[1])
        st.ack(b[0])


def test_frame_roundtrip_and_corruption():
    fr = codec.encode_record({"seq": 7, "v": 1})
    got = list(codec.scan(fr))
    assert len(got) == 1 and got[0][2] == 7
    bad = bytearray(fr)
    bad[20] ^= 1
    assert list(codec.scan(bytes(bad))) == []
    assert list(codec.scan(fr[:-1])) == []
    seal = codec.seal_frame(3, 10, 12, codec.FLAG_THINNED)
    assert codec.parse_seal(seal) == (3, 10, 12, 1)
    assert codec.parse_seal(fr[: codec.SEAL_FRAME]) is None


def test_only_committed_records_are_read():
    fs = MemFs()
    st = open_store(fs)
    for i in range(3):
        assert st.append(LANE_ROUTINE, reading(i)) == i
    assert st.next_batch(10) is None
    assert st.confirmed_seq == -1
    assert st.commit() == 2
    st.begin_drain()
    got = drain(st)
    # current values (latest of ups1/battery.charge = seq 2) first, then the backlog
    assert [r["seq"] for r in got] == [2, 0, 1, 2]


def test_alarm_first_then_current_then_backlog():
    fs = MemFs()
    st = open_store(fs)
    st.append(LANE_ROUTINE, reading(0, "battery.charge"))
    st.append(LANE_ROUTINE, reading(1, "battery.voltage"))
    st.append(LANE_ROUTINE, reading(2, "battery.charge"))
    st.append(LANE_ALARM, alarm(0))
    st.append(LANE_ALARM, alarm(1))
    st.commit()
    got = [(r["seq"], r.get("id")) for r in drain(st, 2)]
    assert got == [(3, "a0"), (4, "a1"), (1, None), (2, None), (0, None), (1, None), (2, None)]


def test_unknown_lane_and_readonly():
    fs = MemFs()
    st = open_store(fs)
    raises(ValueError, st.append, "bulk", reading(0))
    st.close()
    ro = open_store(fs, readonly=True)
    raises(QueueError, ro.append, LANE_ROUTINE, reading(0))


def test_out_of_order_ack_and_requeue():
    fs = MemFs()
    st = open_store(fs)
    for i in range(9):
        st.append(LANE_ROUTINE, reading(i))
    st.commit()
    st.next_batch(100)  # the current-values batch, acked below
    b1 = st.next_batch(3)
    b2 = st.next_batch(3)
    b3 = st.next_batch(3)
    assert st.ack(b2[0]) and st.ack(b3[0])
    assert st.stats()["depth"][LANE_ROUTINE] == 3
    assert st.stats()["delivered"][LANE_ROUTINE] == -1  # b1 not acked: the cursor holds
    st.ack(b1[0])
    assert st.stats()["delivered"][LANE_ROUTINE] == 8
    assert not st.ack(b1[0])
    st.append(LANE_ROUTINE, reading(9))
    st.commit()
    b4 = st.next_batch(3)
    st.requeue()
    st.next_batch(100)  # current values again after a requeue
    b5 = st.next_batch(3)
    assert [r["seq"] for r in b4[1]] == [r["seq"] for r in b5[1]] == [9]
    assert not st.ack(b4[0])  # forgotten by the requeue
    assert st.ack(b5[0])
    assert st.depth() == 0


def test_restart_keeps_records_cursor_and_sequence():
    fs = MemFs()
    st = open_store(fs)
    for i in range(10):
        st.append(LANE_ROUTINE, reading(i))
    st.append(LANE_ALARM, alarm(0))
    st.commit()
    b = st.next_batch(5)
    st.ack(b[0])  # the alarm
    st.next_batch(5)  # current values
    b = st.next_batch(4)
    st.ack(b[0])  # seq 0..3
    st.commit()  # writes the cursor (without a sync)
    st.append(LANE_ROUTINE, reading(99))  # never committed: lost on this "crash"
    st2 = open_store(fs)  # no close(): a crash
    assert st2.stats()["delivered"] == {LANE_ALARM: 10, LANE_ROUTINE: 3}
    seqs = [r["seq"] for r in st2.records(LANE_ROUTINE)]
    assert seqs == [4, 5, 6, 7, 8, 9]
    assert st2.append(LANE_ROUTINE, reading(11)) >= 11


def test_sequence_survives_full_delivery_and_segment_removal():
    fs = MemFs()
    st = open_store(fs, budget=64 * 1024, segment_bytes=1024)
    for i in range(40):
        st.append(LANE_ROUTINE, reading(i))
        st.commit()
    drain(st)
    st.commit()
    segs = [n for n in fs.listdir("/q") if n.endswith(".seg")]
    assert len(segs) <= 1  # sealed, delivered segments are gone; only a tail may stay
    st.close()
    st2 = open_store(fs, budget=64 * 1024, segment_bytes=1024)
    assert st2.append(LANE_ROUTINE, reading(0)) >= 40  # a leased gap after restart is allowed


def test_torn_tail_is_cut_and_sequence_continues():
    fs = MemFs()
    st = open_store(fs)
    for i in range(5):
        st.append(LANE_ROUTINE, reading(i))
    st.commit()
    path = "/q/r%020d.seg" % 0
    fs.files[path] += codec.encode_record(dict(reading(5), seq=5))[:-3]  # a torn write
    before = bytes(fs.files[path])
    st2 = open_store(fs)
    assert [r["seq"] for r in st2.records(LANE_ROUTINE)] == [0, 1, 2, 3, 4]
    # The cut is made in RAM (opening needs no free space): the file is left as it is, closed,
    # and the next records go to a new segment.
    assert bytes(fs.files[path]) == before
    seq = st2.append(LANE_ROUTINE, reading(5))
    assert seq >= 5
    st2.commit()
    assert "/q/r%020d.seg" % seq in fs.files
    st3 = open_store(fs)
    assert [r["seq"] for r in st3.records(LANE_ROUTINE)] == [0, 1, 2, 3, 4, seq]


def test_budget_thins_then_drops_and_counts():
    fs = MemFs()
    budget = 24 * 1024
    st = open_store(fs, budget=budget, segment_bytes=2048, thin_window=60)
    for i in range(2000):
        st.append(LANE_ROUTINE, reading(i, t=1000.0 + i))
        if i % 10 == 9:
            st.commit()
        used = sum(len(v) for v in fs.files.values())
        assert used <= budget, used
    st.commit()
    s = st.stats()
    assert s["thinned"] > 0 and s["dropped"] > 0
    recs = list(st.records(LANE_ROUTINE))
    aggs = [r for r in recs if r.get("count", 1) > 1]
    assert aggs and all(r["min"] <= r["value"] <= r["max"] for r in aggs)
    counters = [r for r in recs if r["metric"] == "agent.queue.dropped"]
    assert counters and counters[-1]["value"] == s["dropped"]
    seqs = [r["seq"] for r in recs]
    assert seqs == sorted(seqs)


def test_alarms_survive_routine_pressure():
    fs = MemFs()
    st = open_store(fs, budget=16 * 1024, segment_bytes=1024, thin_window=0)
    for i in range(5):
        st.append(LANE_ALARM, alarm(i))
    st.commit()
    for i in range(1000):
        st.append(LANE_ROUTINE, reading(i))
        st.commit()
    assert [r["id"] for r in st.records(LANE_ALARM)] == ["a0", "a1", "a2", "a3", "a4"]
    assert st.stats()["dropped"] > 0


def test_stats_and_export():
    fs = MemFs()
    st = open_store(fs)
    st.append(LANE_ROUTINE, reading(0))
    st.append(LANE_ALARM, alarm(0))
    st.append(LANE_ROUTINE, reading(2))
    st.commit()
    s = st.stats()
    assert s["depth"] == {LANE_ALARM: 1, LANE_ROUTINE: 2}
    assert s["oldest"][LANE_ROUTINE] == {"seq": 0, "time": 1000.0}
    assert s["newest"][LANE_ROUTINE] == {"seq": 2, "time": 1002.0}
    assert s["seq_range"] == [0, 2]
    assert s["bytes"] == sum(len(v) for v in fs.files.values())
    assert st.export("/out.jsonl") == 3
    lines = bytes(fs.files["/out.jsonl"]).decode().splitlines()
    assert '"lane":"alarm"' in lines[0] and '"seq":2' in lines[2]


def test_write_through_puts_each_record_in_its_file_at_append():
    # Issue 17: on the host a record reaches the OS at append (MemFs: the dict), while the sync
    # stays grouped: a process killed before the commit loses nothing. Only synced records are
    # read out; a store opened after the kill (no close) takes the written tail, syncs it and
    # hands out sequence numbers above it.
    fs = MemFs()
    syncs = []
    st = open_store(fs, write_through=True, sync=syncs.append)
    st.append(LANE_ROUTINE, reading(0))
    st.commit()
    n = len(syncs)
    for i in range(1, 6):
        st.append(LANE_ROUTINE, reading(i))
        (name,) = [p for p in fs.files if p.endswith(".seg")]
        assert [fr[2] for fr in codec.scan(bytes(fs.files[name]))][-1] == i
    assert len(syncs) == n  # no sync per record
    assert st.confirmed_seq == 0  # unsynced records are not read out
    assert [r["seq"] for r in st.next_batch(10)[1]] == [0]
    # Killed here: no commit, no close.
    st2 = open_store(fs, write_through=True, sync=syncs.append)
    got = drain(st2)  # (the current value, seq 5, comes first, then the backlog)
    assert sorted({r["seq"] for r in got}) == [0, 1, 2, 3, 4, 5]
    assert all(r["value"] == float(r["seq"]) for r in got)
    assert len(syncs) > n  # the recovered tail was synced before it counted as stored
    assert st2.append(LANE_ROUTINE, reading(6)) > 5
    st2.close()
