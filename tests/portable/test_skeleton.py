# The copy-me driver goes through the real poll path: success, a parse error, a silent device.
import asyncio

from agent.core.errors import ParseError
from drivers.skeleton import SkeletonDriver, parse

from support import raises, run


class Peer:
    """A scripted device on the other end of the transport."""

    def __init__(self, replies):
        self.replies = list(replies)
        self.sent = []
        self.opened = 0
        self.closed = 0

    async def open(self):
        self.opened += 1

    async def close(self):
        self.closed += 1

    async def write(self, data):
        self.sent.append(data)

    async def read_until(self, term, limit):
        reply = self.replies.pop(0)
        if reply is None:
            await asyncio.sleep(10)
        return reply


def test_parse_golden_frame():
    assert parse(b"2645 87\r") == [("battery.voltage", 26.45, "V"), ("battery.charge", 87, "%")]


def test_parse_rejects_bad_frames():
    assert "CR" in str(raises(ParseError, parse, b"2645 87"))
    assert "expected 2 fields" in str(raises(ParseError, parse, b"1 2 3\r"))
    assert "not a number" in str(raises(ParseError, parse, b"12 x7\r"))


def test_poll_success_garbage_and_silence():
    peer = Peer([b"2645 87\r", b"\xff\xfe\r", None, b"100 5\r"])
    drv = SkeletonDriver({"id": "skel"}, peer)
    r1 = run(drv.poll(1.0))
    assert r1.ok and r1.samples[1] == ("battery.charge", 87, "%") and peer.sent == [b"R\r"]
    r2 = run(drv.poll(1.0))
    assert not r2.ok and "expected 2 fields" in r2.error and peer.closed == 1
    r3 = run(drv.poll(0.05))
    assert not r3.ok and r3.error == "no answer within 0.05s" and peer.closed == 2
    r4 = run(drv.poll(1.0))
    assert r4.ok and peer.opened == 3
    assert drv.info()["maturity"] == "experimental"
