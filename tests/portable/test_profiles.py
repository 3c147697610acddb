"""Profile engine and tables (portable): runs under pytest and the MicroPython runner."""

from agent.core import registry
from drivers import profiles
from drivers.profiles import derive, engine

UPS = "1.3.6.1.2.1.33.1."
IF = "1.3.6.1.2.1.2.2.1."
X = "1.3.6.1.2.1.31.1.1.1."
UPTIME = "1.3.6.1.2.1.1.3.0"
HW = "1.3.6.1.4.1.2011.6.174.1."
P2 = "1.3.6.1.4.1.318.1.1.26."
INTEGER, OCTETS, GAUGE, TICKS = 0x02, 0x04, 0x42, 0x43


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
                assert step in derive.DERIVE, (name, step)


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
    assert s["device.uptime"] == 10 and s["device.rebooted"] is False

    s = as_dict(engine.evaluate(p, _router(2000, 2000, 704), state, 110.0))
    assert s["if.eth0.in_bps"] == 800.0 and s["if.eth0.out_bps"] == 1600.0
    assert s["if.eth0_40.in_bps"] == (704 + 2**32 - 4294967000) * 8 / 10.0  # 32-bit wrap

    s = as_dict(engine.evaluate(p, _router(3000, 500, 1704), state, 120.0))
    assert "if.eth0.in_bps" not in s  # a 64-bit counter going down is a reset, not a wrap
    assert s["if.eth0_40.in_bps"] == 800.0

    s = as_dict(engine.evaluate(p, _router(50, 600, 10), state, 130.0))
    assert s["device.rebooted"] is True
    assert "if.eth0.in_bps" not in s and "if.eth0_40.in_bps" not in s  # counters restarted
    s = as_dict(engine.evaluate(p, _router(1050, 1600, 1010), state, 140.0))
    assert s["device.rebooted"] is False and s["if.eth0.in_bps"] == 800.0


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
    assert profiles.choose({UPS + "2.1.0": 2, "1.3.6.1.2.1.2.1.0": 3})[0] == "ups-mib"
    assert profiles.choose({UPS + "2.1.0": -1, "1.3.6.1.2.1.2.1.0": 3})[0] == "router"
    assert profiles.choose({"1.3.6.1.4.1.12148.9.3.2.0": 5352})[0] == "eltek"
    assert profiles.choose({}) == (None, None)
    # a vendor MIB goes before UPS-MIB: the vendor view takes UPS-MIB for the rest
    huawei = {UPS + "2.1.0": 2, HW + "2.100.1.2.1": "UPS5000-E"}
    name, row = profiles.choose(huawei)
    assert name == "huawei-ups" and row[2] == "hwUpsDeviceType"
    # rPDU2 alone (current APC firmware) picks the PDU profile
    assert profiles.choose({"1.3.6.1.4.1.318.1.1.26.2.1.3.1": "pdu-rack1"})[0] == "apc-pdu"
    assert "1.3.6.1.2.1.2.1.0" not in profiles.probes(generic=False)


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


def test_pdu_rpdu2_tables_module_one_only():
    values = {
        P2 + "2.1.8.1": "AP8641",
        P2 + "4.3.1.5.1": 121,  # rPDU2DeviceStatusPower, 0.01 kW
        # rPDU2PhaseStatus: module 1 phase 1, and a daisy-chained guest (module 2) phase 1
        P2 + "6.3.1.2.1": 1, P2 + "6.3.1.3.1": 1, P2 + "6.3.1.5.1": 65, P2 + "6.3.1.6.1": 201,
        P2 + "6.3.1.2.2": 2, P2 + "6.3.1.3.2": 1, P2 + "6.3.1.5.2": 99, P2 + "6.3.1.6.2": -1,
        P2 + "6.3.1.7.1": -1,  # power not supported: -1, no reading
        # rPDU2BankStatus: bank numbers 1 and 2 in rows 1 and 2
        P2 + "8.3.1.2.1": 1, P2 + "8.3.1.3.1": 1, P2 + "8.3.1.5.1": 38,
        P2 + "8.3.1.2.2": 1, P2 + "8.3.1.3.2": 2, P2 + "8.3.1.5.2": 24,
        # rPDU2OutletSwitchedStatus: 1 off, 2 on (rPDU's is the other way round)
        P2 + "9.2.3.1.2.1": 1, P2 + "9.2.3.1.4.1": 1, P2 + "9.2.3.1.5.1": 2,
        P2 + "9.2.3.1.2.2": 1, P2 + "9.2.3.1.4.2": 2, P2 + "9.2.3.1.5.2": 1,
        # rPDU2OutletMeteredStatus: outlet 1, 0.9 A and 163 W
        P2 + "9.4.3.1.2.1": 1, P2 + "9.4.3.1.4.1": 1, P2 + "9.4.3.1.6.1": 9,
        P2 + "9.4.3.1.7.1": 163,
    }  # fmt: skip
    s = as_dict(engine.evaluate(profiles.lookup("apc-pdu"), values, {}, 0.0))
    assert s == {
        "device.model": "AP8641",
        "output.power": 1210.0,
        "phase.1.current": 6.5,
        "phase.1.voltage": 201.0,
        "bank.1.current": 3.8,
        "bank.2.current": 2.4,
        "outlet.1.status": "on",
        "outlet.2.status": "off",
        "outlet.1.current": 0.9,
        "outlet.1.power": 163.0,
    }
    for metric in s:
        assert registry.is_known(metric), metric


def test_rpdu2_first_rpdu_fills_the_gaps():
    p = "1.3.6.1.4.1.318.1.1.12."
    values = {
        P2 + "6.3.1.2.1": 1, P2 + "6.3.1.3.1": 1, P2 + "6.3.1.5.1": 65,  # rPDU2: 6.5 A
        p + "2.3.1.1.2.1": 66, p + "2.3.1.1.4.1": 1, p + "2.3.1.1.5.1": 0,  # rPDU: 6.6 A
        p + "1.16.0": 1230,  # only rPDU has the device power here
    }  # fmt: skip
    s = as_dict(engine.evaluate(profiles.lookup("apc-pdu"), values, {}, 0.0))
    assert s == {"phase.1.current": 6.5, "output.power": 1230.0}


def test_wrong_snmp_type_is_left_out_and_listed():
    """TimeTicks where UPS-MIB defines INTEGER (a Santak card): no battery.runtime 0."""
    p = profiles.lookup("ups-mib")
    values = {UPS + "2.3.0": 0, UPS + "2.4.0": 100, UPS + "2.6.0": 0, UPS + "4.2.0": 0,
              UPS + "1.1.0": "Santak"}  # fmt: skip
    types = {UPS + "2.3.0": TICKS, UPS + "2.4.0": INTEGER, UPS + "2.6.0": TICKS,
             UPS + "4.2.0": TICKS, UPS + "1.1.0": OCTETS}  # fmt: skip
    state = {}
    s = as_dict(engine.evaluate(p, values, state, 0.0, types))
    assert s == {"battery.charge": 100.0, "ups.mfr": "Santak"}
    assert sorted(state["wrong_type"]) == [
        (UPS + "2.3.0", "battery.runtime", TICKS),
        (UPS + "2.6.0", "battery.current", TICKS),
        (UPS + "4.2.0", "output.frequency", TICKS),
    ]
    assert engine.type_name(TICKS) == "TimeTicks"
    # a string where a number is due, a number where a string is: left out too
    types = {UPS + "2.4.0": OCTETS, UPS + "1.1.0": INTEGER}
    s = as_dict(engine.evaluate(p, {UPS + "2.4.0": 100, UPS + "1.1.0": "x"}, state, 0.0, types))
    assert s == {} and len(state["wrong_type"]) == 2
    # rows of a table column are checked one by one
    values = {UPS + "4.3.0": 3, UPS + "4.4.1.5.1": 30, UPS + "4.4.1.5.2": 0, UPS + "4.4.1.5.3": 40}
    types = {UPS + "4.4.1.5.1": INTEGER, UPS + "4.4.1.5.2": TICKS, UPS + "4.4.1.5.3": GAUGE}
    s = as_dict(engine.evaluate(p, values, state, 0.0, types))
    assert s == {"ups.load": 40.0, "ups.load.l1": 30.0, "ups.load.l3": 40.0}
    # without types (a caller that has none) nothing is checked
    s = as_dict(engine.evaluate(p, {UPS + "2.3.0": 0}, state, 0.0))
    assert s == {"battery.runtime": 0} and state["wrong_type"] == []


def test_three_phase_load_is_published_per_phase():
    p = profiles.lookup("ups-mib")
    values = {UPS + "4.3.0": 3, UPS + "4.4.1.5.1": 8, UPS + "4.4.1.5.2": 9, UPS + "4.4.1.5.3": 48}
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s["ups.load"] == 48.0
    assert (s["ups.load.l1"], s["ups.load.l2"], s["ups.load.l3"]) == (8.0, 9.0, 48.0)
    values = {UPS + "4.3.0": 1, UPS + "4.4.1.5.1": 8}
    s = as_dict(engine.evaluate(p, values, {}, 0.0))
    assert s == {"ups.load": 8.0}  # one line: no per-phase readings


def _huawei_ups5000():
    """The UPS5000-E recording's UPS-MIB and HUAWEI-UPS-MIB values that matter here."""
    return {
        UPS + "1.1.0": "HUAWEI", UPS + "2.1.0": 2, UPS + "2.3.0": -1, UPS + "2.4.0": -1,
        UPS + "4.1.0": 3, UPS + "4.3.0": 1, UPS + "4.4.1.5.1": 8,
        UPS + "3.2.0": 1, UPS + "3.3.1.2.1": 5000, UPS + "3.3.1.3.1": 2369,
        HW + "6.100.1.3.1": 100, HW + "6.100.1.4.1": 28080,  # charge %, backup time s
        HW + "6.100.1.6.1": 4294967295,  # battery temperature: -1 sent as Gauge32
        HW + "4.100.1.14.1": 200, HW + "4.100.1.15.1": 219, HW + "4.100.1.16.1": 481,
        HW + "3.100.1.1.1": 2347, HW + "3.100.1.4.1": 5000,
    }  # fmt: skip


def test_huawei_vendor_view_prefers_the_better_source_per_metric():
    s = as_dict(engine.evaluate(profiles.lookup("huawei-ups"), _huawei_ups5000(), {}, 0.0))
    # from HUAWEI-UPS-MIB, where UPS-MIB says -1 or one line at 8 %
    assert s["battery.charge"] == 100.0 and s["battery.runtime"] == 28080
    assert (s["ups.load.l1"], s["ups.load.l2"], s["ups.load.l3"]) == (20.0, 21.9, 48.1)
    assert s["ups.load"] == 48.1  # the most loaded phase, not UPS-MIB's 8 %
    assert s["input.voltage"] == 234.7 and s["input.frequency"] == 50.0
    assert "battery.temperature" not in s  # 4294967295 is outside the MIB's -200..800
    # from UPS-MIB, which the vendor view does not replace
    assert s["ups.status"] == "OL" and s["output.source"] == "normal" and s["ups.mfr"] == "HUAWEI"
    # UPS-MIB alone: what the agent read before the vendor view
    s = as_dict(engine.evaluate(profiles.lookup("ups-mib"), _huawei_ups5000(), {}, 0.0))
    assert "battery.charge" not in s and s["ups.load"] == 8.0


def test_get_rows_outside_their_raw_range_are_unknown():
    row_part = {"name": "t", "get": (("1.1", "battery.charge", "num", 1, (0, 100)),),
                "walk": (), "derive": ()}  # fmt: skip
    assert as_dict(engine.evaluate(row_part, {"1.1": 100}, {}, 0.0)) == {"battery.charge": 100.0}
    assert as_dict(engine.evaluate(row_part, {"1.1": 101}, {}, 0.0)) == {}


def test_composite_takes_each_metric_from_the_first_part_that_gives_it():
    a = {"name": "a", "get": (("1.1", "battery.charge", "num", 1),), "walk": (), "derive": ()}
    b = {"name": "b", "get": (("2.1", "battery.charge", "num", 1),
                              ("2.2", "battery.voltage", "num", 1)),
         "walk": (), "derive": ()}  # fmt: skip
    both = {"name": "ab", "parts": (a, b)}
    s = engine.evaluate(both, {"1.1": 90, "2.1": 50, "2.2": 54}, {}, 0.0)
    assert s == [("battery.charge", 90.0, "%"), ("battery.voltage", 54.0, "V")]
    s = engine.evaluate(both, {"1.1": -1, "2.1": 50}, {}, 0.0)  # a has no value: b's counts
    assert s == [("battery.charge", 50.0, "%")]
