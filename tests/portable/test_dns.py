"""drivers/proto/dns.py: the DNS query builder and reply checker, on golden bytes (RFC 1035)."""

import struct

from agent.core.errors import ParseError
from drivers.proto import dns

from support import raises

Q = b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x02ok\x04test\x00\x00\x01\x00\x01"


def reply(flags=0x8180, answers=b"", an=0, qid=0x1234):
    return struct.pack(">HHHHHH", qid, flags, 1, an, 0, 0) + Q[12:] + answers


def test_query_golden_bytes():
    assert dns.query(0x1234, "ok.test") == Q
    assert dns.query(0x1234, "ok.test.") == Q


def test_reply_with_a_and_aaaa_records():
    a = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7])
    aaaa = (
        b"\xc0\x0c"
        + struct.pack(">HHIH", 28, 1, 60, 16)
        + b"\x20\x01\x0d\xb8"
        + b"\0" * 11
        + b"\1"
    )
    assert dns.parse_reply(reply(answers=a + aaaa, an=2), 0x1234) == (
        0,
        ["192.0.2.7", "2001:db8:0:0:0:0:0:1"],
    )


def test_nxdomain_is_an_answer_not_an_error():
    assert dns.parse_reply(reply(flags=0x8183), 0x1234) == (3, [])


def test_bad_replies_raise_parse_error():
    a = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + bytes([192, 0, 2, 7])
    good = reply(answers=a, an=1)
    for bad in (good[:11], good[:-1], reply(qid=0x4321), Q, reply(flags=0x8380)):
        raises(ParseError, dns.parse_reply, bad, 0x1234)
    raises(ParseError, dns.parse_reply, good + b"\0" * 5000, 0x1234)
    raises(ParseError, dns.encode_name, "a..b")
    raises(ParseError, dns.encode_name, "x" * 64 + ".test")
