# The poll loop with scripted drivers: readings reach the queue after a commit, a hung or failing
# device is marked stale with its reason and never holds up the others.
import asyncio

from agent.core.errors import DeviceError, QueueError
from agent.core.log import Log
from agent.core.poll.loop import STALE_METRIC, Loop
from agent.core.store.queue import MemoryQueue
from drivers.base import Driver

from support import run


class Scripted(Driver):
    INFO = {"name": "scripted", "version": "1", "maturity": "experimental", "transport": "none"}

    def __init__(self, device, script):
        Driver.__init__(self, device)
        self.script = script  # list of: list of samples | Exception | "hang"
        self.calls = 0
        self.opens = 0
        self.closes = 0

    async def open(self):
        self.opens += 1

    async def close(self):
        self.closes += 1

    async def read(self):
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if step == "hang":
            await asyncio.sleep(3600)
        if isinstance(step, tuple) and step[0] == "slow":  # ("slow", seconds, samples)
            await asyncio.sleep(step[1])
            return step[2]
        if isinstance(step, Exception):
            raise step
        return step


def dev(dev_id, interval=0.05, timeout=0.04):
    return {
        "id": dev_id,
        "driver": "scripted",
        "interval": interval,
        "timeout": timeout,
        "jitter": 0.0,
    }


def make_loop(queue=None, lines=None):
    log = Log(write=(lines.append if lines is not None else (lambda s: None)))
    return Loop("site-1", queue or MemoryQueue(), lambda: 0.0, log, commit_interval=0.02)


def test_poll_all_stamps_readings_and_commits():
    q = MemoryQueue()
    loop = make_loop(q)
    loop.add_device(dev("ups"), Scripted(dev("ups"), [[("battery.charge", 87.0, "%")]]))
    results = run(loop.poll_all())
    assert results["ups"].ok
    assert q.confirmed_seq == 1  # the reading and the device's first stale=False marker
    batch_id, recs = q.next_batch(10)
    charge = [r for r in recs if r["metric"] == "battery.charge"][0]
    assert charge["site"] == "site-1" and charge["device"] == "ups"
    assert charge["value"] == 87.0 and charge["unit"] == "%" and charge["quality"] == "good"
    assert isinstance(charge["time"], float)
    stale = [r for r in recs if r["metric"] == STALE_METRIC][0]
    assert stale["value"] is False
    assert loop.latest[("ups", "battery.charge")].value == 87.0
    # The latest table (the retained state) keeps the seq each reading was queued with.
    assert loop.latest[("ups", "battery.charge")].seq == charge["seq"]


def test_failing_device_goes_stale_with_reason_and_recovers():
    lines = []
    loop = make_loop(lines=lines)
    d = Scripted(
        dev("bms"), [DeviceError("checksum mismatch in frame 3"), [("battery.charge", 50, "%")]]
    )
    loop.add_device(dev("bms"), d)
    r1 = run(loop.poll_all())["bms"]
    assert not r1.ok and r1.error == "checksum mismatch in frame 3"
    st = loop.sched.state("bms")
    assert st.stale and st.reason == "checksum mismatch in frame 3"
    assert d.closes == 1  # the transport is closed after a failure so the next poll starts clean
    assert any("device stale" in line and "checksum mismatch" in line for line in lines)
    r2 = run(loop.poll_all())["bms"]
    assert r2.ok and not st.stale and d.opens == 2
    assert any("device recovered" in line for line in lines)


def test_driver_bug_becomes_a_stale_reason():
    loop = make_loop()
    loop.add_device(dev("x"), Scripted(dev("x"), [ZeroDivisionError("boom")]))
    r = run(loop.poll_all())["x"]
    assert not r.ok and "ZeroDivisionError" in r.error and "boom" in r.error


def test_hung_device_does_not_delay_others():
    q = MemoryQueue()
    loop = make_loop(q)
    good = Scripted(dev("good"), [[("ups.load", 10, "%")]])
    hung = Scripted(dev("hung", 0.05, 0.1), ["hang"])
    loop.add_device(dev("good"), good)
    loop.add_device(dev("hung", 0.05, 0.1), hung)

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.6)
        loop.stop()
        await task

    run(main())
    # 0.6 s at a 0.05 s interval: the healthy device kept polling while the other hung.
    assert good.calls >= 5, good.calls
    st = loop.sched.state("hung")
    assert st.stale and "no answer within 0.1s" in st.reason
    assert hung.calls >= 1
    assert q.confirmed_seq >= good.calls  # committed along the way and at stop


def test_store_failure_is_reported_and_polling_continues():
    class Broken(MemoryQueue):
        fail = True

        def commit(self):
            if self.fail:
                raise OSError(28, "No space left on device")
            return MemoryQueue.commit(self)

    q = Broken()
    lines = []
    loop = make_loop(q, lines)
    loop.add_device(dev("a"), Scripted(dev("a"), [[("ups.load", 1, "%")]]))
    run(loop.poll_all())
    assert loop.store_error and "No space left" in loop.store_error
    assert any("store failed" in line for line in lines)
    q.fail = False
    run(loop.poll_all())
    assert loop.store_error is None
    assert q.confirmed_seq == 2  # nothing appended while the medium failed was lost


def test_a_failing_store_logs_once_and_is_retried_per_commit_interval_not_per_poll():
    class Full(MemoryQueue):
        commits = 0

        def commit(self):
            self.commits += 1  # the message carries a count that changes every time
            raise QueueError("commit failed, %d records held in RAM" % (self.commits * 7))

    q = Full()
    lines = []
    loop = Loop("site-1", q, lambda: 0.0, Log(write=lines.append), commit_interval=0.2,
                commit_records=1)  # fmt: skip
    for d in ("a", "b", "c"):
        loop.add_device(dev(d, 0.01, 0.5), Scripted(dev(d, 0.01, 0.5), [[("ups.load", 1, "%")]]))

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(1.0)
        loop.stop()
        await task

    run(main())
    polls = sum(st.polls for st in loop.sched.devices.values())
    assert polls >= 30, polls
    assert q.commits <= 12, (q.commits, polls)  # about one per 0.2 s, not one per poll
    assert len([line for line in lines if "store failed" in line]) == 1, lines


def test_listeners_hear_only_after_commit():
    q = MemoryQueue()
    loop = make_loop(q)
    heard = []
    loop.listeners.append(lambda seq: heard.append((seq, q.confirmed_seq)))
    loop.add_device(dev("a"), Scripted(dev("a"), [[("ups.load", 1, "%")]]))
    run(loop.poll_all())
    assert heard == [(1, 1)]


def test_a_finished_poll_reschedules_without_waiting_for_the_commit_interval():
    log = Log(write=lambda s: None)
    loop = Loop("site-1", MemoryQueue(), lambda: 0.0, log, commit_interval=30.0)
    # Each poll takes 20 ms, so the loop looks again while it is still running.
    d = Scripted(dev("fast", 0.05, 0.04), [("slow", 0.02, [("ups.load", 1, "%")])])
    loop.add_device(dev("fast", 0.05, 0.04), d)

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.5)
        loop.stop()
        await task

    run(main())
    # 0.5 s at a 0.05 s interval: about 10 polls. Without the wake-up after each poll the loop
    # slept until the poll's hung deadline (budget * 1.5 + 1 s) and managed one.
    assert d.calls >= 5, d.calls


def test_the_first_complete_poll_cycle_is_told_once():
    loop = make_loop()
    told = []
    loop.cycle_listeners.append(lambda: told.append(loop.sched.state("b").polls))
    loop.add_device(dev("a"), Scripted(dev("a"), [[("ups.load", 1, "%")]]))
    loop.add_device(dev("b"), Scripted(dev("b"), [[("ups.load", 2, "%")]]))
    run(loop.poll_device("a"))
    loop.commit()
    assert told == []  # b has not been polled yet
    run(loop.poll_all())
    run(loop.poll_all())
    assert told == [1]
    assert loop.latest[("a", "ups.load")].seq is not None  # the latest values carry their seq


def test_the_first_pass_is_committed_as_soon_as_it_is_done():
    # Issue 17: with a long commit interval the first readings still go at once: first polls
    # are due at start (no jitter) and the pass of first polls is committed when it ends.
    q = MemoryQueue()
    log = Log(write=lambda s: None)
    loop = Loop("site-1", q, lambda: 0.9, log, commit_interval=30.0)
    heard = []
    loop.listeners.append(heard.append)
    slow = dict(dev("slow", 10, 5), jitter=0.5)
    loop.add_device(dev("a", 10, 5), Scripted(dev("a", 10, 5), [[("ups.load", 1, "%")]]))
    loop.add_device(slow, Scripted(slow, [("slow", 0.1, [("ups.load", 2, "%")])]))

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)
        assert heard == []  # "slow" is still polling: the pass is not done
        await asyncio.sleep(0.25)
        assert len(heard) == 1 and q.confirmed_seq == 3  # 2 readings + 2 stale flags
        loop.stop()
        await task

    run(main())
    assert len(heard) == 1  # nothing more to commit: no second commit before the interval


def test_a_pass_of_polls_is_committed_when_it_ends_not_when_the_interval_is_up():
    # The commit follows a pass instead of falling just before the next one (issue 17: the
    # readings waited a whole interval). Device b's poll takes 0.1 s: not before it ends.
    q = MemoryQueue()
    log = Log(write=lambda s: None)
    loop = Loop("site-1", q, lambda: 0.0, log, commit_interval=2.5)
    t0 = loop.mono()
    heard = []
    loop.listeners.append(lambda seq: heard.append((round(loop.mono() - t0, 2), seq)))
    a, b = dev("a", 1.5, 1.0), dev("b", 1.5, 1.0)
    loop.add_device(a, Scripted(a, [[("ups.load", 1, "%")]]))
    loop.add_device(b, Scripted(b, [("slow", 0.1, [("ups.load", 2, "%")])]))

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(2.4)
        loop.stop()
        await task

    run(main())
    # The first pass at ~0.1 s, the second when b's poll ends at ~1.6 s: not at 2.6 s (the
    # interval), nor at 2.4 s (the stop), nor after a's poll alone (then seq 4 is confirmed).
    assert len(heard) == 2, heard
    assert heard[1][1] == 5 and 1.5 <= heard[1][0] < 2.2, heard


def test_a_commit_due_during_a_pass_waits_for_its_end():
    # The commit interval runs out while b's poll (0.6 s) is still going: committing then would
    # leave b's readings waiting a whole interval. It waits for the pass (at most PASS_GAP_S).
    q = MemoryQueue()
    log = Log(write=lambda s: None)
    loop = Loop("site-1", q, lambda: 0.0, log, commit_interval=2.0)
    t0 = loop.mono()
    heard = []
    loop.listeners.append(lambda seq: heard.append((round(loop.mono() - t0, 2), seq)))
    a, b = dev("a", 2.0, 1.0), dev("b", 2.0, 1.0)
    loop.add_device(a, Scripted(a, [[("ups.load", 1, "%")]]))
    loop.add_device(b, Scripted(b, [("slow", 0.1, [("ups.load", 2, "%")]),
                                    ("slow", 0.6, [("ups.load", 3, "%")])]))  # fmt: skip

    async def main():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(3.0)
        loop.stop()
        await task

    run(main())
    # First pass at ~0.1 s (seq 0-3); the interval is up at ~2.1 s with a's reading (seq 4)
    # waiting and b polling: one commit at ~2.6 s holds both (seq 5), none holds a's alone.
    assert [seq for _, seq in heard] == [3, 5], heard
    assert 2.5 <= heard[1][0] < 3.0, heard
