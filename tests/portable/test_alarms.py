# Alarm rules: debounce, hysteresis, state and reachability rules, transitions, restart, config.
import json

from agent.core import readings as rd
from agent.core.clock import Clock
from agent.core.errors import ConfigError
from agent.core.monitor.alarms import AlarmEngine, rules_for
from agent.core.store.fsio import MemFs
from agent.core.store.jsonfile import JsonFile

from faketime import EPOCH, FakeTime, trusted_clock
from support import raises

LOW = {"id": "BATTERY_LOW", "metric": "battery.charge", "device": "*", "below": 30, "clear": 40,
       "for_s": 60, "severity": "major"}  # fmt: skip


def R(metric, value, device="ups", quality=rd.GOOD):
    return rd.Reading("s1", device, metric, value, "", None, quality)


def engine(rules, boot="b1"):
    t, c = trusted_clock(boot)
    return t, AlarmEngine("s1", rules, c)


def kinds(events):
    return [(e["event"], e["alarm"]) for e in events]


def test_threshold_raises_only_after_for_s_with_first_seen_and_values():
    t, e = engine([LOW])
    assert e.feed([R("battery.charge", 25.0)]) == []
    t.advance(30)
    assert e.feed([R("battery.charge", 24.0)]) == []
    t.advance(30)
    ev = e.feed([R("battery.charge", 23.0)])
    assert kinds(ev) == [("raise", "BATTERY_LOW/ups/battery.charge")]
    a = ev[0]
    assert a["severity"] == "major" and a["device"] == "ups" and a["metric"] == "battery.charge"
    assert a["values"] == [25.0, 24.0, 23.0] and a["value"] == 23.0
    assert a["first_seen"] == EPOCH and a["last_seen"] == EPOCH + 60 and a["time"] == EPOCH + 60
    assert a["quality"] == rd.GOOD and a["site"] == "s1" and a["unit"] == "%"
    assert a["condition"] == "below 30 for 60s, clear above 40"
    assert [x["alarm"] for x in e.active()] == ["BATTERY_LOW/ups/battery.charge"]


def test_condition_shorter_than_for_s_resets_the_debounce():
    t, e = engine([LOW])
    for v in (25.0, 35.0, 25.0, 35.0, 25.0):  # each dip ends before 60 s
        assert e.feed([R("battery.charge", v)]) == []
        t.advance(40)
    assert e.active() == []


def test_hysteresis_band_gives_no_events_and_clear_needs_the_clear_level():
    t, e = engine([LOW])
    e.feed([R("battery.charge", 20.0)])
    t.advance(60)
    assert len(e.feed([R("battery.charge", 20.0)])) == 1
    for i in range(200):  # flapping across the raise level, inside the band
        t.advance(5)
        assert e.feed([R("battery.charge", 28.0 if i % 2 else 39.0)]) == []
    t.advance(5)
    ev = e.feed([R("battery.charge", 41.0)])
    assert kinds(ev) == [("clear", "BATTERY_LOW/ups/battery.charge")]
    assert ev[0]["value"] == 41.0 and ev[0]["first_seen"] == EPOCH
    assert e.active() == []


def test_state_rules_contains_token_and_equals_bool():
    rules = [
        {"id": "UPS_ON_BATTERY", "metric": "ups.status", "contains": "OB", "for_s": 10},
        {"id": "MAINS_LOST", "metric": "mains.present", "equals": "false", "clear_s": 60},
    ]
    t, e = engine(rules)
    assert e.feed([R("ups.status", "OL"), R("mains.present", True)]) == []
    ev = e.feed([R("ups.status", "OB LB"), R("mains.present", False)])
    assert kinds(ev) == [("raise", "MAINS_LOST/ups/mains.present")]
    t.advance(10)
    assert kinds(e.feed([R("ups.status", "OB")])) == [("raise", "UPS_ON_BATTERY/ups/ups.status")]
    assert e.feed([R("ups.status", "OBX")]) != []  # a token, not a substring: OBX clears
    t.advance(1)
    assert e.feed([R("mains.present", True)]) == []  # clear_s: mains must stay back 60 s
    t.advance(30)
    assert e.feed([R("mains.present", False)]) == []  # back out: still the same alarm
    t.advance(1)
    e.feed([R("mains.present", True)])
    t.advance(60)
    assert kinds(e.feed([R("mains.present", True)])) == [("clear", "MAINS_LOST/ups/mains.present")]


def test_reachability_raises_after_n_failed_polls_and_clears_on_first_good():
    t, e = engine(rules_for("wifi"))
    assert e.poll("ups", False) == [] and e.poll("ups", False) == []
    ev = e.poll("ups", False)
    assert kinds(ev) == [("raise", "DEVICE_UNREACHABLE/ups/agent.device.stale")]
    assert ev[0]["value"] == 3
    assert e.poll("ups", False) == []
    assert e.poll("router", False) == []  # counted per device
    assert kinds(e.poll("ups", True)) == [("clear", "DEVICE_UNREACHABLE/ups/agent.device.stale")]


def test_link_down_only_for_an_interface_that_was_up():
    t, e = engine(rules_for("bts"))
    assert e.feed([R("if.eth3.oper", "down", "rtr"), R("if.wan0.oper", "up", "rtr")]) == []
    ev = e.feed([R("if.eth3.oper", "down", "rtr"), R("if.wan0.oper", "down", "rtr")])
    assert kinds(ev) == [("raise", "LINK_DOWN/rtr/if.wan0.oper")]
    assert ev[0]["severity"] == "major"
    assert kinds(e.feed([R("if.wan0.oper", "up", "rtr")])) == [
        ("clear", "LINK_DOWN/rtr/if.wan0.oper")
    ]


def test_no_value_and_stale_readings_change_nothing():
    t, e = engine([dict(LOW, for_s=0)])
    assert e.feed([R("battery.charge", None), R("battery.charge", 5.0, quality=rd.STALE)]) == []
    assert e.feed([R("battery.charge", "n/a"), R("battery.charge", True)]) == []
    assert e.active() == []


def test_restart_does_not_raise_active_alarms_again():
    fs = MemFs()
    store = JsonFile("/alarms.json", fs)
    t, e = engine(rules_for("bts"))
    e.feed([R("if.wan0.oper", "up", "rtr")])
    e.feed([R("battery.charge", 10.0)])
    t.advance(60)
    assert len(e.feed([R("battery.charge", 10.0)])) == 1
    store.save(e.snapshot())
    # A new process: new engine, same rules, the snapshot from the file.
    t2, e2 = engine(rules_for("bts"), boot="b2")
    assert e2.restore(JsonFile("/alarms.json", fs).load()) == []
    assert [a["alarm"] for a in e2.active()] == ["BATTERY_LOW/ups/battery.charge"]
    t2.advance(60)
    assert e2.feed([R("battery.charge", 12.0)]) == []  # still low: no second raise
    # The armed interface is remembered too: its first "down" after the restart raises.
    assert kinds(e2.feed([R("if.wan0.oper", "down", "rtr")])) == [
        ("raise", "LINK_DOWN/rtr/if.wan0.oper")
    ]
    ev = e2.feed([R("battery.charge", 45.0)])
    assert kinds(ev) == [("clear", "BATTERY_LOW/ups/battery.charge")]
    assert ev[0]["first_seen"] == EPOCH  # the original raise's time survives the restart


def test_restore_clears_alarms_whose_rule_is_gone():
    t, e = engine([dict(LOW, for_s=0)])
    e.feed([R("battery.charge", 10.0)])
    snap = json.loads(json.dumps(e.snapshot()))
    t2, e2 = engine([{"id": "OTHER", "metric": "ups.load", "above": 90}])
    ev = e2.restore(snap)
    assert kinds(ev) == [("clear", "BATTERY_LOW/ups/battery.charge")]
    assert ev[0]["reason"] == "rule removed" and e2.active() == []


def test_damaged_snapshot_file_loads_as_none():
    fs = MemFs()
    f = fs.open("/alarms.json", "wb")
    f.write(b'{"v": 1, "act')
    f.close()
    assert JsonFile("/alarms.json", fs).load() is None
    assert JsonFile("/missing.json", fs).load() is None


def test_untrusted_clock_events_carry_boot_and_mono_and_resolve_later():
    t = FakeTime(mono=50.0)
    c = Clock("b9", mono=t.mono, wall=t.wall)
    e = AlarmEngine("s1", [dict(LOW, for_s=10)], c)
    e.feed([R("battery.charge", 10.0)])
    t.advance(10)
    ev = e.feed([R("battery.charge", 10.0)])[0]
    assert ev["time"] is None and ev["first_seen"] is None and ev["quality"] == rd.EST_TIME
    assert ev["boot"] == "b9" and ev["mono"] == 60.0 and ev["first_at"] == ["b9", 50.0]
    t.advance(40)
    assert c.trust(EPOCH + 100, "broker")  # at mono 100
    out = c.resolve(ev)
    assert out["time"] == EPOCH + 60 and out["first_seen"] == EPOCH + 50
    assert out["last_seen"] == EPOCH + 60 and out["quality"] == rd.EST_TIME
    assert ev["time"] is None  # the stored record is not rewritten


def test_rules_for_overrides_by_id_and_checks_rules():
    rules = rules_for("wifi", {"rules": [dict(LOW, below=50, clear=60)]})
    low = [r for r in rules if r["id"] == "BATTERY_LOW"]
    assert len(low) == 1 and low[0]["below"] == 50
    assert "DEVICE_UNREACHABLE" in [r["id"] for r in rules]
    only = rules_for("bts", {"defaults": False, "rules": [LOW]})
    assert [r["id"] for r in only] == ["BATTERY_LOW"]
    assert "MAINS_LOST" in [r["id"] for r in rules_for("bts")]
    raises(ConfigError, rules_for, "ship")
    raises(ConfigError, rules_for, "bts", {"rules": [{"id": "X", "metric": "ups.load"}]})
    raises(ConfigError, AlarmEngine, "s1", [dict(LOW, severity="loud")], None)


def test_defaults_are_well_formed_data():
    from agent.core import registry

    for kind in ("bts", "wifi"):
        ids = []
        for r in rules_for(kind):
            assert r["id"] not in ids, r["id"]
            ids.append(r["id"])
            assert registry.is_known(r["metric"]), r["metric"]


def test_guarded_rule_clears_when_its_guard_stops_holding():
    rule = {"id": "RUNTIME_LOW", "metric": "site.runtime", "below": 900, "clear": 1800,
            "when": ["site.power_source", "battery"]}  # fmt: skip
    t, e = engine([rule])
    assert e.feed([R("site.power_source", "mains", "site"), R("site.runtime", 300, "site")]) == []
    ev = e.feed([R("site.power_source", "battery", "site"), R("site.runtime", 300, "site")])
    assert kinds(ev) == [("raise", "RUNTIME_LOW/site/site.runtime")]
    # Back on mains: no runtime is reported any more, yet the alarm clears on the guard.
    ev = e.feed([R("site.power_source", "mains", "site")])
    assert kinds(ev) == [("clear", "RUNTIME_LOW/site/site.runtime")] and e.active() == []
