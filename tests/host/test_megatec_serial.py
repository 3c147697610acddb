# SerialPort (agent/host/serial_port.py) against a raw pty peer, a loopback socket and loop://.
import asyncio
import os
import threading
import time
import tty

import pytest

from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError
from agent.host.serial_port import SerialPort, settings


class Peer:
    """The far end of a pty: the test writes what the 'device' sends and reads what it got."""

    def __init__(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)

    def send(self, data):
        os.write(self.master, data)

    def received(self, n=4096, wait=1.0):
        deadline = time.monotonic() + wait
        out = b""
        os.set_blocking(self.master, False)
        while time.monotonic() < deadline:
            try:
                out += os.read(self.master, n)
                if out:
                    time.sleep(0.02)
                    continue
            except BlockingIOError:
                if out:
                    return out
            time.sleep(0.005)
        return out

    def close(self):
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


@pytest.fixture
def peer():
    p = Peer()
    yield p
    p.close()


def run(coro):
    return asyncio.run(coro)


def test_request_writes_and_reads_one_line_with_its_terminator(peer):
    async def go():
        port = SerialPort()
        await port.open({"port": peer.path, "baud": 2400})
        task = asyncio.ensure_future(port.request(b"Q1\r", b"\r", 64, 1.0))
        await asyncio.sleep(0.05)
        assert peer.received() == b"Q1\r"
        peer.send(b"(230.0 rest\rnext")
        line = await task
        await port.close()
        return line

    assert run(go()) == b"(230.0 rest\r"


def test_stale_input_is_flushed_before_each_request(peer):
    async def go():
        port = SerialPort()
        await port.open({"port": peer.path})
        peer.send(b"old junk\rmore old\r")
        await asyncio.sleep(0.05)
        task = asyncio.ensure_future(port.request(b"F\r", b"\r", 64, 1.0))
        await asyncio.sleep(0.05)
        peer.send(b"#fresh\r")
        line = await task
        await port.close()
        return line

    assert run(go()) == b"#fresh\r"


def test_silence_and_partial_replies_time_out_with_different_reasons(peer):
    async def go():
        port = SerialPort()
        await port.open({"port": peer.path, "read_timeout": 0.2})
        e1 = await _raises(DeviceTimeout, port.request(b"Q1\r"))
        peer.send(b"(230.0 14")
        e2 = await _raises(DeviceTimeout, port.read_until(b"\r", 64))
        await port.close()
        return e1, e2

    e1, e2 = run(go())
    assert str(e1) == "no reply within 0.2s"
    assert str(e2).startswith("partial reply within 0.2s (9 bytes, no terminator): b'(230.0 14'")


def test_overlong_line_is_a_parse_error(peer):
    async def go():
        port = SerialPort()
        await port.open({"port": peer.path})
        peer.send(b"x" * 100)
        e1 = await _raises(ParseError, port.read_until(b"\r", 50, 1.0))
        peer.send(b"y" * 60 + b"\r")
        await asyncio.sleep(0.05)
        e2 = await _raises(ParseError, port.read_until(b"\r", 50, 1.0))
        peer.send(b"ok\r")
        line = await port.read_until(b"\r", 50, 1.0)
        await port.close()
        return e1, e2, line

    e1, e2, line = run(go())
    assert str(e1) == "line longer than 50 bytes"
    assert str(e2) == "line longer than 50 bytes"
    assert line == b"ok\r"


def test_a_silent_device_does_not_block_the_loop(peer):
    async def go():
        port = SerialPort()
        await port.open({"port": peer.path})
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        t = asyncio.ensure_future(ticker())
        await _raises(DeviceTimeout, port.request(b"Q1\r", b"\r", 64, 0.5))
        t.cancel()
        await port.close()
        return ticks

    # 0.5 s of waiting at 10 ms per tick: a blocked loop would give ~0.
    assert run(go()) >= 20


def test_gap_ms_keeps_quiet_time_between_exchanges(peer):
    def answer():
        for _ in range(2):
            got = b""
            while not got.endswith(b"\r"):
                got += peer.received(wait=2.0)
            peer.send(b"ack\r")

    async def go():
        port = SerialPort()
        await port.open({"port": peer.path, "gap_ms": 300})
        th = threading.Thread(target=answer)
        th.start()
        await port.request(b"A\r", b"\r", 64, 2.0)
        t0 = time.monotonic()
        await port.request(b"B\r", b"\r", 64, 2.0)
        elapsed = time.monotonic() - t0
        th.join()
        await port.close()
        return elapsed

    assert run(go()) >= 0.29


def test_a_closed_peer_is_a_device_error_not_a_hang():
    p = Peer()

    async def go():
        port = SerialPort()
        await port.open({"port": p.path})
        p.close()  # the adapter is unplugged: the pty hangs up
        e = await _raises(DeviceError, port.request(b"Q1\r", b"\r", 64, 1.0))
        await port.close()
        await port.close()  # twice is fine
        return e

    e = run(go())
    assert not isinstance(e, DeviceTimeout), e
    assert "failed" in str(e) or "closed" in str(e)


def test_socket_url_on_loopback():
    async def go():
        async def handle(reader, writer):
            cmd = await reader.readuntil(b"\r")
            writer.write(b"(" + cmd)
            await writer.drain()
            await asyncio.sleep(0.2)
            writer.close()

        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        host, tcp_port = server.sockets[0].getsockname()[:2]
        port = SerialPort()
        await port.open({"port": "socket://%s:%d" % (host, tcp_port)})
        line = await port.request(b"Q1\r", b"\r", 64, 1.0)
        e = await _raises(DeviceError, port.read_until(b"\r", 64, 2.0))
        await port.close()
        server.close()
        await server.wait_closed()
        return line, e

    line, e = run(go())
    assert line == b"(Q1\r"
    assert "closed by the other end" in str(e)


def test_url_without_a_descriptor_uses_the_reader_thread():
    # loop:// echoes what is written and has no fileno(): the thread path.
    async def go():
        port = SerialPort()
        await port.open({"port": "loop://"})
        assert port._fd is None and port._thread is not None
        line = await port.request(b"hello\r", b"\r", 64, 1.0)
        await port.close()
        return line

    before = threading.active_count()
    assert run(go()) == b"hello\r"
    assert threading.active_count() <= before


def test_open_failure_and_bad_settings():
    async def go():
        return await _raises(DeviceError, SerialPort().open({"port": "/nonexistent/tty"}))

    assert str(run(go())) == (
        "cannot open serial port /nonexistent/tty: No such file or directory (is the adapter "
        "plugged in? ls /dev/serial/by-id/)"
    )
    with pytest.raises(ConfigError) as e:
        settings({"port": "", "baud": -1, "parity": "X", "stopbits": 3, "dtr": "yes"})
    assert len(e.value.errors) == 5
    assert settings({"port": "/dev/ttyS0"})["baud"] == 2400


async def _raises(exc_type, coro):
    try:
        await coro
    except exc_type as e:
        return e
    raise AssertionError("did not raise %s" % exc_type.__name__)
