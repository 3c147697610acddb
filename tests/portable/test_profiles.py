"""Profile engine and tables (portable): runs under pytest and the MicroPython runner."""

from agent.core import registry
from drivers import profiles
from drivers.profiles import engine

UPS = "1.3.6.1.2.1.33.1."
IF = "1.3.6.1.2.1.2.2.1."
X = "1.3.6.1.2.1.31.1.1.1."
UPTIME = "1.3.6.1.2.1.1.3.0"


def as_dict(samples):
    out = {}
    for metric, value, _unit in samples:
        assert metric not in out, metric  # one sample per metric per poll
        out[metric] = value
    return out


def test_every_metric_in_every_profile_is_in_the_registry():
    for name in profiles.names():
        profile = profiles.lookup(name)
        for part in engine.flatten(profile):
            for row in part.get("get", ()):
                assert registry.is_known(row[1]), (name, row)
            for row in part.get("walk", ()):
                if row[1] is not None:
                    assert registry.is_known(row[1].replace("<n>", "1")), (name, row)
                    assert row[4] in ("first", "max", "mean", "sum", "each", "phases"), row
            for step, _args in part.get("derive", ()):
                assert step in engine.DERIVE, (name, step)


def test_plan_lists_each_oid_once():
    gets, walks = engine.plan(profiles.lookup("ups-mib"))
    assert len(gets) == len(set(gets)) and len(walks) == len(set(walks))
    assert UPS + "3.2.0" in gets  # the row limit of the input table is fetched too
    assert UPS + "6.2.1.2" in walks  # the alarm table, for the derive step


def test_row_key_tolerates_an_extra_zero_and_rejects_neighbours():
    assert engine.row_key(UPS + "3.3.1.3.2", UPS + "3.3.1.3") == 2
    assert engine.row_key(UPS + "3.3.1.3.2.0", UPS + "3.3.1.3") == 2
    assert engine.row_key(UPS + "3.3.1.30.2", UPS + "3.3.1.3") is None
    assert engine.row_key(UPS + "3.3.1.3", UPS + "3.3.1.3") is None


def test_unknown_and_wrong_typed_values_give_no_sample():
    values = {
        UPS + "2.3.0": -1,
        UPS + "2.4.0": "junk",
        UPS + "2.7.0": 31,
        UPS + "1.1.0": "   ",
        UPS + "2.1.0": 9,
    }
    s = as_dict(engine.evaluate(profiles.lookup("ups-mib"), values, {}, 0.0))
    assert s == {"battery.temperature": 31.0}


def test_scales_and_units():
    values = {UPS + "2.3.0": 7, UPS + "2.5.0": 5210, UPS + "2.6.0": -125, UPS + "4.2.0": 499}
    samples = engine.evaluate(profiles.lookup("ups-mib"), values, {}, 0.0)
    s = as_dict(samples)
    assert s["battery.runtime"] == 420 and s["battery.voltage"] == 521.0
    assert s["battery.current"] == -12.5 and s["output.frequency"] == 49.9
    for metric, _v, unit in samples:
        assert unit == registry.unit_of(metric)


def test_table_rows_past_the_line_count_are_ignored():
    values = {
        UPS + "4.3.0": 1,
        UPS + "4.4.1.5.1": 12,
        UPS + "4.4.1.5.2": 80,  # a phase the device does not have
        UPS + "3.2.0": 3,
        UPS + "3.3.1.3.1": 230,
        UPS + "3.3.1.3.2": 231,
    }
    s = as_dict(engine.evaluate(profiles.lookup("ups-mib"), values, {}, 0.0))
    assert s["ups.load"] == 12.0 and s["input.voltage"] == 230.0
    assert s["input.voltage.l1"] == 230.0 and s["input.voltage.l2"] == 231.0
    values[UPS + "3.2.0"] = 1  # single phase: no per-phase readings
    s = as_dict(engine.evaluate(profiles.lookup("ups-mib"), values, {}, 0.0))
    assert "input.voltage.l1" not in s and s["input.voltage"] == 230.0


def test_status_and_alarms():
    p = profiles.lookup("ups-mib")
    base = UPS + "6.3."
    values = {
        UPS + "4.1.0": 3,
        UPS + "2.1.0": 2,
        UPS + "6.1.0": 2,
        UPS + "6.2.1.2.1": base + "2",
        UPS + "6.2.1.2.2": base + "24",
    }
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s["ups.alarm"] == "OnBattery TestInProgress"
    assert s["ups.status"] == "OB TEST DISCHRG"  # the OnBattery alarm outranks source "normal"
    values = {UPS + "4.1.0": 7, UPS + "2.1.0": 4, UPS + "6.1.0": 0}
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s["ups.status"] == "OL TRIM LB" and s["ups.alarm"] == ""
    # no alarm rows and no count: the device does not expose alarms, so no ups.alarm at all
    s = as_dict(engine.evaluate(p, {UPS + "4.1.0": 3}, {}, 0.0))
    assert "ups.alarm" not in s and s["ups.status"] == "OL"


def test_quirk_rescales_only_the_matching_device():
    p = profiles.lookup("ups-mib")
    values = {UPS + "3.3.1.2.1": 5000, UPS + "3.3.1.3.1": 2369}
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s["input.frequency"] == 500.0 and s["input.voltage"] == 2369.0
    values[UPS + "1.1.0"] = b"HUAWEI"
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s["input.frequency"] == 50.0 and s["input.voltage"] == 236.9


def _router(ticks, hc_in, in32=None, names=("eth0", "eth0.40", "")):
    values = {UPTIME: ticks}
    for i, name in enumerate(names, 1):
        values[IF + "8.%d" % i] = 1
        values[IF + "2.%d" % i] = name
    if hc_in is not None:
        values[X + "6.1"] = hc_in
        values[X + "10.1"] = hc_in * 2
    if in32 is not None:
        values[IF + "10.2"] = in32
        values[IF + "16.2"] = in32
    return values


def test_interface_rates_wraps_and_reboots():
    p = profiles.lookup("router")
    state = {}
    s = as_dict(engine.evaluate(p, _router(1000, 1000, 4294967000), state, 100.0))
    assert s["if.eth0.oper"] == "up" and s["if.eth0_40.oper"] == "up" and s["if.if3.oper"] == "up"
    assert "if.eth0.in_bps" not in s  # first poll: no rate yet
    assert s["router.uptime"] == 10 and s["router.rebooted"] is False

    s = as_dict(engine.evaluate(p, _router(2000, 2000, 704), state, 110.0))
    assert s["if.eth0.in_bps"] == 800.0 and s["if.eth0.out_bps"] == 1600.0
    assert s["if.eth0_40.in_bps"] == (704 + 2**32 - 4294967000) * 8 / 10.0  # 32-bit wrap

    s = as_dict(engine.evaluate(p, _router(3000, 500, 1704), state, 120.0))
    assert "if.eth0.in_bps" not in s  # a 64-bit counter going down is a reset, not a wrap
    assert s["if.eth0_40.in_bps"] == 800.0

    s = as_dict(engine.evaluate(p, _router(50, 600, 10), state, 130.0))
    assert s["router.rebooted"] is True
    assert "if.eth0.in_bps" not in s and "if.eth0_40.in_bps" not in s  # counters restarted
    s = as_dict(engine.evaluate(p, _router(1050, 1600, 1010), state, 140.0))
    assert s["router.rebooted"] is False and s["if.eth0.in_bps"] == 800.0


def test_interface_names_are_sanitised_and_unique():
    assert engine.sanitize("Gi0/1.100") == "Gi0_1_100" and engine.sanitize("..") == ""
    values = {IF + "8.1": 1, IF + "8.2": 2, X + "1.1": "wan", X + "1.2": "wan"}
    s = as_dict(engine.evaluate(profiles.lookup("if-mib"), values, {}, 0.0))
    assert s == {"if.wan.oper": "up", "if.wan_2.oper": "down"}


def test_memory_subtracts_linux_buffers_and_cache():
    st = "1.3.6.1.2.1.25.2.3.1."
    ram, other = "1.3.6.1.2.1.25.2.1.2", "1.3.6.1.2.1.25.2.1.1"
    values = {}
    rows = (
        (1, ram, "Physical memory", 1000, 900),
        (6, other, "Memory buffers", 1000, 100),
        (7, other, "Cached memory", 1000, 300),
    )
    for r, t, d, size, used in rows:
        values[st + "2.%d" % r] = t
        values[st + "3.%d" % r] = d
        values[st + "4.%d" % r] = 1024
        values[st + "5.%d" % r] = size
        values[st + "6.%d" % r] = used
    values["1.3.6.1.2.1.25.3.3.1.2.768"] = 10
    values["1.3.6.1.2.1.25.3.3.1.2.769"] = 20
    s = as_dict(engine.evaluate(profiles.lookup("host-resources"), values, {}, 0.0))
    assert s == {"router.memory": 50.0, "router.cpu": 15.0}


def test_auto_choice():
    assert profiles.choose({UPS + "2.1.0": 2, "1.3.6.1.2.1.2.1.0": 3}) == "ups-mib"
    assert profiles.choose({UPS + "2.1.0": -1, "1.3.6.1.2.1.2.1.0": 3}) == "router"
    assert profiles.choose({"1.3.6.1.4.1.12148.9.3.2.0": 5352}) == "eltek"
    assert profiles.choose({}) is None


def test_pdu_phase_rows_and_outlets():
    p = "1.3.6.1.4.1.318.1.1.12."
    values = {
        p + "2.3.1.1.2.1": 16,
        p + "2.3.1.1.4.1": 1,
        p + "2.3.1.1.5.1": 0,
        p + "2.3.1.1.2.2": 9,
        p + "2.3.1.1.4.2": 0,
        p + "2.3.1.1.5.2": 1,
        p + "3.5.1.1.4.1": 1,
        p + "3.5.1.1.4.2": 2,
    }
    s = as_dict(engine.evaluate(profiles.lookup("apc-pdu"), values, {}, 0.0))
    assert s == {"phase.1.current": 1.6, "outlet.1.status": "on", "outlet.2.status": "off"}
