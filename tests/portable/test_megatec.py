# Megatec Q1 parser: golden frames (PROTOCOLS.md, NUT blazer_ser's test replies), every rejection.
from agent.core.errors import ParseError
from agent.core.registry import is_known, unit_of
from drivers.proto import megatec as m

from support import raises

GOLDEN_Q1 = b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r"
# NUT blazer_ser.c's TESTING replies: a standby unit in boost, per-cell battery, 24 V rating.
NUT_Q1 = b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r"
NUT_F = b"#230.0 000 024.0 50.0\r"
NUT_I = b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r"


def as_dict(samples):
    d = {}
    for metric, value, unit in samples:
        assert metric not in d, metric
        d[metric] = (value, unit)
    return d


def test_commands_are_the_megatec_bytes():
    assert m.CMD_STATUS == b"Q1\r"
    assert m.CMD_RATING == b"F\r"
    assert m.CMD_INFO == b"I\r"


def test_golden_q1_from_protocols_md():
    d = as_dict(m.parse_q1(GOLDEN_Q1))
    assert d["input.voltage"] == (208.4, "V")
    assert d["input.voltage.fault"] == (140.0, "V")
    assert d["output.voltage"] == (208.4, "V")
    assert d["ups.load"] == (34.0, "%")
    assert d["input.frequency"] == (59.9, "Hz")
    assert d["battery.voltage"] == (2.05, "V")
    assert d["ups.temperature"] == (35.0, "C")
    # 00110000: b5 bypass/boost/buck with out == in -> BYPASS; b4 UPS failed -> alarm.
    assert d["ups.status"] == ("OL BYPASS ALARM", "")
    assert d["ups.alarm"] == ("ups_failed", "")
    assert d["ups.beeper"] == (False, "")
    assert d["mains.present"] == (True, "")
    assert d["output.source"] == ("bypass", "")


def test_every_metric_is_in_the_registry_with_its_unit():
    for reply, parse in ((GOLDEN_Q1, m.parse_q1), (NUT_F, m.parse_f), (NUT_I, m.parse_i)):
        for metric, _value, unit in parse(reply):
            assert is_known(metric), metric
            assert unit == unit_of(metric), (metric, unit)


def test_nut_test_frame_is_boost_and_trailing_cr_is_optional():
    d = as_dict(m.parse_q1(NUT_Q1[:-1]))
    assert d["ups.status"] == ("OL BOOST", "")
    assert d["output.source"] == ("boost", "")
    assert d["ups.alarm"] == ("", "")


def test_status_bits_map_to_nut_tokens():
    base = "(230.0 230.0 230.0 050 50.0 13.50 30.0 %s\r"
    cases = (
        ("00000000", "OL"),
        ("10000001", "OB"),
        ("11000001", "OB LB"),
        ("00000100", "OL TEST"),
        ("00000010", "OL FSD ALARM"),
        ("00010010", "OL FSD ALARM"),
        ("00001000", "OL"),  # b3 only says "standby type"
    )
    for bits, want in cases:
        d = as_dict(m.parse_q1((base % bits).encode()))
        assert d["ups.status"][0] == want, (bits, d["ups.status"])
    d = as_dict(m.parse_q1((base % "10000001").encode()))
    assert d["ups.beeper"][0] is True
    assert d["mains.present"][0] is False
    assert d["output.source"][0] == "battery"
    d = as_dict(m.parse_q1((base % "00010010").encode()))
    assert d["ups.alarm"][0] == "ups_failed shutdown_imminent"


def test_b5_is_trim_bypass_or_boost_by_voltage_ratio():
    assert m.avr_mode(250.0, 225.0) == "TRIM"
    assert m.avr_mode(230.0, 230.0) == "BYPASS"
    assert m.avr_mode(190.0, 220.0) == "BOOST"
    assert m.avr_mode(230.0, 100.0) is None  # implausible, NUT logs and sets nothing
    assert m.avr_mode(100.0, 230.0) is None
    assert m.avr_mode(None, 230.0) is None
    assert m.avr_mode(0.0, 230.0) is None
    frame = b"(250.0 250.0 225.0 050 50.0 13.50 30.0 00100000\r"
    assert as_dict(m.parse_q1(frame))["ups.status"][0] == "OL TRIM"


def test_at_filled_fields_give_no_sample_not_zero():
    frame = b"(230.0 @@@.@ 230.0 050 50.0 @.@@ @@.@ 00000000\r"
    d = as_dict(m.parse_q1(frame))
    assert "input.voltage.fault" not in d
    assert "battery.voltage" not in d
    assert "ups.temperature" not in d
    assert d["input.voltage"] == (230.0, "V")
    # b5 with an unknown input voltage: cannot tell trim/bypass/boost, so no token.
    frame = b"(@@@.@ 140.0 230.0 050 50.0 2.25 30.0 00100000\r"
    d = as_dict(m.parse_q1(frame))
    assert d["ups.status"][0] == "OL"
    assert "input.voltage" not in d


def test_short_reply_is_rejected():
    e = raises(ParseError, m.parse_q1, b"(208.4 140.0 208.4 034 59.9 2.05 35.0\r")
    assert "short reply" in str(e)
    # 45 bytes + CR is NUT's minimum (46 with the CR): accepted.
    assert len(b"(08.4 140.0 208.4 034 59.9 2.05 35.0 00110000") == 45
    m.parse_q1(b"(08.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r")
    raises(ParseError, m.parse_q1, b"(8.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r")


def test_reply_must_start_with_paren():
    e = raises(ParseError, m.parse_q1, b"#208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r")
    assert "not '('" in str(e)


def test_echoed_command_means_unsupported():
    for parse, cmd in ((m.parse_q1, b"Q1\r"), (m.parse_f, b"F\r"), (m.parse_i, b"I\r")):
        e = raises(ParseError, parse, cmd)
        assert "echoed" in str(e), str(e)


def test_malformed_fields_are_rejected_with_the_reason():
    bad = (
        (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 0011000\r", "status"),
        (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00112000\r", "status"),
        (b"(208.4 140.0 208.4 034 59.9 2.05 35.0 @@@@@@@@\r", "status"),
        (b"(208.4 140.0 208.4 0x4 59.9 2.05 35.0 00110000\r", "ups.load"),
        (b"(208.4 140.0 208.4 034 59.9 2..5 35.0 00110000\r", "battery.voltage"),
        (b"(208.4 1@0.0 208.4 034 59.9 2.05 35.0 00110000\r", "input.voltage.fault"),
        (b"(208.4,140.0,208.4,034,59.9,2.05,35.0,00110000\r", "fields"),
        (b"(208.4 140.0 208.4 034 59.9\x002.05 35.0 00110000\r", "printable"),
        (b"(208.4 140.0 208.4 034 59.9 \xff.05 35.0 00110000\r", "printable"),
        (b"(" + b"1" * 200 + b"\r", "longer"),
        (b"", "short"),
    )
    for frame, word in bad:
        e = raises(ParseError, m.parse_q1, frame)
        assert word in str(e), (frame, str(e))
    raises(ParseError, m.parse_q1, "(208.4 140.0 208.4 034 59.9 2.05 35.0 00110000")


def test_rating_reply():
    d = as_dict(m.parse_f(NUT_F))
    assert d == {
        "ups.rating.voltage": (230.0, "V"),
        "ups.rating.current": (0.0, "A"),
        "ups.rating.battery_voltage": (24.0, "V"),
        "ups.rating.frequency": (50.0, "Hz"),
    }
    d = as_dict(m.parse_f(b"#230.0 @@@ 024.0 50.0\r"))
    assert "ups.rating.current" not in d
    raises(ParseError, m.parse_f, b"(230.0 000 024.0 50.0\r")
    raises(ParseError, m.parse_f, b"#230.0 000 024.0\r")
    raises(ParseError, m.parse_f, b"#230.0 000 024.0 5x.0\r")


def test_identity_reply_is_fixed_width():
    d = as_dict(m.parse_i(NUT_I))
    assert d == {
        "ups.mfr": ("NOT_A_LIVE_UPS", ""),
        "ups.model": ("TESTING", ""),
        "ups.firmware": ("TESTING", ""),
    }
    d = as_dict(m.parse_i(b"#SANTAK          @@@@@@@@@@ V1.2      \r"))
    assert d == {"ups.mfr": ("SANTAK", ""), "ups.firmware": ("V1.2", "")}
    raises(ParseError, m.parse_i, b"#SANTAK   CASTLE\r")
    raises(ParseError, m.parse_i, b"(NOT_A_LIVE_UPS  TESTING    TESTING   \r")


def test_battery_packs_follow_nut_and_say_when_the_scale_is_unknown():
    assert m.battery_packs(24.0, 2.27) == 12  # per-cell value from an on-line unit
    assert m.battery_packs(24.0, 27.2) == 1  # whole battery from a standby unit
    assert m.battery_packs(24.0, 1.80) == 12  # deep in discharge still within 0.8 x rating
    assert m.battery_packs(36.0, 13.6) == 3  # per-block value (12 V blocks)
    # Cannot tell: NUT keeps the value as sent (x1); a value of unknown scale is not good, so
    # None, and the driver withholds it (issue 19 point 1).
    assert m.battery_packs(24.0, 100.0) is None
    assert m.battery_packs(None, 2.27) is None
    assert m.battery_packs(24.0, None) is None
    assert m.battery_packs(24.0, 0.0) is None
    s = m.apply_packs(m.parse_q1(NUT_Q1), 12)
    assert m.sample_value(s, "battery.voltage") == 27.24
    assert m.sample_value(s, "input.voltage") == 215.0
