"""Megatec Q1 protocol (most small line-interactive UPSes): requests and reply parsers (portable).

Wire format (2400 8N1, ASCII, every command and reply ends with CR):
    Q1 -> "(MMM.M NNN.N PPP.P QQQ RR.R S.SS TT.T b7b6b5b4b3b2b1b0"
    F  -> "#MMM.M QQQ SS.SS RR.R"          rated V, A, battery V, Hz
    I  -> "#" company(15) " " model(10) " " version(10)

Rules, and where they come from (NUT drivers/blazer.c and blazer_ser.c, checked):
- A reply is rejected if it is shorter than NUT's minimum or does not start with "(" / "#". NUT's
  minimums (Q1 46, F 22, I 39) count the trailing CR, because blazer_ser reads in canonical mode
  where the line keeps its EOL; we count without the CR, so 45, 21 and 38.
- An unsupported command is echoed back by the UPS: that is a ParseError naming the command.
- A field filled with "@" (the device does not know it) gives no sample, never a zero. NUT skips
  any non-numeric field; we are stricter: a field that is neither a number nor "@"-filled means
  the line is corrupted, and the whole reply is rejected.
- Status bits, as blazer.c maps them to NUT tokens: b7 OB (else OL), b6 LB, b4 alarm "UPS failed",
  b2 test in progress, b1 shutdown active -> FSD plus an alarm, b0 beeper. b3 only says the UPS
  is a standby (line-interactive) type. b5 ("bypass/boost/buck active") does not say which one,
  so, as NUT does, we compare output to input voltage: out < 0.5 in -> nothing (implausible),
  < 0.95 in -> TRIM, < 1.05 in -> BYPASS, < 1.5 in -> BOOST, else nothing. When either voltage is
  "@" we cannot tell which and emit nothing for b5.
- blazer.c reports test-in-progress as "CAL"; the registry's token for it is TEST, used here.
- Battery voltage: on-line units report volts per cell, standby units the whole battery. Like
  NUT's blazer_packs(), when F gives the rated battery voltage we pick the largest multiplier from
  PACKS whose product with the measured value is within 0.8 to 1.2 of the rating, once, and
  scale every later reading by it. Unlike NUT, when there is no rating or nothing fits, the
  scale is unknown (None), and the driver does not publish the value (drivers/megatec.py).
"""

from agent.core.errors import ParseError

CMD_STATUS = b"Q1\r"
CMD_RATING = b"F\r"
CMD_INFO = b"I\r"
TERMINATOR = b"\r"
MAX_REPLY = 128  # longest line we accept; real replies are under 50 bytes

MIN_Q1 = 45  # without the CR (NUT: 46 with it)
MIN_F = 21
MIN_I = 38

# Q1 fields in wire order: (metric, unit, decimals kept).
Q1_FIELDS = (
    ("input.voltage", "V", 1),
    ("input.voltage.fault", "V", 1),
    ("output.voltage", "V", 1),
    ("ups.load", "%", 0),
    ("input.frequency", "Hz", 1),
    ("battery.voltage", "V", 2),
    ("ups.temperature", "C", 1),
)

F_FIELDS = (
    ("ups.rating.voltage", "V", 1),
    ("ups.rating.current", "A", 1),
    ("ups.rating.battery_voltage", "V", 2),
    ("ups.rating.frequency", "Hz", 1),
)

# I reply: fixed-width columns after "#", each followed by one separator space.
I_FIELDS = (("ups.mfr", 15), ("ups.model", 10), ("ups.firmware", 10))

# Battery multipliers blazer.c tries, largest first (cells per battery, or batteries in series).
PACKS = (120, 100, 80, 60, 48, 36, 30, 24, 18, 12, 8, 6, 4, 3, 2, 1, 0.5)

# Status bit index in the 8-character field (b7 is the first character).
_B7_UTILITY_FAIL = 0
_B6_BATTERY_LOW = 1
_B5_BYPASS_BOOST_BUCK = 2
_B4_UPS_FAILED = 3
_B3_STANDBY = 4
_B2_TEST = 5
_B1_SHUTDOWN = 6
_B0_BEEPER = 7


def _line(reply, what):
    """Check a reply is printable ASCII; return it as str without the trailing CR."""
    if not isinstance(reply, (bytes, bytearray)):
        raise ParseError("%s: expected bytes, got %s" % (what, type(reply).__name__))
    if reply[-1:] == TERMINATOR:
        reply = reply[:-1]
    if len(reply) > MAX_REPLY:
        raise ParseError("%s: reply of %d bytes is longer than %d" % (what, len(reply), MAX_REPLY))
    for i in range(len(reply)):
        b = reply[i]
        if b < 0x20 or b > 0x7E:
            raise ParseError("%s: byte 0x%02x at offset %d is not printable ASCII" % (what, b, i))
    return bytes(reply).decode()


def _check_echo(text, command, what):
    if text == command.decode().strip():
        raise ParseError("%s: the UPS echoed the command (not supported by this model)" % what)


def _number(token, what, metric):
    """A field's value as float, or None for an "@"-filled (unknown) field."""
    if "@" in token:
        for c in token:
            if c != "@" and c != ".":
                raise ParseError("%s: %s field %r mixes '@' and digits" % (what, metric, token))
        return None
    body = token[1:] if token[:1] == "-" else token
    dots = 0
    for c in body:
        if c == ".":
            dots += 1
        elif c < "0" or c > "9":
            raise ParseError("%s: %s field %r is not a number" % (what, metric, token))
    if not body or body == "." or dots > 1:
        raise ParseError("%s: %s field %r is not a number" % (what, metric, token))
    return float(token)


def parse_q1(reply):
    """Parse a Q1 reply (bytes, trailing CR optional) into samples [(metric, value, unit)].

    battery.voltage is the value as sent (see apply_packs). Raises ParseError on any malformed
    reply, naming what was wrong."""
    text = _line(reply, "Q1")
    _check_echo(text, CMD_STATUS, "Q1")
    if len(text) < MIN_Q1:
        raise ParseError("Q1: short reply (%d bytes, need %d): %r" % (len(text), MIN_Q1, text))
    if text[0] != "(":
        raise ParseError("Q1: reply starts with %r, not '(': %r" % (text[0], text))
    tokens = text[1:].split()
    if len(tokens) < 8:
        raise ParseError("Q1: %d fields, need 8: %r" % (len(tokens), text))
    # Extra trailing fields are ignored, as NUT's tokenizer does.
    samples = []
    values = {}
    for i in range(len(Q1_FIELDS)):
        metric, unit, decimals = Q1_FIELDS[i]
        value = _number(tokens[i], "Q1", metric)
        values[metric] = value
        if value is not None:
            samples.append((metric, round(value, decimals), unit))
    bits = tokens[7]
    if len(bits) != 8 or bits.strip("01") != "":
        raise ParseError("Q1: status %r is not 8 bits of 0/1" % bits)
    samples.extend(status_samples(bits, values["input.voltage"], values["output.voltage"]))
    return samples


def status_samples(bits, vin, vout):
    """Samples derived from the 8 status bits ("b7...b0"); vin/vout may be None (unknown)."""
    on_battery = bits[_B7_UTILITY_FAIL] == "1"
    tokens = ["OB" if on_battery else "OL"]
    if bits[_B6_BATTERY_LOW] == "1":
        tokens.append("LB")
    source = "battery" if on_battery else "normal"
    if bits[_B5_BYPASS_BOOST_BUCK] == "1":
        mode = avr_mode(vin, vout)
        if mode:
            tokens.append(mode)
            if not on_battery:
                source = mode.lower()
    if bits[_B2_TEST] == "1":
        tokens.append("TEST")
    alarms = []
    if bits[_B4_UPS_FAILED] == "1":
        alarms.append("ups_failed")
    if bits[_B1_SHUTDOWN] == "1":
        alarms.append("shutdown_imminent")
        tokens.append("FSD")
    if alarms:
        tokens.append("ALARM")
    return [
        ("ups.status", " ".join(tokens), ""),
        ("ups.alarm", " ".join(alarms), ""),
        ("ups.beeper", bits[_B0_BEEPER] == "1", ""),
        ("mains.present", not on_battery, ""),
        ("output.source", source, ""),
    ]


def avr_mode(vin, vout):
    """Which of TRIM/BYPASS/BOOST bit b5 means, from the voltage ratio (NUT's thresholds)."""
    if vin is None or vout is None or vin <= 0:
        return None
    if vout < 0.5 * vin:
        return None
    if vout < 0.95 * vin:
        return "TRIM"
    if vout < 1.05 * vin:
        return "BYPASS"
    if vout < 1.5 * vin:
        return "BOOST"
    return None


def parse_f(reply):
    """Parse an F (rating) reply into samples. Raises ParseError when malformed."""
    text = _line(reply, "F")
    _check_echo(text, CMD_RATING, "F")
    if len(text) < MIN_F:
        raise ParseError("F: short reply (%d bytes, need %d): %r" % (len(text), MIN_F, text))
    if text[0] != "#":
        raise ParseError("F: reply starts with %r, not '#': %r" % (text[0], text))
    tokens = text[1:].split()
    if len(tokens) < 4:
        raise ParseError("F: %d fields, need 4: %r" % (len(tokens), text))
    samples = []
    for i in range(len(F_FIELDS)):
        metric, unit, decimals = F_FIELDS[i]
        value = _number(tokens[i], "F", metric)
        if value is not None:
            samples.append((metric, round(value, decimals), unit))
    return samples


def parse_i(reply):
    """Parse an I (identity) reply into samples; blank or "@"-filled columns are left out."""
    text = _line(reply, "I")
    _check_echo(text, CMD_INFO, "I")
    if len(text) < MIN_I:
        raise ParseError("I: short reply (%d bytes, need %d): %r" % (len(text), MIN_I, text))
    if text[0] != "#":
        raise ParseError("I: reply starts with %r, not '#': %r" % (text[0], text))
    samples = []
    index = 1
    for metric, width in I_FIELDS:
        value = text[index : index + width].strip()
        index += width + 1
        if value and value.strip("@") != "":
            samples.append((metric, value, ""))
    return samples


def battery_packs(nominal, measured):
    """The multiplier that turns the measured battery value into whole-battery volts: the first
    of PACKS (largest first) whose product is not above 1.2 x nominal, if that product is at least
    0.8 x nominal. None when it cannot be told (no rating, no value, or no multiplier fits): a
    value whose scale is not known must not be published as if it were (NUT keeps it as sent)."""
    if not nominal or not measured or nominal <= 0 or measured <= 0:
        return None
    for packs in PACKS:
        if packs * measured > 1.2 * nominal:
            continue
        if packs * measured < 0.8 * nominal:
            return None
        return packs
    return None


def apply_packs(samples, packs):
    """Return samples with battery.voltage multiplied by `packs` (rounded to 10 mV)."""
    if packs == 1:
        return samples
    out = []
    for metric, value, unit in samples:
        if metric == "battery.voltage":
            value = round(value * packs, 2)
        out.append((metric, value, unit))
    return out


def sample_value(samples, metric):
    """The value of `metric` in a sample list, or None."""
    for name, value, _unit in samples:
        if name == metric:
            return value
    return None
