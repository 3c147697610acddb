"""BER for the SNMP v1/v2c subset (portable): the tags, and the decoder of messages; bytes only.
Requests are encoded by drivers/proto/ber_request.py; value TLVs, Response messages and any BER
as a tree (the agent's side and debugging, which a board never needs) by ber_agent.py.

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
  MAX_DEPTH deep (ber_agent.decode_tree; the message decoder itself never recurses);
- INTEGER is 1..9 bytes, OID sub-ids are < 2**32 and minimal, at most MAX_SUBIDS of them;
- whatever the input, only ParseError comes out: never IndexError, ValueError, RecursionError.
Unsigned types (Counter32, Gauge32, TimeTicks, Counter64) sent as a negative two's complement
number (some agents drop the leading 0x00) are read modulo 2**32 / 2**64, as net-snmp does.
"""

from agent.core.compat import MICROPYTHON
from agent.core.errors import ParseError

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


# OID texts remembered by dec_oid() and OID TLVs by ber_request.encode_request(), by CPython
# only (a board reads few OIDs, and its heap is counted in docs/micropython.md): at most 8192 of
# each, about 1.5 MB each at worst; the peers bench's 5 recordings use under 1,000.
_OID_CACHE_MAX = 0 if MICROPYTHON else 8192
_oid_text = {}  # OID body bytes -> dotted text
_SUB_LIMIT = 1 << 32


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
