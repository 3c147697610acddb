"""The agent's side of SNMP v1/v2c BER (portable, host use): value TLVs and Response messages
for scripted agents, emulators and fuzz tests, and `decode_tree` for debugging and Opaque
payloads. The manager's side (drivers/proto/ber.py, ber_request.py) never imports this module,
so a board does not carry it.

These encoders favour plain code over allocations (the request encoder is the tuned one); a bad
OID string or a negative unsigned value raises ConfigError.
"""

from agent.core.errors import ConfigError, ParseError
from drivers.proto.ber import (
    _EXCEPTIONS,
    _UNSIGNED,
    INTEGER,
    IP_ADDRESS,
    MAX_DEPTH,
    MAX_MESSAGE,
    MAX_SUBIDS,
    NULL,
    OCTET_STRING,
    OID,
    OPAQUE,
    RESPONSE,
    SEQUENCE,
    dec_value,
    read_tlv,
)


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


# --- decoding any BER ---------------------------------------------------------------------------
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
