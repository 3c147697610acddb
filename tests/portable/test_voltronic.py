# Voltronic/Axpert framing (CRC-16/XMODEM with the escaped-byte rule) and the QPIGS reply.
from agent.core.errors import ParseError
from agent.core.registry import is_known, unit_of
from drivers.proto import voltronic as v

from support import raises

BODY = (
    b"(000.0 00.0 230.0 49.9 0161 0119 003 460 57.50 012 100 0069 0014 103.8 57.45 00000"
    b" 00110110 00 00 00856 010"
)


def frame(body):
    return body + v.crc_bytes(body) + b"\r"


def test_qpigs_command_matches_the_documented_bytes():
    assert v.command(b"QPIGS") == b"QPIGS\xb7\xa9\r"
    assert v.crc16_xmodem(b"123456789") == 0x31C3  # the CRC-16/XMODEM check value


def test_crc_bytes_that_look_like_framing_are_incremented():
    # Search payloads whose raw CRC has a 0x0A/0x0D/0x28 byte; each must be sent + 1.
    seen = set()
    for n in range(3000):
        p = b"Q" + str(n).encode()
        crc = v.crc16_xmodem(p)
        hi, lo = crc >> 8, crc & 0xFF
        out = v.crc_bytes(p)
        for raw, sent in ((hi, out[0]), (lo, out[1])):
            if raw in (0x0A, 0x0D, 0x28):
                assert sent == raw + 1
                seen.add(raw)
            else:
                assert sent == raw
        assert b"\r" not in out and b"\n" not in out and b"(" not in out
    assert seen == {0x0A, 0x0D, 0x28}


def test_qpigs_reply_maps_to_registry_metrics():
    d = {m: (val, u) for m, val, u in v.parse_qpigs(frame(BODY))}
    assert d["output.voltage"] == (230.0, "V")
    assert d["output.power"] == (119, "W")
    assert d["battery.voltage"] == (57.5, "V")
    assert d["battery.charge"] == (100.0, "%")
    assert d["solar.voltage"] == (103.8, "V")
    assert d["charger.current"] == (12.0, "A")
    assert d["battery.current"] == (12.0, "A")
    assert d["experimental.inverter.status"] == ("00110110", "")
    for metric, (_val, unit) in d.items():
        assert is_known(metric), metric
        if not metric.startswith("experimental."):
            assert unit == unit_of(metric), metric


def test_bad_replies_are_parse_errors():
    good = frame(BODY)
    bad = (
        (good[:-3] + b"\x00\x00\r", "bad CRC"),
        (b"#" + good[1:], "not '('"),
        (frame(b"(NAK"), "NAK"),
        (frame(b"(000.0 00.0 230.0"), "fields"),
        (frame(BODY.replace(b"57.50", b"57,50")), "battery.voltage"),
        (frame(BODY.replace(b"00110110", b"0011011x")), "status"),
        (frame(b"(\x01" + BODY[2:]), "printable"),
        (b"(\r", "too short"),
    )
    for f, word in bad:
        e = raises(ParseError, v.parse_qpigs, f)
        assert word in str(e), (f, str(e))
