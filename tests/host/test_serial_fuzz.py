# Hypothesis streams into the VE.Direct, Pylontech, Voltronic and Modbus parsers: whatever the
# bytes, only ParseError (or the protocol's typed refusal, a DeviceError) comes out, within a time
# bound per input (hypothesis deadline), and accepted samples carry registry names and types.
# The inputs tried are printed to the terminal.
from hypothesis import given
from hypothesis import strategies as st

from agent.core.errors import DeviceError, ParseError
from drivers.proto import modbus as mb
from drivers.proto import pylontech as pp
from drivers.proto import vedirect as vd
from drivers.proto import voltronic as vp

from fuzz_support import DELETE, INSERT, SET, Tally, check_samples, fuzz_settings
from fuzz_support import EDITS as edits_of
from fuzz_support import mutate as mutate_with

FUZZ = fuzz_settings(800, deadline=200)
TALLY = Tally()
count = TALLY.count
EDITS = edits_of(ops=3, max_pos=400, max_size=5)


def mutate(frame, edits):
    return mutate_with(frame, edits, (SET, DELETE, INSERT))


BLOCK = vd.block((("V", "26201"), ("I", "-1500"), ("SOC", "876"), ("CS", "3"), ("AR", "4")))


@FUZZ
@given(st.lists(st.binary(max_size=120), max_size=10), EDITS)
def test_vedirect_streams(chunks, edits):
    stream = vd.Stream()
    data = b"".join(chunks) + mutate(BLOCK + BLOCK, edits) + BLOCK
    for i in range(0, len(data), 37):
        for block in stream.feed(data[i : i + 37]):
            assert sum(block) & 0xFF == 0
            try:
                check_samples(vd.samples(vd.fields(block)))
                count("vedirect", "accepted")
            except ParseError:
                count("vedirect", "rejected")
    count("vedirect", "streams")


@FUZZ
@given(st.sampled_from([pp.GOLDEN_ANALOG, pp.GOLDEN_REQUEST]), EDITS, st.binary(max_size=80))
def test_pylontech_frames(frame, edits, noise):
    for data in (mutate(frame, edits), noise, b"~" + noise.hex().upper().encode() + b"\r"):
        try:
            info = pp.reply(data, 2)
            check_samples(pp.parse_analog(info))
            check_samples(pp.parse_alarms(info))
            count("pylontech", "accepted")
        except ParseError:
            count("pylontech", "rejected")
        except pp.PylontechRefused:
            count("pylontech", "refused")


QPIGS = (
    b"(000.0 00.0 230.0 49.9 0161 0119 003 460 57.50 012 100 0069 0014 103.8 57.45 00000 00110110"
)


@FUZZ
@given(EDITS, st.binary(max_size=150))
def test_voltronic_replies(edits, noise):
    for data in (mutate(QPIGS, edits), noise):
        framed = data + vp.crc_bytes(data) + b"\r"  # a good CRC, so the fields get parsed
        for reply in (framed, data):
            try:
                check_samples(vp.parse_qpigs(reply))
                count("voltronic", "accepted")
            except ParseError:
                count("voltronic", "rejected")


@FUZZ
@given(st.binary(max_size=40), st.integers(1, 4), st.booleans())
def test_modbus_replies(data, count_regs, fix_crc):
    frame = mb.with_crc(data) if fix_crc else data
    try:
        values = mb.parse_read_reply(frame, 1, 4, count_regs)
        assert len(values) == count_regs
        count("modbus", "accepted")
    except mb.ModbusException:
        count("modbus", "exception")
    except ParseError:
        count("modbus", "rejected")
    except DeviceError as e:  # anything else typed would be a bug
        raise AssertionError(e) from e
    if len(frame) >= 3:
        assert mb.reply_length(frame[:3]) in range(5, 261)


def test_report_inputs_tried(capsys):
    with capsys.disabled():
        parts = ["%s: %s" % (n, TALLY.summary(n)) for n in TALLY.kinds()]
        print("\nserial fuzz (800 examples per test): " + "; ".join(parts))
    assert TALLY.total()
