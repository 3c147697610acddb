"""The fleet consumer reads contract v2 beside v1 (docs/mqtt.md, issue 17 point 5): v2 JSON and
the compact form's report-by-exception stream, through the contract's one decoder
(contract.decode with a context per site). The same rules as v1: duplicates by (site, seq),
late backlog never overwrites a newer value, a site restart starts a new stream; and what only
v2 compact has: a consumer that joined a stream mid-way shows the values it cannot rebuild as
unknown, never as an older value, until the stream's integrity refresh. Payloads are made with
the agent's own encoders (contract.encode_batch, compact2.Stream)."""

import json

from agent.core.uplink import compact2, contract
from agent.fleet import decode, exposition
from agent.fleet.model import Fleet

T0 = 1_790_000_000.0
V1, V2 = decode.PREFIXES
SITE_METRICS = (("site.power_source", "mains", ""), ("site.on_battery_s", 0, "s"),
                ("site.battery_charge", 100, "%"), ("site.runtime", 14400, "s"),
                ("site.runtime_estimated", False, ""), ("site.backhaul", "up", ""))  # fmt: skip


def poll(site, seq, t, values=None, device="site"):
    """One poll of the site's derived readings: [record], seqs from `seq` on."""
    values = dict(values or {})
    return [{"site": site, "device": device, "metric": m, "value": values.get(m, v), "unit": u,
             "time": t, "quality": "good", "seq": seq + i}
            for i, (m, v, u) in enumerate(SITE_METRICS)]  # fmt: skip


class Consumer:
    """A Fleet fed the way the subscriber feeds it: contract.decode through agent/fleet/decode
    with the site's context."""

    def __init__(self):
        self.fleet = Fleet(silent_after=3600)
        self.fleet.started = T0

    def feed(self, site, kind, payload, now, retained=False, prefix=V2):
        ctx = self.fleet.context(site) if kind == "series" or decode.is_stream(payload) else None
        body = decode.decode(kind, payload, ctx, site)
        self.fleet.apply(site, kind, body, retained=retained, now=now, prefix=prefix)
        return body

    def row(self, site, now):
        return self.fleet.summary(self.fleet.sites[site], now)


class Agent:
    """The agent's side of one v2 compact connection: its stream and retained series table."""

    def __init__(self, site="s1", session="0123456789ab", integrity=600.0):
        self.site = site
        self.stream = compact2.Stream(bytes.fromhex(session), site, integrity)
        self.batch = 0
        self.table = None

    def send(self, records, now):
        """The data message for `records` at (monotonic) time now; the series table is kept
        as the broker would keep it retained."""
        self.batch += 1
        payload, done = self.stream.encode(self.batch, records, now)
        done()
        if self.stream.table_dirty:
            self.table, done = self.stream.table_payload()
            done()
        return payload


def test_v2_json_and_compact_sites_show_exactly_as_v1_ones():
    c = Consumer()
    agent = Agent("c2")
    for i, t in enumerate((T0, T0 + 30, T0 + 60)):
        values = {"site.power_source": "battery", "site.battery_charge": 90 - 10 * i,
                  "site.runtime": 3600 - 600 * i, "site.on_battery_s": 120 * i} if i else {}
        for site, prefix in (("j1", V1), ("j2", V2)):
            recs = poll(site, 100 + 6 * i, t, values)
            version = 2 if site == "j2" else 1
            payload = contract.encode_batch(site, i, recs, "data", "json", version)
            c.feed(site, "data", payload, t, prefix=prefix)
        c.feed("c2", "data", agent.send(poll("c2", 100 + 6 * i, t, values), t), t)
    now = T0 + 70
    rows = {s: c.row(s, now) for s in ("j1", "j2", "c2")}
    assert rows["j1"]["power"] == "battery" and rows["j1"]["charge"] == 70
    assert rows["j1"]["runtime_reported"] == 2400 and rows["j1"]["on_battery_s"] == 240 + 10
    assert rows["j1"]["contract"] == "v1 json" and rows["j2"]["contract"] == "v2 json"
    assert rows["c2"]["contract"] == "v2 compact"
    for site in ("j2", "c2"):  # every value moved out of its deadband: compact is exact too
        same = {k: v for k, v in rows[site].items() if k not in ("id", "contract")}
        assert same == {k: v for k, v in rows["j1"].items() if k not in ("id", "contract")}
    for site in ("j1", "j2", "c2"):  # and the same day of history
        hist = c.fleet.detail(site, now)["history"]
        assert hist == c.fleet.detail("j1", now)["history"]


def test_duplicates_by_site_and_seq_in_and_across_v2_streams():
    c = Consumer()
    a = Agent(session="aaaaaaaaaaaa")
    first = a.send(poll("s1", 10, T0), T0)
    c.feed("s1", "data", first, T0)
    out = c.feed("s1", "data", first, T0 + 1)  # QoS 1 delivers the same message again
    assert out["duplicate"] and c.fleet.counts["duplicate_messages"] == 1
    second = a.send(poll("s1", 16, T0 + 30, {"site.battery_charge": 97}), T0 + 30)
    c.feed("s1", "data", second, T0 + 30)
    # The link drops before the PUBACK of the second: the agent sends that batch again in its
    # next connection's stream, where every series is new.
    b = Agent(session="bbbbbbbbbbbb")
    c.feed("s1", "data", b.send(poll("s1", 16, T0 + 30, {"site.battery_charge": 97}), T0 + 31),
           T0 + 31)  # fmt: skip
    assert c.fleet.counts["duplicates"] == 6 and c.fleet.counts["records_data"] == 12
    assert c.row("s1", T0 + 40)["charge"] == 97 and not c.row("s1", T0 + 40)["unknown"]


def test_late_backlog_in_a_v2_stream_does_not_overwrite_newer_values():
    c = Consumer()
    a = Agent()
    # After an outage the agent sends the current values first (newest seq), then the backlog
    # oldest first, all in the new connection's stream.
    now = poll("s1", 500, T0 + 600, {"site.power_source": "battery", "site.battery_charge": 40})
    c.feed("s1", "data", a.send(now, T0 + 601), T0 + 601)
    for i in range(5):  # an hour earlier, on mains and full
        c.feed("s1", "data", a.send(poll("s1", 100 + 6 * i, T0 + 60 * i), T0 + 602 + i),
               T0 + 602 + i)  # fmt: skip
    r = c.row("s1", T0 + 610)
    assert r["power"] == "battery" and r["charge"] == 40 and not r["unknown"]
    hist = c.fleet.detail("s1", T0 + 610)["history"]
    assert "mains" in hist["source"] and "battery" in hist["source"]  # the backlog filled it


def test_a_site_restart_is_a_new_stream_decoded_from_its_first_message():
    c = Consumer()
    a = Agent(session="aaaaaaaaaaaa")
    for i in range(3):
        c.feed("s1", "data", a.send(poll("s1", 10 + 6 * i, T0 + 30 * i), T0 + 30 * i),
               T0 + 30 * i)  # fmt: skip
    birth = contract.status_payload("online", session="bbbbbbbbbbbb", time=T0 + 100)
    c.feed("s1", "status", birth, T0 + 100)
    b = Agent(session="bbbbbbbbbbbb")  # a new connection: message 1, every series new
    body = c.feed("s1", "data", b.send(poll("s1", 40, T0 + 100, {"site.battery_charge": 99}),
                                       T0 + 100), T0 + 100)  # fmt: skip
    assert len(body["readings"]) == 6 and not body["unresolved"]
    body = c.feed("s1", "data", b.send(poll("s1", 46, T0 + 130, {"site.battery_charge": 99}),
                                       T0 + 130), T0 + 130)  # fmt: skip
    assert all(r.get("implied") for r in body["readings"])  # nothing moved: all left out
    r = c.row("s1", T0 + 131)
    assert r["charge"] == 99 and not r["unknown"] and c.fleet.counts["records_unresolved"] == 0


def run_stream(integrity=600.0, polls=60, step=30.0, change=None):
    """An agent's stream of `polls` polls `step` s apart (sending time = record time - T0);
    change(i) gives the values of poll i. Returns [(t, payload, table after it)]."""
    a = Agent(integrity=integrity)
    out = []
    for i in range(polls):
        t = T0 + step * i
        out.append((t, a.send(poll("s1", 10 + 6 * i, t, change(i) if change else None), t - T0),
                    a.table))  # fmt: skip
    return out


def test_a_consumer_that_joins_mid_stream_shows_unknown_until_the_integrity_refresh():
    """The consumer restarts at poll 7 of a stream with a 300 s integrity period (polls every
    30 s): it has the retained series table and state, and then the live stream. Values the
    stream left out are unknown, not the retained state's, and it says so; at the integrity
    refresh, at most one period after it joined, every value is known and equals what a
    consumer that read the whole stream shows."""
    on_batt = lambda i: {"site.power_source": "battery", "site.battery_charge": 100 - i,  # noqa
                         "site.runtime": 14400 - 240 * i} if i >= 3 else {}  # fmt: skip
    msgs = run_stream(integrity=300, polls=25, change=on_batt)
    whole, late = Consumer(), Consumer()
    for t, payload, _ in msgs:
        whole.feed("s1", "data", payload, t)
    join = 7
    t_join, _, table = msgs[join - 1]
    state = contract.encode_batch("s1", 0, poll("s1", 10, T0), "state", "compact", 2)
    late.feed("s1", "series", table, t_join, retained=True)
    late.feed("s1", "state", state, t_join, retained=True)  # as of the connect: mains, 100 %
    resolved_at = None
    for t, payload, _ in msgs[join:]:
        late.feed("s1", "data", payload, t)
        r = late.row("s1", t)
        if resolved_at is None and not r["unknown"]:
            resolved_at = t
        if resolved_at is None:
            # Left out (within its deadband of a value this consumer never saw): unknown.
            assert r["power"] is None and r["runtime"] is None and r["backhaul"] is None, r
            assert set(r["unknown"]) >= {"power", "charge", "runtime", "backhaul"}
            # Known by one integrity period (the series table's) after the first unknown.
            assert r["known_by"] == msgs[join][0] + 300
            assert r["level"] == "unknown" and "integrity refresh" in r["why"]
            text = exposition.render([r], {}, True, 1)
            assert 'site_agent_power_source{site="s1",source="unknown"} 1' in text
            assert 'site_agent_values_unknown{site="s1"} %d' % len(r["unknown"]) in text
            assert "site_agent_battery_charge_ratio{" not in text
    assert resolved_at is not None and resolved_at - t_join <= 300 + 30
    assert late.row("s1", T0 + 1e4) == dict(whole.row("s1", T0 + 1e4))
    assert late.fleet.counts["records_unresolved"] > 0


def test_a_missed_message_makes_values_unknown_never_the_value_before_it():
    """Message 5 carried the charge's drop from 100 to 80 and is lost (a session expired, say).
    What follows leaves the charge out (it stays within 1 % of 80): the consumer must not go on
    showing 100."""
    msgs = run_stream(polls=10, change=lambda i: {"site.battery_charge": 80} if i >= 4 else {})
    c = Consumer()
    for n, (t, payload, _) in enumerate(msgs):
        if n == 4:
            continue
        c.feed("s1", "data", payload, t)
        if n > 4:
            # A gap: the decoder keeps only static values, so every value the stream leaves
            # out is unknown (even the power source, which has not changed: it cannot tell).
            r = c.row("s1", t)
            assert r["charge"] is None and r["power"] is None, r
            assert set(r["unknown"]) >= {"charge", "power", "runtime", "backhaul"}
    assert c.fleet.counts["records_unresolved"] == 5 * 6


def test_a_site_that_moved_from_v1_to_v2_is_one_site_and_online():
    """The v1 retained goodbye stays behind when a site moves to v2; seqs go on. Whatever order
    the retained messages come in, the site is online (its v2 birth), with its v2 alarm set."""
    gone = contract.status_payload("offline", "agent stopped", info={"name": "Old name"})
    birth = contract.status_payload("online", session="abcdefabcdef", time=T0 + 50,
                                    info={"name": "New name"})  # fmt: skip
    old_alarms = contract.alarms_payload("s1", [{"alarm": "OLD/x/y", "severity": "major"}], T0)
    new_alarms = contract.alarms_payload("s1", [], T0 + 50)
    for order in ((V1, V2), (V2, V1)):
        c = Consumer()
        for prefix in order:
            if prefix == V1:
                c.feed("s1", "status", gone, T0 + 60, retained=True, prefix=V1)
            else:
                c.feed("s1", "status", birth, T0 + 60, retained=True, prefix=V2)
        for prefix in order:
            c.feed("s1", "alarms", old_alarms if prefix == V1 else new_alarms, T0 + 60,
                   retained=True, prefix=prefix)  # fmt: skip
        c.feed("s1", "data", contract.encode_batch("s1", 1, poll("s1", 10, T0), "data"), T0 + 60,
               prefix=V1)  # fmt: skip
        c.feed("s1", "data", contract.encode_batch("s1", 1, poll("s1", 16, T0 + 40, {
            "site.battery_charge": 96}), "data", "json", 2), T0 + 60, prefix=V2)  # fmt: skip
        r = c.row("s1", T0 + 60)
        assert r["status"] == "online" and r["name"] == "New name", order
        assert r["alarms"]["major"] == 0 and r["charge"] == 96 and r["contract"] == "v2 json"
        assert c.fleet.sites["s1"].source == V2
    # Its v2 connection dies: the will under v2 marks it offline. Back to v1 (a live birth).
    c.feed("s1", "status", contract.status_payload("offline", "connection lost"), T0 + 70)
    assert c.row("s1", T0 + 70)["status"] == "offline"
    c.feed("s1", "status", contract.status_payload("online", time=T0 + 80), T0 + 80, prefix=V1)
    assert c.row("s1", T0 + 80)["status"] == "online" and c.fleet.sites["s1"].source == V1


def test_a_site_whose_data_another_instance_reads():
    c = Consumer()
    c.feed("s1", "status", contract.status_payload("online", time=T0), T0, retained=True)
    c.feed("s1", "state", contract.encode_batch("s1", 0, poll("s1", 10, T0), "state", "json", 2),
           T0, retained=True)  # fmt: skip
    c.fleet.elsewhere("s1", 1, T0 + 500)
    r = c.row("s1", T0 + 501)
    assert r["elsewhere"] == 1 and not r["silent"] and r["power"] == "mains"
    text = exposition.render([r], {}, True, 1)
    assert 'site_agent_up{site="s1"} 1' in text and "site_agent_power_source{" not in text
    json.dumps(c.fleet.detail("s1", T0 + 501), allow_nan=False)


def test_sites_contexts_share_their_stream_definitions_and_decode_the_same():
    """decode.shared_names swaps a context's series definitions and templates for shared equal
    copies (memory: bench/fleet_consumer.py); what the decoder makes of the stream is the same."""
    from hil.fleet import make_sites

    sites = make_sites(2, seed=4, bts_share=0.0, start=T0, contract_version=2, fmt="compact",
                       integrity=60)  # fmt: skip
    plain, shared = [{}, {}], [{}, {}]
    for t in range(0, 200, 5):
        for n, s in enumerate(sites):
            msgs = s.connect_messages(T0) if t == 0 else s.advance(T0 + t)
            for kind, payload, _ in msgs:
                if kind not in ("data", "series"):
                    continue
                a = contract.decode(kind, payload, plain[n], s.id)
                b = decode.decode(kind, payload, shared[n], s.id)
                if kind == "data":
                    assert b["readings"] == a["readings"] and not a["unresolved"]
    one, two = (next(iter(c["streams"].values())) for c in shared)
    metrics = {s[1]: s[1] for s in one["series"].values()}
    assert all(metrics[s[1]] is s[1] for s in two["series"].values() if s[1] in metrics)
    same = [i for i in one["series"] if one["series"][i] == two["series"].get(i)]
    assert all(one["series"][i] is two["series"][i] for i in same)
