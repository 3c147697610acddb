"""Shared shape of serial drivers (portable): an injected line transport, opened per session.

A serial driver never imports pyserial or machine itself. It is given a transport (see
agent/host/serial_port.py for the contract) or, when none is given, asks default_transport() for
the one this runtime has: the host's pyserial SerialPort on CPython. The board adapter injects its
machine.UART transport the same way, so the driver file is the same on both.
"""

from agent.core.compat import MICROPYTHON, monotonic
from agent.core.errors import DeviceError, DeviceTimeout
from drivers.base import Driver


def default_transport():
    """A new, unopened serial transport for this runtime: the host's pyserial SerialPort on
    CPython, the board's machine.UART UartPort on MicroPython; DeviceError when there is none."""
    if MICROPYTHON:
        try:
            from agent.board.uart import UartPort
        except ImportError:
            raise DeviceError(
                "no serial transport on this board: agent/board/uart.py is missing"
            ) from None
        return UartPort()
    try:
        from agent.host.serial_port import SerialPort
    except ImportError:
        raise DeviceError(
            "no serial transport on this runtime: pyserial is not installed"
        ) from None
    return SerialPort()


def bus_transport():
    """A new, unopened transport for a shared RS-485 bus (several slaves, one port): devices on
    the same port share one line and one lock, so their frames never interleave. The host's
    BusPort on CPython; on the board UartPort, which shares per UART already."""
    if MICROPYTHON:
        return default_transport()
    try:
        from agent.host.serial_bus import BusPort
    except ImportError:
        raise DeviceError(
            "no serial transport on this runtime: pyserial is not installed"
        ) from None
    return BusPort()


class SerialDriver(Driver):
    """Driver over one serial line. Subclasses set SERIAL_DEFAULTS and implement read()."""

    # Line settings this device family uses unless the config says otherwise.
    SERIAL_DEFAULTS = {}

    def __init__(self, device, transport=None):
        Driver.__init__(self, device)
        self._injected = transport
        self.transport = None
        cfg = dict(self.SERIAL_DEFAULTS)
        cfg.update(device.get("serial") or {})
        self.serial_cfg = cfg

    async def open(self):
        transport = self._injected if self._injected is not None else default_transport()
        await transport.open(self.serial_cfg)
        self.transport = transport
        await self.on_open()

    async def on_open(self):
        """Called after every (re)open; subclasses reset per-session caches here."""

    async def close(self):
        transport, self.transport = self.transport, None
        if transport is not None:
            try:
                await transport.close()
            except Exception:
                pass

    async def ask(self, command, terminator=b"\r", max_bytes=256, timeout=None):
        """Send one command and return its reply line (terminator included), read the way real
        RS-232 converters deliver it (see reply_of). One deadline, `timeout` (read_timeout when
        None), covers the whole exchange. On a shared line the exchange holds the line's lock."""
        t = self.transport
        if t is None:
            raise DeviceError("serial port is not open")
        if timeout is None:
            timeout = self.serial_cfg.get("read_timeout", 1.0)
        lock = getattr(t, "lock", None)
        if lock is None:
            return await self._exchange(t, command, terminator, max_bytes, timeout)
        async with lock:
            return await self._exchange(t, command, terminator, max_bytes, timeout)

    async def _exchange(self, t, command, terminator, max_bytes, timeout):
        deadline = monotonic() + timeout
        await t.send(command)
        line = await t.read_until(terminator, max_bytes, timeout)
        echo = None
        while True:
            reply = reply_of(line, command, terminator)
            if reply is ECHO and echo is None:
                echo = bytes(line)
            elif reply is not ECHO and reply is not None:
                return reply
            left = deadline - monotonic()
            try:
                if left <= 0:
                    raise DeviceTimeout("no reply within %gs" % timeout)
                line = await t.read_until(terminator, max_bytes, left)
            except DeviceTimeout:
                if echo is not None:
                    return echo  # only the echo came: the parser says "echoed (unsupported)"
                raise


ECHO = object()  # reply_of: the line is the command itself


def reply_of(line, command, terminator):
    """What one line read after `command` is, by the line discipline of real converters:
    None for a line with nothing in it (a stray LF, the LF of a CR LF ending, an empty line),
    ECHO for the command sent back (a converter or UPS echoing; the reply may follow), else the
    line with any leading LF dropped (the reply)."""
    start = 0
    while start < len(line) and line[start] == 0x0A:  # LF
        start += 1
    body = bytes(line[start:])
    if body == terminator or not body:
        return None
    if body == command:
        return ECHO
    return body
