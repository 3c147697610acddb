"""Voltronic / Axpert inverter protocol (portable): CRC-framed commands and the QPIGS reply.

Frame: ASCII payload + CRC-16/XMODEM (poly 0x1021, init 0, MSB first) + CR, both ways. A CRC byte
equal to 0x0A (LF), 0x0D (CR) or 0x28 ("(") is sent incremented by one so it cannot be mistaken
for framing; a receiver applies the same rule to its own computed CRC before comparing.
Checked: QPIGS encodes as b"QPIGS\\xb7\\xa9\\r" (PROTOCOLS.md).

QPIGS fields (NUT nutdrv_qx_voltronic-axpert.c order), mapped to registry names; fields the
registry has no name for go under experimental.inverter.* until agreed.
"""

from agent.core.errors import ParseError

TERMINATOR = b"\r"
MAX_REPLY = 200
_ESCAPED = (0x0A, 0x0D, 0x28)

# (metric, unit, kind) in wire order; kind "f" float, "i" int, "bits" status bits, None: skipped.
QPIGS_FIELDS = (
    ("input.voltage", "V", "f"),
    ("input.frequency", "Hz", "f"),
    ("output.voltage", "V", "f"),
    ("output.frequency", "Hz", "f"),
    ("experimental.inverter.output_va", "VA", "i"),
    ("output.power", "W", "i"),
    ("ups.load", "%", "f"),
    ("experimental.inverter.bus_voltage", "V", "f"),
    ("battery.voltage", "V", "f"),
    ("charger.current", "A", "f"),
    ("battery.charge", "%", "f"),
    ("device.temperature", "C", "f"),
    ("solar.current", "A", "f"),
    ("solar.voltage", "V", "f"),
    ("experimental.inverter.scc_battery_voltage", "V", "f"),
    ("experimental.inverter.discharge_current", "A", "f"),
    ("experimental.inverter.status", "", "bits"),
)


def crc16_xmodem(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            if crc & 0x8000:
                crc = ((crc << 1) ^ 0x1021) & 0xFFFF
            else:
                crc = (crc << 1) & 0xFFFF
    return crc


def crc_bytes(payload):
    """The two CRC bytes as sent, with the escape rule applied."""
    crc = crc16_xmodem(payload)
    hi, lo = crc >> 8, crc & 0xFF
    if hi in _ESCAPED:
        hi += 1
    if lo in _ESCAPED:
        lo += 1
    return bytes((hi, lo))


def command(name):
    """A command frame: b"QPIGS" -> b"QPIGS\\xb7\\xa9\\r"."""
    return bytes(name) + crc_bytes(name) + TERMINATOR


def unframe(reply):
    """Check a reply's start, CRC and terminator; return its payload after "(" as str."""
    reply = bytes(reply)
    if reply[-1:] == TERMINATOR:
        reply = reply[:-1]
    if len(reply) > MAX_REPLY:
        raise ParseError(
            "voltronic: reply of %d bytes is longer than %d" % (len(reply), MAX_REPLY)
        )
    if len(reply) < 4:
        raise ParseError("voltronic: reply of %d bytes is too short" % len(reply))
    if reply[0] != 0x28:
        raise ParseError("voltronic: reply starts with 0x%02x, not '('" % reply[0])
    payload, got = reply[:-2], reply[-2:]
    want = crc_bytes(payload)
    if got != want:
        raise ParseError(
            "voltronic: bad CRC %02x%02x, computed %02x%02x" % (got[0], got[1], want[0], want[1])
        )
    for i in range(len(payload)):
        b = payload[i]
        if b < 0x20 or b > 0x7E:
            raise ParseError("voltronic: byte 0x%02x at offset %d is not printable" % (b, i))
    text = payload[1:].decode()
    if text in ("NAK", "NAKss"):
        raise ParseError("voltronic: the inverter refused the command (NAK)")
    return text


def _number(token, metric):
    body = token[1:] if token[:1] in ("-", "+") else token
    dots = 0
    for c in body:
        if c == ".":
            dots += 1
        elif c < "0" or c > "9":
            raise ParseError("voltronic: %s field %r is not a number" % (metric, token))
    if not body or body == "." or dots > 1:
        raise ParseError("voltronic: %s field %r is not a number" % (metric, token))
    return float(token)


def parse_qpigs(reply):
    """Samples from a QPIGS reply (bytes with CRC and CR). Extra trailing fields of newer
    firmware are ignored. battery.current is derived: charge current - discharge current."""
    tokens = unframe(reply).split()
    if len(tokens) < len(QPIGS_FIELDS):
        raise ParseError(
            "voltronic: QPIGS has %d fields, need %d" % (len(tokens), len(QPIGS_FIELDS))
        )
    samples = []
    values = {}
    for i in range(len(QPIGS_FIELDS)):
        metric, unit, kind = QPIGS_FIELDS[i]
        token = tokens[i]
        if kind == "bits":
            if len(token) != 8 or token.strip("01") != "":
                raise ParseError("voltronic: status %r is not 8 bits of 0/1" % token)
            samples.append((metric, token, unit))
            continue
        value = _number(token, metric)
        if kind == "i":
            value = int(value)
        values[metric] = value
        samples.append((metric, value, unit))
    charge = values["charger.current"]
    discharge = values["experimental.inverter.discharge_current"]
    samples.append(("battery.current", round(charge - discharge, 2), "A"))
    return samples
