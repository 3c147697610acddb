# Time without a clock: boot untrusted, sync, steps back and forward, reboot; the queue's records
# keep their order and count whatever the clock does, and get wall time (estimated) on the way out.
from agent.core import readings as rd
from agent.core.clock import MIN_EPOCH, Clock, ClockFile
from agent.core.store.fsio import MemFs
from agent.core.store.queue import LANE_ROUTINE, MemoryQueue

from faketime import EPOCH, FakeTime


def record(clock, value):
    """What the loop appends: a reading dict stamped with the clock's time (or boot + mono)."""
    t = clock.now()
    q = rd.GOOD if t is not None else rd.EST_TIME
    return clock.mark(rd.Reading("s1", "ups", "ups.load", value, "%", t, q).to_dict())


def drain(q, clock):
    """Read everything out as the uplink would (resolve just before sending), acking each batch."""
    out = []
    while True:
        b = q.next_batch(3)
        if b is None:
            return out
        out.extend(clock.resolve(r) for r in b[1])
        q.ack(b[0])


def test_untrusted_until_trust_then_now_follows_monotonic():
    t = FakeTime(mono=10.0)
    c = Clock("b1", mono=t.mono, wall=t.wall)
    assert c.now() is None and not c.trusted()
    assert c.stamp() == (None, ["b1", 10.0])
    assert not c.trust(MIN_EPOCH - 1, "console")  # a clock that was never set is refused
    assert c.trust(EPOCH, "broker") and c.trusted() and c.source == "broker"
    t.m += 5  # the board's RTC (wall) stays unset; mono carries the time
    assert c.now() == EPOCH + 5
    rec = c.mark({"time": EPOCH, "value": 1})
    assert "boot" not in rec  # a record with a time needs no stamp


def test_boot_sync_step_back_step_forward_reboot_never_reorders_dups_or_drops():
    fs = MemFs()
    q = MemoryQueue()  # stands in for the durable store, which outlives the reboot below
    t = FakeTime(mono=20.0, wall=946684800.0)  # Pi without RTC: 2000-01-01 until NTP
    c = Clock("boot1", mono=t.mono, wall=t.wall, state=ClockFile("/clock.json", fs))
    seqs = []
    for i in range(3):  # boot without time: stamped (boot, mono) only
        seqs.append(q.append(LANE_ROUTINE, record(c, i)))
        t.advance(10)
    # NTP syncs: the system clock jumps to the right time; mono 50 is EPOCH.
    t.w = EPOCH
    assert c.trust(None, "ntp")
    seqs.append(q.append(LANE_ROUTINE, record(c, 3)))  # at EPOCH
    t.advance(10)
    # NTP steps the clock back an hour (e.g. the first sync came from a wrong server).
    t.w -= 3600
    seqs.append(q.append(LANE_ROUTINE, record(c, 4)))
    assert c.steps == 1
    t.advance(10)
    t.w += 7200  # and forward two hours
    seqs.append(q.append(LANE_ROUTINE, record(c, 5)))
    assert c.steps == 2
    c.checkpoint()
    q.commit()
    # Reboot: a new boot id, mono restarts, no time again; anchors come back from the file.
    t2 = FakeTime(mono=5.0, wall=946684800.0)
    c2 = Clock("boot2", mono=t2.mono, wall=t2.wall, state=ClockFile("/clock.json", fs))
    seqs.append(q.append(LANE_ROUTINE, record(c2, 6)))
    q.commit()
    out = drain(q, c2)
    # Nothing reordered, duplicated or dropped: exactly the appended seqs, in order.
    assert [r["seq"] for r in out] == seqs == list(range(7))
    assert [r["value"] for r in out] == list(range(7))
    # Pre-sync readings of boot 1 got wall time from boot 1's anchor, marked estimated.
    assert [r["time"] for r in out[:3]] == [EPOCH - 30, EPOCH - 20, EPOCH - 10]
    assert all(r["quality"] == rd.EST_TIME for r in out[:3])
    # Readings after the sync carry the time of the (stepped) clock, in queue order.
    assert [r["time"] for r in out[3:6]] == [EPOCH, EPOCH + 10 - 3600, EPOCH + 20 + 3600]
    assert all(r["quality"] == rd.GOOD for r in out[3:6])
    # Boot 2 has no anchor yet: its reading waits without a time (still in order).
    assert out[6]["time"] is None and out[6]["boot"] == "boot2"
    # Boot 2 syncs later; the same stored record now resolves by boot 2's anchor.
    t2.advance(100)
    t2.w = EPOCH + 10000
    assert c2.trust(None, "ntp")
    again = c2.resolve(out[6])
    assert again["time"] == EPOCH + 10000 - 100 and again["quality"] == rd.EST_TIME


def test_a_boot_that_never_got_time_is_chained_to_the_next_anchored_boot():
    fs = MemFs()
    t1 = FakeTime(mono=0.0)
    c1 = Clock("a", mono=t1.mono, wall=t1.wall, state=ClockFile("/c.json", fs))
    r = record(c1, 1)  # at mono 0 of boot a
    t1.advance(300)
    c1.checkpoint()  # boot a ran 300 s, then lost power
    t2 = FakeTime(mono=0.0)
    c2 = Clock("b", mono=t2.mono, wall=t2.wall, state=ClockFile("/c.json", fs))
    assert c2.resolve(r)["time"] is None  # nothing known yet: left for later, not guessed
    t2.advance(60)
    c2.trust(EPOCH, "broker")  # boot b started at EPOCH - 60
    got = c2.resolve(r)
    assert got["time"] == EPOCH - 60 - 300 and got["quality"] == rd.EST_TIME


def test_anchor_is_fixed_by_the_first_trust_later_trusts_are_steps():
    t = FakeTime(mono=0.0)
    c = Clock("x", mono=t.mono, wall=t.wall)
    r = record(c, 1)
    t.advance(10)
    c.trust(EPOCH + 10, "broker")
    t.advance(10)
    c.trust(EPOCH + 500, "console")  # someone sets the time again, 480 s ahead
    assert c.steps == 1 and c.now() == EPOCH + 500
    assert c.resolve(r)["time"] == EPOCH  # earlier records keep the first anchor
    assert c.state()["trusted"] is True and c.state()["boot"] == "x"


def test_broker_trusted_clock_ignores_a_plausible_but_wrong_system_clock():
    t = FakeTime(mono=0.0, wall=EPOCH - 86400 * 30)  # fake-hwclock: last shutdown's time
    c = Clock("x", mono=t.mono, wall=t.wall)
    c.trust(EPOCH, "broker")
    t.advance(5)
    assert c.now() == EPOCH + 5 and c.steps == 0
