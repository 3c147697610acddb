"""SNMPv3 authNoPriv (HMAC-SHA, no encryption) against real snmpsim. authPriv (SHA + AES) is in
test_snmp_driver.py; this file runs its own snmpsim whose only USM user has no privacy protocol, so
a request that works proves the driver sent an authenticated, unencrypted PDU that the agent's
USM accepted (the last test shows snmpsim refuses a level that does not match the user's)."""

import asyncio

import pytest

from drivers.snmp import SnmpDriver
from hil.snmpsim import SnmpSim

EATON = "UPS/eaton-93e-80"
USER = {"user": "nopriv", "auth_protocol": "SHA", "auth_key": "auth-only-2024",
        "priv_protocol": "NONE", "priv_key": "unused-priv-key"}  # fmt: skip


@pytest.fixture(scope="module")
def sim():
    with SnmpSim([EATON], v3_user=USER) as s:
        yield s


def device(sim, retries=1, **snmp):
    cfg = {"host": "127.0.0.1", "port": sim.port, "profile": "auto", "retries": retries}
    cfg.update(snmp)
    return {"id": "ups", "timeout": 2, "snmp": cfg}


def v3(sim, auth_key=USER["auth_key"], retries=1, **extra):
    return device(sim, retries, version="3", user=USER["user"], auth_protocol="SHA",
                  auth_key=auth_key, security_level="authNoPriv", context=EATON,
                  **extra)  # fmt: skip


def poll(dev, budget=10):
    async def go():
        driver = SnmpDriver(dev)
        try:
            return await driver.poll(budget)
        finally:
            await driver.close()

    return asyncio.run(go())


def test_v3_auth_no_priv_reads_what_v2c_reads(sim):
    r3 = poll(v3(sim))
    assert r3.ok, r3.error
    r2 = poll(device(sim, version="2c", community=EATON))
    assert r2.ok, r2.error
    s3 = {m: (v, u) for m, v, u in r3.samples}
    s2 = {m: (v, u) for m, v, u in r2.samples}
    assert "battery.charge" in s3 and "input.voltage" in s3
    assert s3 == s2


def test_v3_auth_no_priv_wrong_auth_key_is_an_authorization_error(sim):
    r = poll(v3(sim, auth_key="not-the-auth-key", retries=0), budget=5)
    assert not r.ok and r.samples == []
    assert "authorization error" in r.error, r.error
    assert f"127.0.0.1:{sim.port}" in r.error


def test_v3_unknown_user_is_an_authorization_error(sim):
    dev = v3(sim, retries=0)
    dev["snmp"]["user"] = "intruder"
    r = poll(dev, budget=5)
    assert not r.ok and "authorization error" in r.error, r.error


def test_v3_auth_priv_against_a_no_priv_user_is_refused(sim):
    # The site config asks for encryption but the device's user has none: the agent must not
    # silently fall back to cleartext. snmpsim (pysnmp's USM) drops a PDU whose security level
    # does not match the user's instead of sending a usmStatsUnsupportedSecLevels report, so the
    # reason is "no response"; an agent that sends the report gives "authorization error". This
    # test is also what makes the authNoPriv test above mean something: the level is really used.
    dev = v3(sim, retries=0, priv_protocol="AES", priv_key="some-priv-key")
    dev["snmp"]["security_level"] = "authPriv"
    r = poll(dev, budget=5)
    assert not r.ok and r.samples == []
    assert "authorization error" in r.error or "no response" in r.error, r.error
    assert f"127.0.0.1:{sim.port}" in r.error
