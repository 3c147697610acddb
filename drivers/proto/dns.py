"""A minimal DNS client message codec (portable, RFC 1035): build one A or AAAA query, and check
a reply to it. Bytes in, addresses or ParseError out; no I/O.

Only what a reachability probe needs: "did the resolver give this name an address". A reply
counts as an answer when it carries our id, QR set, RCODE 0 and at least one A/AAAA record; a
reply with an error RCODE (NXDOMAIN, SERVFAIL, REFUSED) is a valid message that says "no", so it
comes back as (rcode, []) and the probe turns it into a failed attempt, not a parse error.
Compression pointers are followed only to skip names, with a hop limit so a looping pointer
cannot spin.
"""

import struct

from agent.core.errors import ParseError

TYPE_A = 1
TYPE_AAAA = 28
CLASS_IN = 1
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
MAX_MESSAGE = 4096  # bigger than any UDP reply we ask for (no EDNS0: 512 bytes)
MAX_HOPS = 16  # compression pointers followed while skipping one name


def encode_name(name):
    """ "www.example.net" -> wire form; raises ParseError for a name DNS cannot carry."""
    out = b""
    for label in name.rstrip(".").split("."):
        raw = label.encode()
        if not 0 < len(raw) < 64:
            raise ParseError("DNS name %r has an empty or over-long label" % name)
        out += bytes([len(raw)]) + raw
    if len(out) > 254:
        raise ParseError("DNS name %r is longer than 253 characters" % name)
    return out + b"\x00"


def query(qid, name, qtype=TYPE_A):
    """One recursive (RD=1) query for `name`."""
    return (
        struct.pack(">HHHHHH", qid & 0xFFFF, 0x0100, 1, 0, 0, 0)
        + encode_name(name)
        + (struct.pack(">HH", qtype, CLASS_IN))
    )


def _skip_name(msg, pos):
    hops = 0
    while True:
        if pos >= len(msg):
            raise ParseError("DNS reply: name runs past the end at %d" % pos)
        n = msg[pos]
        if n == 0:
            return pos + 1
        if n & 0xC0 == 0xC0:  # pointer: the name ends here as far as the cursor goes
            if pos + 2 > len(msg):
                raise ParseError("DNS reply: truncated compression pointer")
            hops += 1
            if hops > MAX_HOPS:
                raise ParseError("DNS reply: compression pointer loop")
            return pos + 2
        if n & 0xC0:
            raise ParseError("DNS reply: bad label length byte 0x%02x" % n)
        pos += 1 + n


def parse_reply(msg, qid):
    """-> (rcode, [address text]) for a reply to query `qid`; raises ParseError for bytes that
    are not a DNS reply to that query."""
    if len(msg) < 12:
        raise ParseError("DNS reply of %d bytes is shorter than a header" % len(msg))
    if len(msg) > MAX_MESSAGE:
        raise ParseError("DNS reply of %d bytes is too long" % len(msg))
    rid, flags, qd, an, _ns, _ar = struct.unpack(">HHHHHH", msg[:12])
    if rid != qid & 0xFFFF:
        raise ParseError("DNS reply id %d does not match query id %d" % (rid, qid & 0xFFFF))
    if not flags & 0x8000:
        raise ParseError("DNS message is a query, not a reply")
    if flags & 0x0200:
        raise ParseError("DNS reply is truncated (TC set)")
    rcode = flags & 0x000F
    pos = 12
    for _ in range(qd):
        pos = _skip_name(msg, pos) + 4
    addrs = []
    for _ in range(an):
        pos = _skip_name(msg, pos)
        if pos + 10 > len(msg):
            raise ParseError("DNS reply: answer record header runs past the end")
        rtype, rclass, _ttl, rdlen = struct.unpack(">HHIH", msg[pos : pos + 10])
        pos += 10
        if pos + rdlen > len(msg):
            raise ParseError("DNS reply: answer data runs past the end")
        data = msg[pos : pos + rdlen]
        pos += rdlen
        if rclass != CLASS_IN:
            continue
        if rtype == TYPE_A and rdlen == 4:
            addrs.append(".".join(str(b) for b in data))
        elif rtype == TYPE_AAAA and rdlen == 16:
            addrs.append(":".join("%x" % v for v in struct.unpack(">8H", data)))
    return rcode, addrs
