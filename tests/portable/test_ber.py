# BER for SNMP: golden encodings checked by hand (each byte explained), decoding of every type,
# and strictness: every malformed input is a ParseError that says what was wrong.
import gc

from agent.core.errors import ConfigError, ParseError
from drivers.proto import ber, ber_agent, ber_request

from support import raises

SYS_UPTIME = "1.3.6.1.2.1.1.3.0"
HC_IN_1 = "1.3.6.1.2.1.31.1.1.1.6.1"


def h(s):
    return bytes.fromhex(s.replace(" ", ""))


# GetRequest (v2c) for sysUpTime.0, community "public", request-id 1:
#   30 26                      message SEQUENCE, 38 bytes
#     02 01 01                 version 1 = v2c
#     04 06 "public"           community
#     a0 19                    GetRequest PDU, 25 bytes
#       02 01 01               request-id 1
#       02 01 00  02 01 00     error-status 0, error-index 0
#       30 0e                  varbind list, 14 bytes
#         30 0c                varbind, 12 bytes
#           06 08 2b 06 01 02 01 01 03 00   OID: 2b = 1*40+3, then 6 1 2 1 1 3 0
#           05 00              NULL
GET_SYSUPTIME = h(
    "30 26 02 01 01 04 06 70 75 62 6c 69 63 a0 19 02 01 01 02 01 00 02 01 00"
    " 30 0e 30 0c 06 08 2b 06 01 02 01 01 03 00 05 00"
)

# Response (v2c) request-id 0x1234 with ifHCInOctets.1 = 2**64 - 1 (Counter64, tag 0x46):
#   30 31 | 02 01 01 | 04 06 public | a2 24 | 02 02 12 34 | 02 01 00 | 02 01 00 | 30 18 |
#   30 16 | 06 0b 2b 06 01 02 01 1f 01 01 01 06 01 (31 = 0x1f) | 46 09 00 ff*8 (leading 00:
#   unsigned)
RESP_COUNTER64 = h(
    "30 33 02 01 01 04 06 70 75 62 6c 69 63 a2 26 02 02 12 34 02 01 00 02 01 00"
    " 30 1a 30 18 06 0b 2b 06 01 02 01 1f 01 01 01 06 01 46 09 00 ff ff ff ff ff ff ff ff"
)


def test_golden_get_request():
    assert ber_request.encode_request(ber.V2C, "public", ber.GET, 1, [SYS_UPTIME]) == GET_SYSUPTIME
    m = ber.decode_message(GET_SYSUPTIME)
    assert (m.version, m.community, m.pdu, m.request_id) == (1, b"public", ber.GET, 1)
    assert m.varbinds == [(SYS_UPTIME, ber.NULL, None)]


def test_golden_response_with_counter64():
    m = ber.decode_message(RESP_COUNTER64)
    assert m.pdu == ber.RESPONSE and m.request_id == 0x1234 and m.status == 0
    assert m.varbinds == [(HC_IN_1, ber.COUNTER64, (1 << 64) - 1)]
    built = ber_agent.encode_response(
        1, "public", 0x1234, [(HC_IN_1, ber.COUNTER64, (1 << 64) - 1)]
    )
    assert built == RESP_COUNTER64


def test_integers_two_complement_minimal():
    cases = (
        (0, "02 01 00"),
        (127, "02 01 7f"),
        (128, "02 02 00 80"),
        (256, "02 02 01 00"),
        (-1, "02 01 ff"),
        (-128, "02 01 80"),
        (-129, "02 02 ff 7f"),
        (-256, "02 02 ff 00"),
        (-2147483648, "02 04 80 00 00 00"),
        (2147483647, "02 04 7f ff ff ff"),
    )
    for value, wire in cases:
        assert ber_agent.enc_int(value) == h(wire), value
        b = h(wire)
        assert ber.dec_int(b, 2, len(b)) == value


def test_unsigned_types_read_modulo_their_width():
    # some agents drop the leading 00: ff ff ff ff as Counter32 is 4294967295, not -1
    b = h("ff ff ff ff")
    assert ber.dec_value(b, ber.COUNTER32, 0, 4) == 4294967295
    assert ber.dec_value(b, ber.INTEGER, 0, 4) == -1
    assert ber.dec_value(h("01 00 00 00 00"), ber.COUNTER64, 0, 5) == 1 << 32
    assert ber_agent.encode_value(ber.GAUGE32, 4294967295) == h("42 05 00 ff ff ff ff")
    assert ber_agent.encode_value(ber.TIMETICKS, 0) == h("43 01 00")


def test_oids_with_large_sub_ids():
    cases = (
        ("1.3.6.1.4.1.318", "06 07 2b 06 01 04 01 82 3e"),  # 318 = 2*128 + 62
        ("1.3.6.1.4.1.12148.9", "06 08 2b 06 01 04 01 de 74 09"),  # 12148 = 94*128 + 116: de 74
        ("1.3.4294967295", "06 06 2b 8f ff ff ff 7f"),  # 2**32 - 1
        ("2.999.1", "06 03 88 37 01"),  # first arc 2: 80 + 999 = 1079 = 8*128 + 55
        ("0.0", "06 01 00"),
    )
    for oid, wire in cases:
        assert ber_agent.enc_oid(oid) == h(wire), oid
        b = h(wire)
        assert ber.dec_oid(b, 2, len(b)) == oid
    assert ber_agent.enc_oid(".1.3.6") == ber_agent.enc_oid("1.3.6")
    for bad in ("", "1", "1.x", "3.1", "1.40", "1.3.4294967296", "1..3", "1.3.", ".", "1.3.6\xe9"):
        raises(ConfigError, ber_agent.enc_oid, bad)
        raises(ConfigError, ber_request.encode_request, 1, "c", ber.GET, 1, ["1.3.6.1", bad])
    # the request encoder parses OIDs in place: same bytes as the simple encoder
    for oid, _wire in cases:
        assert ber_request.encode_request(1, "c", ber.GET, 1, [oid])[
            -len(_wire.split()) - 2 : -2
        ] == h(_wire)


def test_long_form_lengths():
    assert ber_agent.tlv(0x04, b"a" * 127)[:2] == h("04 7f")
    assert ber_agent.tlv(0x04, b"a" * 128)[:3] == h("04 81 80")
    assert ber_agent.tlv(0x04, b"a" * 200)[:3] == h("04 81 c8")
    assert ber_agent.tlv(0x04, b"a" * 300)[:4] == h("04 82 01 2c")
    long = "x" * 300
    wire = ber_agent.encode_response(1, "public", 9, [(SYS_UPTIME, ber.OCTET_STRING, long)])
    # varbind 4+10+304 = 318, list 322, PDU 9+322 -> 4+331 = 335, message 3+8+335 = 346 = 0x15a
    assert wire[:4] == h("30 82 01 5a")
    assert ber.decode_message(wire).varbinds[0][2] == long.encode()
    # non-minimal long form (81 05) is legal BER and read
    assert ber.read_tlv(h("04 81 05 61 62 63 64 65"), 0, 8) == (4, 3, 8)


def test_every_value_type():
    vbs = [
        ("1.3.6.1.2.1.1.1.0", ber.OCTET_STRING, b"Linux \xff"),
        ("1.3.6.1.2.1.1.2.0", ber.OID, "1.3.6.1.4.1.8072.3.2.10"),
        ("1.3.6.1.2.1.4.20.1.1.1", ber.IP_ADDRESS, "192.168.1.254"),
        ("1.3.6.1.2.1.2.2.1.10.1", ber.COUNTER32, 4000000000),
        ("1.3.6.1.2.1.2.2.1.5.1", ber.GAUGE32, 1000000000),
        (SYS_UPTIME, ber.TIMETICKS, 123456),
        ("1.3.6.1.4.1.2021.10.1.6.1", ber.OPAQUE, b"\x9f\x78\x04\x3f\x80\x00\x00"),
        ("1.3.6.1.2.1.33.1.2.2.0", ber.INTEGER, -1),
        ("1.3.6.1.2.1.33.1.2.3.0", ber.NO_SUCH_OBJECT_TAG, None),
        ("1.3.6.1.2.1.33.1.2.4.0", ber.NO_SUCH_INSTANCE_TAG, None),
        ("1.3.6.1.2.1.33.1.2.5.0", ber.END_OF_MIB_VIEW_TAG, None),
        ("1.3.6.1.2.1.33.1.2.6.0", ber.NULL, None),
    ]
    m = ber.decode_message(ber_agent.encode_response(0, b"c", 5, vbs, status=2, index=3))
    assert m.version == 0 and m.status == 2 and m.index == 3
    assert ber.error_name(m.status) == "noSuchName" and ber.error_name(99) == "error99"
    got = m.varbinds
    for i in range(8):
        assert got[i] == vbs[i], i
    assert got[8][2] is ber.NO_SUCH_OBJECT
    assert got[9][2] is ber.NO_SUCH_INSTANCE
    assert got[10][2] is ber.END_OF_MIB_VIEW
    assert got[11][2] is None
    assert ber.NO_SUCH_INSTANCE != "" and repr(ber.END_OF_MIB_VIEW) == "'endOfMibView'"


def test_get_bulk_request_fields():
    wire = ber_request.encode_request(1, "public", ber.GET_BULK, 7, ["1.3.6.1.2.1.2.2.1.8"], 0, 30)
    m = ber.decode_message(wire)
    assert m.pdu == ber.GET_BULK and (m.status, m.index) == (0, 30)
    assert wire[13:15] == h("a5 1a")  # 3 + 3 + 3 (02 01 1e) + list 2+15 = 26


def test_text_is_utf8_with_replacement():
    assert ber.text(b"UPS \xc3\xa9") == "UPS \u00e9"
    assert ber.text(b"ab\xffc") == "ab\ufffdc"
    assert ber.text(b"") == ""


def parse_error(data, *args):
    e = raises(ParseError, ber.decode_message, data, *args)
    return str(e)


def test_malformed_messages_are_parse_errors():
    good = GET_SYSUPTIME
    for n in range(len(good)):  # every truncation
        parse_error(good[:n])
    assert "after the message" in parse_error(good + b"\x00")
    assert "indefinite" in parse_error(h("30 80") + good[2:])
    assert "5-byte length" in parse_error(h("30 85 00 00 00 00 26") + good[2:])
    assert "runs past" in parse_error(h("30 7f") + good[2:])
    assert "version" in parse_error(h("30 03 04 01 00"))
    assert "unsupported version 3" in parse_error(h("30 03 02 01 03"))
    assert "exceeds 16" in parse_error(good, 16)
    parse_error("not bytes")
    # a varbind whose value claims more than the varbind holds
    bad = bytearray(good)
    bad[-1] = 1
    assert "runs past" in parse_error(bytes(bad))
    # NULL with content, IpAddress of 3 bytes, an empty INTEGER, a 10-byte INTEGER
    for value in ("05 01 00", "40 03 01 02 03", "02 00", "02 0a" + " 01" * 10):
        vb = ber_agent.tlv(0x30, ber_agent.enc_oid(SYS_UPTIME) + h(value))
        wire = ber_agent.tlv(
            0x30,
            h("02 01 01 04 01 70")
            + ber_agent.tlv(0xA2, h("02 01 01 02 01 00 02 01 00") + ber_agent.tlv(0x30, vb)),
        )
        parse_error(wire)
    assert wire  # the loop ran


def test_malformed_oids():
    for wire, why in (
        ("", "empty"),
        ("2b 86", "ends inside"),  # continuation bit on the last byte
        ("2b 80 01", "leading 0x80"),  # non-minimal sub-id
        ("2b 90 80 80 80 00", "2**32"),  # 2**32
    ):
        b = h(wire)
        assert why in str(raises(ParseError, ber.dec_oid, b, 0, len(b))), wire
    many = h("2b" + " 01" * 200)
    raises(ParseError, ber.dec_oid, many, 0, len(many))


def test_remembered_oids_give_what_parsing_gives():
    # On CPython the codec remembers OID texts and TLVs (a poll asks for the same OIDs every
    # time); what it remembers must be what parsing gives, and a bad OID is refused every time.
    oids = [SYS_UPTIME, HC_IN_1, "1.3.6.1.4.1.12148.9", "1.3.4294967295", ".1.3.6.1.2.1.1.5.0"]
    limit = ber._OID_CACHE_MAX
    try:
        ber._OID_CACHE_MAX = 0
        parsed = ber_request.encode_request(1, "c", ber.GET, 7, oids)
        answer = ber_agent.encode_response(
            1, "c", 7, [(o.lstrip("."), ber.INTEGER, 5) for o in oids]
        )
        decoded = [v[0] for v in ber.decode_message(answer).varbinds]
    finally:
        ber._OID_CACHE_MAX = limit
    for _ in range(2):  # the first fills the memory, the second answers from it
        assert ber_request.encode_request(1, "c", ber.GET, 7, oids) == parsed
        assert [v[0] for v in ber.decode_message(answer).varbinds] == decoded
        raises(ConfigError, ber_request.encode_request, 1, "c", ber.GET, 1, ["1.3..6"])
        bad = h("2b 80 01")
        raises(ParseError, ber.dec_oid, bad, 0, len(bad))
    assert decoded == [o.lstrip(".") for o in oids]


def test_deep_nesting_is_bounded():
    inner = h("02 01 05")
    for _ in range(ber.MAX_DEPTH - 1):
        inner = ber_agent.tlv(0x30, inner)
    assert ber_agent.decode_tree(inner)  # MAX_DEPTH - 1 constructed levels + a primitive: fine
    deeper = ber_agent.tlv(0x30, inner)
    assert "nesting deeper" in str(raises(ParseError, ber_agent.decode_tree, deeper))
    # 1000 levels: a ParseError at the limit, never a RecursionError
    blob = h("30 00")
    for _ in range(1000):
        blob = ber_agent.tlv(0x30, blob)
    raises(ParseError, ber_agent.decode_tree, blob)
    raises(ParseError, ber.decode_message, blob)


def _twenty():
    return ["1.3.6.1.2.1.33.1.%d.%d.0" % (1 + i // 8, i % 8 + 1) for i in range(20)]


def test_heap_per_request():
    """Bytes allocated to encode a 20-varbind GET and decode its response (MicroPython:
    gc.mem_alloc with the GC off; CPython: the same work, checked for the round trip)."""
    oids = _twenty()
    vbs = [(o, ber.INTEGER, 1000 + i) for i, o in enumerate(oids)]
    reply = ber_agent.encode_response(1, "public", 77, vbs)
    measure = hasattr(gc, "mem_alloc")
    if measure:
        gc.collect()
        gc.disable()
        before = gc.mem_alloc()
    req = ber_request.encode_request(1, "public", ber.GET, 77, oids)
    m = ber.decode_message(reply)
    if measure:
        used = gc.mem_alloc() - before
        gc.enable()
        print(
            "HEAP-SNMP ber 20-varbind GET: encode+decode %d B (request %d B, reply %d B)"
            % (used, len(req), len(reply))
        )
        assert used < 16384, used  # 7.3 KB measured on MicroPython 1.27
    assert len(m.varbinds) == 20 and m.varbinds[19] == vbs[19]
    assert len(req) > 20 * 14
