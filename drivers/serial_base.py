"""Shared shape of serial drivers (portable): an injected line transport, opened per session.

A serial driver never imports pyserial or machine itself. It is given a transport (see
agent/host/serial_port.py for the contract) or, when none is given, asks default_transport() for
the one this runtime has: the host's pyserial SerialPort on CPython. The board adapter injects its
machine.UART transport the same way, so the driver file is the same on both.
"""

from agent.core.compat import MICROPYTHON
from agent.core.errors import DeviceError
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
        from agent.host.serial_port import BusPort
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
        """Send one command and return the reply line (terminator included)."""
        if self.transport is None:
            raise DeviceError("serial port is not open")
        return await self.transport.request(command, terminator, max_bytes, timeout)
