"""The fleet consumer against real mosquitto with sites of both contract versions side by side
(hil/fleet.py, encoded by the agent's own contract module: v2 compact on a compact2.Stream per
connection, with its retained series table). The sites' clock is driven by the test
(FleetSim.step), so "within one integrity period" is checked in the sites' own time, whatever
the machine's load."""

import itertools
import time

from agent.fleet.model import Fleet
from agent.fleet.subscriber import Subscriber
from hil.broker import Broker
from hil.fleet import FleetSim, make_sites

INTEGRITY = 60.0
_ids = itertools.count()


def wait(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.02)
    raise AssertionError("timed out waiting for %s" % what)


def consumer(port, **kw):
    fleet = Fleet(silent_after=3600, history_step=5.0, history_size=720)
    sub = Subscriber(fleet, "127.0.0.1", port, client_id="noc-%d" % next(_ids), **kw).start()
    assert sub.wait_synced(30), sub.last_error
    return fleet, sub


def fast(sites, poll_s=10.0, commit_s=5.0):
    for s in sites:
        s.commit_s = commit_s
        for d in s.devices:
            d.interval = poll_s
    return sites


def heard(fleet, site, t):
    """Has the consumer had the site's messages of time t (its newest record is that new)?"""
    s = fleet.sites.get(site.id)
    return s is not None and s.newest_time is not None and s.newest_time >= round(t, 3) - 1e-6


def step_all(sim, fleets, t):
    """Advance the sites to t and wait until every consumer has what they sent."""
    before = {site.id: site.last_sent for site in sim.sites}
    sim.step(t)
    for f in fleets:
        for site in sim.sites:
            if not site.silent and site.last_sent != before[site.id]:
                wait(lambda f=f, s=site: heard(f, s, s.last_sent), 30, "%s at %s" % (site.id, t))


def test_v1_and_v2_sites_side_by_side_on_one_broker():
    """One consumer with the default prefixes reads sites in every form: v1 JSON, v1 compact,
    v2 JSON and v2 compact; it shows each the same way, with nothing unresolved."""
    with Broker(require_mosquitto=True) as b:
        fleet, sub = consumer(b.port)
        t0 = time.time() - 300
        sites = fast(make_sites(8, seed=5, bts_share=0.5, start=t0))
        for i, s in enumerate(sites):
            s.use_contract(1 + i % 2, ("json", "compact")[(i // 2) % 2])
        sim = FleetSim("127.0.0.1", b.port, sites).start(run=False, now=t0)
        try:
            for t in range(1, 40):
                step_all(sim, [fleet], t0 + t)
        finally:
            sim.stop()
        wait(lambda: all(s.status == "offline" for s in fleet.sites.values()), 30, "goodbyes")
        forms = {s.id: s.contract for s in fleet.sites.values()}
        assert sorted(set(forms.values())) == ["v1 compact", "v1 json", "v2 compact",
                                               "v2 json"]  # fmt: skip
        for site in sites:
            r = fleet.summary(fleet.sites[site.id], t0 + 40)
            assert r["power"] == "mains" and r["backhaul"] == "up" and not r["unknown"], r
            assert r["status"] == "offline" and r["reason"] == "agent stopped"
            if site.kind == "bts":
                assert r["charge"] == 100 and r["runtime"] == 4 * 3600
        assert fleet.counts["bad_messages"] == 0 and fleet.counts["records_unresolved"] == 0
        # Every record the sites sent was applied once (the v2 JSON and compact ones too).
        assert fleet.counts["records_data"] + fleet.counts["records_alarm"] == sim.records_sent()
        assert fleet.counts["duplicates"] == 0
        sub.stop()


def test_a_consumer_restart_mid_stream_resolves_within_one_integrity_period():
    """Consumer A reads the v2 compact sites from their first message. It is replaced by B,
    which joins mid-stream, right after the sites' integrity refresh: B has the retained status,
    state and series table, and the live stream from then on. Until the next refresh (one
    integrity period later, at the sites' first poll after it) the values the stream leaves
    out are unknown in B, never the retained state's; then B shows what A shows."""
    with Broker(require_mosquitto=True) as b:
        a, sub_a = consumer(b.port)
        t0 = time.time() - 600
        sites = fast(make_sites(4, seed=9, bts_share=0.5, start=t0, contract_version=2,
                                fmt="compact", integrity=INTEGRITY))  # fmt: skip
        sim = FleetSim("127.0.0.1", b.port, sites).start(run=False, now=t0)
        t = t0
        try:
            # Run until no site's derived readings (device "site") are due for their refresh
            # in the next few seconds, so that B's first messages leave them out.
            while t < t0 + 2 * INTEGRITY or min(s.next_refresh() for s in sites) - t < 10:
                t += 1.0
                step_all(sim, [a], t)
            sub_a.stop()
            join = t
            fleet, sub_b = consumer(b.port)
            assert all(fleet.sites[s.id].integrity == INTEGRITY for s in sites)  # series table
            unknown_seen, resolved = set(), {}
            while len(resolved) < len(sites):
                t += 1.0
                assert t - join <= INTEGRITY + 15, "not resolved within one integrity period"
                step_all(sim, [fleet], t)
                for s in sites:
                    r = fleet.summary(fleet.sites[s.id], t)
                    if r["unknown"]:
                        assert s.id not in resolved  # once known, it stays known
                        assert all(r[f] is None for f in r["unknown"])  # never a value
                        if "power" in r["unknown"]:
                            assert r["level"] == "unknown" and "integrity" in r["why"]
                        unknown_seen.add(s.id)
                    elif s.id not in resolved and s.id in unknown_seen:
                        resolved[s.id] = t
            # Every site's values were unknown for a while (the stream left them out), and
            # known again within one integrity period (and a poll) after B joined.
            assert unknown_seen == {s.id for s in sites}
            assert max(resolved.values()) - join <= INTEGRITY + 10.0 + 5.0
            # A stopped at the join; what B shows now is what the sites say.
            for s in sites:
                rb = fleet.summary(fleet.sites[s.id], t)
                assert rb["power"] == "mains" and rb["backhaul"] == "up" and not rb["unknown"]
                if s.kind == "bts":
                    assert rb["charge"] == 100 and rb["runtime"] == 4 * 3600
            assert fleet.counts["records_unresolved"] > 0 and fleet.counts["bad_messages"] == 0
            sub_b.stop()
        finally:
            sim.stop()


def test_a_site_restart_is_a_new_stream_and_late_backlog_stays_behind():
    """A v2 compact site loses its link (its backlog piles up), goes on battery, and comes back
    in a new connection: a new session and stream (message 1, definitions in band), the
    current values, then the backlog. The consumer follows: nothing unknown, no duplicate, the
    newest values shown, the backlog in the history."""
    with Broker(require_mosquitto=True) as b:
        fleet, sub = consumer(b.port)
        t0 = time.time() - 900
        sites = fast(make_sites(2, seed=3, bts_share=1.0, start=t0, contract_version=2,
                                fmt="compact", integrity=INTEGRITY))  # fmt: skip
        sim = FleetSim("127.0.0.1", b.port, sites).start(run=False, now=t0)
        site = sites[0]
        try:
            t = t0
            for _ in range(30):
                t += 1.0
                step_all(sim, [fleet], t)
            first = fleet.sites[site.id].session
            sim.go_silent(site.id)
            site.silent = True
            for _ in range(40):  # on mains, then on battery, while the link is down
                t += 1.0
                if t - t0 == 50:
                    site.mains = False
                    site.on_battery_since = t
                    site.drain_s = 300.0  # a small battery: its charge falls within seconds
                step_all(sim, [fleet], t)
            wait(lambda: fleet.sites[site.id].status == "offline", 30, "the last will")
            site.silent = False
            sim.come_back(site.id)
            t += 1.0
            step_all(sim, [fleet], t)
            wait(lambda: fleet.sites[site.id].session not in (None, first), 30, "a new birth")
        finally:
            sim.stop()
        r = fleet.summary(fleet.sites[site.id], t)
        assert fleet.sites[site.id].session == site.session != first
        assert r["power"] == "battery" and not r["unknown"] and r["charge"] < 100, r
        assert fleet.counts["records_unresolved"] == 0 and fleet.counts["duplicates"] == 0
        hist = fleet.detail(site.id, t)["history"]
        assert "battery" in hist["source"] and "mains" in hist["source"]
        assert fleet.counts["records_data"] + fleet.counts["records_alarm"] == sim.records_sent()
        sub.stop()
