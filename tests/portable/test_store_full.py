"""The durable store on a full or failing medium (portable: MemFs with a capacity stands for a
small filesystem; tests/host/test_store_medium.py does the same on tmpfs and littlefs).

What must hold (issue 12, points 1 and 2): the budget shrinks to what the medium holds; a full
medium leads to thinning and dropping by the policy, never to a stall; opening needs no free
space; delivery and housekeeping go on while writes fail; alarms raised meanwhile go out first,
from memory, and are written when the medium works again or at close."""

from agent.core.errors import QueueError
from agent.core.log import Log
from agent.core.store.fsio import MemFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store

from support import raises

EIO = 5


def reading(i, t=None):
    return {"site": "s1", "device": "ups1", "metric": "battery.charge", "value": float(i % 90),
            "unit": "%", "time": 1000.0 + i if t is None else t, "quality": "good"}  # fmt: skip


def alarm(i):
    return {"site": "s1", "device": "ups1", "metric": "battery.charge", "value": 5.0,
            "alarm": "LOW/ups1/battery.charge", "event": "raise", "n": i,
            "time": 2000.0 + i}  # fmt: skip


class Flaky(MemFs):
    """MemFs whose writes fail while `failing` holds an errno: the first half of the bytes lands,
    then OSError (a torn write). Removing files still works, as on a full or over-quota disk."""

    def __init__(self, capacity=None):
        MemFs.__init__(self, capacity)
        self.failing = None
        self.at_flush = False  # True: writes land in a buffer, the flush fails (and loses them)
        self.synced = {}  # path -> bytes that reached the medium at the last flush

    def open(self, path, mode):
        f = MemFs.open(self, path, mode)
        return f if mode == "rb" else _FlakyFile(self, f)


class _FlakyFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def write(self, b):
        if self._fs.failing is not None and not self._fs.at_flush:
            self._f.write(b[: len(b) // 2])
            raise OSError(self._fs.failing, "injected")
        return self._f.write(b)

    def flush(self):
        if self._fs.failing is not None:
            if self._fs.at_flush:  # the buffered bytes never reach the medium
                keep = self._fs.synced.get(self._f._path, 0)
                self._fs.files[self._f._path][keep:] = b""  # (MicroPython has no del on slices)
            raise OSError(self._fs.failing, "injected")
        self._fs.synced[self._f._path] = len(self._fs.files[self._f._path])

    def __getattr__(self, name):
        return getattr(self._f, name)


def fill(fs, path="/other.log"):
    """Another program fills the medium to its last block."""
    f = fs.open(path, "ab")
    try:
        while True:
            f.write(b"x" * 256)
    except OSError:
        pass


def seqs(st, lane):
    return [r["seq"] for r in st.records(lane)]


def drain(st, n=50):
    out = []
    while True:
        b = st.next_batch(n)
        if b is None:
            return out
        out.extend(b[1])
        assert st.ack(b[0])


def test_the_budget_shrinks_to_what_the_medium_holds_and_pressure_thins_then_drops():
    fs = MemFs(capacity=48 * 1024)
    st = Store("/q", 64 << 20, fs=fs, thin_window=60)  # 64 MB configured, 48 KB medium
    assert st.budget < 48 * 1024 and st.segment_bytes <= st.budget // 4
    for i in range(3000):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()  # never raises: the store never lets the medium fill
    s = st.stats()
    assert s["thinned"] > 0 and s["dropped"] > 0 and not s["fault"]
    assert fs.used() <= 48 * 1024 and s["bytes"] <= st.budget
    assert seqs(st, LANE_ROUTINE)[-1] >= 2990


def test_a_medium_filled_by_others_drops_routine_data_and_never_alarms():
    fs = MemFs(capacity=64 * 1024)
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=2048, thin_window=0)
    for i in range(3):
        st.append(LANE_ALARM, alarm(i))
    for i in range(300):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()
    fill(fs)  # a log file takes every block that was left
    for i in range(300, 400):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()  # the commit that meets the full medium fits the budget and retries
    assert [r["n"] for r in st.records(LANE_ALARM)] == [0, 1, 2]
    assert seqs(st, LANE_ROUTINE)[-1] == st.confirmed_seq or st.stats()["dropped"] > 0
    assert st.stats()["dropped"] > 0 and st.stats()["held"] == 0


def test_opening_a_full_medium_with_a_torn_tail_needs_no_free_space():
    fs = MemFs(capacity=32 * 1024)
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=4096, thin_window=0)
    for i in range(60):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()
    tail = [p for p in fs.files if p.startswith("/q/r")][-1]
    fs.files[tail] += b"\xa7\x01\x40\x00torn"  # a write cut short by a power cut
    fill(fs)
    before = seqs(st, LANE_ROUTINE)
    st2 = Store("/q", 1 << 20, fs=fs, segment_bytes=4096, thin_window=0)  # no QueueError
    after = seqs(st2, LANE_ROUTINE)
    # The budget now is what the medium holds: the oldest routine data made room, by the policy.
    assert after and after == before[len(before) - len(after) :]
    assert st2.stats()["dropped"] == len(before) - len(after)
    for i in range(60, 80):  # and it goes on: room is made by the policy
        st2.append(LANE_ROUTINE, reading(i))
    st2.commit()
    assert seqs(st2, LANE_ROUTINE)[-1] == st2.confirmed_seq


def test_a_failed_recovery_keeps_every_stored_record_readable():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=1024, thin_window=0)
    for i in range(4):
        st.append(LANE_ALARM, alarm(i))
    for i in range(40):
        st.append(LANE_ROUTINE, reading(i))
    st.commit()
    stored = {LANE_ALARM: seqs(st, LANE_ALARM), LANE_ROUTINE: seqs(st, LANE_ROUTINE)}
    fs.failing = EIO
    st.append(LANE_ALARM, alarm(4))
    st.append(LANE_ROUTINE, reading(40))
    for _ in range(3):  # each commit tries to recover; the medium still fails
        raises(QueueError, st.commit)
    for lane in (LANE_ALARM, LANE_ROUTINE):
        assert seqs(st, lane) == stored[lane]
    fs.failing = None
    st.commit()
    got = {lane: seqs(st, lane) for lane in (LANE_ALARM, LANE_ROUTINE)}
    assert got[LANE_ALARM][:4] == stored[LANE_ALARM] and len(got[LANE_ALARM]) == 5
    assert got[LANE_ROUTINE][:40] == stored[LANE_ROUTINE] and len(got[LANE_ROUTINE]) == 41
    st.close()
    st2 = Store("/q", 1 << 20, fs=fs, segment_bytes=1024, thin_window=0)
    assert {lane: seqs(st2, lane) for lane in got} == got  # no record twice, none lost


def test_records_whose_flush_fails_stay_in_ram_and_are_written_later():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, thin_window=0)
    for i in range(5):
        st.append(LANE_ROUTINE, reading(i))
    st.commit()
    fs.failing, fs.at_flush = 28, True  # a full disk seen only when the buffer is flushed
    a = st.append(LANE_ALARM, alarm(0))
    r = st.append(LANE_ROUTINE, reading(5))
    raises(QueueError, st.commit)
    assert st.stats()["held"] == 2  # not forgotten with the lost buffer
    assert [x["seq"] for x in st.next_batch(10)[1]] == [a]  # and the alarm goes from memory
    fs.failing = None
    st.commit()
    assert seqs(st, LANE_ROUTINE) == [0, 1, 2, 3, 4, r] and a in seqs(st, LANE_ALARM)


def test_delivery_and_housekeeping_go_on_while_writes_fail():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=1024, thin_window=0)
    for i in range(100):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()
    segs_before = len([p for p in fs.files if p.endswith(".seg")])
    fs.failing = 28  # no space, as far as writes can tell
    st.append(LANE_ROUTINE, reading(100))
    raises(QueueError, st.commit)
    b = st.next_batch(30)  # the current values, then the backlog
    assert b is not None
    raises(QueueError, st.commit)  # a retry must not forget the batch in flight
    assert st.ack(b[0])
    got = drain(st)
    assert [r["seq"] for r in got] == list(range(100))
    raises(QueueError, st.commit)
    segs_after = len([p for p in fs.files if p.endswith(".seg")])
    assert segs_after < segs_before  # delivered segments went although the commit failed
    fs.failing = None
    st.commit()
    assert [r["seq"] for r in drain(st)] == [100]


def test_alarms_are_never_dropped_to_make_room_for_routine_data():
    fs = MemFs()
    st = Store("/q", 8 * 1024, fs=fs, segment_bytes=1024, thin_window=0)
    for i in range(40):
        st.append(LANE_ALARM, alarm(i))
        st.commit()
    kept = seqs(st, LANE_ALARM)
    for i in range(200):
        st.append(LANE_ROUTINE, reading(i))
        st.commit()
    assert seqs(st, LANE_ALARM) == kept
    assert st.stats()["dropped"] > 0


def test_a_new_alarm_on_a_full_medium_never_evicts_an_undelivered_one():
    fs = MemFs(capacity=32 * 1024)
    st = Store("/q", 1 << 20, fs=fs, thin_window=0)
    first = st.append(LANE_ALARM, alarm(0))
    st.commit()
    fill(fs)  # others take the medium: the budget is now what the store already uses
    later = [st.append(LANE_ALARM, alarm(i)) for i in (1, 2, 3)]
    try:
        st.commit()
    except QueueError:
        pass  # held in RAM
    assert seqs(st, LANE_ALARM) == [first]  # the stored, undelivered alarm stays
    got = drain(st)  # the stored one, then the held ones from memory
    assert [r["seq"] for r in got if "alarm" in r] == [first] + later
    fs.capacity += 16 * 1024  # room again (a log rotated)
    st.commit()
    assert st.stats()["held"] == 0 and drain(st) == []  # written, and not sent again


def test_an_alarm_raised_while_writes_fail_goes_out_first_from_memory():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=1024, thin_window=0)
    for i in range(30):
        st.append(LANE_ROUTINE, reading(i))
    st.commit()
    fs.failing = EIO
    seq = st.append(LANE_ALARM, alarm(0))
    raises(QueueError, st.commit)
    bid, recs = st.next_batch(10)
    assert [r["seq"] for r in recs] == [seq] and recs[0]["alarm"]  # first, from memory
    b2 = st.next_batch(10)
    assert b2 is not None and all("alarm" not in r for r in b2[1])  # then the others
    assert st.ack(bid) and st.ack(b2[0])
    fs.failing = None
    st.commit()  # the alarm is written now, and counts as delivered: not sent again
    assert seq in [r["seq"] for r in _raw_records(fs, "/q/a")]
    rest = drain(st)
    assert [r["seq"] for r in rest] == list(range(30))  # the backlog; the alarm not again
    assert st.stats()["delivered"][LANE_ALARM] == seq


def test_an_alarm_from_memory_is_not_read_twice_when_it_is_written_while_in_flight():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=1024, thin_window=0)
    fs.failing = EIO
    seq = st.append(LANE_ALARM, alarm(0))
    raises(QueueError, st.commit)
    bid, recs = st.next_batch(10)
    assert [r["seq"] for r in recs] == [seq]
    fs.failing = None
    st.commit()  # written while its batch is in flight
    assert st.next_batch(10) is None
    st.requeue()  # the link dropped before the PUBACK: now it comes again, from the file
    assert [r["seq"] for r in drain(st)] == [seq]


def test_an_alarm_held_at_stop_is_written_by_close_making_room():
    fs = MemFs(capacity=48 * 1024)
    st = Store("/q", 1 << 20, fs=fs, segment_bytes=2048, thin_window=0)
    for i in range(200):
        st.append(LANE_ROUTINE, reading(i))
        if i % 10 == 9:
            st.commit()
    fill(fs)
    seq = st.append(LANE_ALARM, alarm(7))
    st.close()  # writes the alarm: routine data is dropped to make room
    st2 = Store("/q", 1 << 20, fs=fs, segment_bytes=2048, thin_window=0)
    assert seq in seqs(st2, LANE_ALARM)


def test_alarms_go_out_from_memory_only_under_a_durable_lease():
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, seq_lease=8, thin_window=0)
    fs.failing = EIO
    first = st.append(LANE_ALARM, alarm(0))
    for i in range(12):  # past the lease: these seqs are not promised by any synced meta
        st.append(LANE_ROUTINE, reading(i))
    late = st.append(LANE_ALARM, alarm(1))
    raises(QueueError, st.commit)
    b = st.next_batch(10)
    assert [r["seq"] for r in b[1]] == [first]  # the late alarm waits for a lease
    fs.failing = None
    st.commit()
    assert late in [r["seq"] for r in drain(st)]
    st2 = Store("/q", 1 << 20, fs=fs, seq_lease=8, thin_window=0)
    assert st2.append(LANE_ROUTINE, reading(0)) > late


def test_the_lease_grows_with_the_append_rate_so_alarms_go_out_during_a_long_fault():
    fs = Flaky()
    clock = [0.0]
    st = Store("/q", 1 << 30, fs=fs, seq_lease=8, thin_window=0, mono=lambda: clock[0])
    for i in range(200):  # 10 readings a second
        clock[0] += 0.1
        st.append(LANE_ROUTINE, reading(i))
        st.commit()
    assert st.meta.lease == 64 * 8  # 10/s for 15 minutes is more than the cap: the cap
    fs.failing = EIO  # a medium gone read-only
    for i in range(200, 400):  # 20 s of readings that cannot be stored
        clock[0] += 0.1
        st.append(LANE_ROUTINE, reading(i))
    seq = st.append(LANE_ALARM, alarm(0))
    raises(QueueError, st.commit)
    b = st.next_batch(10)
    assert b is not None and [r["seq"] for r in b[1]] == [seq]  # still under the lease
    fs.failing = None
    st.commit()
    st.close()
    st2 = Store("/q", 1 << 30, fs=fs, seq_lease=8, thin_window=0)
    assert st2.append(LANE_ROUTINE, reading(0)) > seq


def test_a_full_medium_is_logged_once_per_change_not_once_per_attempt():
    lines = []
    fs = Flaky()
    st = Store("/q", 1 << 20, fs=fs, thin_window=0, log=Log(write=lines.append))
    fs.failing = 28
    for i in range(200):
        st.append(LANE_ROUTINE, reading(i))
        try:
            st.commit()
        except QueueError:
            pass
    tiny = Store("/t", 2048, fs=MemFs(), segment_bytes=1024, log=Log(write=lines.append))
    for i in range(200):  # a budget too small: one line, whatever the record sizes
        tiny.append(LANE_ROUTINE, dict(reading(i), note="x" * (i % 7)))
    full = MemFs(capacity=32 * 1024)
    fill(full)  # others took the medium: the store can hold nothing, commit after commit
    st2 = Store("/f", 1 << 20, fs=full, log=Log(write=lines.append))
    for i in range(200):
        st2.append(LANE_ROUTINE, dict(reading(i), note="x" * (i % 7)))
        try:
            st2.commit()
        except QueueError:
            pass  # the loop logs that, once (test_loop.py)
    assert len(lines) <= 6, "\n".join(lines)


def _raw_records(fs, prefix):
    """Every record frame in the files whose path starts with prefix (delivered ones too)."""
    from agent.core.store import codec

    out = []
    for path in sorted(fs.files):
        if path.startswith(prefix) and path.endswith(".seg"):
            buf = bytes(fs.files[path])
            for off, kind, _, n in codec.scan(buf):
                if kind in (codec.REC, codec.AGG):
                    out.append(codec.loads(buf[off + codec.HEADER : off + codec.HEADER + n]))
    return out
