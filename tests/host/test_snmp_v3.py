"""SNMPv3 authNoPriv (HMAC-SHA, no encryption) against real snmpsim. authPriv (SHA + AES) is in
test_snmp_driver.py; this file runs its own snmpsim whose only USM user has no privacy protocol, so
a request that works proves the driver sent an authenticated, unencrypted PDU that the agent's
USM accepted (the last test shows snmpsim refuses a level that does not match the user's)."""

from drivers.snmp import SnmpDriver

from snmp_support import EATON, as_dict, device, poll_results, sim_fixture

USER = {"user": "nopriv", "auth_protocol": "SHA", "auth_key": "auth-only-2024",
        "priv_protocol": "NONE", "priv_key": "unused-priv-key"}  # fmt: skip
sim = sim_fixture([EATON], v3_user=USER)


def v3(sim, auth_key=USER["auth_key"], retries=1, **extra):
    return device(sim, None, retries=retries, version="3", user=USER["user"],
                  auth_protocol="SHA", auth_key=auth_key, security_level="authNoPriv",
                  context=EATON, **extra)  # fmt: skip


def poll(dev, budget=10):
    return poll_results(SnmpDriver, dev, 1, budget)[1][0]


def test_v3_auth_no_priv_reads_what_v2c_reads(sim):
    r3 = poll(v3(sim))
    assert r3.ok, r3.error
    r2 = poll(device(sim, EATON))
    assert r2.ok, r2.error
    s3, s2 = as_dict(r3), as_dict(r2)
    assert "battery.charge" in s3 and "input.voltage" in s3
    assert s3 == s2


def test_v3_auth_no_priv_wrong_auth_key_is_an_authorization_error(sim):
    r = poll(v3(sim, auth_key="not-the-auth-key", retries=0), budget=5)
    assert not r.ok and r.samples == []
    assert r.error == (
        f"snmp 127.0.0.1:{sim.port}: SNMPv3 authorization error: wrong authentication key or "
        "protocol (usmStatsWrongDigests)"
    )


def test_v3_unknown_user_is_an_authorization_error(sim):
    dev = v3(sim, retries=0)
    dev["snmp"]["user"] = "intruder"
    r = poll(dev, budget=5)
    assert not r.ok
    assert r.error.endswith("SNMPv3 authorization error: unknown user 'intruder' "
                            "(usmStatsUnknownUserNames)"), r.error  # fmt: skip


def test_v3_auth_priv_against_a_no_priv_user_is_refused(sim):
    # The site config asks for encryption but the device's user has none: the agent must not
    # silently fall back to cleartext. snmpsim (pysnmp's USM) drops a PDU whose security level
    # does not match the user's instead of sending a usmStatsUnsupportedSecLevels report, so the
    # reason is "no answer"; an agent that sends the report gives "authorization error". This
    # test is also what makes the authNoPriv test above mean something: the level is really used.
    dev = v3(sim, retries=0, priv_protocol="AES", priv_key="some-priv-key")
    dev["snmp"]["security_level"] = "authPriv"
    r = poll(dev, budget=5)
    assert not r.ok and r.samples == []
    assert "authorization error" in r.error or "no answer" in r.error, r.error
    assert f"127.0.0.1:{sim.port}" in r.error
