"""The fleet consumer's model under the contract's rules: duplicates by (site, seq), late backlog,
estimated times, silence by last will and by age, urgency order, filters, the history, and odd
input. Payloads are made with the contract's own encoder and read through agent/fleet/decode."""

import json

import pytest

from agent.core.uplink import contract
from agent.fleet import decode
from agent.fleet.history import History
from agent.fleet.model import Fleet, fold
from agent.fleet.seqset import SeqSet

T0 = 1_790_000_000.0


def rec(seq, metric, value, t, device="site", quality="good", site="s1", unit=""):
    return {"site": site, "device": device, "metric": metric, "value": value, "unit": unit,
            "time": t, "quality": quality, "seq": seq}  # fmt: skip


def apply_batch(fleet, recs, kind="data", fmt="json", site="s1", now=None, retained=False):
    payload = contract.encode_batch(site, 1, recs, kind, fmt)
    fleet.apply(site, kind, decode.decode(kind, payload), retained=retained,
                now=now if now is not None else T0 + 60)  # fmt: skip


def birth(fleet, site="s1", now=T0, retained=False, **info):
    body = contract.status_payload("online", version="0.1.0", session="ab", time=now, info=info)
    fleet.apply(site, "status", decode.decode("status", body), retained=retained, now=now)


def will(fleet, site="s1", now=T0, reason="connection lost", retained=False):
    body = contract.status_payload("offline", reason)
    fleet.apply(site, "status", decode.decode("status", body), retained=retained, now=now)


def row(fleet, site="s1", now=T0 + 60):
    return fleet.summary(fleet.sites[site], now)


# --- SeqSet -----------------------------------------------------------------------------------
def test_seqset_tells_new_from_seen_in_any_order():
    s = SeqSet()
    assert [s.add(n) for n in (5, 6, 7)] == [True, True, True]
    assert s.add(6) is False
    assert s.add(2) and s.add(3) and s.add(4)  # the gap fills: one range again
    assert len(s) == 1 and 2 in s and 7 in s and 8 not in s
    assert s.add(10) and len(s) == 2 and s.add(9) and len(s) == 2 and s.add(8) and len(s) == 1


def test_seqset_stays_bounded_by_joining_the_closest_ranges():
    s = SeqSet(max_ranges=4)
    for n in (5, 20, 30, 31, 50, 100):  # 5 ranges would be needed
        assert s.add(n)
    assert len(s) == 4
    assert s.joined == 9  # 21..29 were counted as seen to join 20 and 30-31
    assert 25 in s and s.add(25) is False
    assert 40 not in s and s.add(40)


# --- History ------------------------------------------------------------------------------------
def test_history_is_the_same_whatever_order_the_records_arrive_in():
    t0 = 300 * 5966667  # on a bucket boundary
    points = [(t0 + i * 60, "site.battery_charge", 100 - i) for i in range(30)]
    points += [(t0 + i * 60, "site.power_source", "battery" if 5 <= i < 20 else "mains")
               for i in range(30)]  # fmt: skip
    a, b = History(300, 12), History(300, 12)
    for t, m, v in points:
        a.add(t, m, v)
    for t, m, v in reversed(points + points):  # reversed and every point twice
        b.add(t, m, v)
    sa, sb = a.series(t0 + 1799), b.series(t0 + 1799)
    assert sa == sb
    filled = [c for c in sa["charge"] if c is not None]
    assert filled == [96.0, 91.0, 86.0, 81.0, 76.0, 71.0]  # the lowest of each 5-minute bucket
    assert [s for s in sa["source"] if s] == ["mains"] + ["battery"] * 3 + ["mains"] * 2


def test_history_window_moves_on_and_forgets_what_is_too_old():
    h = History(60, 10)
    h.add(T0, "site.runtime", 3600)
    h.add(T0 + 30 * 60, "site.runtime", 1200)  # 30 buckets later: the window moved past T0
    h.add(T0, "site.runtime", 3000)  # too old now: not kept
    s = h.series(T0 + 30 * 60)
    assert [r for r in s["runtime"] if r is not None] == [1200]
    assert len(s["runtime"]) == 10
    for bad in ("x", None, True, float("nan"), float("inf")):
        h.add(T0 + 30 * 60, "site.runtime", bad)
        h.add(T0 + 30 * 60, "site.power_source", bad)
    assert h.series(T0 + 30 * 60) == s


# --- the contract's rules ---------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_duplicates_are_removed_by_site_and_seq(fmt):
    f = Fleet()
    recs = [rec(100 + i, "site.battery_charge", 90 - i, T0 + i) for i in range(5)]
    apply_batch(f, recs, fmt=fmt)
    apply_batch(f, recs[2:], fmt=fmt)  # sent again after a reconnect
    apply_batch(f, [rec(100, "site.battery_charge", 50, T0, site="s2")], fmt=fmt, site="s2")
    assert f.sites["s1"].records == 5 and f.sites["s1"].duplicates == 3
    assert f.counts["duplicates"] == 3 and f.counts["records"] == 6
    assert row(f)["charge"] == 86


def test_late_backlog_does_not_overwrite_a_newer_value_but_fills_the_history():
    f = Fleet(history_step=300, history_size=288)
    now = T0 + 7200
    # After the outage: the retained state (newest values, with their seqs) comes first...
    apply_batch(f, [rec(900, "site.power_source", "mains", now - 60),
                    rec(901, "site.battery_charge", 64, now - 60)], kind="state", now=now)
    # ...then the backlog, oldest first: the site was on battery during the outage.
    backlog = [rec(500 + i, "site.power_source", "battery", T0 + i * 300) for i in range(10)]
    backlog += [rec(600 + i, "site.battery_charge", 100 - 4 * i, T0 + i * 300) for i in range(10)]
    apply_batch(f, backlog, now=now)
    r = row(f, now=now)
    assert r["power"] == "mains" and r["charge"] == 64
    hist = f.detail("s1", now)["history"]
    assert hist["source"].count("battery") == 10
    assert min(c for c in hist["charge"] if c is not None) == 64.0
    assert 64.0 in hist["charge"] and 100.0 in hist["charge"]
    # A live record newer than the state does replace it.
    apply_batch(f, [rec(950, "site.power_source", "generator", now)], now=now)
    assert row(f, now=now)["power"] == "generator"


def test_state_without_seqs_is_ordered_by_time():
    """Older agents sent the retained state with seq null: its time decides."""
    f = Fleet()
    apply_batch(f, [rec(None, "site.power_source", "battery", T0 + 100)], kind="state")
    apply_batch(f, [rec(40, "site.power_source", "mains", T0 + 10)])  # older backlog
    assert row(f)["power"] == "battery"
    apply_batch(f, [rec(41, "site.power_source", "mains", T0 + 200)])
    assert row(f)["power"] == "mains"
    # A retained copy never replaces a value it cannot be compared with.
    apply_batch(f, [rec(None, "site.power_source", "solar", None)], kind="state")
    assert row(f)["power"] == "mains"


def test_the_state_batch_is_not_counted_as_duplicates():
    f = Fleet()
    live = [rec(10, "site.power_source", "mains", T0), rec(11, "site.backhaul", "up", T0)]
    apply_batch(f, live)
    apply_batch(f, live, kind="state", retained=True)
    apply_batch(f, live)  # the data batch again: these are duplicates
    assert f.sites["s1"].duplicates == 2


def test_estimated_times_are_marked_until_a_trusted_time_is_newer():
    f = Fleet()
    apply_batch(f, [rec(1, "site.power_source", "battery", T0, quality="est")])
    assert row(f)["time_est"] is True
    apply_batch(f, [rec(2, "site.battery_charge", 80, T0 + 5, quality="good")])
    assert row(f)["time_est"] is False
    r = {"site": "s1", "device": "ups", "metric": "battery.voltage", "value": 26.1, "unit": "V",
         "time": T0 + 9, "quality": "good", "seq": 3, "est": True}  # fmt: skip
    apply_batch(f, [r])
    assert row(f)["time_est"] is True


def test_a_site_that_went_silent_is_marked_by_its_last_will_and_by_age():
    f = Fleet(silent_after=300)
    f.started = T0
    birth(f, "a", now=T0, name="A")
    birth(f, "b", now=T0, name="B")
    apply_batch(f, [rec(1, "site.power_source", "battery", T0 + 10, site="a")], site="a",
                now=T0 + 10)  # fmt: skip
    apply_batch(f, [rec(1, "site.power_source", "mains", T0 + 10, site="b")], site="b",
                now=T0 + 10)  # fmt: skip
    will(f, "a", now=T0 + 20)
    ra, rb = row(f, "a", T0 + 30), row(f, "b", T0 + 30)
    assert ra["silent"] and ra["status"] == "offline" and ra["reason"] == "connection lost"
    assert ra["level"] == "offline" and ra["why"] == "offline: connection lost (was on battery)"
    assert ra["age"] == 20  # the will is the broker speaking, not the site
    assert not rb["silent"] and rb["level"] == "ok"
    rb = row(f, "b", T0 + 400)  # nothing heard from b for 390 s
    assert rb["silent"] and rb["status"] == "online" and rb["level"] == "offline"
    assert rb["why"] == "silent: nothing heard for 6 min"


def test_silence_by_age_counts_from_when_the_consumer_began_listening():
    """A site online for a week has a week-old retained state: silent only if it stays quiet."""
    f = Fleet(silent_after=300)
    f.started = T0 + 7 * 86400
    birth(f, now=T0, retained=True)
    apply_batch(f, [rec(5, "site.power_source", "mains", T0)], kind="state", retained=True,
                now=f.started)  # fmt: skip
    assert not row(f, now=f.started + 60)["silent"]
    assert row(f, now=f.started + 60)["age"] == 7 * 86400 + 60
    assert row(f, now=f.started + 301)["silent"]


def test_urgency_puts_the_battery_with_least_runtime_first():
    f = Fleet()
    now = T0 + 60
    sites = {
        "mains-ok": [("site.power_source", "mains")],
        "batt-long": [("site.power_source", "battery"), ("site.runtime", 7200)],
        "batt-short": [("site.power_source", "battery"), ("site.runtime", 600),
                       ("site.runtime_estimated", True)],
        "batt-unknown": [("site.power_source", "battery")],
        "backhaul-down": [("site.power_source", "mains"), ("site.backhaul", "down")],
        "generator": [("site.power_source", "generator")],
    }  # fmt: skip
    for site, values in sites.items():
        birth(f, site, now=T0)
        apply_batch(f, [rec(i + 1, m, v, T0 + 50, site=site) for i, (m, v) in enumerate(values)],
                    site=site, now=now)  # fmt: skip
    birth(f, "gone", now=T0)
    will(f, "gone", now=T0 + 30)
    order = [r["id"] for r in f.rows(now)]
    assert order == ["batt-short", "batt-long", "batt-unknown", "gone", "backhaul-down",
                     "generator", "mains-ok"]  # fmt: skip
    short = f.rows(now)[0]
    assert short["level"] == "critical" and short["runtime"] == 590  # 10 s since the report
    assert short["why"] == "on battery, 9 min left (estimated)"


def test_filter_by_ward_or_commune_ignores_case_and_diacritics():
    f = Fleet()
    birth(f, "hue-1", name="Nhà văn hóa Thuận Hòa",
          location={"commune": "Thuận Hòa", "province": "Thừa Thiên Huế"})
    birth(f, "dn-1", name="Trạm BTS Đà Nẵng", location={"commune": "Thanh Khê"})
    birth(f, "qn-7", name="Tinh Ky BTS", location={"commune": "Tịnh Kỳ"})
    ids = lambda q=None, area=None: [r["id"] for r in f.rows(T0, q, area)]  # noqa: E731
    assert ids("thuan hoa") == ["hue-1"]
    assert ids("THUA THIEN") == ["hue-1"]
    assert ids("da nang") == ["dn-1"]  # đ is folded by hand
    assert ids("tinh ky") == ["qn-7"]
    assert ids("qn-7") == ["qn-7"]
    assert ids(area="Thanh Khê") == ["dn-1"]
    assert sorted(ids()) == ["dn-1", "hue-1", "qn-7"]
    assert fold("Đồng Hới") == "dong hoi"
    assert f.areas() == {"Thuận Hòa": 1, "Thừa Thiên Huế": 1, "Thanh Khê": 1, "Tịnh Kỳ": 1}


def alarm_event(seq, aid, event, t, severity="major"):
    rule, device, metric = aid.split("/", 2)
    ev = rec(seq, metric, None, t, device=device)
    ev.update({"alarm": aid, "event": event, "rule": rule, "severity": severity})
    return ev


def alarm_set(fleet, events, t, site="s1"):
    body = contract.alarms_payload(site, events, t)
    fleet.apply(site, "alarms", decode.decode("alarms", body), now=t)


def test_active_alarms_from_the_retained_set_and_the_events():
    f = Fleet()
    lost = alarm_event(10, "MAINS_LOST/plant/plant.alarm.mains_lost", "raise", T0)
    low = alarm_event(11, "RUNTIME_LOW/site/site.runtime", "raise", T0 + 5, "critical")
    alarm_set(f, [lost], T0 + 1)
    assert row(f)["alarms"] == {"critical": 0, "major": 1, "minor": 0, "warning": 0}
    apply_batch(f, [low], kind="alarm")
    assert row(f)["alarms"]["critical"] == 1
    # The set published before RUNTIME_LOW was raised arrives late: the raise stands.
    alarm_set(f, [lost], T0 + 1)
    assert row(f)["alarms"]["critical"] == 1
    clear = alarm_event(12, "MAINS_LOST/plant/plant.alarm.mains_lost", "clear", T0 + 9)
    apply_batch(f, [clear], kind="alarm")
    assert row(f)["alarms"]["major"] == 0
    alarm_set(f, [lost, low], T0 + 6)  # a stale set still holding the cleared alarm
    assert row(f)["alarms"] == {"critical": 1, "major": 0, "minor": 0, "warning": 0}
    # A raise from the backlog, older than the clear, does not bring it back.
    apply_batch(f, [alarm_event(9, "MAINS_LOST/plant/plant.alarm.mains_lost", "raise", T0)],
                kind="alarm")  # fmt: skip
    assert row(f)["alarms"]["major"] == 0
    d = f.detail("s1", T0 + 60)
    assert [a["alarm"] for a in d["active_alarms"]] == ["RUNTIME_LOW/site/site.runtime"]
    assert [e["event"] for e in d["events"]] == ["raise", "clear", "raise"]  # newest first


def test_records_filed_under_another_site_than_their_topic_are_rejected():
    f = Fleet()
    apply_batch(f, [rec(1, "site.power_source", "battery", T0, site="victim")], site="s1")
    assert f.counts["records_rejected"] == 1
    assert row(f)["power"] is None and "victim" not in f.sites


def test_the_main_battery_bank_is_the_first_one_unless_a_far_bigger_one_reports():
    f = Fleet()
    apply_batch(f, [rec(1, "battery.voltage", 26.8, T0, device="ups")])
    assert row(f)["voltage"] == 26.8
    apply_batch(f, [rec(2, "battery.voltage", -53.5, T0 + 1, device="plant")])  # -48 V plant
    assert row(f)["voltage"] == -53.5 and row(f)["voltage_device"] == "plant"
    apply_batch(f, [rec(3, "battery.voltage", 27.0, T0 + 2, device="ups"),
                    rec(4, "battery.voltage", 52.0, T0 + 3, device="bms")])  # fmt: skip
    assert row(f)["voltage"] == -53.5  # sticky: the BMS bank is not 1.3 times the plant's


@pytest.mark.parametrize("payload", [
    b"", b"{", b"[]", b"null", b'{"v": 2, "readings": []}', b'{"v": 1, "readings": 5}',
    b"\xc1\x01garbage", b"\xc1\x00{}", b"\xc1\x07x", b"\xff\xfe",
    json.dumps({"v": 1, "site": "s1", "kind": "weird", "readings": []}).encode(),
])  # fmt: skip
def test_bad_batches_raise_decode_error(payload):
    with pytest.raises(decode.DecodeError):
        decode.decode("data", payload)


@pytest.mark.parametrize("kind,payload", [
    ("status", b'{"v": 1, "state": "sleeping"}'), ("status", b"offline"),
    ("status", b'{"v": 3, "state": "online"}'), ("alarms", b'{"v": 1, "alarms": {}}'),
    ("reply", b"{}"),
])  # fmt: skip
def test_bad_status_and_alarm_sets_raise_decode_error(kind, payload):
    with pytest.raises(decode.DecodeError):
        decode.decode(kind, payload)


def test_odd_values_are_ignored_not_fatal():
    f = Fleet()
    body = {"v": 1, "state": "online", "time": "yesterday", "name": 5,
            "location": {"lat": 200, "lon": "east", "commune": ["x"], "province": "P" * 500}}
    f.apply("s1", "status", decode.decode("status", json.dumps(body).encode()), now=T0)
    odd = [rec(1, "site.runtime", "long", T0), rec(2, "site.battery_charge", float("nan"), T0),
           rec(3, "site.power_source", {"x": 1}, T0), rec("7", "site.backhaul", "up", "now"),
           rec(4, "site.on_battery_s", True, T0 + 10 ** 9), {"seq": 5},
           rec(6, "battery.voltage", float("inf"), T0, device="ups")]  # fmt: skip
    f.apply("s1", "data", {"kind": "data", "readings": odd}, now=T0 + 60)
    r = row(f)
    assert r["runtime"] is None and r["charge"] is None and r["power"] is None
    assert r["backhaul"] == "up" and r["on_battery_s"] is None and r["voltage"] is None
    assert r["lat"] is None and r["province"] == "P" * 200 and r["name"] is None
    json.dumps(f.detail("s1", T0 + 60), allow_nan=False)  # the page's JSON stays valid
    f.bad_message("s1", "data", "x")
    assert f.sites["s1"].bad == 1


def test_sites_past_the_limit_are_counted_not_kept():
    f = Fleet(max_sites=2)
    for s in ("a", "b", "c"):
        birth(f, s)
    assert sorted(f.sites) == ["a", "b"] and f.counts["sites_refused"] == 1


def test_split_topic():
    p = "site-agent/v1"
    assert decode.split_topic("site-agent/v1/bts-7/data", p) == (p, "bts-7", "data")
    assert decode.split_topic("site-agent/v1/bts-7/x/data", p) is None
    assert decode.split_topic("site-agent/v2/bts-7/data", p) is None
    assert decode.split_topic("site-agent/v1//data", p) is None
    both = decode.PREFIXES
    assert decode.split_topic("site-agent/v2/bts-7/series", both) == (
        "site-agent/v2", "bts-7", "series")
    assert decode.split_topic("site-agent/v1/bts-7/data", both)[0] == "site-agent/v1"
    assert decode.split_topic("site-agent/v10/bts-7/data", both) is None
