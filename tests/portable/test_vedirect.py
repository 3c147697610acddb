# Victron VE.Direct text blocks: checksum rule, stream resynchronisation, HEX frames, samples.
from agent.core.errors import ParseError
from agent.core.registry import is_known, unit_of
from drivers.proto import vedirect as v

from support import raises

BMV = (
    ("PID", "0x203"),
    ("V", "26201"),
    ("I", "-1500"),
    ("P", "-39"),
    ("CE", "-12345"),
    ("SOC", "876"),
    ("TTG", "480"),
    ("Alarm", "OFF"),
    ("Relay", "OFF"),
    ("AR", "0"),
    ("BMV", "700"),
    ("FW", "0307"),
)
MPPT = (
    ("PID", "0xA053"),
    ("FW", "159"),
    ("SER#", "HQ2132ABCDE"),
    ("V", "13790"),
    ("I", "2300"),
    ("VPV", "36210"),
    ("PPV", "33"),
    ("CS", "5"),
    ("ERR", "0"),
    ("LOAD", "ON"),
    ("IL", "400"),
    ("H20", "12"),
)


def test_block_checksum_makes_the_byte_sum_zero():
    b = v.block(BMV)
    assert b.startswith(b"\r\nPID\t0x203\r\nV\t26201")
    assert b[-len(v.MARK) - 1 : -1] == v.MARK
    assert sum(b) % 256 == 0
    # The checksum byte can be anything, CR and LF included.
    seen = set()
    for n in range(280):  # three printable characters whose sum takes 280 successive values
        a, b, c = min(n, 93), min(max(n - 93, 0), 93), max(n - 186, 0)
        seen.add(v.block((("PID", chr(0x21 + a) + chr(0x21 + b) + chr(0x21 + c)),))[-1])
    assert 0x0D in seen and 0x0A in seen and 0x3A in seen


def test_bmv_block_gives_registry_samples():
    s = dict((m, (val, u)) for m, val, u in v.samples(v.fields(v.block(BMV))))
    assert s["battery.voltage"] == (26.201, "V")
    assert s["battery.current"] == (-1.5, "A")
    assert s["battery.power"] == (-39, "W")
    assert s["battery.charge"] == (87.6, "%")
    assert s["battery.runtime"] == (480 * 60, "s")
    assert s["battery.alarm"] == ("", "")
    assert s["experimental.vedirect.consumed"] == (-12.345, "Ah")
    for metric, (_val, unit) in s.items():
        assert is_known(metric), metric
        if not metric.startswith("experimental."):
            assert unit == unit_of(metric), metric


def test_mppt_block_gives_charger_state_and_load():
    s = dict((m, val) for m, val, _u in v.samples(v.fields(v.block(MPPT))))
    assert s["solar.voltage"] == 36.21 and s["solar.power"] == 33
    assert s["charger.status"] == "float"
    assert s["load.current"] == 0.4
    assert s["experimental.vedirect.load_on"] is True
    assert s["experimental.vedirect.yield_today"] == 0.12


def test_unknown_values_and_infinite_runtime_give_no_sample():
    f = v.fields(v.block((("V", "---"), ("TTG", "-1"), ("SOC", "---"), ("I", "0"))))
    s = dict((m, val) for m, val, _u in v.samples(f))
    assert s == {"battery.current": 0.0}


def test_alarm_reasons_are_named():
    f = v.fields(v.block((("Alarm", "ON"), ("AR", "5"))))
    assert v.samples(f) == [("battery.alarm", "low_voltage low_soc", "")]
    f = v.fields(v.block((("Alarm", "ON"),)))
    assert v.samples(f) == [("battery.alarm", "alarm", "")]


def test_stream_in_one_byte_chunks_from_mid_block():
    stream = v.block(BMV) + v.block(MPPT) + v.block(BMV)
    s = v.Stream()
    out = []
    for i in range(7, len(stream)):  # enter mid-block: the first block is lost, then in sync
        out += s.feed(stream[i : i + 1])
    assert out == [v.block(MPPT), v.block(BMV)]
    assert s.bad_checksums == 0 and s.synced


def test_a_corrupted_block_costs_one_block_only():
    good = v.block(BMV)
    bad = bytearray(v.block(MPPT))
    bad[20] ^= 0x01
    s = v.Stream()
    out = s.feed(good + bytes(bad) + good + good)
    assert out == [good, good]  # the first one synchronises, the damaged one is refused
    assert s.bad_checksums == 1


def test_truncated_block_spoils_itself_and_resyncs():
    good = v.block(MPPT)
    s = v.Stream()
    out = s.feed(good + good[:30] + good + good)
    # good[:30] + good makes one bad candidate (sum off); the next good block is back on grid.
    assert out == [good]
    assert s.bad_checksums == 1


def test_hex_frames_inside_the_stream_are_dropped():
    good = v.block(BMV)
    cut = good.index(b"\r\nSOC")
    with_hex = good[:cut] + b":A0102000543\n" + good[cut:]
    s = v.Stream()
    out = s.feed(good + with_hex + good)
    assert out == [good, good]
    assert s.hex_frames == 1 and s.bad_checksums == 0


def test_garbage_without_marker_is_skipped_and_bounded():
    s = v.Stream()
    assert s.feed(b"\x00\xff" * 3000) == []
    assert len(s._pending) < len(v.MARK)
    s.feed(v.block(BMV))
    assert s.synced  # the marker at the end of that block synchronised the reader
    assert s.feed(v.block(MPPT)) == [v.block(MPPT)]
    s2 = v.Stream()
    s2.feed(v.block(BMV))
    s2.feed(b"x" * (v.MAX_BLOCK + 10))
    assert not s2.synced and s2.oversized == 1


def test_malformed_fields_are_parse_errors():
    raises(ParseError, v.fields, b"PID\t1" + v.MARK + b"\x00")
    raises(ParseError, v.fields, v.block((("V", "1"),)).replace(b"V\t1", b"V 1"))
    e = raises(ParseError, v.samples, {"V": "12a"})
    assert "V" in str(e)
    raises(ParseError, v.samples, {"CS": "99"})
    raises(ParseError, v.samples, {"LOAD": "MAYBE"})
    raises(ParseError, v.samples, {"I": "-"})
