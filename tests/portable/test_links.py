# The uplink's link decisions (agent/core/uplink/links.py), shared by the board's uplink and
# meant for the host's: settings, status messages, the two reconnect regimes, the preferred
# broker's probes, a dead session, and the whole reconnect loop with scripted brokers.
import asyncio
import json

from agent.core.log import Log
from agent.core.uplink.links import Links

from support import run

INFO = {"name": "Tinh Ky BTS", "kind": "bts", "location": {"lat": 15.2, "lon": 108.8}}


class _Lcg:
    def __init__(self, seed=7):
        self.x = seed

    def __call__(self):
        self.x = (1103515245 * self.x + 12345) % 2147483648
        return self.x / 2147483648


def _links(n=2, **kw):
    cfg = {"brokers": [{"name": "b%d" % i, "host": "h%d" % i, "port": 1883 + i}
                       for i in range(n)], "probe_interval": 4.0, "reconnect_spread": 8.0,
           "backoff_base": 2.0, "backoff_cap": 300.0, "preferred_retry": 300.0,
           "keepalive": 60, "ack_timeout": 8, "max_connects_per_min": 6}  # fmt: skip
    cfg.update(kw)
    return Links(cfg, "bts-7", _Lcg(), site_info=INFO)


def test_settings_follow_the_contract_version():
    lk = _links(contract=2, integrity_period=120)
    assert lk.prefix == "site-agent/v2" and lk.topics["series"] == "site-agent/v2/bts-7/series"
    assert lk.integrity == 120.0
    assert _links().prefix == "site-agent/v1"
    assert _links(contract=2, topic_prefix="x/y").topics["data"] == "x/y/bts-7/data"
    metered = {"host": "s", "port": 1, "budget_bytes": 1000}
    assert lk.fmt_for(None) == "json" and lk.fmt_for(metered) == "compact"
    assert lk.fmt_for({"host": "s", "port": 1, "budget_bytes": 1000, "format": "json"}) == "json"
    assert lk.where(lk.brokers[1]) == "b1 (h1:1884)"


def test_every_status_message_carries_the_site():
    lk = _links()
    birth = json.loads(lk.birth("0.1.0", "3f9a0c11d2e4", 1760000000.0))
    assert birth["state"] == "online" and birth["session"] == "3f9a0c11d2e4"
    will = json.loads(lk.offline("connection lost"))
    assert will["state"] == "offline" and will["reason"] == "connection lost"
    for body in (birth, will):
        assert body["name"] == INFO["name"] and body["kind"] == "bts"
        assert body["location"]["lat"] == 15.2


def test_unreachable_probes_refused_backs_off_to_the_next_broker():
    lk = _links(3)
    lk.unreachable = True
    assert lk.after_attempt(0, False) is None  # nothing answered: probe
    lk.unreachable = False
    delays = []
    for idx in (0, 1, 2):
        delays.append(lk.after_attempt(idx, False))
        assert lk.next_idx == (idx + 1) % 3
    assert 0 <= delays[0] <= 2 and 0 <= delays[1] <= 4 and 0 <= delays[2] <= 8
    assert lk.backoff.failures == 3
    lk.after_attempt(2, True)  # a session ended: from the preferred broker again
    assert lk.next_idx == 0
    d = lk.arrived(1)  # a probe found broker 1 after an outage: spread, backoff afresh
    assert 0 <= d <= 8 and lk.backoff.failures == 0 and lk.next_idx == 1
    assert lk.arrived(0, outage=False) == 0.0


def test_a_lost_session_probes_unless_the_broker_refused_us():
    lk = _links()
    lk.lost("link closed by the broker or the network (EOF)")
    assert lk.unreachable
    lk.lost("no PUBACK within 8s: the link is presumed dead")
    assert lk.unreachable
    lk.lost("broker refused our subscription (ACL?)")
    assert not lk.unreachable


def test_dead_session_by_missing_puback_or_silence():
    lk = _links()
    assert lk.dead(None, 100.0, 110.0) is None
    assert lk.dead(100.0, 109.0, 108.0) is None
    assert lk.dead(100.0, 109.0, 108.5) == "no PUBACK within 8s: the link is presumed dead"
    assert lk.dead(None, 100.0, 191.0) == "no packet from the broker in 91s (keepalive 60s)"
    assert not lk.ping_due(100.0, 129.0) and lk.ping_due(100.0, 130.0)


def test_preferred_broker_is_probed_from_a_backup_then_taken_after_the_spread():
    lk = _links()
    probed = []

    async def fake_probe(b):
        probed.append(b["name"])
        # the first probe finds nothing, the second an answer
        return None if len(probed) > 1 else "connection refused: nothing listens on h0:1883"

    lk.probe = fake_probe
    woken = []

    async def main():
        assert lk.preferred(0, 0.0, lambda: 0.0, None) is False  # on the preferred: nothing
        lk.serving()
        assert lk.preferred(1, 0.0, lambda: 0.0, lambda: woken.append(1)) is False
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert probed == ["b0"] and woken and lk.next_due(0.0) >= 2.0
        assert lk.preferred(1, 1.0, lambda: 1.0, None) is False  # not due yet
        assert lk.preferred(1, 6.0, lambda: 6.0, lambda: woken.append(2)) is False
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert probed == ["b0", "b0"]  # answered: the attempt after the spread
        due = 6.0 + lk.next_due(6.0)
        assert 6.0 <= due <= 14.0
        assert lk.preferred(1, due + 0.01, None, None) is True
        # after the attempt, the next probe waits preferred_retry x [0.5, 1)
        assert 150.0 <= lk.next_due(due) <= 300.0
        lk.serving()
        assert lk.next_due(due) is None

    run(main())


class _Stop(Exception):
    pass


def test_the_reconnect_loop_in_both_regimes():
    """Start with nothing answering; broker 1 answers first; it refuses once; a session on it
    ends with the link; probes find broker 0; its session ends by a refusal: back off."""
    lk = _links()
    answers = [(False, False), (False, False), (False, True), (True, True), (True, True)]
    rounds = []
    calls = []
    lines = []
    log = Log(write=lines.append)

    async def probe_round():
        rounds.append(1)
        a = answers[min(len(rounds) - 1, len(answers) - 1)]
        return 0 if a[0] else 1 if a[1] else None

    lk.probe_round = probe_round

    async def pause(delay, limit):
        calls.append(("pause", round(delay, 3), limit))
        if len([c for c in calls if c[0] == "connect"]) >= 4:
            raise _Stop()

    async def connect(idx):
        calls.append(("connect", idx))
        n = len([c for c in calls if c[0] == "connect"])
        if n == 1:
            lk.unreachable = False  # answered, refused
            return None
        return {"idx": idx, "n": n}

    async def serve(s):
        calls.append(("serve", s["idx"]))
        lk.lost("link closed by the broker" if s["n"] == 2 else "broker refused publish")
        return None

    async def main():
        try:
            await lk.drive(connect, serve, pause, log)
        except _Stop:
            pass

    run(main())
    connects = [c[1] for c in calls if c[0] == "connect"]
    assert connects == [1, 0, 0, 0], calls  # 1 answered first; refused: next is 0; ...
    text = "\n".join(lines)
    assert "no broker answers; probing" in text and "a broker answers again" in text
    assert "next attempt" in text
    # a full attempt comes after a pause that waits for the connect limiter; probes do not
    for i, c in enumerate(calls):
        if c[0] == "connect":
            assert calls[i - 1][0] == "pause" and calls[i - 1][2] is True, calls
    assert ("pause", 0.0, False) in calls
