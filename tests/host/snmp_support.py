"""Shared fixtures of the SNMP host tests: snmpsim serving recordings, device configs, polls, and
expected values read from the .snmprec files the simulator serves (never typed into a test).

    sim = sim_fixture([EATON, HUAWEI], v3_user=V3)   # a module-scoped pytest fixture named sim
    dev = device(sim, EATON, retries=0, timeout=2)   # device config; snmp keys as keyword args
    driver, s = poll(SnmpDriver, dev, times=2)       # s = {metric: (value, unit)} of the last poll
    num(rec, oid), column(rec, prefix)               # expected values from sim.expected(name)

Both SNMP engines are `DRIVERS`: pysnmp (PysnmpDriver, the `snmp` driver's v3 engine) and the
portable BER client (SnmpLiteDriver, which the `snmp` driver uses for v1/v2c); a test
parametrized over them holds both to the same behaviour.
"""

import asyncio

import pytest

from agent.core import registry
from drivers.snmp_lite import SnmpLiteDriver
from drivers.snmp_pysnmp import PysnmpDriver
from hil.snmpsim import SnmpSim

UPS = "1.3.6.1.2.1.33.1."
EATON = "UPS/eaton-93e-80"  # three-phase, UPS-MIB
HUAWEI = "UPS/huawei-gse200m"  # Huawei UPS5000-E: HUAWEI-UPS-MIB and a poor UPS-MIB
SANTAK = "UPS/ingrasys-power-switch"  # Santak Array 3A3 (3-phase), TimeTicks for INTEGERs
EMERSON = "UPS/emerson-network-power"  # a UPS whose only power MIB is one the agent lacks
EAST = "UPS/eastpower-istars-swv053"
PHOENIX = "UPS/phoenixtec-power"
PDU = "UPS/apc-7902b"
PDU3 = "UPS/apc-8932"
PDU2_ONLY = "UPS/apc-rpdu2-only"  # hil/recordings: AP8641 without its rPDU subtree
VYATTA = "network/router/vyatta-unknown"
UBNT = "network/wifi/ubiquiti-m5"
ONBATT = "UPS/site-onbattery-alarms"  # hil/recordings
APC = "UPS/apc-smartups"  # hil/recordings
ELTEK = "power/eltek-smartpack"  # hil/recordings
NETSURE = "power/netsure"  # hil/recordings

DRIVERS = [
    pytest.param(PysnmpDriver, id="pysnmp"),
    pytest.param(SnmpLiteDriver, id="snmp-lite"),
]


def sim_fixture(recordings, v3_user=None):
    """A module-scoped fixture `sim`: snmpsim serving `recordings` for the module's tests."""

    @pytest.fixture(scope="module")
    def sim():
        with SnmpSim(recordings, v3_user=v3_user) as s:
            yield s

    return sim


def device(sim, recording=None, timeout=2, dev_id="dev", **snmp):
    """A device config for `recording` on `sim` (profile auto, v2c unless told)."""
    cfg = {"host": "127.0.0.1", "port": sim.port, "version": "2c", "profile": "auto"}
    if recording:
        cfg["community"] = sim.community_for(recording)
    cfg.update(snmp)
    return {"id": dev_id, "timeout": timeout, "snmp": cfg}


def poll_results(cls, dev, times=1, budget=10):
    """(driver, [PollResult]) of `times` polls with one driver object, closed afterwards."""

    async def go():
        driver = cls(dev)
        try:
            results = [await driver.poll(budget) for _ in range(times)]
        finally:
            await driver.close()
        return driver, results

    return asyncio.run(go())


def poll(cls, dev, times=1, budget=10):
    """(driver, {metric: (value, unit)}) of the last of `times` polls, all of which must be ok."""
    driver, results = poll_results(cls, dev, times, budget)
    for r in results:
        assert r.ok, r.error
    return driver, as_dict(results[-1])


def as_dict(result):
    return {m: (v, u) for m, v, u in result.samples}


def val(samples, metric):
    return samples[metric][0]


def num(rec, oid):
    return int(rec[oid][1])


def column(rec, prefix):
    """{row: value text} of a table column in a recording (first index component = row)."""
    out = {}
    for oid, (_tag, v) in rec.items():
        if oid.startswith(prefix + "."):
            out.setdefault(int(oid[len(prefix) + 1 :].split(".")[0]), v)
    return out


def check_registry(samples):
    for metric, (_v, unit) in samples.items():
        assert registry.is_known(metric), metric
        assert unit == registry.unit_of(metric), metric


def same(a, b, moving=("device.uptime",), moving_tolerance=5, loose=()):
    """Two drivers' samples are equal, but for values that move with time: within
    `moving_tolerance`; metrics in `loose` (snmpsim variations) need only be present in both."""
    assert sorted(a) == sorted(b)
    a, b = dict(a), dict(b)
    for m in moving:
        if m in a:
            assert abs(a.pop(m)[0] - b.pop(m)[0]) <= moving_tolerance, m
    for m in [m for m in a if any(m.startswith(p) and m.endswith(s) for p, s in loose)]:
        a.pop(m)
        b.pop(m)
    assert a == b
