"""Victron VE.Direct text protocol (portable): split a byte stream into checksummed blocks, and
turn a block into samples.

The device talks without being asked, about once a second: blocks of "\\r\\n<label>\\t<value>"
lines, the last one "\\r\\nChecksum\\t<one byte>". The sum of every byte of a block, from its
leading "\\r\\n" through the checksum byte, is 0 mod 256. HEX-protocol frames (":" ... "\\n") may
be interleaved anywhere except right after "Checksum\\t"; they are not part of the checksum and
are dropped here.

Resynchronising: a reader that starts mid-stream does not know where a block begins. It hunts
for "\\r\\nChecksum\\t" + one byte: the next block starts right after it. A false start (garbage
that happens to contain the marker, a block cut short) fails the checksum; the reader stays on
the block grid, so one bad block costs one block, never the stream. A run of MAX_BLOCK bytes
without a marker drops the reader back to hunting.

Units on the wire (Victron "VE.Direct Protocol" 3.3x): V, VS, VM, VPV mV; I, IL mA; PPV, P W;
SOC per mille; CE mAh; TTG minutes (-1: infinite); T C; DM per mille. "---" (or any value the
device cannot give yet) for a numeric label means unknown: no sample, never a zero.
"""

from agent.core.errors import ParseError

MARK = b"\r\nChecksum\t"
MAX_BLOCK = 1024  # real blocks are under 300 bytes (about 22 lines of at most 9 + 33 chars)
MAX_FIELDS = 40

# label -> (metric, unit, divisor). Integer on the wire; value / divisor in the unit.
NUMERIC = {
    "V": ("battery.voltage", "V", 1000),
    "I": ("battery.current", "A", 1000),
    "P": ("battery.power", "W", 1),
    "T": ("battery.temperature", "C", 1),
    "VPV": ("solar.voltage", "V", 1000),
    "PPV": ("solar.power", "W", 1),
    "IL": ("load.current", "A", 1000),
    "SOC": ("battery.charge", "%", 10),
    "CE": ("experimental.vedirect.consumed", "Ah", 1000),
    "VS": ("experimental.vedirect.aux_voltage", "V", 1000),
    "VM": ("experimental.vedirect.midpoint_voltage", "V", 1000),
    "DM": ("experimental.vedirect.midpoint_deviation", "%", 10),
    "ERR": ("experimental.vedirect.error", "", 0),  # divisor 0: kept as int
    "H20": ("experimental.vedirect.yield_today", "kWh", 100),
}

# CS (state of operation) -> charger.status words.
CHARGE_STATES = {
    0: "off",
    1: "low_power",
    2: "fault",
    3: "bulk",
    4: "absorption",
    5: "float",
    6: "storage",
    7: "equalise",
    9: "inverting",
    11: "power_supply",
    245: "starting",
    246: "absorption",  # repeated absorption
    247: "equalise",  # auto equalise / recondition
    248: "battery_safe",
    252: "external_control",
}

# AR (alarm reason) bits -> names, joined into battery.alarm.
ALARM_BITS = (
    (1, "low_voltage"),
    (2, "high_voltage"),
    (4, "low_soc"),
    (8, "low_starter_voltage"),
    (16, "high_starter_voltage"),
    (32, "low_temperature"),
    (64, "high_temperature"),
    (128, "mid_voltage"),
    (256, "overload"),
    (512, "dc_ripple"),
    (1024, "low_ac_out_voltage"),
    (2048, "high_ac_out_voltage"),
    (4096, "short_circuit"),
    (8192, "bms_lockout"),
)


class Stream:
    """Cuts a VE.Direct byte stream, fed in any chunks, into checksummed blocks.

    feed(data) returns the blocks completed by `data`, each the block's bytes as sent (checksum
    byte included), all with a good checksum. Counters say what was thrown away."""

    def __init__(self):
        self._pending = b""
        self.synced = False  # True once a block boundary is known
        self.blocks = 0  # good blocks returned
        self.bad_checksums = 0  # candidate blocks whose sum was not 0
        self.oversized = 0  # runs of MAX_BLOCK bytes without a marker (back to hunting)
        self.skipped = 0  # bytes dropped while hunting for a boundary
        self.hex_frames = 0  # HEX-protocol frames removed from blocks

    def reset(self):
        """Forget everything buffered (after a flush of the port): hunt again."""
        self._pending = b""
        self.synced = False

    def feed(self, data):
        # bytes, not a bytearray: MicroPython's bytearray has no slice deletion.
        buf = self._pending + bytes(data)
        out = []
        while True:
            i = buf.find(MARK)
            if not self.synced:
                if i < 0 or i + len(MARK) >= len(buf):
                    # Keep what could still be the start of a marker (or a marker + its byte).
                    keep = i if i >= 0 else max(0, len(buf) - len(MARK) + 1)
                    self.skipped += keep
                    self._pending = buf[keep:]
                    return out
                end = i + len(MARK) + 1
                self.skipped += end
                buf = buf[end:]
                self.synced = True
                continue
            if i < 0 or i + len(MARK) >= len(buf):
                if len(buf) > MAX_BLOCK:
                    self.oversized += 1
                    self.synced = False
                    continue
                self._pending = buf
                return out
            end = i + len(MARK) + 1
            block = self._strip_hex(buf[:end])
            buf = buf[end:]
            if block is not None and len(block) <= MAX_BLOCK and sum(block) & 0xFF == 0:
                self.blocks += 1
                out.append(block)
            else:
                self.bad_checksums += 1

    def _strip_hex(self, block):
        """The block without HEX frames (":" to "\\n"), or None if one is not terminated. The
        checksum byte (last) is never a HEX start."""
        if b":" not in block[:-1]:
            return block
        out = bytearray()
        i = 0
        body = len(block) - 1
        while i < body:
            j = block.find(b":", i, body)
            if j < 0:
                out += block[i:body]
                break
            out += block[i:j]
            k = block.find(b"\n", j, body)
            if k < 0:
                return None
            self.hex_frames += 1
            i = k + 1
        out += block[body:]
        return bytes(out)


def fields(block):
    """{label: value} of a checksummed block (the Checksum line left out). ParseError when a
    line has no tab, a label is not printable ASCII or a value is not ASCII."""
    block = bytes(block)
    if not block.startswith(b"\r\n") or MARK not in block:
        raise ParseError("vedirect: a block must start with CR LF and end with Checksum")
    lines = block[2 : -(len(MARK) + 1)].split(b"\r\n") if len(block) > len(MARK) + 1 else []
    if len(lines) > MAX_FIELDS:
        raise ParseError("vedirect: block of %d lines, more than %d" % (len(lines), MAX_FIELDS))
    out = {}
    for line in lines:
        tab = line.find(b"\t")
        if tab <= 0:
            raise ParseError("vedirect: line %r has no label and tab" % line[:40])
        label, value = line[:tab], line[tab + 1 :]
        for b in label:
            if b <= 0x20 or b > 0x7E:
                raise ParseError("vedirect: label %r is not printable ASCII" % label[:20])
        for b in value:
            if b < 0x20 or b > 0x7E:
                raise ParseError("vedirect: value of %s holds byte 0x%02x" % (label.decode(), b))
        out[label.decode()] = value.decode()
    return out


def _int(label, text):
    """The integer a numeric label holds, or None when the device says it does not know."""
    body = text[1:] if text[:1] == "-" else text
    if not body:
        raise ParseError("vedirect: %s is empty" % label)
    if body.strip("-") == "":
        return None  # "---": not known (yet)
    for c in body:
        if c < "0" or c > "9":
            raise ParseError("vedirect: %s value %r is not a number" % (label, text))
    return int(text)


def samples(f):
    """Samples from a block's fields (see fields()). Labels with no mapping are left out."""
    out = []
    for label in NUMERIC:
        if label not in f:
            continue
        metric, unit, div = NUMERIC[label]
        value = _int(label, f[label])
        if value is None:
            continue
        out.append((metric, value if div == 0 else round(value / div, 3), unit))
    if "TTG" in f:
        minutes = _int("TTG", f["TTG"])
        if minutes is not None and minutes >= 0:  # -1: infinite (not discharging)
            out.append(("battery.runtime", minutes * 60, "s"))
    if "CS" in f:
        code = _int("CS", f["CS"])
        if code is not None:
            if code not in CHARGE_STATES:
                raise ParseError("vedirect: CS state %d unknown" % code)
            out.append(("charger.status", CHARGE_STATES[code], ""))
    if "LOAD" in f:
        out.append(("experimental.vedirect.load_on", _on_off("LOAD", f["LOAD"]), ""))
    if "Alarm" in f or "AR" in f:
        reasons = _int("AR", f["AR"]) if "AR" in f else 0
        names = [name for bit, name in ALARM_BITS if reasons and reasons & bit]
        if not names and "Alarm" in f and _on_off("Alarm", f["Alarm"]):
            names.append("alarm")
        out.append(("battery.alarm", " ".join(names), ""))
    return out


def _on_off(label, text):
    if text == "ON":
        return True
    if text == "OFF":
        return False
    raise ParseError("vedirect: %s is %r, not ON or OFF" % (label, text))


def block(pairs):
    """Build a block (bytes, checksum included) from [(label, value)] (emulators, tests)."""
    body = b"".join(b"\r\n" + k.encode() + b"\t" + v.encode() for k, v in pairs) + MARK
    return body + bytes(((-sum(body)) & 0xFF,))
