"""SnmpDriver against real snmpsim serving snmpsim-data recordings (and hil/recordings/). Expected
values are read from the .snmprec files the simulator serves, never typed in here."""

import asyncio

import pytest

from agent.core.errors import DeviceTimeout
from drivers.snmp import SnmpDriver
from hil.snmpsim import free_udp_port

from snmp_support import (
    APC,
    EAST,
    EATON,
    ELTEK,
    HUAWEI,
    NETSURE,
    ONBATT,
    PDU,
    PDU3,
    PHOENIX,
    UBNT,
    UPS,
    VYATTA,
    check_registry,
    column,
    device,
    num,
    sim_fixture,
    val,
)
from snmp_support import poll as poll_with

ALL = [EATON, HUAWEI, EAST, PHOENIX, VYATTA, UBNT, PDU, PDU3, ONBATT, APC, ELTEK, NETSURE]
V3 = {"user": "agent", "auth_key": "auth-key-2024", "priv_key": "priv-key-2024"}
sim = sim_fixture(ALL, v3_user=V3)


def poll(dev, times=1, budget=10):
    return poll_with(SnmpDriver, dev, times, budget)


# --- UPS-MIB ----------------------------------------------------------------------------------
def test_eaton_ups_mib_matches_the_recording(sim):
    rec = sim.expected(EATON)
    driver, s = poll(device(sim, EATON))
    assert driver.chosen == "ups-mib"  # chosen by "auto"
    check_registry(s)
    assert val(s, "battery.charge") == num(rec, UPS + "2.4.0")
    assert val(s, "battery.voltage") == pytest.approx(num(rec, UPS + "2.5.0") / 10)
    assert val(s, "battery.runtime") == num(rec, UPS + "2.3.0") * 60
    assert val(s, "battery.temperature") == num(rec, UPS + "2.7.0")
    assert val(s, "battery.status") == {2: "normal"}[num(rec, UPS + "2.1.0")]
    assert val(s, "output.source") == {3: "normal"}[num(rec, UPS + "4.1.0")]
    lines = num(rec, UPS + "3.2.0")
    inputs = column(rec, UPS + "3.3.1.3")
    assert lines == len(inputs) == 3
    assert val(s, "input.voltage") == int(inputs[1])
    for row, v in inputs.items():
        assert val(s, f"input.voltage.l{row}") == int(v)
    assert val(s, "input.frequency") == pytest.approx(int(column(rec, UPS + "3.3.1.2")[1]) / 10)
    loads = column(rec, UPS + "4.4.1.5")
    assert val(s, "ups.load") == max(int(v) for v in loads.values())
    assert val(s, "ups.mfr") == rec[UPS + "1.1.0"][1]
    assert val(s, "ups.model") == rec[UPS + "1.2.0"][1]
    assert num(rec, UPS + "6.1.0") == 0
    assert val(s, "ups.alarm.count") == 0 and val(s, "ups.alarm") == ""
    assert val(s, "ups.status") == "OL"
    assert s["battery.voltage"][1] == "V" and s["battery.runtime"][1] == "s"


def test_unknown_values_give_no_sample(sim):
    rec = sim.expected(HUAWEI)
    _, s = poll(device(sim, HUAWEI, profile="ups-mib"))  # UPS-MIB alone, not the vendor view
    for oid, metric in (
        ("2.3.0", "battery.runtime"),
        ("2.4.0", "battery.charge"),
        ("2.7.0", "battery.temperature"),
    ):
        assert num(rec, UPS + oid) == -1
        assert metric not in s
    # upsInputLineBads is absent from this recording: noSuchInstance, so no sample either
    assert UPS + "3.1.0" not in rec and "input.transfer.count" not in s
    assert val(s, "battery.voltage") == pytest.approx(num(rec, UPS + "2.5.0") / 10)


def test_huawei_out_of_spec_scales_are_corrected(sim):
    rec = sim.expected(HUAWEI)
    _, s = poll(device(sim, HUAWEI, profile="ups-mib"))
    assert rec[UPS + "1.1.0"][1] == "HUAWEI"
    # 0.01 Hz and 0.1 V on the wire, where RFC 1628 says 0.1 Hz and 1 V
    assert val(s, "input.frequency") == pytest.approx(int(rec[UPS + "3.3.1.2.1"][1]) / 100)
    assert val(s, "input.voltage") == pytest.approx(int(rec[UPS + "3.3.1.3.1"][1]) / 10)
    assert 45 <= val(s, "input.frequency") <= 65 and 180 <= val(s, "input.voltage") <= 260


def test_extra_zero_after_the_table_index(sim):
    rec = sim.expected(EAST)
    assert UPS + "3.3.1.3.1.0" in rec  # the device's quirk, in the recording
    _, s = poll(device(sim, EAST))
    assert val(s, "input.voltage") == int(rec[UPS + "3.3.1.3.1.0"][1])
    assert val(s, "ups.load") == max(int(v) for v in column(rec, UPS + "4.4.1.5").values())
    assert val(s, "ups.mfr") == rec[UPS + "1.1.0"][1].strip()  # space-padded on the wire


def test_rows_past_the_number_of_lines_are_ignored(sim):
    rec = sim.expected(PHOENIX)
    assert num(rec, UPS + "3.2.0") == 1 and len(column(rec, UPS + "3.3.1.3")) == 3
    _, s = poll(device(sim, PHOENIX))
    assert val(s, "input.voltage") == int(column(rec, UPS + "3.3.1.3")[1])
    assert rec[UPS + "1.1.0"][1] == "" and "ups.mfr" not in s


def test_on_battery_with_alarms(sim):
    rec = sim.expected(ONBATT)
    _, s = poll(device(sim, ONBATT))
    check_registry(s)
    assert val(s, "output.source") == "battery" and val(s, "battery.status") == "low"
    assert set(val(s, "ups.status").split()) == {"OB", "LB", "DISCHRG", "ALARM"}
    names = {"1.3.6.1.2.1.33.1.6.3.2": "OnBattery", "1.3.6.1.2.1.33.1.6.3.3": "LowBattery"}
    want = [names.get(v, "vendor") for _k, v in sorted(column(rec, UPS + "6.2.1.2").items())]
    assert val(s, "ups.alarm") == " ".join(want) == "OnBattery LowBattery vendor"
    assert val(s, "ups.alarm.count") == num(rec, UPS + "6.1.0")
    assert val(s, "battery.current") == pytest.approx(num(rec, UPS + "2.6.0") / 10)
    assert val(s, "ups.seconds_on_battery") == num(rec, UPS + "2.2.0")
    assert "battery.temperature" not in s and "input.frequency" not in s  # -1 on the wire
    assert val(s, "input.voltage") == 0.0  # mains is gone: a real zero, kept
    assert val(s, "ups.model") == "ONLINE 3000"


# --- routers ----------------------------------------------------------------------------------
def test_vyatta_router(sim):
    rec = sim.expected(VYATTA)
    driver, s = poll(device(sim, VYATTA), times=2)
    assert driver.chosen == "router"
    check_registry(s)
    ticks = num(rec, "1.3.6.1.2.1.1.3.0")
    assert ticks // 100 <= val(s, "device.uptime") <= ticks // 100 + 3600
    assert val(s, "device.rebooted") is False
    names = column(rec, "1.3.6.1.2.1.31.1.1.1.1")
    opers = column(rec, "1.3.6.1.2.1.2.2.1.8")
    states = {1: "up", 2: "down"}
    for row, name in names.items():
        assert val(s, f"if.{name}.oper") == states[int(opers[row])]
        # counters in a recording do not move: the second poll's rate is 0
        assert val(s, f"if.{name}.in_bps") == 0.0 and val(s, f"if.{name}.out_bps") == 0.0
    loads = [int(v) for v in column(rec, "1.3.6.1.2.1.25.3.3.1.2").values()]
    assert val(s, "router.cpu") == pytest.approx(sum(loads) / len(loads))
    st = "1.3.6.1.2.1.25.2.3.1."
    types, descr = column(rec, st + "2"), column(rec, st + "3")
    size, used = column(rec, st + "5"), column(rec, st + "6")
    ram = [r for r, t in types.items() if t == "1.3.6.1.2.1.25.2.1.2"]
    assert len(ram) == 1
    cache = sum(int(used[r]) for r, d in descr.items() if d in ("Memory buffers", "Cached memory"))
    want = 100.0 * (int(used[ram[0]]) - cache) / int(size[ram[0]])
    assert val(s, "router.memory") == pytest.approx(want, abs=0.01)
    assert 10 < want < 60  # without subtracting cache it would read ~94 %


def test_ubiquiti_uses_ifdescr_and_32bit_counters(sim):
    rec = sim.expected(UBNT)
    assert not column(rec, "1.3.6.1.2.1.31.1.1.1.1")  # no ifName, no ifHC* on this device
    driver, s = poll(device(sim, UBNT), times=2)
    check_registry(s)
    descr = column(rec, "1.3.6.1.2.1.2.2.1.2")
    opers = column(rec, "1.3.6.1.2.1.2.2.1.8")
    for row, name in descr.items():
        metric = "if.%s.oper" % name.replace(".", "_")
        assert val(s, metric) == {"1": "up", "2": "down"}[opers[row]]
    assert "if.eth0_40.in_bps" in s  # 32-bit fallback gives rates too
    assert "router.cpu" not in s  # HOST-RESOURCES not implemented by this device


def test_snmp_v1_reads_the_same_values(sim):
    _, v2 = poll(device(sim, EATON))
    _, v1 = poll(device(sim, EATON, version="1"))
    assert v1 == v2
    _, r1 = poll(device(sim, UBNT, version="1", profile="router"))
    assert val(r1, "if.eth0.oper") == "up"


# --- APC, DC plants ---------------------------------------------------------------------------
def test_apc_pdu_phase_load_and_outlets(sim):
    """These PDUs answer both rPDU2 and the older rPDU: rPDU2 is read, rPDU fills gaps."""
    for name in (PDU, PDU3):
        rec = sim.expected(name)
        driver, s = poll(device(sim, name))
        assert driver.chosen == "apc-pdu"
        check_registry(s)
        p2 = "1.3.6.1.4.1.318.1.1.26."
        # rPDU2OutletSwitchedStatusState is a time-driven snmpsim variation in these recordings
        # (hil/recordings/UPS/apc-rpdu2-only fixes it): here only the set of outlets is checked.
        numbers = column(rec, p2 + "9.2.3.1.4")
        assert len(numbers) in (16, 24)
        for row in numbers.values():
            assert val(s, f"outlet.{row}.status") in ("on", "off")
        phases, currents = column(rec, p2 + "6.3.1.3"), column(rec, p2 + "6.3.1.5")
        for r, phase in phases.items():
            assert val(s, "phase.%s.current" % phase) == pytest.approx(int(currents[r]) / 10)
        banks, bank_currents = column(rec, p2 + "8.3.1.3"), column(rec, p2 + "8.3.1.5")
        for r, bank in banks.items():
            assert val(s, "bank.%s.current" % bank) == pytest.approx(int(bank_currents[r]) / 10)
        assert not [m for m in s if m.startswith("phase.0")]
        # what the PDU is, by name (device.*, not ups.*)
        assert val(s, "device.model") == rec[p2 + "2.1.8.1"][1]
        assert "ups.model" not in s and "ups.firmware" not in s


def test_apc_smartups(sim):
    rec = sim.expected(APC)
    u = "1.3.6.1.4.1.318.1.1.1."
    driver, s = poll(device(sim, APC))
    assert driver.chosen == "apc-powernet"
    check_registry(s)
    assert val(s, "battery.charge") == pytest.approx(num(rec, u + "2.3.1.0") / 10)  # 0.1 % OID
    assert val(s, "battery.runtime") == num(rec, u + "2.2.3.0") // 100
    assert val(s, "input.voltage") == pytest.approx(num(rec, u + "3.3.1.0") / 10)
    assert val(s, "battery.replace") is (num(rec, u + "2.2.4.0") == 2)
    assert val(s, "output.source") == "trim" and val(s, "ups.status") == "OL TRIM RB"


def test_eltek_and_netsure(sim):
    rec = sim.expected(ELTEK)
    e = "1.3.6.1.4.1.12148.9."
    driver, s = poll(device(sim, ELTEK))
    assert driver.chosen == "eltek"
    check_registry(s)
    assert val(s, "battery.voltage") == pytest.approx(num(rec, e + "3.2.0") / 100)
    assert val(s, "battery.current") == num(rec, e + "3.3.0") < 0
    assert val(s, "plant.alarm.mains_lost") is (num(rec, e + "7.1.11.0") == 1) is True
    assert val(s, "plant.alarm.lvd1_open") is False
    assert "plant.alarm.battery_life_ended" not in s  # not in the recording: no sample
    status = column(rec, e + "5.5.2.1.2")
    for row, v in status.items():
        assert val(s, f"rectifier.{row}.status") == ("absent", "normal", "alarm")[int(v)]

    rec = sim.expected(NETSURE)
    n = "1.3.6.1.4.1.6302.2.1.2."
    driver, s = poll(device(sim, NETSURE))
    assert driver.chosen == "netsure"
    assert val(s, "dc.voltage") == pytest.approx(num(rec, n + "2.0") / 1000)
    assert val(s, "dc.current") == pytest.approx(num(rec, n + "3.0") / 1000)
    assert val(s, "dc.status") == "major" and num(rec, n + "1.0") == 5


# --- v3 -----------------------------------------------------------------------------------------
def test_v3_auth_priv(sim):
    v3 = dict(
        version="3",
        user=V3["user"],
        auth_protocol="SHA",
        auth_key=V3["auth_key"],
        priv_protocol="AES",
        priv_key=V3["priv_key"],
        security_level="authPriv",
        context=EATON,
    )
    _, s3 = poll(device(sim, None, **v3))
    _, s2 = poll(device(sim, EATON))
    assert s3 == s2


def test_v3_wrong_key_is_an_authorization_error(sim):
    v3 = dict(
        version="3",
        user=V3["user"],
        auth_protocol="SHA",
        auth_key="not-the-key-0",
        priv_protocol="AES",
        priv_key=V3["priv_key"],
        context=EATON,
        retries=0,
    )
    dev = device(sim, None, **v3)
    result = asyncio.run(SnmpDriver(dev).poll(5))
    assert not result.ok
    assert result.error == (
        "snmp 127.0.0.1:%d: SNMPv3 authorization error: wrong authentication key or protocol "
        "(usmStatsWrongDigests)" % sim.port
    )


# --- silence and failures -----------------------------------------------------------------------
def test_silent_device_is_stale_within_the_budget():
    port = free_udp_port()  # nothing listens here: the kernel answers ICMP port unreachable
    dev = {
        "id": "dev",
        "timeout": 2.0,
        "snmp": {"host": "127.0.0.1", "port": port, "community": "x", "retries": 1},
    }
    result = asyncio.run(SnmpDriver(dev).poll(2.0))  # the loop polls with the device's timeout
    assert not result.ok and result.samples == []
    assert result.error == (
        "snmp 127.0.0.1:%d: no SNMP agent listening on that port (ICMP port unreachable, "
        "2 tries of 0.9s)" % port
    )
    assert result.duration < 2.0

    dev["timeout"] = 5  # a poll budget other than the device's timeout: the budget decides
    result = asyncio.run(SnmpDriver(dev).poll(0.5))
    assert not result.ok and result.duration < 1.5
    # 0.1 s is kept for the verdict; on a loaded machine the budget's own timeout may win it
    assert "2 tries of 0.2s" in result.error or result.error == "no answer within 0.5s"


def test_read_raises_device_timeout_for_a_wrong_community(sim):
    dev = device(sim, None, community="no-such-recording", retries=0, timeout=0.3)

    async def go():
        driver = SnmpDriver(dev)
        await driver.open()
        try:
            await driver.read()
        finally:
            await driver.close()

    with pytest.raises(DeviceTimeout, match=r"no answer to 1 try of 0\.2s \(wrong community"):
        asyncio.run(go())
