"""A serial line shared by several devices (host): Modbus slave ids or BMS addresses on one RS-485
pair, each device holding a BusPort over one SerialPort (agent/host/serial_port.py).
"""

import asyncio

from agent.core.errors import DeviceError
from agent.host.serial_port import SerialPort, settings

# One _Bus per port path, alive while at least one BusPort holds it open. Line settings are
# the first opener's; a device asking the same path with other settings is refused (one wire
# cannot run two baud rates).
_BUSES = {}
_LINE_KEYS = ("baud", "bytesize", "parity", "stopbits")


class _Bus:
    def __init__(self, loop):
        self.loop = loop
        self.port = SerialPort()
        self.lock = asyncio.Lock()
        self.users = 0


class BusPort:
    """A device's handle on a serial line that other devices may share (several Modbus slave
    ids, several BMS addresses on one RS-485 pair). Every BusPort opened on the same path shares
    one SerialPort and one asyncio.Lock, `lock`.

    Invariant: an exchange (send, then read the whole reply) happens with `lock` held, so two
    devices' frames never interleave on the wire. `request` takes the lock itself; a driver that
    frames replies by hand (send + read_exact) holds `lock` around the pair. The lock is not
    reentrant: do not call `request` while holding it.

    If the shared port has failed (peer gone), the next open() reopens it in place for every
    user; the others see the failure on their next read and reopen through the same path."""

    def __init__(self):
        self._bus = None
        self.cfg = None

    @property
    def is_open(self):
        return self._bus is not None

    @property
    def lock(self):
        self._check()
        return self._bus.lock

    async def open(self, cfg):
        s = settings(cfg)
        key = s["port"]
        loop = asyncio.get_running_loop()
        bus = _BUSES.get(key)
        if bus is not None and bus.loop is not loop:  # left over from a finished event loop
            await bus.port.close()
            bus = None
        if bus is None:
            bus = _BUSES[key] = _Bus(loop)
        elif bus.port.is_open:
            for k in _LINE_KEYS:
                if bus.port.cfg[k] != s[k]:
                    raise DeviceError(
                        "serial port %s is open with %s=%r; this device asks %r"
                        % (key, k, bus.port.cfg[k], s[k])
                    )
        async with bus.lock:
            try:
                if not bus.port.is_open or bus.port.failed:
                    await bus.port.close()
                    await bus.port.open(s)
            except BaseException:
                if bus.users == 0 and _BUSES.get(key) is bus:
                    del _BUSES[key]
                raise
            bus.users += 1
        self._bus = bus
        self.cfg = bus.port.cfg

    async def close(self):
        bus, self._bus = self._bus, None
        if bus is None:
            return
        bus.users -= 1
        if bus.users <= 0:
            if _BUSES.get(bus.port.cfg["port"] if bus.port.cfg else None) is bus:
                del _BUSES[bus.port.cfg["port"]]
            await bus.port.close()

    def _check(self):
        if self._bus is None:
            raise DeviceError("serial port is not open")

    # The transport contract, delegated to the shared port.
    async def request(self, data, terminator=b"\r", max_bytes=256, timeout=None):
        self._check()
        async with self._bus.lock:
            return await self._bus.port.request(data, terminator, max_bytes, timeout)

    async def send(self, data):
        self._check()
        await self._bus.port.send(data)

    async def write(self, data):
        self._check()
        await self._bus.port.write(data)

    async def read_exact(self, n, timeout=None):
        self._check()
        return await self._bus.port.read_exact(n, timeout)

    async def read_some(self, max_bytes=256, timeout=None):
        self._check()
        return await self._bus.port.read_some(max_bytes, timeout)

    async def read_until(self, terminator=b"\r", max_bytes=256, timeout=None):
        self._check()
        return await self._bus.port.read_until(terminator, max_bytes, timeout)

    def reset_input(self):
        self._check()
        self._bus.port.reset_input()


def open_buses():
    """{path: number of users} of the shared lines open now (for the console and tests)."""
    return {k: b.users for k, b in _BUSES.items()}
