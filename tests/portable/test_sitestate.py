# Derived site state: power source, time on battery, runtime (device or estimated), backhaul.
from faketime import trusted_clock

from agent.core import readings as rd
from agent.core.sitestate import CHARGE_METRIC, ESTIMATED_METRIC, SiteState


def R(metric, value, device="ups", quality=rd.GOOD):
    return rd.Reading("s1", device, metric, value, "", None, quality)


def derived(site):
    return {r.metric: r.value for r in site.readings()}


def make(**kw):
    t, c = trusted_clock()
    return t, SiteState("s1", c, **kw)


def test_power_source_from_each_kind_of_evidence():
    cases = (
        ([], "unknown"),
        ([R("mains.present", True)], "mains"),
        ([R("ups.status", "OB DISCHRG")], "battery"),
        ([R("ups.status", "OL CHRG")], "mains"),
        ([R("plant.alarm.mains_lost", True, "plant")], "battery"),
        ([R("output.source", "battery")], "battery"),
        ([R("mains.present", False), R("experimental.generator.running", True, "gen")],
         "generator"),
        ([R("mains.present", False), R("solar.power", 250.0, "mppt")], "solar"),
        ([R("mains.present", False), R("solar.power", 3.0, "mppt")], "battery"),
        ([R("mains.present", True, "ups"), R("plant.alarm.mains_lost", True, "plant")],
         "battery"),
    )  # fmt: skip
    for feed, want in cases:
        _, s = make()
        s.feed(feed)
        assert derived(s)["site.power_source"] == want, (feed, want)


def test_time_on_battery_counts_from_the_transfer_and_resets_on_mains():
    t, s = make()
    s.feed([R("mains.present", True)])
    assert derived(s)["site.on_battery_s"] == 0
    t.advance(100)
    s.feed([R("mains.present", False)])
    t.advance(125)
    s.feed([R("mains.present", False)])
    assert derived(s)["site.on_battery_s"] == 125
    s.feed([R("mains.present", True)])
    assert derived(s)["site.on_battery_s"] == 0


def test_device_reported_runtime_wins_and_is_not_marked_estimated():
    _, s = make()
    s.feed([R("mains.present", False), R("battery.runtime", 5400), R("battery.charge", 80.0)])
    d = derived(s)
    assert d["site.runtime"] == 5400 and d[ESTIMATED_METRIC] is False
    assert d[CHARGE_METRIC] == 80.0


def test_runtime_estimated_from_the_charge_trend_while_on_battery():
    t, s = make(min_span_s=120)
    s.feed([R("mains.present", False), R("battery.charge", 90.0)])
    t.advance(60)
    s.feed([R("battery.charge", 89.5)])
    assert "site.runtime" not in derived(s)  # too short a trend to be honest
    charge = 89.5
    for _ in range(10):  # 0.5 % per minute: 90 % lasts 180 minutes
        t.advance(60)
        charge -= 0.5
        s.feed([R("battery.charge", charge)])
    d = derived(s)
    assert d[ESTIMATED_METRIC] is True
    true_left = charge / 0.5 * 60
    assert abs(d["site.runtime"] - true_left) <= 0.01 * true_left, (d["site.runtime"], true_left)


def test_runtime_from_battery_voltage_when_no_charge_is_reported():
    t, s = make(min_span_s=120, cutoff_cell_v=1.75)
    s.feed([R("mains.present", False), R("ups.rating.battery_voltage", 24.0)])
    v = 2.05 * 12
    for _ in range(6):  # 0.01 V per cell per minute down to 1.75 V per cell: 30 minutes
        s.feed([R("battery.voltage", round(v, 3))])
        t.advance(60)
        v -= 0.12
    got = derived(s)["site.runtime"]
    left = (v + 0.12 - 1.75 * 12) / 0.12 * 60
    assert abs(got - left) <= 0.02 * left, (got, left)


def test_no_estimate_while_charging_or_on_mains():
    t, s = make(min_span_s=60)
    s.feed([R("mains.present", True), R("battery.charge", 50.0)])
    for i in range(5):
        t.advance(60)
        s.feed([R("battery.charge", 50.0 + i)])
    assert "site.runtime" not in derived(s)


def test_backhaul_up_degraded_down_unknown():
    _, s = make(backhaul=("if.wan0.oper", "if.sat0.oper", "probe.<name>.ok"))
    assert derived(s)["site.backhaul"] == "unknown"
    s.feed([R("if.wan0.oper", "up", "rtr"), R("if.sat0.oper", "up", "rtr"),
            R("if.eth3.oper", "down", "rtr")])  # fmt: skip
    assert derived(s)["site.backhaul"] == "up"  # eth3 is not a backhaul interface
    s.feed([R("if.wan0.oper", "down", "rtr")])
    assert derived(s)["site.backhaul"] == "degraded"
    s.feed([R("if.sat0.oper", "lowerLayerDown", "rtr")])
    assert derived(s)["site.backhaul"] == "down"
    s.feed([R("probe.gw.ok", True, "probe")])
    assert derived(s)["site.backhaul"] == "degraded"


def test_a_stale_device_is_forgotten_not_reused():
    _, s = make()
    s.feed([R("mains.present", False, "ups")])
    assert derived(s)["site.power_source"] == "battery"
    s.feed([R("agent.device.stale", True, "ups")])
    assert derived(s)["site.power_source"] == "unknown"
    s.feed([R("mains.present", None), R("mains.present", True, quality=rd.STALE)])
    assert derived(s)["site.power_source"] == "unknown"


def test_derived_readings_are_device_site_with_registry_names():
    from agent.core import registry

    _, s = make()
    s.feed([R("mains.present", False), R("battery.runtime", 600), R("battery.charge", 40.0)])
    for r in s.readings():
        assert r.device == "site" and r.site == "s1" and registry.is_known(r.metric), r
        assert r.time is not None and r.quality == rd.GOOD
