# Hypothesis against the BER decoder, the SNMP client and the profile engine: random bytes,
# mutated and truncated messages, wrong lengths, deep nesting, oversized messages, wrong
# request-ids and wrong types for the OIDs a profile reads. Only ParseError comes out of the
# decoder; the client adds only its DeviceTimeout; the driver ends stale with the reason and the
# Loop keeps polling another device. Each input is held to a time bound (TIME_BOUND_S, CPU time
# around the call, the garbage collector held off) and a memory bound (tracemalloc peak <
# MEM_BOUND). The inputs tried are
# printed to the terminal.
import asyncio
import gc
import os
import sys
import time
import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.core.errors import DeviceError, ParseError
from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from drivers import profiles
from drivers.profiles import engine
from drivers.proto import ber, ber_agent
from drivers.proto.snmp_client import SnmpClient, plain
from drivers.snmp_lite import SnmpLiteDriver

from fuzz_support import EDITS, Tally, check_samples, fuzz_settings, mutate

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "portable"))
from snmp_peer import Peer, drawn_values  # noqa: E402 - the portable tests' scripted agent

FUZZ = fuzz_settings(600)
# per input, in CPU seconds of this process (wall time on a machine shared by other jobs counts
# their time too); generous for inputs of at most a few KB
TIME_BOUND_S = 0.05
MEM_BOUND = 1 << 20  # tracemalloc peak per input
PROFILES = ("ups-mib", "huawei-ups", "apc-powernet", "apc-pdu", "eltek", "netsure", "router")
TALLY = Tally()
count = TALLY.count
slowest = [0.0, 0]  # seconds, peak bytes


def bounded(fn, *args):
    """fn(*args) within the time and memory bounds; returns (result or None, exception or None)."""
    gc.disable()  # a collection of hypothesis' garbage is not the call's cost
    tracemalloc.start()
    t0 = time.process_time()
    try:
        result, exc = fn(*args), None
    except ParseError as e:
        result, exc = None, e
    finally:
        dt = time.process_time() - t0
        _cur, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        gc.enable()
    slowest[0] = max(slowest[0], dt)
    slowest[1] = max(slowest[1], peak)
    assert dt < TIME_BOUND_S, dt
    assert peak < MEM_BOUND, peak
    return result, exc


def sample_message():
    vbs = [
        ("1.3.6.1.2.1.33.1.2.4.0", ber.INTEGER, 87),
        ("1.3.6.1.2.1.1.1.0", ber.OCTET_STRING, b"Eaton 93E"),
        ("1.3.6.1.2.1.1.2.0", ber.OID, "1.3.6.1.4.1.534.1"),
        ("1.3.6.1.2.1.31.1.1.1.6.1", ber.COUNTER64, 1 << 40),
        ("1.3.6.1.2.1.1.3.0", ber.TIMETICKS, 100),
        ("1.3.6.1.2.1.4.20.1.1.1", ber.IP_ADDRESS, "10.0.0.1"),
        ("1.3.6.1.2.1.33.1.2.3.0", ber.NO_SUCH_INSTANCE_TAG, None),
    ]
    return ber_agent.encode_response(1, "public", 42, vbs)


SAMPLE = sample_message()


EDITS_BER = EDITS(ops=4, max_pos=1000, max_size=6)


def check_message(m):
    assert m.version in (0, 1) and isinstance(m.community, bytes)
    for oid, tag, value in m.varbinds:
        assert isinstance(oid, str) and oid.count(".") >= 1
        assert isinstance(value, (int, str, bytes, type(None)))
        plain(tag, value)


@FUZZ
@given(st.binary(max_size=600))
def test_random_bytes(data):
    m, exc = bounded(ber.decode_message, data)
    count("random", "rejected" if exc else "accepted")
    if m:
        check_message(m)
    bounded(ber_agent.decode_tree, data)


@FUZZ
@given(EDITS_BER, st.integers(0, len(SAMPLE)))
def test_mutated_and_truncated_messages(edits, cut):
    data = mutate(SAMPLE, edits)[: cut or None]
    m, exc = bounded(ber.decode_message, data)
    count("mutated", "rejected" if exc else "accepted")
    if m:
        check_message(m)


@FUZZ
@given(st.integers(1, 3000), st.sampled_from([0x30, 0xA2, 0x04, 0x44]))
def test_deep_nesting_and_huge_lengths(depth, tag):
    blob = b"\x05\x00"
    for _ in range(depth):
        blob = ber_agent.tlv(tag, blob)
    _m, exc = bounded(ber_agent.decode_tree, blob)
    assert exc is not None or depth < ber.MAX_DEPTH or not tag & 0x20  # 04/44: primitive
    _m, exc = bounded(ber.decode_message, blob)
    assert exc is not None
    # a header that claims up to 4 GB
    claim = bytes((0x30, 0x84)) + (depth * 1_000_003).to_bytes(4, "big") + b"\x02\x01\x01"
    _m, exc = bounded(ber.decode_message, claim)
    assert "runs past" in str(exc)
    count("nesting/lengths", "rejected")


@FUZZ
@given(st.integers(1, 4))
def test_oversized_messages(extra_kb):
    big = ber_agent.encode_response(
        1, "public", 1, [("1.3.6.1.2.1.1.1.0", 4, b"x" * 1024 * extra_kb)]
    )
    _m, exc = bounded(ber.decode_message, big, 1024)
    assert "exceeds 1024" in str(exc)
    count("oversized", "rejected")


# --- through the client and the engine: wrong types and wrong request-ids --------------------
VALUE = st.one_of(
    st.tuples(st.just(ber.INTEGER), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(
        st.sampled_from([ber.COUNTER32, ber.GAUGE32, ber.TIMETICKS]), st.integers(0, 2**32 - 1)
    ),
    st.tuples(st.just(ber.COUNTER64), st.integers(0, 2**64 - 1)),
    st.tuples(st.sampled_from([ber.OCTET_STRING, ber.OPAQUE]), st.binary(max_size=40)),
    st.tuples(st.just(ber.OID), st.sampled_from(["1.3.6.1.2.1.33.1.6.3.2", "0.0", "2.999.7"])),
    st.tuples(st.just(ber.IP_ADDRESS), st.sampled_from(["0.0.0.0", "255.1.2.3"])),
    st.tuples(
        st.sampled_from([ber.NULL, ber.NO_SUCH_OBJECT_TAG, ber.NO_SUCH_INSTANCE_TAG]),
        st.none(),
    ),
)


@settings(FUZZ, max_examples=200)
@given(st.sampled_from(PROFILES), st.data())
def test_wrong_types_for_known_oids_through_client_and_engine(name, data):
    profile = profiles.lookup(name)
    gets, walks = engine.plan(profile)

    async def go():
        agent = Peer(default=drawn_values(lambda: data.draw(VALUE)))
        c = SnmpClient(agent, "public", "2c", 0.05, 0, request_id=5)
        values = await c.get(gets)
        values.update(await c.walk(walks))
        return values

    t0 = time.perf_counter()
    try:
        values = asyncio.run(go())
    except ParseError:  # e.g. an OID in a walk that does not increase
        count("typed", "parse error")
        return
    state = {}
    samples, _exc = bounded(engine.evaluate, profile, values, state, 1.0)
    check_samples(samples)
    samples, _exc = bounded(engine.evaluate, profile, values, state, 2.0)  # rates, deltas
    check_samples(samples)
    assert time.perf_counter() - t0 < 2.0
    count("typed", "evaluated")


@FUZZ
@given(st.integers(-5, 5).filter(lambda d: d != 0), st.binary(max_size=40))
def test_wrong_request_id_and_junk_end_in_a_typed_error(delta, junk):
    agent = Peer(default=drawn_values(lambda: (ber.INTEGER, 1), rid_delta=delta, junk=junk))
    c = SnmpClient(agent, "public", "2c", 0.05, 1, request_id=1000, where="dev")
    try:
        asyncio.run(c.get(["1.3.6.1.2.1.33.1.2.4.0"]))
        raise AssertionError("a reply with a wrong request-id was accepted")
    except DeviceError as e:  # DeviceTimeout, or ParseError naming the junk
        assert str(e).startswith("dev: no ")
    assert c.dropped == 2
    count("request-id", "dropped")


# --- driver and loop ---------------------------------------------------------------------------
def good_agent():
    return Peer(default=drawn_values(lambda: (ber.TIMETICKS, 360000)))


def lite(dev_id, factory, profile="system"):
    dev = {
        "id": dev_id,
        "driver": "snmp-lite",
        "interval": 0.05,
        "timeout": 0.05,
        "jitter": 0.0,
        "snmp": {"host": "127.0.0.1", "profile": profile, "retries": 0},
    }

    async def make(host, port):
        return factory()

    return dev, SnmpLiteDriver(dev, transport=make)


def test_driver_fed_junk_ends_stale_with_the_reason_and_the_loop_keeps_polling():
    junk = SAMPLE[:-3]  # a truncated message
    bad_dev, bad = lite("bad", lambda: Peer(flood=junk))
    good_dev, good = lite("good", good_agent)
    loop = Loop(
        "site", MemoryQueue(), lambda: 0.0, Log(write=lambda s: None), commit_interval=0.01
    )
    loop.add_device(bad_dev, bad)
    loop.add_device(good_dev, good)
    for _ in range(3):
        results = asyncio.run(loop.poll_all())
        assert not results["bad"].ok
        assert results["bad"].error.startswith("snmp 127.0.0.1:161: no valid response after 1 try")
        assert "runs past its end" in results["bad"].error
        assert results["good"].ok
        assert dict((m, v) for m, v, _u in results["good"].samples)["device.uptime"] == 3600
    assert good.requests == 4  # one identification GET, then one GET per poll


def test_report_inputs_tried(capsys):
    with capsys.disabled():
        total = TALLY.total()
        print(
            "\nBER/SNMP fuzz: %d inputs (%s); slowest %.1f ms, largest tracemalloc peak %d B"
            % (total, TALLY.summary(), slowest[0] * 1000, slowest[1])
        )
    assert total > 1000
