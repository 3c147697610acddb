"""Megatec Q1 UPS driver (portable): small line-interactive UPSes on a serial port.

Every poll sends Q1; after the first good Q1 of a session (each open), F (ratings) and I
(identity) are asked once and cached. A UPS that does not answer F or I (some echo them as
unsupported, some stay silent) still gets polled: they are optional, as NUT's norating/novendor
say. Q1 alone makes a poll good or stale.

Battery voltage: the first good Q1 after F fixes the multiplier (drivers/proto/megatec.py,
battery_packs) for the session, so every reading is whole-battery volts when the rating allows it.
"""

from agent.core.errors import DeviceError, ParseError
from drivers.base import BETA
from drivers.proto import megatec as proto
from drivers.serial_base import SerialDriver


class MegatecDriver(SerialDriver):
    INFO = {
        "name": "megatec",
        "version": "0.1",
        "maturity": BETA,
        "transport": "serial",
        "description": "Megatec Q1 protocol UPS (NUT blazer_ser family), 2400 8N1",
    }
    # NUT blazer_ser's defaults: 2400 baud, cablepower "normal" = DTR on, RTS off.
    SERIAL_DEFAULTS = {
        "baud": 2400,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "dtr": True,
        "rts": False,
        "read_timeout": 1.0,
        "gap_ms": 0,
    }

    def __init__(self, device, transport=None):
        SerialDriver.__init__(self, device, transport)
        self.rating = None  # samples from F, or [] when the UPS gave none this session
        self.identity = None  # samples from I, likewise
        self.packs = None  # battery multiplier once decided for this session
        self.notes = []  # why F or I were skipped, for the console

    async def on_open(self):
        self.rating = None
        self.identity = None
        self.packs = None
        self.notes = []

    async def _optional(self, command, parse):
        """F or I: an unusable reply or none at all is noted and the session goes on without it
        (NUT's norating/novendor, found out instead of configured); Q1 decides good or stale."""
        try:
            line = await self.ask(command, proto.TERMINATOR, proto.MAX_REPLY + 1)
        except DeviceError as e:  # includes DeviceTimeout and ParseError (overlong line)
            self.notes.append("%s: %s" % (command.decode().strip(), e))
            return [], None
        try:
            return parse(line), line
        except ParseError as e:
            self.notes.append(str(e))
            return [], line

    async def read(self):
        raw = {}
        self.raw = raw
        # Q1 first, as NUT does: a silent UPS costs one timeout per poll, not three.
        line = await self.ask(proto.CMD_STATUS, proto.TERMINATOR, proto.MAX_REPLY + 1)
        raw["Q1"] = _text(line)
        samples = proto.parse_q1(line)
        if self.rating is None:
            self.rating, line = await self._optional(proto.CMD_RATING, proto.parse_f)
            raw["F"] = _text(line)
        if self.identity is None:
            self.identity, line = await self._optional(proto.CMD_INFO, proto.parse_i)
            raw["I"] = _text(line)
        if self.packs is None:
            nominal = proto.sample_value(self.rating, "ups.rating.battery_voltage")
            measured = proto.sample_value(samples, "battery.voltage")
            if measured is not None:
                self.packs = proto.battery_packs(nominal, measured)
        samples = proto.apply_packs(samples, self.packs or 1)
        if self.notes:
            raw["notes"] = "; ".join(self.notes)
        return samples + self.rating + self.identity


def _text(line):
    """A reply as printable text for the console (non-ASCII shown escaped); None if no reply."""
    if line is None:
        return None
    return repr(bytes(line))[2:-1]
