# Log lines and the summary of repeats: the first lines go out, the rest are counted and written
# as one line per window (agent/core/log.py), and the poll loop uses it for a flapping device.
from agent.core.errors import DeviceError
from agent.core.log import INFO, WARNING, Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from drivers.base import Driver

from faketime import FakeTime
from support import run


def logger(t, lines, repeat_s=300):
    return Log(write=lines.append, clock=t.wall, mono=t.mono, repeat_s=repeat_s)


def test_repeats_are_written_first_then_counted_once_per_window():
    t, lines = FakeTime(), []
    log = logger(t, lines)
    assert log.repeating("k", WARNING, "store", "commit failed", error="ENOSPC")
    for _ in range(59):
        t.advance(5)
        assert not log.repeating("k", WARNING, "store", "commit failed", error="ENOSPC")
    assert len(lines) == 1
    t.advance(5)  # 300 s after the first: the window has passed
    log.tick()
    assert len(lines) == 2
    assert lines[1].endswith("WARNING store: commit failed error=ENOSPC in_s=300 repeats=59")
    log.tick()
    assert len(lines) == 2  # nothing new held
    t.advance(300)
    log.tick()  # a quiet window: the key is forgotten
    assert log.repeating("k", WARNING, "store", "commit failed", error="ENOSPC")
    assert len(lines) == 3 and "repeats" not in lines[2]


def test_a_summary_is_never_quieter_than_what_it_stands_for():
    t, lines = FakeTime(), []
    log = logger(t, lines, repeat_s=60)
    log.repeating("dev", WARNING, "poll", "device stale", burst=2, reason="a")
    log.repeating("dev", INFO, "poll", "device recovered", burst=2)
    log.repeating("dev", WARNING, "poll", "device stale", burst=2, reason="b")
    log.repeating("dev", INFO, "poll", "device recovered", burst=2)
    assert len(lines) == 2
    t.advance(61)
    # The next line for the key closes the window: the held summary first, then nothing more
    # until this new window's burst allows it.
    log.repeating("dev", WARNING, "poll", "device stale", burst=2, reason="c")
    assert lines[2].endswith("WARNING poll: device recovered in_s=61 repeats=2")
    assert lines[3].endswith("WARNING poll: device stale reason=c")


class Flapping(Driver):
    INFO = {"name": "flap", "version": "1", "maturity": "experimental", "transport": "none"}

    def __init__(self, device):
        Driver.__init__(self, device)
        self.calls = 0

    async def read(self):
        self.calls += 1
        if self.calls % 2:
            raise DeviceError("no reply within 1s")
        return [("ups.load", 10.0, "%")]


def test_a_device_that_flaps_for_an_hour_writes_two_dozen_lines_not_fourteen_hundred():
    # Issue 19 point 5: a WARNING and an INFO per flip, about 1,600 lines an hour.
    t, lines = FakeTime(), []
    log = logger(t, lines)
    loop = Loop("site-1", MemoryQueue(), lambda: 0.0, log, mono=t.mono, wall=t.wall)
    device = {"id": "ups", "interval": 5, "timeout": 2, "jitter": 0.0}
    drv = Flapping(device)
    loop.add_device(device, drv)

    async def hour():
        for _ in range(720):  # a flip every 5 s
            await loop.poll_device("ups")
            t.advance(5)
            loop._tick()  # the loop's pass: it writes the summaries that are due

    run(hour())
    assert drv.calls >= 720  # the loop's own passes poll it too, when due
    flips = [line for line in lines if "poll:" in line]
    assert 20 <= len(flips) <= 26, len(flips)
    assert flips[0].endswith("WARNING poll: device stale device=ups reason=\"no reply within 1s\"")
    assert flips[1].endswith("INFO poll: device recovered device=ups")
    assert "repeats=" in flips[2] and "in_s=300" in flips[2]
    total = sum(int(line.split("repeats=")[1].split()[0]) for line in flips if "repeats=" in line)
    held = drv.calls - total - len([f for f in flips if "repeats=" not in f])
    assert 0 <= held <= 60  # every flip is in a line, but those of the window still open


def test_an_alarm_that_flaps_with_its_device_is_summarised_in_the_log_not_in_the_events():
    from agent.core import readings as rd
    from agent.core.clock import Clock
    from agent.core.monitor.alarms import AlarmEngine

    t, lines = FakeTime(), []
    log = logger(t, lines)
    c = Clock("b1", mono=t.mono, wall=t.wall)
    c.trust(1767225600.0, "test")
    rule = {"id": "UPS_ON_BATTERY", "metric": "mains.present", "device": "*", "equals": "false",
            "severity": "major"}  # fmt: skip
    e = AlarmEngine("s1", [rule], c, log)
    events = 0
    for i in range(120):  # mains flips every 5 s for 10 minutes
        events += len(e.feed([rd.Reading("s1", "ups", "mains.present", i % 2 == 0, "")]))
        t.advance(5)
        log.tick()
    assert events == 119  # every raise and clear still goes upstream (the first reading is OL)
    assert 4 <= len(lines) <= 8, lines
