# Pylontech BMS frames: LENGTH and CHKSUM rules, return codes, analog values and alarms.
from agent.core.errors import DeviceError, ParseError
from agent.core.registry import is_known
from drivers.proto import pylontech as p

from support import raises


def test_request_matches_the_documented_frame():
    assert p.request(2, p.GET_ANALOG) == b"~20024642E00202FD33\r"
    assert p.request(2, p.GET_ANALOG) == p.GOLDEN_REQUEST
    assert p.length_field(2) == 0xE002
    assert p.length_field(0x06E) == 0xC06E  # the golden reply's LENGTH
    assert p.length_field(0) == 0


def test_golden_analog_reply_decodes():
    ver, adr, cid1, rtn, info = p.decode(p.GOLDEN_ANALOG)
    assert (ver, adr, cid1, rtn, len(info)) == (0x20, 2, 0x46, 0, 55)
    s = dict((m, val) for m, val, _u in p.parse_analog(p.reply(p.GOLDEN_ANALOG, 2)))
    assert s["battery.cell.1.voltage"] == 3.226
    assert s["battery.cell.15.voltage"] == 3.225
    assert "battery.cell.16.voltage" not in s
    assert s["device.temperature"] == 20.1
    assert s["battery.cell.1.temperature"] == 17.0
    assert s["battery.cell.4.temperature"] == 18.4
    assert s["battery.voltage"] == 48.39
    assert s["battery.current"] == 0.0
    assert s["experimental.pylontech.remaining_ah"] == 6.415
    assert s["experimental.pylontech.total_ah"] == 50.0
    assert s["battery.cycles"] == 132
    assert s["battery.charge"] == 12.8
    for m in s:
        assert is_known(m), m


def test_encode_decode_round_trip_and_negative_current():
    info = bytes((0x11, 3, 2, 0x0C, 0xE4, 0x0C, 0xE5, 1, 0x0B, 0xB8, 0xFF, 0x9C, 0xC8, 0x00))
    info += bytes((0x27, 0x10, 2, 0xC3, 0x50, 0x00, 0x07))
    frame = p.encode(3, 0, info)
    assert p.decode(frame)[4] == info
    s = dict((m, val) for m, val, _u in p.parse_analog(p.reply(frame, 3)))
    assert s["battery.current"] == -10.0  # 0xFF9C = -100 -> -10.0 A
    assert s["device.temperature"] == 26.9  # 0x0BB8 = 3000 -> (3000 - 2731) / 10
    assert s["battery.charge"] == 20.0


def test_user_defined_4_uses_24_bit_capacities():
    info = bytes((0x11, 2, 1, 0x0C, 0xE4, 0, 0, 0, 0xD0, 0x00, 0xFF, 0xFF, 4, 0xFF, 0xFF, 0, 9))
    info += bytes((0x01, 0x86, 0xA0, 0x03, 0x0D, 0x40))  # 100000 of 200000 mAh
    s = dict((m, val) for m, val, _u in p.parse_analog(info))
    assert s["experimental.pylontech.total_ah"] == 200.0
    assert s["battery.charge"] == 50.0 and s["battery.cycles"] == 9


def test_bad_checksums_and_length_are_parse_errors():
    g = p.GOLDEN_ANALOG
    e = raises(ParseError, p.decode, g[:-3] + b"6\r")
    assert "CHKSUM" in str(e)
    # LENGTH with a wrong LCHKSUM (and a CHKSUM fixed up so only LCHKSUM is wrong).
    body = g[1:-5].replace(b"C06E", b"D06E", 1)
    e = raises(ParseError, p.decode, b"~" + body + (b"%04X" % p.checksum(body)) + b"\r")
    assert "LCHKSUM" in str(e)
    body = g[1:-5][:-2]  # INFO two characters short of LENID
    e = raises(ParseError, p.decode, b"~" + body + (b"%04X" % p.checksum(body)) + b"\r")
    assert "LENID" in str(e)
    raises(ParseError, p.decode, b"20024642E00202FD33\r")
    raises(ParseError, p.decode, b"~2002\r")
    raises(ParseError, p.decode, b"~2002464\x00E00202FD33\r")


def test_refusal_is_a_device_error_naming_the_code():
    frame = p.encode(2, 0x90)
    e = raises(p.PylontechRefused, p.reply, frame, 2)
    assert isinstance(e, DeviceError) and not isinstance(e, ParseError)
    assert "0x90" in str(e) and "ADR error" in str(e)
    e = raises(ParseError, p.reply, p.GOLDEN_ANALOG, 3)
    assert "address 2" in str(e)


def test_short_info_is_a_parse_error():
    info = p.reply(p.GOLDEN_ANALOG, 2)
    for n in (0, 3, 20, 40, 54):
        e = raises(ParseError, p.parse_analog, info[:n])
        assert "analog" in str(e)
    raises(ParseError, p.parse_analog, bytes((0x10, 2, 0)))  # zero cells


def test_alarms_name_what_is_not_normal():
    info = bytes((0x00, 2, 3, 0, 2, 0, 2, 0, 1, 0, 0, 0xF0, 0x00, 0x0E))
    s = p.parse_alarms(info)
    names = "cell2_voltage_high cell1_temperature_low discharge_current_fault"
    assert s[0] == ("battery.alarm", names, "")
    assert s[1] == ("experimental.pylontech.status", "00 0E", "")
    assert p.parse_alarms(bytes((0, 2, 1, 0, 1, 0, 0, 0, 0))) == [("battery.alarm", "", "")]
    raises(ParseError, p.parse_alarms, bytes((0, 2, 1, 0x33, 0, 0, 0, 0)))
