# Hypothesis streams into the Megatec parsers: whatever the bytes, only ParseError comes out, and
# anything accepted gives registry metrics with values of the registry's type. The number of inputs
# tried is printed to the terminal (not captured) so the run shows what was covered.
import time

from hypothesis import given
from hypothesis import strategies as st

from agent.core.errors import ParseError
from drivers.proto import megatec as m

from fuzz_support import (
    DELETE,
    EDITS,
    EXACT_TYPES,
    INSERT,
    SET,
    TRUNCATE,
    Tally,
    check_samples,
    fuzz_settings,
)
from fuzz_support import mutate as mutate_with

GOOD = (
    b"(208.4 140.0 208.4 034 59.9 2.05 35.0 00110000\r",
    b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r",
    b"#230.0 000 024.0 50.0\r",
    b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r",
)
ALPHABET = b"()#@. 0123456789\r\n\x00\xff-,01"
PARSERS = (m.parse_q1, m.parse_f, m.parse_i)
TALLY = Tally()


def mutate(frame, edits):
    return mutate_with(frame, edits, (SET, DELETE, INSERT, TRUNCATE))


def check(data):
    for parse in PARSERS:
        try:
            samples = parse(data)
        except ParseError:
            TALLY.count("parses", "rejected")
            continue
        TALLY.count("parses", "accepted")
        check_samples(samples, types=EXACT_TYPES, units=True, experimental=False)


FUZZ = fuzz_settings(1500, deadline=200)


@FUZZ
@given(st.binary(max_size=200))
def test_random_bytes_only_raise_parse_error(data):
    TALLY.count("inputs", "random")
    check(data)


@FUZZ
@given(
    st.sampled_from(GOOD),
    EDITS(ops=4, max_pos=255, max_size=6, byte=st.sampled_from(list(ALPHABET))),
)
def test_mutated_frames_only_raise_parse_error(frame, edits):
    TALLY.count("inputs", "mutated")
    check(mutate(frame, edits))


@FUZZ
@given(st.lists(st.binary(max_size=60), max_size=8))
def test_split_streams_parse_line_by_line(chunks):
    # A stream cut into arbitrary chunks and split on CR, as the transport does.
    TALLY.count("inputs", "random")
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
            % (
                TALLY.get("inputs", "random"),
                TALLY.get("inputs", "mutated"),
                TALLY.get("parses", "accepted"),
                TALLY.get("parses", "rejected"),
                per * 1e6,
            )
        )
