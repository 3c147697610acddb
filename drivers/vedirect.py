"""Victron VE.Direct driver (portable): battery monitors (BMV, SmartShunt) and MPPT chargers.

A streaming device: it sends a text block about once a second without being asked. A poll drops
what the port buffered (it may be old), then reads until it holds a complete block with a good
checksum, for at most READ_SHARE of the poll budget; the stream parser (drivers/proto/vedirect.py)
resynchronises from wherever the stream was entered and survives bad blocks. Battery monitors
alternate a main block and a history block: the poll goes on until it has seen a block with "V"
(battery voltage) and merges every good block it read.

The isolated side of Victron's VE.Direct-USB interface draws power from DTR and RTS: both are
driven high unless the config says otherwise (PROTOCOLS.md). 19200 8N1.
"""

from agent.core.compat import monotonic
from agent.core.errors import DeviceTimeout
from agent.core.serial_line import driver_defaults
from drivers.base import BETA, Driver
from drivers.proto import vedirect as proto
from drivers.serial_base import SerialDriver

READ_SHARE = 0.9  # of the poll budget; the rest is left for closing on failure
CHUNK = 512


class VeDirectDriver(SerialDriver):
    INFO = {
        "name": "vedirect",
        "version": "0.1",
        "maturity": BETA,
        "transport": "serial",
        "description": "Victron VE.Direct text protocol (BMV, SmartShunt, MPPT), 19200 8N1",
    }
    SERIAL_DEFAULTS = driver_defaults("vedirect")

    def __init__(self, device, transport=None):
        SerialDriver.__init__(self, device, transport)
        self.stream = proto.Stream()
        self._budget = 5.0

    async def poll(self, budget_s):
        self._budget = budget_s
        return await Driver.poll(self, budget_s)

    async def on_open(self):
        self.stream = proto.Stream()

    async def read(self):
        t = self.transport
        s = self.stream
        t.reset_input()
        s.reset()
        before = (s.bad_checksums, s.skipped, s.oversized)
        started = monotonic()
        deadline = started + self._budget * READ_SHARE
        timeout = self.serial_cfg.get("read_timeout", 2.0)
        got = 0
        merged = {}
        while "V" not in merged:
            left = deadline - monotonic()
            if left <= 0:
                raise DeviceTimeout(self._why("no complete block", started, got, before))
            try:
                data = await t.read_some(CHUNK, left if left < timeout else timeout)
            except DeviceTimeout:
                if left > timeout:  # quiet for a whole read_timeout: the device is silent
                    raise DeviceTimeout(
                        self._why("no data for %gs" % timeout, started, got, before)
                    ) from None
                raise DeviceTimeout(self._why("no complete block", started, got, before)) from None
            got += len(data)
            for block in s.feed(data):
                merged.update(proto.fields(block))
        self.raw = dict(merged)
        return proto.samples(merged)

    def _why(self, what, started, got, before):
        s = self.stream
        return "vedirect: %s within %.1fs (%d bytes, %d bad checksums, %s)" % (
            what,
            monotonic() - started,
            got,
            s.bad_checksums - before[0],
            "in sync" if s.synced else "never in sync",
        )
