"""Megatec Q1 UPS driver (portable): small line-interactive UPSes on a serial port.

Every poll sends Q1; Q1 alone makes a poll good or stale. F (ratings) and I (identity) are
asked after Q1 until the UPS has answered each once in this session (each open), then cached.
A UPS that does not answer them (some echo them as unsupported, some stay silent, some miss one
request on a noisy line) is still polled, and they are asked again on later polls: on each of
the first ASK_FIRST polls of a session (NUT asks three times at start-up), then every ASK_EVERY
polls, so a missed first answer never sticks for the session and a UPS that never answers costs
one read_timeout every ASK_EVERY polls.

Battery voltage: on-line units send volts per cell, standby units the whole battery. The
multiplier (drivers/proto/megatec.py, battery_packs) comes from the rated battery voltage: F's,
or the site config's [devices.battery] nominal_v when F gives none. Until a multiplier fits,
battery.voltage is not published at all (a per-cell 2.05 V is not a 12.3 V battery): the value
as sent is in the console's raw view with the reason. Once it fits it holds for the session.
"""

from agent.core.errors import DeviceError, ParseError
from agent.core.serial_line import driver_defaults
from drivers.base import BETA
from drivers.proto import megatec as proto
from drivers.serial_base import SerialDriver

ASK_FIRST = 3  # polls of a session on which a missing F or I is asked (NUT's MAXTRIES)
ASK_EVERY = 10  # after those, a missing F or I is asked again every this many polls


class MegatecDriver(SerialDriver):
    INFO = {
        "name": "megatec",
        "version": "0.2",
        "maturity": BETA,
        "transport": "serial",
        "description": "Megatec Q1 protocol UPS (NUT blazer_ser family), 2400 8N1",
    }
    # NUT blazer_ser's line: 2400 8N1, cablepower "normal" = DTR on, RTS off.
    SERIAL_DEFAULTS = driver_defaults("megatec")

    def __init__(self, device, transport=None):
        SerialDriver.__init__(self, device, transport)
        self.nominal_v = (device.get("battery") or {}).get("nominal_v")  # from the site config
        self.rating = None  # samples from F once answered this session, else None
        self.identity = None  # samples from I, likewise
        self.packs = None  # battery multiplier once one fits, for this session
        self.polls = 0  # good Q1 polls this session
        self.notes = {}  # command -> why its last ask gave nothing usable, for the console

    async def on_open(self):
        self.rating = None
        self.identity = None
        self.packs = None
        self.polls = 0
        self.notes = {}

    def _due(self):
        """Whether a missing F or I is asked on this poll (see the module doc)."""
        return self.polls <= ASK_FIRST or self.polls % ASK_EVERY == 0

    async def _optional(self, command, parse, raw):
        """F or I: the samples, or None when the UPS gave nothing usable this time (noted for
        the console; asked again later). Q1 decides good or stale, never F or I."""
        name = command.decode().strip()
        try:
            line = await self.ask(command, proto.TERMINATOR, proto.MAX_REPLY + 1)
        except DeviceError as e:  # includes DeviceTimeout and ParseError (overlong line)
            self.notes[name] = "%s: %s" % (name, e)
            return None
        raw[name] = _text(line)
        try:
            samples = parse(line)
        except ParseError as e:
            self.notes[name] = str(e)
            return None
        self.notes.pop(name, None)
        return samples

    async def read(self):
        raw = {}
        self.raw = raw
        # Q1 first, as NUT does: a silent UPS costs one timeout per poll, not three.
        line = await self.ask(proto.CMD_STATUS, proto.TERMINATOR, proto.MAX_REPLY + 1)
        raw["Q1"] = _text(line)
        samples = proto.parse_q1(line)
        self.polls += 1
        if self.rating is None and self._due():
            self.rating = await self._optional(proto.CMD_RATING, proto.parse_f, raw)
        if self.identity is None and self._due():
            self.identity = await self._optional(proto.CMD_INFO, proto.parse_i, raw)
        samples = self._scaled(samples, raw)
        if self.notes:
            raw["notes"] = "; ".join(self.notes[k] for k in sorted(self.notes))
        return samples + (self.rating or []) + (self.identity or [])

    def _scaled(self, samples, raw):
        """Q1 samples with battery.voltage in whole-battery volts, or without it while no
        multiplier fits (the reason goes to raw["battery"])."""
        measured = proto.sample_value(samples, "battery.voltage")
        if self.packs is None and measured is not None:
            nominal = proto.sample_value(self.rating or [], "ups.rating.battery_voltage")
            self.packs = proto.battery_packs(nominal or self.nominal_v, measured)
            if self.packs is None:
                if nominal or self.nominal_v:
                    why = "fits no multiplier of the %g V rating" % (nominal or self.nominal_v)
                else:
                    why = "no rated battery voltage yet (F unanswered; [devices.battery] " \
                          "nominal_v would do)"  # fmt: skip
                raw["battery"] = "%g V as sent, not published: %s" % (measured, why)
        if self.packs is None:
            return [s for s in samples if s[0] != "battery.voltage"]
        return proto.apply_packs(samples, self.packs)


def _text(line):
    """A reply as printable text for the console (non-ASCII shown escaped); None if no reply."""
    if line is None:
        return None
    return repr(bytes(line))[2:-1]
