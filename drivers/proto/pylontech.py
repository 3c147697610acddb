"""Pylontech lithium BMS protocol over RS-485 (portable): frames, LENGTH and CHKSUM, and the
analog-value (CID2 0x42) and alarm (0x44) replies.

Frame, ASCII: "~" VER ADR CID1 CID2 LENGTH INFO CHKSUM "\\r". Every field is upper-case hex text:
VER, ADR, CID1, CID2 two characters each, LENGTH and CHKSUM four, INFO LENID characters.
- LENGTH = LCHKSUM << 12 | LENID; LENID is the number of INFO characters; LCHKSUM is
  (-(sum of LENID's three nibbles)) & 0xF.
- CHKSUM = (-(sum of every ASCII byte between "~" and CHKSUM)) & 0xFFFF.
- In a reply, the CID2 position holds the return code RTN: 0 normal, anything else is the BMS
  refusing (a PylontechRefused, a DeviceError like a Modbus exception), not a ParseError.
Checked: the request for analog values of pack 2 is "~20024642E00202FD33\\r" (PROTOCOLS.md), and
GOLDEN_ANALOG below, a US2000 reply to it published with a third-party library, decodes to 15
cells around 3.226 V, 5 temperatures (20.1 C first), 48.39 V, 6.415 of 50 Ah, 132 cycles.

Analog reply INFO (protocol 3.x, one pack): DATAFLAG, pack address, M cells, M x cell mV (u16),
K temperatures, K x temperature in 0.1 K (C = (x - 2731) / 10; the first is the BMS board),
current (s16, 0.1 A per PROTOCOLS.md; *unverified*: some sources read 10 mA), pack mV (u16),
remaining mAh (u16), user-defined item count (2, or 4 when capacities follow as u24), total mAh
(u16), cycle count (u16) [, remaining mAh (u24), total mAh (u24)].
Alarm reply INFO: DATAFLAG, pack address, M, M x cell state, K, K x temperature state, charge
current, pack voltage, discharge current states (0 normal, 1 below limit, 2 above limit, 0xF0
other fault), then status bytes kept raw (their bit meanings are *unverified*).
"""

from agent.core.errors import DeviceError, ParseError

SOI = 0x7E  # "~"
EOI = 0x0D  # "\r"
CID1_BATTERY = 0x46
GET_ANALOG = 0x42
GET_ALARMS = 0x44
GET_SYSTEM = 0x47
GET_VERSION = 0x4F
MAX_FRAME = 4096 + 18  # LENID is 12 bits

RTN = {
    1: "VER error",
    2: "CHKSUM error",
    3: "LCHKSUM error",
    4: "CID2 invalid",
    5: "command format error",
    6: "invalid data",
    0x90: "ADR error",
    0x91: "internal communication error",
}

ALARM_STATES = {0: None, 1: "low", 2: "high", 0xF0: "fault"}

GOLDEN_REQUEST = b"~20024642E00202FD33\r"
GOLDEN_ANALOG = (
    b"~20024600C06E10020F0C9A0C980C990C980C9A0C9A0C990C9B0C9C0C9A0C9B0C9B0C9B0C9B0C99050B74"
    b"0B550B570B530B630000BD06190F02C3500084E545\r"
)


class PylontechRefused(DeviceError):
    """The BMS answered with a non-zero return code (it understood the frame and refused)."""

    def __init__(self, adr, rtn):
        self.adr = adr
        self.rtn = rtn
        super().__init__(
            "pylontech pack %d refused: RTN 0x%02X (%s)" % (adr, rtn, RTN.get(rtn, "unknown"))
        )


def _hex2(n):
    return "%02X" % n


def length_field(lenid):
    """LENGTH for an INFO of `lenid` characters."""
    if not 0 <= lenid <= 0xFFF:
        raise ValueError("LENID must be 0-4095")
    lchk = (-((lenid >> 8) + ((lenid >> 4) & 0xF) + (lenid & 0xF))) & 0xF
    return (lchk << 12) | lenid


def checksum(body):
    """CHKSUM of the ASCII bytes between "~" and CHKSUM."""
    return (-sum(body)) & 0xFFFF


def encode(adr, cid2, info=b"", ver=0x20, cid1=CID1_BATTERY):
    """A frame; `info` is raw bytes, sent as upper-case hex text."""
    text = "".join(_hex2(b) for b in info)
    body = (
        _hex2(ver) + _hex2(adr) + _hex2(cid1) + _hex2(cid2) + "%04X" % length_field(len(text))
    ) + text
    body = body.encode()
    return b"~" + body + ("%04X" % checksum(body)).encode() + b"\r"


def request(adr, cid2, ver=0x20):
    """A command for pack `adr`; analog values and alarms carry the pack address as INFO."""
    info = bytes((adr,)) if cid2 in (GET_ANALOG, GET_ALARMS) else b""
    return encode(adr, cid2, info, ver)


def _hexval(text, what):
    n = 0
    for c in text:
        if "0" <= c <= "9":
            d = ord(c) - 48
        elif "A" <= c <= "F":
            d = ord(c) - 55
        elif "a" <= c <= "f":
            d = ord(c) - 87
        else:
            raise ParseError("pylontech: %s %r is not hex" % (what, text))
        n = n * 16 + d
    return n


def decode(frame):
    """Check a frame's framing, LENGTH and CHKSUM; return (ver, adr, cid1, cid2_or_rtn, info
    bytes). ParseError names what was wrong. (The RTN is not judged here; see reply().)"""
    frame = bytes(frame)
    if frame[-1:] == b"\r":
        frame = frame[:-1]
    if len(frame) > MAX_FRAME:
        raise ParseError(
            "pylontech: frame of %d bytes is longer than %d" % (len(frame), MAX_FRAME)
        )
    if len(frame) < 17:
        raise ParseError("pylontech: frame of %d bytes is too short" % len(frame))
    if frame[0] != SOI:
        raise ParseError("pylontech: frame starts with 0x%02x, not '~'" % frame[0])
    for i in range(1, len(frame)):
        if frame[i] < 0x30 or frame[i] > 0x7A:
            raise ParseError("pylontech: byte 0x%02x at offset %d is not hex text" % (frame[i], i))
    text = frame[1:].decode()
    body, chk = text[:-4], text[-4:]
    got = _hexval(chk, "CHKSUM")
    want = checksum(frame[1:-4])
    if got != want:
        raise ParseError("pylontech: bad CHKSUM %04X, computed %04X" % (got, want))
    length = _hexval(body[8:12], "LENGTH")
    lenid = length & 0xFFF
    if length_field(lenid) != length:
        raise ParseError("pylontech: bad LCHKSUM in LENGTH %04X" % length)
    info = body[12:]
    if len(info) != lenid:
        raise ParseError("pylontech: LENID says %d INFO characters, got %d" % (lenid, len(info)))
    if lenid % 2:
        raise ParseError("pylontech: INFO of %d characters is not whole bytes" % lenid)
    data = bytes(_hexval(info[i : i + 2], "INFO") for i in range(0, lenid, 2))
    return (
        _hexval(body[0:2], "VER"),
        _hexval(body[2:4], "ADR"),
        _hexval(body[4:6], "CID1"),
        _hexval(body[6:8], "CID2"),
        data,
    )


def reply(frame, adr):
    """The INFO bytes of a good reply from pack `adr`: PylontechRefused for a non-zero RTN,
    ParseError for a malformed frame or one from another address."""
    _ver, got_adr, cid1, rtn, info = decode(frame)
    if got_adr != adr:
        raise ParseError("pylontech: reply from address %d, asked %d" % (got_adr, adr))
    if cid1 != CID1_BATTERY:
        raise ParseError("pylontech: reply CID1 0x%02X, expected 0x46" % cid1)
    if rtn:
        raise PylontechRefused(adr, rtn)
    return info


class _Reader:
    """Walks INFO bytes; ParseError when they run out."""

    def __init__(self, data, what):
        self.data = data
        self.pos = 0
        self.what = what

    def take(self, n):
        if self.pos + n > len(self.data):
            raise ParseError(
                "pylontech: %s INFO ends at byte %d, need %d more"
                % (self.what, len(self.data), self.pos + n - len(self.data))
            )
        v = 0
        for i in range(n):
            v = (v << 8) | self.data[self.pos + i]
        self.pos += n
        return v

    def signed16(self):
        v = self.take(2)
        return v - 0x10000 if v & 0x8000 else v


def _celsius(raw):
    return round((raw - 2731) / 10.0, 1)


def parse_analog(info):
    """Samples from an analog-values INFO (see the module doc)."""
    r = _Reader(info, "analog")
    r.take(2)  # DATAFLAG, pack address
    cells = r.take(1)
    if not 1 <= cells <= 32:
        raise ParseError("pylontech: %d cells is not a plausible pack" % cells)
    out = []
    for n in range(1, cells + 1):
        out.append(("battery.cell.%d.voltage" % n, r.take(2) / 1000.0, "V"))
    temps = r.take(1)
    if temps > 16:
        raise ParseError("pylontech: %d temperatures is not a plausible pack" % temps)
    for n in range(temps):
        c = _celsius(r.take(2))
        if n == 0:
            out.append(("device.temperature", c, "C"))  # the BMS board
        else:
            out.append(("battery.cell.%d.temperature" % n, c, "C"))
    current = r.signed16() / 10.0
    volts = r.take(2) / 1000.0
    remaining = r.take(2)
    user = r.take(1)
    total = r.take(2)
    cycles = r.take(2)
    if user == 4:  # capacities too large for 16 bits follow as 24-bit mAh
        remaining = r.take(3)
        total = r.take(3)
    out.append(("battery.current", current, "A"))
    out.append(("battery.voltage", volts, "V"))
    out.append(("experimental.pylontech.remaining_ah", remaining / 1000.0, "Ah"))
    out.append(("experimental.pylontech.total_ah", total / 1000.0, "Ah"))
    out.append(("battery.cycles", cycles, ""))
    if total:
        out.append(("battery.charge", round(100.0 * remaining / total, 1), "%"))
    return out


def parse_alarms(info):
    """Samples from an alarm INFO: battery.alarm lists what is not normal ('' when nothing)."""
    r = _Reader(info, "alarm")
    r.take(2)  # DATAFLAG, pack address
    names = []
    cells = r.take(1)
    for n in range(1, cells + 1):
        _state(names, "cell%d_voltage" % n, r.take(1))
    temps = r.take(1)
    for n in range(temps):
        _state(names, "bms_temperature" if n == 0 else "cell%d_temperature" % n, r.take(1))
    for what in ("charge_current", "pack_voltage", "discharge_current"):
        _state(names, what, r.take(1))
    status = []
    while r.pos < len(info):
        status.append("%02X" % r.take(1))
    out = [("battery.alarm", " ".join(names), "")]
    if status:
        out.append(("experimental.pylontech.status", " ".join(status), ""))
    return out


def _state(names, what, code):
    if code not in ALARM_STATES:
        raise ParseError("pylontech: %s alarm state 0x%02X unknown" % (what, code))
    word = ALARM_STATES[code]
    if word:
        names.append(what + "_" + word)
