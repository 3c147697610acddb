# Modbus RTU framing and the EPEVER map: golden frames from PROTOCOLS.md, every rejection.
from agent.core.errors import DeviceError, ParseError
from agent.core.registry import is_known, unit_of
from drivers.proto import epever, modbus

from support import raises

REQ = bytes((0x01, 0x04, 0x31, 0x04, 0x00, 0x01, 0x7E, 0xF7))
REPLY = bytes((0x01, 0x04, 0x02, 0x0A, 0x55, 0x7F, 0xAF))


def test_crc_and_request_match_the_epever_example():
    assert modbus.crc16(REQ[:-2]) == 0xF77E
    assert modbus.read_request(1, 4, 0x3104, 1) == REQ
    assert modbus.crc16(REQ) == 0  # a frame with its CRC checks to zero


def test_reply_decodes_to_26_45_volts():
    assert modbus.reply_length(REPLY[:3]) == 7
    values = modbus.parse_read_reply(REPLY, 1, 4, 1)
    assert values == [0x0A55]
    s = epever.decode(epever.registers_from(0x3104, values))
    assert s == [("battery.voltage", 26.45, "V")]


def test_exception_reply_is_a_device_error_with_the_code():
    frame = modbus.with_crc(bytes((0x01, 0x84, 0x02)))
    assert modbus.reply_length(frame[:3]) == 5
    e = raises(modbus.ModbusException, modbus.parse_read_reply, frame, 1, 4, 1)
    assert isinstance(e, DeviceError) and not isinstance(e, ParseError)
    assert e.code == 2
    assert "illegal data address" in str(e)


def test_malformed_replies_are_parse_errors():
    bad = (
        (REPLY[:-1] + b"\x00", "bad CRC"),
        (modbus.with_crc(bytes((0x02, 0x04, 0x02, 0x0A, 0x55))), "slave 2"),
        (modbus.with_crc(bytes((0x01, 0x03, 0x02, 0x0A, 0x55))), "function 3"),
        (modbus.with_crc(bytes((0x01, 0x04, 0x04, 0x0A, 0x55))), "byte count 4"),
        (modbus.with_crc(bytes((0x01, 0x04, 0x02, 0x0A, 0x55, 0x00))), "frame of 8"),
        (modbus.with_crc(bytes((0x01, 0x84, 0x02, 0x00))), "exception reply of 6"),
        (b"\x01\x04", "too short"),
    )
    for frame, word in bad:
        e = raises(ParseError, modbus.parse_read_reply, frame, 1, 4, 1)
        assert word in str(e), (frame, str(e))
    raises(ParseError, modbus.reply_length, b"\x01")
    raises(ValueError, modbus.read_request, 1, 6, 0, 1)
    raises(ValueError, modbus.read_request, 0, 4, 0, 1)
    raises(ValueError, modbus.read_request, 1, 4, 0, 126)


def test_epever_map_decodes_signed_and_32_bit_values():
    regs = {}
    regs.update(epever.registers_from(0x3100, [3850, 512, 0x86A0, 0x0001, 2645, 480]))
    regs.update(epever.registers_from(0x310C, [2640, 150]))
    regs.update(epever.registers_from(0x3110, [0xFF38, 3100]))  # -2.00 C, 31.00 C
    regs.update(epever.registers_from(0x311A, [87]))
    regs.update(epever.registers_from(0x3200, [0x0002, 0x0004 | 0x0001]))
    regs.update(epever.registers_from(0x331B, [0xFF9C, 0xFFFF]))  # -100 -> -1.00 A
    d = {m: (v, u) for m, v, u in epever.decode(regs)}
    assert d["solar.voltage"] == (38.5, "V")
    assert d["solar.current"] == (5.12, "A")
    assert d["solar.power"] == (1000.0, "W")  # 0x000186A0 = 100000 x 0.01
    assert d["battery.voltage"] == (26.45, "V")
    assert d["battery.temperature"] == (-2.0, "C")
    assert d["device.temperature"] == (31.0, "C")
    assert d["battery.charge"] == (87.0, "%")
    assert d["battery.status"] == ("low", "")
    assert d["charger.status"] == ("float", "")
    assert d["battery.current"] == (-1.0, "A")
    for metric, (_v, unit) in d.items():
        assert is_known(metric) and unit_of(metric) == unit, metric
    raises(ParseError, epever.decode, {0x311A: 8700})
    raises(ParseError, epever.decode, {0x3200: 7})
    assert epever.decode({0x3102: 5}) == []  # half of a 32-bit value: no sample


def test_blocks_cover_the_map():
    covered = set()
    for start, count in epever.BLOCKS:
        for r in range(start, start + count):
            covered.add(r)
    for reg, _m, _u, kind, _s in epever.MAP:
        assert reg in covered
        if kind in ("u32", "s32"):
            assert reg + 1 in covered
