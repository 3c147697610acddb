# Hypothesis streams into the Megatec parsers: whatever the bytes, only ParseError comes out, and
# anything accepted gives registry metrics with values of the registry's type. The number of inputs
# tried is printed to the terminal (not captured) so the run shows what was covered.
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agent.core.errors import ParseError
from agent.core.registry import lookup
from drivers.proto import megatec as m

GOOD = (
    b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r",
    b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r",
    b"#230.0 000 024.0 50.0\r",
    b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r",
)
ALPHABET = b"()#@. 0123456789\r\n\x00\xff-,01"
PARSERS = (m.parse_q1, m.parse_f, m.parse_i)
TYPES = {"float": float, "int": int, "str": str, "bool": bool}

tried = {"random": 0, "mutated": 0, "accepted": 0, "rejected": 0}


def mutate(frame, edits):
    data = bytearray(frame)
    for kind, pos, byte in edits:
        if not data:
            data.append(byte)
            continue
        pos %= len(data)
        if kind == 0:
            data[pos] = byte
        elif kind == 1:
            del data[pos]
        elif kind == 2:
            data.insert(pos, byte)
        else:
            del data[pos:]
    return bytes(data)


def check(data):
    for parse in PARSERS:
        try:
            samples = parse(data)
        except ParseError:
            tried["rejected"] += 1
            continue
        tried["accepted"] += 1
        for metric, value, unit in samples:
            row = lookup(metric)
            assert row is not None, metric
            assert unit == row[1], (metric, unit)
            assert isinstance(value, TYPES[row[2]]), (metric, value)


FUZZ = settings(
    max_examples=1500, deadline=200, suppress_health_check=[HealthCheck.too_slow], database=None
)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_parse_error(data):
    tried["random"] += 1
    check(data)


@FUZZ
@given(
    st.sampled_from(GOOD),
    st.lists(
        st.tuples(st.integers(0, 3), st.integers(0, 255), st.sampled_from(list(ALPHABET))),
        max_size=6,
    ),
)
def test_mutated_frames_only_raise_parse_error(frame, edits):
    tried["mutated"] += 1
    check(mutate(frame, edits))


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_split_streams_parse_line_by_line(chunks):
    # A stream cut into arbitrary chunks and split on CR, as the transport does.
    tried["random"] += 1
    stream = b"".join(chunks)
    for line in stream.split(b"\r"):
        check(line + b"\r")


def test_parse_rate_and_report(capsys):
    t0 = time.perf_counter()
    n = 0
    while n < 20000:
        for frame in GOOD[:2]:
            m.parse_q1(frame)
            n += 1
    per = (time.perf_counter() - t0) / n
    with capsys.disabled():
        print(
            "\nmegatec fuzz: %d random + %d mutated inputs; %d parses accepted, %d rejected "
            "with ParseError; Q1 parse %.1f us each"
            % (tried["random"], tried["mutated"], tried["accepted"], tried["rejected"], per * 1e6)
        )
