"""SnmpLiteDriver (portable BER client + host UDP) against real snmpsim serving snmpsim-data
recordings: its samples must equal what PysnmpDriver (pysnmp) reads from the same recording, and
key values must equal the recording's own. Expected values are read from the .snmprec files."""

import asyncio

import pytest

from agent.core import registry
from drivers.snmp_lite import SnmpLiteDriver
from drivers.snmp_pysnmp import PysnmpDriver
from hil.snmpsim import free_udp_port

from snmp_support import (
    EAST,
    EATON,
    EMERSON,
    HUAWEI,
    PDU,
    PDU2_ONLY,
    PDU3,
    PHOENIX,
    SANTAK,
    UBNT,
    UPS,
    VYATTA,
    column,
    device,
    num,
    poll,
    same,
    sim_fixture,
)

ALL = [EATON, HUAWEI, EAST, PHOENIX, PDU, PDU3, UBNT, VYATTA, SANTAK, EMERSON, PDU2_ONLY]
sim = sim_fixture(ALL)
# rPDU2 outlet states of the snmpsim-data PDUs are a time-driven snmpsim variation
LOOSE = (("outlet.", ".status"),)


@pytest.mark.parametrize("name", ALL)
def test_same_samples_as_pysnmp_driver(sim, name):
    lite_driver, lite = poll(SnmpLiteDriver, device(sim, name), times=2)
    full_driver, full = poll(PysnmpDriver, device(sim, name), times=2)
    assert lite_driver.chosen == full_driver.chosen
    assert lite_driver.identified == full_driver.identified
    assert len(lite) >= 5
    for metric, (_v, unit) in lite.items():
        assert registry.is_known(metric) and unit == registry.unit_of(metric), metric
    same(lite, full, loose=LOOSE)
    assert lite_driver.wrong_types == full_driver.wrong_types
    # the same requests, so the same load on the device
    assert lite_driver.requests == full_driver.requests


@pytest.mark.parametrize("name", [EATON, UBNT])
def test_v1_same_samples_as_pysnmp_driver(sim, name):
    profile = "router" if name == UBNT else "auto"
    _, lite = poll(SnmpLiteDriver, device(sim, name, version="1", profile=profile), times=2)
    _, full = poll(PysnmpDriver, device(sim, name, version="1", profile=profile), times=2)
    same(lite, full)


def test_values_from_the_recordings(sim):
    rec = sim.expected(EATON)
    _, s = poll(SnmpLiteDriver, device(sim, EATON), times=1)
    assert s["battery.charge"][0] == num(rec, UPS + "2.4.0")
    assert s["battery.voltage"][0] == pytest.approx(num(rec, UPS + "2.5.0") / 10)
    assert s["battery.runtime"][0] == num(rec, UPS + "2.3.0") * 60
    assert s["ups.model"][0] == rec[UPS + "1.2.0"][1]
    assert s["ups.status"][0] == "OL"

    rec = sim.expected(HUAWEI)  # -1 on the wire: no sample, not a zero
    _, s = poll(SnmpLiteDriver, device(sim, HUAWEI, profile="ups-mib"), times=1)
    assert num(rec, UPS + "2.4.0") == -1 and "battery.charge" not in s
    assert UPS + "3.1.0" not in rec and "input.transfer.count" not in s  # noSuchInstance

    rec = sim.expected(EAST)  # the extra .0 after the table index
    _, s = poll(SnmpLiteDriver, device(sim, EAST), times=1)
    assert s["input.voltage"][0] == int(rec[UPS + "3.3.1.3.1.0"][1])

    rec = sim.expected(PDU3)  # rPDU2 numbers its outlets as rPDU does
    _, s = poll(SnmpLiteDriver, device(sim, PDU3), times=1)
    states = column(rec, "1.3.6.1.4.1.318.1.1.12.3.5.1.1.4")
    assert sorted(int(m.split(".")[1]) for m in s if m.endswith(".status")) == sorted(states)

    rec = sim.expected(VYATTA)  # Counter64 traffic counters give rates from the second poll
    _, s = poll(SnmpLiteDriver, device(sim, VYATTA), times=2)
    names = column(rec, "1.3.6.1.2.1.31.1.1.1.1")
    assert names and column(rec, "1.3.6.1.2.1.31.1.1.1.6")
    for name in names.values():
        assert s[f"if.{name}.in_bps"][0] == 0.0  # recorded counters do not move


def test_silent_device_is_stale_with_the_same_reason_as_pysnmp():
    port = free_udp_port()  # nothing listens here
    dev = {
        "id": "dev",
        "timeout": 2.0,
        "snmp": {"host": "127.0.0.1", "port": port, "community": "x", "retries": 1},
    }
    lite = asyncio.run(SnmpLiteDriver(dev).poll(2.0))
    full = asyncio.run(PysnmpDriver(dev).poll(2.0))
    assert not lite.ok and lite.samples == []
    assert lite.error == full.error
    assert lite.error == (
        "snmp 127.0.0.1:%d: no SNMP agent listening on that port (ICMP port unreachable, "
        "2 tries of 0.9s)" % port
    )
    assert lite.duration < 3.0


def test_v3_is_refused_at_config_time():
    from agent.core.errors import ConfigError

    dev = {"id": "d", "snmp": {"host": "127.0.0.1", "version": "3"}}
    with pytest.raises(ConfigError, match="expected 1 or 2c, got '3'"):
        SnmpLiteDriver(dev)
