"""Which engine `driver = "snmp"` uses: the portable BER client for v1/v2c, pysnmp for v3, and
pysnmp/pyasn1 are not even imported by a site whose devices are all v1/v2c. Against real
snmpsim serving snmpsim-data recordings, through the driver table a config goes through."""

import asyncio
import json
import os
import subprocess
import sys
import time

import drivers
from drivers.proto.snmp_client import SnmpClient
from drivers.snmp import SnmpDriver
from drivers.snmp_pysnmp import PysnmpDriver

from snmp_support import EATON, as_dict, device, poll_results, same, sim_fixture

V3_USER = {"user": "agent", "auth_key": "auth-key-2024", "priv_key": "priv-key-2024"}
sim = sim_fixture([EATON], v3_user=V3_USER)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def v3(sim):
    return device(sim, None, version="3", user=V3_USER["user"], auth_protocol="SHA",
                  auth_key=V3_USER["auth_key"], priv_protocol="AES",
                  priv_key=V3_USER["priv_key"], context=EATON)  # fmt: skip


def poll_open(cls, dev, times):
    """(driver, [PollResult], the driver's BER client or None) with the driver still open."""

    async def go():
        driver = cls(dev)
        try:
            results = [await driver.poll(10) for _ in range(times)]
            return driver, results, getattr(driver, "client", None)
        finally:
            await driver.close()

    return asyncio.run(go())


def test_v2c_goes_the_ber_client_way_with_the_same_samples_as_pysnmp(sim):
    cls = drivers.load("snmp")
    assert cls is SnmpDriver
    driver, ber, client = poll_open(cls, device(sim, EATON), times=2)
    assert type(driver) is SnmpDriver and driver.engine == "ber"
    assert isinstance(client, SnmpClient) and client.requests == driver.requests > 0
    _, full = poll_results(PysnmpDriver, device(sim, EATON), times=2)
    assert all(r.ok for r in ber + full)
    same(as_dict(ber[-1]), as_dict(full[-1]))


def test_v1_goes_the_ber_client_way(sim):
    driver, results, client = poll_open(SnmpDriver, device(sim, EATON, version="1"), times=1)
    assert type(driver) is SnmpDriver and results[0].ok, results[0].error
    assert isinstance(client, SnmpClient) and client.requests == driver.requests > 0


def test_v3_goes_pysnmp_and_reads_what_v2c_reads(sim):
    driver, r3, client = poll_open(drivers.load("snmp"), v3(sim), times=1)
    assert type(driver) is PysnmpDriver and driver.engine == "pysnmp" and client is None
    assert driver.sent >= driver.requests > 0  # pysnmp's own counter: its requests went out
    _, r2 = poll_results(SnmpDriver, device(sim, EATON), times=1)
    assert r3[0].ok and r2[0].ok, (r3[0].error, r2[0].error)
    same(as_dict(r3[0]), as_dict(r2[0]))


POLL_AND_LIST_MODULES = """
import asyncio, json, sys
from agent.host import runner, uplink  # the host daemon's modules, as `site-agent run` loads
import drivers
dev = json.loads(sys.argv[1])
cls = drivers.load("snmp")
async def go():
    d = cls(dev)
    try:
        return await d.poll(5)
    finally:
        await d.close()
r = asyncio.run(go())
print(json.dumps({"ok": r.ok, "error": r.error, "samples": len(r.samples),
                  "heavy": sorted(m for m in sys.modules if m.split(".")[0] in
                                  ("pysnmp", "pyasn1", "drivers"))}))
"""


def _poll_in_fresh_python(dev):
    out = subprocess.run([sys.executable, "-c", POLL_AND_LIST_MODULES, json.dumps(dev)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_v2c_site_never_imports_pysnmp_or_pyasn1(sim):
    got = _poll_in_fresh_python(device(sim, EATON))
    assert got["ok"] and got["samples"] >= 20, got["error"]
    assert not [m for m in got["heavy"] if m.startswith(("pysnmp", "pyasn1"))], got["heavy"]
    assert "drivers.snmp_pysnmp" not in got["heavy"] and "drivers.snmp" in got["heavy"]


def test_a_v3_device_imports_pysnmp(sim):
    got = _poll_in_fresh_python(v3(sim))
    assert got["ok"], got["error"]
    assert "pysnmp" in got["heavy"] and "drivers.snmp_pysnmp" in got["heavy"]


def test_the_ber_engine_names_each_fault_of_the_eltek_plant_and_recovers():
    # The pysnmp engine's reasons under these faults are in test_eltek_emulator.py: a timeout for
    # all four. The BER client tells junk from silence: it names what it could not decode.
    from hil.emulators.eltek import EltekPlant

    class Clock:
        t = 1000.0

        def __call__(self):
            return self.t

    def dev(port):
        return {"id": "plant", "timeout": 2.0, "snmp": {"host": "127.0.0.1", "port": port,
                                                        "profile": "eltek", "retries": 0}}

    with EltekPlant(clock=Clock(), slow_s=2.5) as plant:
        for fault in ("silence", "garbage", "truncated", "slow"):
            plant.set_fault(fault)
            driver, (bad,) = poll_results(SnmpDriver, dev(plant.port), budget=2.0)
            assert type(driver) is SnmpDriver
            assert not bad.ok and bad.samples == [], (fault, bad)
            where = "snmp 127.0.0.1:%d: " % plant.port
            if fault in ("silence", "slow"):
                assert bad.error == where + "no answer to 1 try of 1.8s (wrong community or " \
                    "agent down)", bad.error
            else:
                assert bad.error.startswith(where + "no valid response after 1 try; last "
                                            "reply: BER: "), bad.error  # fmt: skip
            plant.set_fault(None)
            if fault == "slow":
                time.sleep(2.6)  # the late answer must not be taken for the next request's
            _, (good,) = poll_results(SnmpDriver, dev(plant.port), budget=2.0)
            assert good.ok and as_dict(good)["battery.voltage"][0] == 54.0, (fault, good)
