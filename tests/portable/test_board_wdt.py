# The watchdog is fed only while the agent makes progress (agent/board/wdt.py), and the TLS
# helper splits a DER CA bundle (agent/board/tls.py).
from agent.board.tls import split_der
from agent.board.wdt import Watchdog

from support import raises


class WDT:
    made = []

    def __init__(self, timeout):
        self.timeout = timeout
        self.feeds = 0
        WDT.made.append(self)

    def feed(self):
        self.feeds += 1


class Log:
    def __init__(self):
        self.errors = []

    def error(self, comp, msg, **f):
        self.errors.append((msg, f))


def test_fed_while_the_loop_passes_and_parts_progress():
    t = [0.0]
    log = Log()
    dog = Watchdog(WDT, 60, log, mono=lambda: t[0])
    age = [0.0]
    dog.watch("uplink", lambda: age[0], 120)
    dog.start()
    assert dog.wdt.timeout == 60000
    assert dog.feed_once() and dog.wdt.feeds == 1
    t[0] = 31.0  # no loop pass for more than half the timeout
    assert not dog.feed_once() and "poll loop" in log.errors[0][1]["reason"]
    dog.kick()
    assert dog.feed_once()
    age[0] = 200.0  # the uplink is wedged
    assert not dog.feed_once() and "uplink made no progress" in dog.starved
    assert len(log.errors) == 2  # said once per starvation, not at every check


def test_a_failing_check_stops_the_feeding():
    dog = Watchdog(WDT, 10, Log(), mono=lambda: 0.0)
    dog.watch("x", lambda: 1 // 0, 5)
    dog.start()
    assert not dog.feed_once() and "x check failed" in dog.starved


def _der(n):
    body = bytes(range(256)) * (n // 256) + bytes(n % 256)
    if n < 128:
        return b"\x30" + bytes((n,)) + body
    return b"\x30\x82" + bytes((n >> 8, n & 255)) + body


def test_split_der_bundle():
    a, b = _der(300), _der(20)
    assert split_der(a + b) == [a, b]
    raises(ValueError, split_der, b"")
    raises(ValueError, split_der, a[:-1])
    raises(ValueError, split_der, b"-----BEGIN CERTIFICATE-----")


def test_loop_wake_makes_it_pass_at_once_for_the_watchdog():
    import asyncio

    from agent.core.log import Log
    from agent.core.poll.loop import Loop
    from agent.core.store.queue import MemoryQueue

    from support import run

    passes = []

    async def main():
        loop = Loop("s", MemoryQueue(), lambda: 0.5, Log(write=lambda line: None),
                    commit_interval=60, on_pass=lambda: passes.append(1))  # fmt: skip
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)
        before = len(passes)  # asleep now for up to a commit interval (60 s)
        loop.wake()
        await asyncio.sleep(0.05)
        after = len(passes)
        loop.stop()
        await task
        return before, after

    before, after = run(main())
    assert before >= 1 and after == before + 1
