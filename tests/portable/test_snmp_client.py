# The portable SNMP client against a scripted peer: exact request bytes, request-id matching,
# retries, tooBig, v1 noSuchName, GETBULK/GETNEXT column walks, and what junk turns into.
from agent.core.compat import monotonic
from agent.core.errors import DeviceError, DeviceTimeout, ParseError
from drivers.proto import ber
from drivers.proto.snmp_client import (
    ECONNREFUSED,
    SnmpClient,
    no_answer,
    try_timeout,
    try_wait,
)

from snmp_peer import Peer, answer, silence, table_agent
from support import raises, run

UPTIME = "1.3.6.1.2.1.1.3.0"
DESCR = "1.3.6.1.2.1.1.1.0"
OPER = "1.3.6.1.2.1.2.2.1.8"
NAME = "1.3.6.1.2.1.31.1.1.1.1"
HC_IN = "1.3.6.1.2.1.31.1.1.1.6"


def client(peer, **kw):
    kw.setdefault("request_id", 1)
    kw.setdefault("timeout", 0.05)
    return SnmpClient(peer, **kw)


def test_get_sends_the_exact_bytes_and_reads_the_answer():
    peer = Peer(answer([(UPTIME, ber.TIMETICKS, 123456)]))
    c = client(peer, community="public", version="2c")
    assert run(c.get([UPTIME])) == {UPTIME: 123456}
    golden = bytes.fromhex(
        "302602010104067075626c6963a019020101020100020100300e300c06082b060102010103000500"
    )
    assert peer.sent == [golden]
    assert (c.requests, c.sent, c.dropped) == (1, 1, 0)


def test_request_ids_advance_and_stay_positive():
    peer = Peer(answer([]), answer([]))
    c = client(peer, request_id=0x7FFFFFFF)
    run(c.get([UPTIME]))
    run(c.get([UPTIME]))
    ids = [ber.decode_message(d).request_id for d in peer.sent]
    assert ids == [0x7FFFFFFF, 1]


def test_wrong_request_id_community_or_version_is_dropped():
    def step(m, d):
        good = answer([(UPTIME, ber.TIMETICKS, 5)])(m, d)
        stale = answer([(UPTIME, ber.TIMETICKS, 999)], rid_delta=-1)(m, d)
        other = answer([(UPTIME, ber.TIMETICKS, 998)], community=b"private")(m, d)
        v1 = answer([(UPTIME, ber.TIMETICKS, 997)], version=0)(m, d)
        return stale + other + v1 + good

    peer = Peer(step)
    c = client(peer)
    assert run(c.get([UPTIME])) == {UPTIME: 5}
    assert c.dropped == 3 and c.sent == 1


def test_retry_after_timeout_resends_the_same_request():
    peer = Peer(silence, answer([(UPTIME, ber.TIMETICKS, 7)]))
    c = client(peer, retries=1)
    assert run(c.get([UPTIME])) == {UPTIME: 7}
    assert len(peer.sent) == 2 and peer.sent[0] == peer.sent[1]
    assert (c.requests, c.sent) == (1, 2)


def test_no_answer_is_a_device_timeout_after_all_tries():
    peer = Peer()
    c = client(peer, retries=2, where="snmp 127.0.0.1:161")
    e = raises(DeviceTimeout, run, c.get([UPTIME]))
    assert str(e) == (
        "snmp 127.0.0.1:161: no answer to 3 tries of 0.05s (wrong community or agent down)"
    )
    assert len(peer.sent) == 3


def test_only_junk_is_a_parse_error_naming_it():
    peer = Peer(lambda m, d: [b"\x30\x05\x02\x01"], lambda m, d: [b"junk"])
    c = client(peer, retries=1)
    e = raises(ParseError, run, c.get([UPTIME]))
    assert "no valid response after 2 tries; last reply: BER:" in str(e)
    assert c.malformed == 2


def test_too_big_halves_the_batch():
    oids = ["1.3.6.1.4.1.9.%d.0" % i for i in range(40)]

    def agent(m, d):
        if len(m.varbinds) > 16:
            return answer([], status=1)(m, d)
        return answer([(o, ber.INTEGER, int(o.split(".")[-2])) for o, _t, _v in m.varbinds])(m, d)

    peer = Peer(*([agent] * 10))
    got = run(client(peer).get(oids))
    assert got == {o: i for i, o in enumerate(oids)}
    sizes = [len(ber.decode_message(d).varbinds) for d in peer.sent]
    assert sizes == [32, 16, 16, 8]


def test_v1_no_such_name_drops_that_oid_only():
    def first(m, d):
        return answer([(o, ber.NULL, None) for o, _t, _v in m.varbinds], status=2, index=2)(m, d)

    peer = Peer(first, answer([(UPTIME, ber.TIMETICKS, 1), (DESCR, ber.OCTET_STRING, b"x")]))
    got = run(client(peer, version="1").get([UPTIME, "1.3.6.1.9.9.0", DESCR]))
    assert got == {UPTIME: 1, DESCR: "x"}
    assert [len(ber.decode_message(d).varbinds) for d in peer.sent] == [3, 2]
    assert ber.decode_message(peer.sent[0]).version == 0


def test_other_errors_are_device_errors():
    peer = Peer(answer([], status=5, index=1))
    e = raises(DeviceError, run, client(peer).get([UPTIME]))
    assert str(e) == "snmp: genErr at " + UPTIME
    peer = Peer(answer([], status=16))
    assert "authorization error" in str(raises(DeviceError, run, client(peer).get([UPTIME])))


def test_value_model_matches_the_engine():
    vbs = [
        (UPTIME, ber.TIMETICKS, 10),
        (DESCR, ber.OCTET_STRING, b"UPS \xc3\xa9"),
        ("1.3.6.1.2.1.1.2.0", ber.OID, "1.3.6.1.4.1.318"),
        ("1.3.6.1.2.1.33.1.2.3.0", ber.NO_SUCH_INSTANCE_TAG, None),
        ("1.3.6.1.2.1.33.1.2.4.0", ber.NO_SUCH_OBJECT_TAG, None),
        ("1.3.6.1.2.1.33.1.2.5.0", ber.INTEGER, -1),
    ]
    got = run(client(Peer(answer(vbs))).get([v[0] for v in vbs]))
    assert got == {
        UPTIME: 10,
        DESCR: "UPS \u00e9",
        "1.3.6.1.2.1.1.2.0": "1.3.6.1.4.1.318",
        "1.3.6.1.2.1.33.1.2.5.0": -1,
    }


def test_answers_for_oids_not_asked_are_ignored():
    peer = Peer(answer([(UPTIME, ber.TIMETICKS, 1), ("1.3.6.1.6.6.6.0", ber.INTEGER, 6)]))
    assert run(client(peer).get([UPTIME])) == {UPTIME: 1}


# --- walks against a table agent ----------------------------------------------------------------
MIB = {
    OPER + ".1": (ber.INTEGER, 1),
    OPER + ".2": (ber.INTEGER, 2),
    OPER + ".10": (ber.INTEGER, 1),
    NAME + ".1": (ber.OCTET_STRING, b"lo"),
    NAME + ".2": (ber.OCTET_STRING, b"eth0"),
    NAME + ".10": (ber.OCTET_STRING, b"wlan0"),
    HC_IN + ".1": (ber.COUNTER64, 1 << 40),
    HC_IN + ".2": (ber.COUNTER64, 0),
    "1.3.6.1.2.1.31.1.1.1.7.1": (ber.COUNTER64, 3),
}


def test_getbulk_walk_reads_whole_columns_by_prefix():
    peer = Peer(*([table_agent(MIB)] * 5))
    got = run(client(peer).walk([OPER, NAME, HC_IN]))
    want = {}
    for oid, (_tag, v) in MIB.items():
        if not oid.startswith("1.3.6.1.2.1.31.1.1.1.7"):
            want[oid] = v.decode() if isinstance(v, bytes) else v
    assert got == want
    first = ber.decode_message(peer.sent[0])
    assert first.pdu == ber.GET_BULK and (first.status, first.index) == (0, 20)  # 60 // 3
    assert len(peer.sent) == 1


def test_getnext_walk_on_v1_ends_at_no_such_name():
    mib = {OPER + ".1": (ber.INTEGER, 1), OPER + ".2": (ber.INTEGER, 2)}
    peer = Peer(*([table_agent(mib, version=0)] * 10))
    got = run(client(peer, version="1").walk([OPER, HC_IN]))
    assert got == {OPER + ".1": 1, OPER + ".2": 2}
    assert all(ber.decode_message(d).pdu == ber.GET_NEXT for d in peer.sent)


def test_walk_refuses_an_oid_that_does_not_increase():
    loop = answer([(OPER + ".1", ber.INTEGER, 1)] * 3)
    e = raises(ParseError, run, client(Peer(loop, loop)).walk([OPER]))
    assert "OID not increasing" in str(e)


def test_unsupported_version():
    raises(DeviceError, SnmpClient, Peer(), "public", "3")


# --- the poll's budget, and why there was no answer ------------------------------------------
def test_tries_share_the_budget():
    # retries = 3 in a 5 s budget: four tries of 1.125 s, 0.5 s kept for the verdict
    assert try_timeout(5.0, 3) == 1.125
    assert try_timeout(5.0, 0) == 4.5
    assert try_timeout(2.0, 1) == 0.9  # a tenth of a short budget is kept
    assert try_timeout(0.5, 1) == 0.2  # and at least 0.1 s
    assert try_timeout(0.1, 0) == 0.05  # but never more than half
    # a late start (an open, a first request) shrinks the tries left, never the count
    now = monotonic()
    assert try_wait(1.125, None, 4) == 1.125
    assert abs(try_wait(1.125, now + 2.0, 4) - 0.5) < 0.05
    assert try_wait(1.125, now - 1.0, 2) < 0


def test_retries_go_out_within_the_deadline():
    peer = Peer()
    c = client(peer, retries=3, timeout=10.0)
    c.deadline = monotonic() + 0.2  # four tries must fit in 0.2 s, not 40 s
    t0 = monotonic()
    raises(DeviceTimeout, run, c.get([UPTIME]))
    assert len(peer.sent) == 4 and c.sent == 4
    assert monotonic() - t0 < 5.0
    c.deadline = monotonic() - 1.0  # no time left: no try at all
    raises(DeviceTimeout, run, c.get([UPTIME]))
    assert len(peer.sent) == 4


def test_an_icmp_port_unreachable_is_told_from_silence():
    refused = OSError(ECONNREFUSED, "Connection refused")
    peer = Peer(lambda m, d: [refused], silence)
    c = client(peer, retries=1, where="snmp 10.0.0.5:161")
    e = raises(DeviceTimeout, run, c.get([UPTIME]))
    assert str(e) == (
        "snmp 10.0.0.5:161: no SNMP agent listening on that port (ICMP port unreachable, "
        "2 tries of 0.05s)"
    )
    assert len(peer.sent) == 2  # the tries still go out: an agent may be starting
    peer = Peer(lambda m, d: [OSError(113, "No route to host")])
    e = raises(DeviceTimeout, run, client(peer, retries=0, where="snmp h:161").get([UPTIME]))
    assert str(e).startswith("snmp h:161: unreachable (ICMP: ")
    # silence on v1/v2c cannot tell a wrong community from an agent that is down
    assert no_answer("snmp h:161", "2c", 1, 2.0) == (
        "snmp h:161: no answer to 1 try of 2s (wrong community or agent down)"
    )
    assert "drops this user, level or context" in no_answer("snmp h:161", "3", 2, 0.9)


def test_types_of_the_values_are_handed_out():
    peer = Peer(
        answer([(UPTIME, ber.TIMETICKS, 5), (DESCR, ber.OCTET_STRING, b"x")]),
        answer([(OPER + ".1", ber.INTEGER, 1), (OPER + ".2", ber.END_OF_MIB_VIEW_TAG, None)]),
    )
    c = client(peer)
    types = {}
    run(c.get([UPTIME, DESCR], types))
    run(c.walk([OPER], types))
    assert types == {UPTIME: ber.TIMETICKS, DESCR: ber.OCTET_STRING, OPER + ".1": ber.INTEGER}
