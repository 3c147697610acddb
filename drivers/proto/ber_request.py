"""SNMP v1/v2c requests (portable): the manager's one encoder, `encode_request`.

Tags, limits and the decoder are drivers/proto/ber.py's; Response messages and single value
TLVs (what an agent writes) are drivers/proto/ber_agent.py's, which a board never imports.
A bad OID string raises ConfigError (it comes from a profile or a config, not from a device).
"""

from agent.core.errors import ConfigError
from drivers.proto import ber
from drivers.proto.ber import _SUB_LIMIT, INTEGER, MAX_SUBIDS, NULL, OCTET_STRING, OID, SEQUENCE

# OID TLVs remembered by encode_request(), by CPython only: bounded by ber._OID_CACHE_MAX, as
# the OID texts ber.dec_oid() remembers are.
_oid_tlvs = {}  # dotted text -> OID TLV bytes


# The encoder writes backward into one buffer (lengths are known once the content is
# written), parsing OIDs in place: a 20-varbind GET costs a few allocations, not hundreds. On a
# board every allocation is garbage the GC must later walk.
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
        if len(_oid_tlvs) < ber._OID_CACHE_MAX:
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
    cache = ber._OID_CACHE_MAX  # read per call: the cache test turns it off
    j = len(oids)
    while j:
        j -= 1
        vb_end = pos
        pos -= 2  # NULL value: 05 00
        buf[pos] = NULL
        if cache:
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
