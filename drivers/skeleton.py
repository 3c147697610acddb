"""Copy-me driver: the smallest complete driver, to start a new one from.

It is registered under no name, so no site can use it by accident; tests/portable/test_skeleton.py
runs it through the same poll path as every real driver. To add a driver:

1. Copy this file to drivers/<name>.py and rename the class.
2. Put the protocol itself (framing, checksums, parsing: bytes in, values or ParseError out) in
   drivers/proto/<name>.py, with no I/O, so it runs on the board too; test it with golden frames.
3. Put the device map (registers, OIDs, scales, units, enums) in a data table, not in code.
4. Emit only metric names from agent/core/registry.py (add rows there and in docs/metrics.md, or
   use `experimental.<name>` until the name is agreed). Leave out values the device marks unknown.
5. Add the driver's name to drivers/__init__.py and its config section to
   agent/core/config/tables.py.
6. Write an emulator in hil/emulators/ and test every fault mode against the driver.
"""

from agent.core.errors import DeviceError, ParseError
from drivers.base import EXPERIMENTAL, Driver

# MANDATORY: the info record. maturity is experimental, beta or stable, as NUT records it.
INFO = {
    "name": "skeleton",
    "version": "0.1",
    "maturity": EXPERIMENTAL,
    "transport": "none",
    "description": "template: reads a fixed frame from an injected transport",
}

# The device map as data: (field index, metric, scale, unit).
FIELDS = (
    (0, "battery.voltage", 0.01, "V"),
    (1, "battery.charge", 1, "%"),
)


def parse(frame):
    """bytes like b"2645 87\\r" -> [(metric, value, unit)]; raises ParseError (drivers/proto/)."""
    if not frame.endswith(b"\r"):
        raise ParseError("frame does not end with CR: %r" % frame[:40])
    parts = frame[:-1].split()
    if len(parts) != len(FIELDS):
        raise ParseError("expected %d fields, got %d" % (len(FIELDS), len(parts)))
    out = []
    for index, metric, scale, unit in FIELDS:
        try:
            raw = int(parts[index])
        except ValueError:
            raise ParseError("field %d is not a number: %r" % (index, parts[index])) from None
        out.append((metric, raw * scale, unit))
    return out


class SkeletonDriver(Driver):
    INFO = INFO

    def __init__(self, device, transport=None):
        Driver.__init__(self, device)
        self.transport = transport  # OPTIONAL injection point; real drivers build theirs in open()

    async def open(self):
        # MANDATORY: acquire the port or socket; raise DeviceError when it cannot be had.
        if self.transport is None:
            raise DeviceError("no transport configured")
        await self.transport.open()

    async def read(self):
        # MANDATORY: one request, one reply, parsed; errors raise, never return made-up values.
        await self.transport.write(b"R\r")
        frame = await self.transport.read_until(b"\r", 64)
        self.raw = {"R": frame}
        return parse(frame)

    async def close(self):
        # MANDATORY: release; must not raise.
        await self.transport.close()
