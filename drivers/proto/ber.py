"""BER for the SNMP v1/v2c subset (portable): encode requests, decode messages, bytes only.

Message = SEQUENCE { INTEGER version (0 = v1, 1 = v2c), OCTET STRING community, PDU }.
PDU = [tag] { INTEGER request-id, INTEGER error-status, INTEGER error-index,
              SEQUENCE OF SEQUENCE { OID name, value } }
(GetBulk puts non-repeaters and max-repetitions where error-status and error-index are.)

Decoded values: INTEGER, Counter32, Gauge32, TimeTicks, Counter64 -> int; OCTET STRING and
Opaque -> bytes; OID -> dotted str; IpAddress -> dotted str; NULL -> None; the v2c exceptions
noSuchObject, noSuchInstance, endOfMibView -> the sentinels NO_SUCH_OBJECT, NO_SUCH_INSTANCE,
END_OF_MIB_VIEW (str subclasses' instances that are never equal to a value an agent can send).

Strictness (the invariants the fuzz tests hold us to):
- every length is checked against the bytes that are left, in its enclosing TLV too; long-form
  lengths take at most 4 bytes; the indefinite form (0x80) is refused;
- a message is at most `max_size` bytes (MAX_MESSAGE by default) and TLVs nest at most
  MAX_DEPTH deep (decode_tree; the message decoder itself never recurses);
- INTEGER is 1..9 bytes, OID sub-ids are < 2**32 and minimal, at most MAX_SUBIDS of them;
- whatever the input, only ParseError comes out: never IndexError, ValueError, RecursionError.
Unsigned types (Counter32, Gauge32, TimeTicks, Counter64) sent as a negative two's complement
number (some agents drop the leading 0x00) are read modulo 2**32 / 2**64, as net-snmp does.
"""

from agent.core.compat import MICROPYTHON
from agent.core.errors import ConfigError, ParseError

# universal and SNMP application tags
INTEGER = 0x02
OCTET_STRING = 0x04
NULL = 0x05
OID = 0x06
SEQUENCE = 0x30
IP_ADDRESS = 0x40
COUNTER32 = 0x41
GAUGE32 = 0x42
TIMETICKS = 0x43
OPAQUE = 0x44
COUNTER64 = 0x46
NO_SUCH_OBJECT_TAG = 0x80
NO_SUCH_INSTANCE_TAG = 0x81
END_OF_MIB_VIEW_TAG = 0x82
# PDU tags
GET = 0xA0
GET_NEXT = 0xA1
RESPONSE = 0xA2
SET = 0xA3
GET_BULK = 0xA5
REPORT = 0xA8
PDU_TAGS = (GET, GET_NEXT, RESPONSE, SET, GET_BULK, 0xA6, 0xA7, REPORT)

V1 = 0
V2C = 1

MAX_MESSAGE = 65507  # the largest UDP payload over IPv4; a board client passes less
MAX_DEPTH = 8  # SNMP needs 4 (message, PDU, varbind list, varbind); Opaque content is not parsed
MAX_SUBIDS = 128  # RFC 2578
MAX_INT_BYTES = 9  # Counter64 with its leading 0x00

ERRORS = (
    "noError",
    "tooBig",
    "noSuchName",
    "badValue",
    "readOnly",
    "genErr",
    "noAccess",
    "wrongType",
    "wrongLength",
    "wrongEncoding",
    "wrongValue",
    "noCreation",
    "inconsistentValue",
    "resourceUnavailable",
    "commitFailed",
    "undoFailed",
    "authorizationError",
    "notWritable",
    "inconsistentName",
)


class _Exception(str):
    """A v2c varbind exception value. Compared by identity; repr is its SNMP name."""


NO_SUCH_OBJECT = _Exception("noSuchObject")
NO_SUCH_INSTANCE = _Exception("noSuchInstance")
END_OF_MIB_VIEW = _Exception("endOfMibView")
_EXCEPTIONS = {
    NO_SUCH_OBJECT_TAG: NO_SUCH_OBJECT,
    NO_SUCH_INSTANCE_TAG: NO_SUCH_INSTANCE,
    END_OF_MIB_VIEW_TAG: END_OF_MIB_VIEW,
}
_UNSIGNED = {COUNTER32: 32, GAUGE32: 32, TIMETICKS: 32, COUNTER64: 64}


def error_name(status):
    return ERRORS[status] if 0 <= status < len(ERRORS) else "error%d" % status


# --- encoding ----------------------------------------------------------------------------------
def _len(n):
    if n < 0x80:
        return bytes((n,))
    body = []
    while n:
        body.append(n & 0xFF)
        n >>= 8
    body.append(0x80 | len(body))
    body.reverse()  # lists, not bytearray: MicroPython's bytearray has no insert/reverse
    return bytes(body)


def tlv(tag, body):
    return bytes((tag,)) + _len(len(body)) + body


def int_body(value):
    """Minimal two's complement, big-endian (at least one byte)."""
    out = []
    while True:
        out.append(value & 0xFF)
        value >>= 8  # arithmetic shift: -1 stays -1
        if (value == 0 and not out[-1] & 0x80) or (value == -1 and out[-1] & 0x80):
            out.reverse()
            return bytes(out)


def enc_int(value, tag=INTEGER):
    return tlv(tag, int_body(value))


def enc_unsigned(value, tag):
    """Counter32/Gauge32/TimeTicks/Counter64: a non-negative number (leading 0x00 if needed)."""
    if value < 0:
        raise ConfigError("unsigned SNMP value is negative: %d" % value)
    return tlv(tag, int_body(value))


def oid_parts(oid):
    """'1.3.6.1.2.1.1.3.0' (a leading dot allowed) -> [1, 3, 6, ...]; ConfigError if invalid."""
    s = oid[1:] if oid[:1] == "." else oid
    parts = []
    for p in s.split("."):
        if not p or not p.isdigit():
            raise ConfigError("bad OID %r" % oid)
        parts.append(int(p))
    if len(parts) < 2 or parts[0] > 2 or (parts[0] < 2 and parts[1] > 39):
        raise ConfigError("bad OID %r" % oid)
    if len(parts) > MAX_SUBIDS or max(parts) >= 1 << 32:
        raise ConfigError("bad OID %r (too long or a sub-id of 2**32 or more)" % oid)
    return parts


def _base128(n, out):
    chunk = [n & 0x7F]
    n >>= 7
    while n:
        chunk.append(0x80 | (n & 0x7F))
        n >>= 7
    chunk.reverse()
    out.extend(chunk)


def enc_oid(oid):
    parts = oid_parts(oid)
    body = bytearray()
    _base128(parts[0] * 40 + parts[1], body)
    for n in parts[2:]:
        _base128(n, body)
    return tlv(OID, bytes(body))


def _varbind(oid, value_tlv=b"\x05\x00"):
    return tlv(SEQUENCE, enc_oid(oid) + value_tlv)


# The request encoder writes backward into one buffer (lengths are known once the content is
# written), parsing OIDs in place: a 20-varbind GET costs a few allocations, not hundreds. On a
# board every allocation is garbage the GC must later walk.
_SUB_LIMIT = 1 << 32


def _put_len(buf, pos, n):
    if n < 0x80:
        pos -= 1
        buf[pos] = n
        return pos
    k = 0
    while n:
        pos -= 1
        buf[pos] = n & 0xFF
        n >>= 8
        k += 1
    pos -= 1
    buf[pos] = 0x80 | k
    return pos


def _put_int(buf, pos, value):
    end = pos
    while True:
        pos -= 1
        b = value & 0xFF
        buf[pos] = b
        value >>= 8
        if (value == 0 and not b & 0x80) or (value == -1 and b & 0x80):
            break
    pos = _put_len(buf, pos, end - pos)
    pos -= 1
    buf[pos] = INTEGER
    return pos


def _put_sub(buf, pos, n):
    pos -= 1
    buf[pos] = n & 0x7F
    n >>= 7
    while n:
        pos -= 1
        buf[pos] = 0x80 | (n & 0x7F)
        n >>= 7
    return pos


def _put_oid(buf, pos, oid):
    """The OID TLV of a dotted str, written backward, parsed without splitting."""
    s = oid.encode() if isinstance(oid, str) else oid
    end = pos
    first = 1 if s and s[0] == 0x2E else 0
    idx = s.count(b".") - first  # index of the last sub-id
    if idx < 1 or idx >= MAX_SUBIDS:
        raise ConfigError("bad OID %r" % (oid,))
    n = 0
    mul = 1
    seen = False
    second = 0
    i = len(s)
    while True:
        i -= 1
        c = s[i] if i >= first else 0x2E
        if 0x30 <= c <= 0x39:
            n += (c - 0x30) * mul
            mul *= 10
            seen = True
            if n >= _SUB_LIMIT:
                raise ConfigError("bad OID %r (a sub-id of 2**32 or more)" % (oid,))
            continue
        if c != 0x2E or not seen:
            raise ConfigError("bad OID %r" % (oid,))
        if idx >= 2:
            pos = _put_sub(buf, pos, n)
        elif idx == 1:
            second = n
        else:
            if n > 2 or (n < 2 and second > 39):
                raise ConfigError("bad OID %r" % (oid,))
            pos = _put_sub(buf, pos, 40 * n + second)
            break
        idx -= 1
        n = 0
        mul = 1
        seen = False
    pos = _put_len(buf, pos, end - pos)
    pos -= 1
    buf[pos] = OID
    return pos


def _oid_tlv(oid):
    """The OID TLV of a requested OID, remembered (a poll asks for the same OIDs every time)."""
    t = _oid_tlvs.get(oid)
    if t is None:
        size = len(oid) + 8  # the body is never longer than the text; the header 2-6 bytes
        tmp = bytearray(size)
        t = bytes(tmp[_put_oid(tmp, size, oid) :])
        if len(_oid_tlvs) < _OID_CACHE_MAX:
            _oid_tlvs[oid] = t
    return t


def _put_header(buf, pos, tag, end):
    pos = _put_len(buf, pos, end - pos)
    pos -= 1
    buf[pos] = tag
    return pos


def encode_request(version, community, pdu_type, request_id, oids, a=0, b=0):
    """A request message. `a`, `b` are error-status/index (0) or, for GET_BULK, non-repeaters
    and max-repetitions. `community` is bytes or str; every varbind value is NULL. A bad OID
    string raises ConfigError."""
    if isinstance(community, str):
        community = community.encode()
    cap = 48 + len(community)
    for oid in oids:
        cap += len(oid) + 12  # OID body <= its text; headers 2-4 each; NULL 2
    buf = bytearray(cap)
    pos = cap
    j = len(oids)
    while j:
        j -= 1
        vb_end = pos
        pos -= 2  # NULL value: 05 00
        buf[pos] = NULL
        if _OID_CACHE_MAX:
            t = _oid_tlv(oids[j])
            buf[pos - len(t) : pos] = t
            pos -= len(t)
        else:
            pos = _put_oid(buf, pos, oids[j])
        pos = _put_header(buf, pos, SEQUENCE, vb_end)
    pos = _put_header(buf, pos, SEQUENCE, cap)
    pos = _put_int(buf, pos, b)
    pos = _put_int(buf, pos, a)
    pos = _put_int(buf, pos, request_id)
    pos = _put_header(buf, pos, pdu_type, cap)
    pdu_start = pos
    pos -= len(community)
    buf[pos:pdu_start] = community
    pos = _put_header(buf, pos, OCTET_STRING, pdu_start)
    pos = _put_int(buf, pos, version)
    pos = _put_header(buf, pos, SEQUENCE, cap)
    return bytes(memoryview(buf)[pos:])


def encode_value(tag, value):
    """A value TLV, for scripted agents in tests and simulators."""
    if tag in _EXCEPTIONS or tag == NULL:
        return bytes((tag, 0))
    if tag == INTEGER:
        return enc_int(value)
    if tag in _UNSIGNED:
        return enc_unsigned(value, tag)
    if tag == OID:
        return enc_oid(value)
    if tag == IP_ADDRESS:
        return tlv(tag, bytes(int(x) for x in value.split(".")))
    if isinstance(value, str):
        value = value.encode()
    return tlv(tag, value)  # OCTET STRING, Opaque


def encode_response(version, community, request_id, varbinds, status=0, index=0):
    """A Response message; varbinds are (oid, tag, value)."""
    if isinstance(community, str):
        community = community.encode()
    vbs = b"".join(_varbind(o, encode_value(t, v)) for o, t, v in varbinds)
    pdu = tlv(
        RESPONSE, enc_int(request_id) + enc_int(status) + enc_int(index) + tlv(SEQUENCE, vbs)
    )
    return tlv(SEQUENCE, enc_int(version) + tlv(OCTET_STRING, community) + pdu)


# --- decoding ----------------------------------------------------------------------------------
def read_tlv(buf, pos, end):
    """(tag, start of content, end of content) of the TLV at buf[pos]; it must end by `end`."""
    if pos + 2 > end:
        raise ParseError("BER: truncated header at byte %d" % pos)
    tag = buf[pos]
    if tag & 0x1F == 0x1F:
        raise ParseError("BER: multi-byte tag 0x%02x at byte %d" % (tag, pos))
    n = buf[pos + 1]
    pos += 2
    if n & 0x80:
        k = n & 0x7F
        if k == 0:
            raise ParseError("BER: indefinite length at byte %d" % (pos - 1))
        if k > 4:
            raise ParseError("BER: %d-byte length at byte %d" % (k, pos - 1))
        if pos + k > end:
            raise ParseError("BER: truncated length at byte %d" % pos)
        n = 0
        for i in range(k):
            n = (n << 8) | buf[pos + i]
        pos += k
    if n > end - pos:
        raise ParseError(
            "BER: length %d at byte %d runs past its end (%d bytes left)" % (n, pos, end - pos)
        )
    return tag, pos, pos + n


def dec_int(buf, start, end, unsigned_bits=0):
    n = end - start
    if n < 1 or n > MAX_INT_BYTES:
        raise ParseError("BER: integer of %d bytes at byte %d" % (n, start))
    v = 0
    for i in range(start, end):
        v = (v << 8) | buf[i]
    if buf[start] & 0x80:
        v -= 1 << (8 * n)
    if unsigned_bits:
        v &= (1 << unsigned_bits) - 1
    return v


# OID texts remembered by dec_oid() and OID TLVs by encode_request(), by CPython only (a board
# reads few OIDs, and its heap is counted in docs/micropython.md): at most 8192 of each, about
# 1.5 MB each at worst; the peers bench's 5 recordings use under 1,000.
_OID_CACHE_MAX = 0 if MICROPYTHON else 8192
_oid_text = {}  # OID body bytes -> dotted text
_oid_tlvs = {}  # dotted text -> OID TLV bytes


def _ndigits(n):
    d = 1
    while n >= 10:
        n //= 10
        d += 1
    return d


def _put_digits(out, end, n):
    while True:
        end -= 1
        out[end] = 0x30 + n % 10
        n //= 10
        if not n:
            return


def _oid_pass(buf, start, end, out):
    """Walk the sub-ids of an OID body; with out=None check it and return the length of its
    dotted text, else write that text into out. Two passes, so the text is built in place."""
    n = 0
    first = True
    fresh = True  # at the first byte of a sub-id
    count = 0
    size = 0
    for i in range(start, end):
        b = buf[i]
        if fresh and b == 0x80:
            raise ParseError("BER: OID sub-id with a leading 0x80 at byte %d" % i)
        n = (n << 7) | (b & 0x7F)
        if n >= _SUB_LIMIT and not (first and n < _SUB_LIMIT + 80):
            raise ParseError("BER: OID sub-id of 2**32 or more at byte %d" % i)
        fresh = not b & 0x80
        if not fresh:
            continue
        if first:
            x = 0 if n < 40 else 1 if n < 80 else 2
            y = n - 40 * x
            if out is not None:
                out[size] = 0x30 + x
                out[size + 1] = 0x2E
                _put_digits(out, size + 2 + _ndigits(y), y)
            size += 2 + _ndigits(y)
            count = 2
            first = False
        else:
            d = _ndigits(n)
            if out is not None:
                out[size] = 0x2E
                _put_digits(out, size + 1 + d, n)
            size += 1 + d
            count += 1
        n = 0
        if count > MAX_SUBIDS:
            raise ParseError("BER: OID of more than %d sub-ids" % MAX_SUBIDS)
    if not fresh:
        raise ParseError("BER: OID ends inside a sub-id at byte %d" % (end - 1))
    return size


def dec_oid(buf, start, end):
    """The dotted text of the OID body buf[start:end]."""
    if start >= end:
        raise ParseError("BER: empty OID at byte %d" % start)
    if _OID_CACHE_MAX:
        # A device answers the same OIDs every poll: their text is remembered by their bytes
        # (each was checked when first decoded). Bounded: past the limit, decoded every time.
        key = bytes(buf[start:end])
        text = _oid_text.get(key)
        if text is None:
            text = _dec_oid(buf, start, end)
            if len(_oid_text) < _OID_CACHE_MAX:
                _oid_text[key] = text
        return text
    return _dec_oid(buf, start, end)


def _dec_oid(buf, start, end):
    out = bytearray(_oid_pass(buf, start, end, None))
    _oid_pass(buf, start, end, out)
    return str(out, "ascii")


def dec_value(buf, tag, start, end):
    """A varbind value from its content buf[start:end]."""
    if tag == INTEGER:
        return dec_int(buf, start, end)
    if tag in _UNSIGNED:
        return dec_int(buf, start, end, _UNSIGNED[tag])
    if tag == OCTET_STRING or tag == OPAQUE:
        return bytes(buf[start:end])
    if tag == OID:
        return dec_oid(buf, start, end)
    if tag == IP_ADDRESS:
        if end - start != 4:
            raise ParseError("BER: IpAddress of %d bytes at byte %d" % (end - start, start))
        return "%d.%d.%d.%d" % tuple(buf[start:end])
    if tag == NULL or tag in _EXCEPTIONS:
        if end != start:
            raise ParseError("BER: tag 0x%02x with content at byte %d" % (tag, start))
        return _EXCEPTIONS.get(tag)
    raise ParseError("BER: unexpected value tag 0x%02x at byte %d" % (tag, start))


def _expect(buf, pos, end, want, what):
    tag, start, stop = read_tlv(buf, pos, end)
    if tag != want:
        raise ParseError(
            "BER: %s: expected tag 0x%02x, got 0x%02x at byte %d" % (what, want, tag, pos)
        )
    return start, stop


class Message:
    """A decoded SNMP message. varbinds: [(oid str, tag, value)]."""

    __slots__ = ("version", "community", "pdu", "request_id", "status", "index", "varbinds")

    def __init__(self, version, community, pdu, request_id, status, index, varbinds):
        self.version = version
        self.community = community
        self.pdu = pdu
        self.request_id = request_id
        self.status = status
        self.index = index
        self.varbinds = varbinds


def decode_message(data, max_size=MAX_MESSAGE):
    """Decode one SNMP v1/v2c message; raises ParseError only."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise ParseError("BER: expected bytes, got %s" % type(data).__name__)
    size = len(data)
    if size > max_size:
        raise ParseError("BER: message of %d bytes exceeds %d" % (size, max_size))
    buf = data
    start, end = _expect(buf, 0, size, SEQUENCE, "message")
    if end != size:
        raise ParseError("BER: %d bytes after the message" % (size - end))
    s, e = _expect(buf, start, end, INTEGER, "version")
    version = dec_int(buf, s, e)
    if version not in (V1, V2C):
        raise ParseError("SNMP: unsupported version %d" % version)
    s, e = _expect(buf, e, end, OCTET_STRING, "community")
    community = bytes(buf[s:e])
    pdu, s, pend = read_tlv(buf, e, end)
    if pdu not in PDU_TAGS:
        raise ParseError("SNMP: unknown PDU tag 0x%02x" % pdu)
    if pend != end:
        raise ParseError("BER: %d bytes after the PDU" % (end - pend))
    s, e = _expect(buf, s, pend, INTEGER, "request-id")
    request_id = dec_int(buf, s, e)
    s, e = _expect(buf, e, pend, INTEGER, "error-status")
    status = dec_int(buf, s, e)
    s, e = _expect(buf, e, pend, INTEGER, "error-index")
    index = dec_int(buf, s, e)
    pos, vend = _expect(buf, e, pend, SEQUENCE, "varbind list")
    if vend != pend:
        raise ParseError("BER: %d bytes after the varbind list" % (pend - vend))
    varbinds = []
    while pos < vend:
        s, e = _expect(buf, pos, vend, SEQUENCE, "varbind")
        os_, oe = _expect(buf, s, e, OID, "varbind name")
        oid = dec_oid(buf, os_, oe)
        tag, vs, ve = read_tlv(buf, oe, e)
        if ve != e:
            raise ParseError("BER: %d bytes after the value of %s" % (e - ve, oid))
        varbinds.append((oid, tag, dec_value(buf, tag, vs, ve)))
        pos = e
    return Message(version, community, pdu, request_id, status, index, varbinds)


def decode_tree(data, max_depth=MAX_DEPTH, max_size=MAX_MESSAGE):
    """Any BER as nested (tag, value) with constructed content as a list: for debugging and
    Opaque payloads. Depth is bounded by max_depth (ParseError beyond)."""
    if len(data) > max_size:
        raise ParseError("BER: %d bytes exceeds %d" % (len(data), max_size))
    out = []
    _tree(data, 0, len(data), 0, max_depth, out)
    return out


def _tree(buf, pos, end, depth, max_depth, out):
    if depth >= max_depth:
        raise ParseError("BER: nesting deeper than %d" % max_depth)
    while pos < end:
        tag, s, e = read_tlv(buf, pos, end)
        if tag & 0x20:
            inner = []
            _tree(buf, s, e, depth + 1, max_depth, inner)
            out.append((tag, inner))
        else:
            out.append((tag, dec_value(buf, tag, s, e) if tag in _KNOWN else bytes(buf[s:e])))
        pos = e


_KNOWN = (
    (INTEGER, OCTET_STRING, NULL, OID, IP_ADDRESS, OPAQUE) + tuple(_UNSIGNED) + tuple(_EXCEPTIONS)
)


def text(value):
    """OCTET STRING bytes as str the way the host driver (pysnmp) gives them: UTF-8, each bad
    sequence as U+FFFD. MicroPython lacks the 'replace' handler: there each bad byte becomes
    U+FFFD (a truncated multi-byte sequence may give more than one)."""
    try:
        return value.decode("utf-8", "replace")
    except Exception:
        pass
    out = []
    i = 0
    n = len(value)
    while i < n:
        b = value[i]
        if b < 0x80:
            out.append(chr(b))
            i += 1
            continue
        k = 2 if 0xC2 <= b < 0xE0 else 3 if 0xE0 <= b < 0xF0 else 4 if 0xF0 <= b < 0xF5 else 0
        ch = None
        if k and i + k <= n:
            try:
                ch = bytes(value[i : i + k]).decode()
            except Exception:
                ch = None
        if ch is None:
            out.append("\ufffd")
            i += 1
        else:
            out.append(ch)
            i += k
    return "".join(out)
