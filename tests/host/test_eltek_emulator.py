"""The Eltek Smartpack emulator (hil/emulators/eltek.py) on its SNMP agent, read by the real
pysnmp engine of the `snmp` driver (PysnmpDriver, profile "eltek"; the BER client's reasons
under the same faults are in test_snmp_engine.py) and by net-snmp's command-line tools: exact
values, the discharge on a fake clock, the protocol's corners, and staleness with a reason under
each fault.
"""

import asyncio
import shutil
import subprocess
import threading
import time

import pytest

from drivers.proto import ber, ber_request
from drivers.snmp_pysnmp import PysnmpDriver
from hil.emulators.eltek import EltekPlant
from hil.emulators.snmp_agent import SnmpAgent

E = "1.3.6.1.4.1.12148.9."


class FakeClock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def driver(plant, timeout=2.0, retries=0, version="2c"):
    return PysnmpDriver(
        {
            "id": "plant",
            "timeout": timeout,
            "snmp": {
                "host": "127.0.0.1",
                "port": plant.port,
                "version": version,
                "profile": "eltek",
                "retries": retries,
            },
        }
    )


def polls(drv, n=1, budget=2.0):
    async def go():
        try:
            return [await drv.poll(budget) for _ in range(n)]
        finally:
            await drv.close()

    return asyncio.run(go())


def values(res):
    return {m: v for m, v, _u in res.samples}


def test_driver_reads_the_model_exactly_through_a_discharge():
    clk = FakeClock()
    with EltekPlant(capacity_ah=210.0, load_a=42.0, clock=clk) as plant:
        drv = driver(plant)

        async def night():
            out = []
            try:
                out.append(await drv.poll(2.0))  # on mains, full
                plant.set_mains(False)
                for _ in range(3):
                    clk.t += 3600.0  # 42 A for an hour from a 210 Ah bank: 20 % an hour
                    out.append(await drv.poll(2.0))
                plant.set_mains(True)
                out.append(await drv.poll(2.0))
            finally:
                await drv.close()
            return out

        res = asyncio.run(night())
        assert all(r.ok for r in res), res
        first = values(res[0])
        assert first["battery.voltage"] == 54.0 and first["dc.voltage"] == 54.0
        assert first["battery.current"] == 0.0
        assert first["plant.alarm.mains_lost"] is False
        assert first["rectifier.current"] == 42.0 and first["rectifier.count"] == 3
        assert first["rectifier.1.status"] == "normal" and first["rectifier.3.current"] == 14.0
        assert first["battery.lvd"] == "connected" and first["input.voltage"] == 230.0
        for hour, r in enumerate(res[1:4], 1):
            got = values(r)
            soc = 100.0 - 20.0 * hour
            assert got["battery.voltage"] == round(41.6 + 9.4 * soc / 100.0, 2), (hour, got)
            assert got["battery.current"] == -42.0
            assert got["plant.alarm.mains_lost"] is True
            assert got["plant.alarm.rectifier_major"] is False  # mains lost is not a fault
            assert got["rectifier.2.status"] == "alarm"  # no input
            assert got["rectifier.current"] == 0.0
        # 40 % left: 45.36 V, under the minor threshold (46.0), over the major (44.0)
        last = values(res[3])
        assert last["plant.alarm.battery_voltage_low_minor"] is True
        assert last["plant.alarm.battery_voltage_low_major"] is False
        back = values(res[4])
        assert back["plant.alarm.mains_lost"] is False and back["battery.current"] == 21.0
        assert back["rectifier.current"] == 63.0  # load + recharge
        st = plant.state
        assert st["soc"] == pytest.approx(40.0) and st["runtime_left"] is None


def test_lvd_opens_at_the_end_of_discharge():
    clk = FakeClock()
    with EltekPlant(capacity_ah=100.0, load_a=50.0, clock=clk) as plant:
        plant.set_mains(False)
        assert plant.state["runtime_left"] == pytest.approx(7200.0)
        clk.t += 7100.0
        st = plant.state
        assert st["runtime_left"] == pytest.approx(100.0) and not st["lvd_open"]
        clk.t += 200.0
        (res,) = polls(driver(plant))
        got = values(res)
        assert got["battery.lvd"] == "disconnected" and got["plant.alarm.lvd1_open"] is True
        assert got["plant.alarm.battery_voltage_low_major"] is True
        assert got["battery.current"] == 0.0
        assert plant.state["soc"] == 0.0
        plant.set_mains(True)
        (res,) = polls(driver(plant))
        assert values(res)["battery.lvd"] == "connected"


def test_each_fault_makes_the_device_stale_with_a_reason_and_it_recovers():
    # slow_s 2.5 > the one try's 1.8 s of the 2 s timeout; the driver times out, then the late
    # answer is discarded.
    with EltekPlant(clock=FakeClock(), slow_s=2.5) as plant:
        reasons = {}
        for fault in ("silence", "garbage", "truncated", "slow"):
            plant.set_fault(fault)
            (bad,) = polls(driver(plant))
            assert not bad.ok and bad.samples == [], (fault, bad)
            assert ("127.0.0.1:%d" % plant.port) in bad.error
            reasons[fault] = bad.error
            plant.set_fault(None)
            if fault == "slow":
                time.sleep(2.6)  # the agent is one thread: it is still sitting on the late answer
            (good,) = polls(driver(plant))
            assert good.ok and values(good)["battery.voltage"] == 54.0, (fault, good)
        # Nothing comes back that pysnmp can take: each is a timeout to the manager.
        for fault in ("silence", "slow", "garbage", "truncated"):
            assert "no answer to 1 try" in reasons[fault], reasons
        with pytest.raises(ValueError):
            plant.set_fault("drip")


def test_wrong_community_gets_no_answer():
    with EltekPlant(clock=FakeClock(), community="secret") as plant:
        (res,) = polls(driver(plant))  # the driver asks with "public"
        assert not res.ok and "(wrong community or agent down)" in res.error
        assert plant.agent.requests >= 1 and plant.agent.answers == 0
    # stop() left nothing behind: the thread is joined and the socket closed
    assert plant.agent._sock is None and plant.agent._thread is None
    assert not [t for t in threading.enumerate() if t.name == "snmp agent"]


def test_v1_reads_the_same_values():
    with EltekPlant(clock=FakeClock()) as plant:
        (v1,) = polls(driver(plant, version="1"))
        (v2,) = polls(driver(plant))
        assert v1.ok and values(v1) == values(v2)


# --- the agent's protocol, byte-level (ber.py as the manager) -----------------------------------
def table():
    return {
        "1.3.6.1.2.1.1.1.0": (ber.OCTET_STRING, b"x"),
        "1.3.6.1.4.1.9.1.1": (ber.INTEGER, 11),
        "1.3.6.1.4.1.9.1.2": (ber.INTEGER, 12),
        "1.3.6.1.4.1.9.2.1": (ber.INTEGER, 21),
        "1.3.6.1.4.1.9.2.2": (ber.INTEGER, 22),
    }


def ask(agent, pdu, oids, a=0, b=0, version=1, community=b"public"):
    req = ber_request.encode_request(version, community, pdu, 7, oids, a, b)
    out = agent.answer(req)
    return None if out is None else ber.decode_message(out)


def test_get_next_bulk_and_exceptions():
    agent = SnmpAgent(table)
    m = ask(agent, ber.GET, ["1.3.6.1.4.1.9.1.2", "1.3.6.1.4.1.9.1.3", "1.3.6.1.4.1.8.1.0"])
    assert m.request_id == 7 and m.status == 0
    assert [(o, t) for o, t, _v in m.varbinds] == [
        ("1.3.6.1.4.1.9.1.2", ber.INTEGER),
        ("1.3.6.1.4.1.9.1.3", ber.NO_SUCH_INSTANCE_TAG),
        ("1.3.6.1.4.1.8.1.0", ber.NO_SUCH_OBJECT_TAG),
    ]
    m = ask(agent, ber.GET_NEXT, ["1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2.2"])
    assert m.varbinds[0][:3] == ("1.3.6.1.4.1.9.1.1", ber.INTEGER, 11)
    assert m.varbinds[1][1] == ber.END_OF_MIB_VIEW_TAG
    # one non-repeater, two columns walked 3 deep: the first ends in the second column's rows
    m = ask(agent, ber.GET_BULK, ["1.3.6.1.2.1", "1.3.6.1.4.1.9.1", "1.3.6.1.4.1.9.2"], 1, 3)
    got = [(o, v) for o, _t, v in m.varbinds]
    assert got == [
        ("1.3.6.1.2.1.1.1.0", b"x"),
        ("1.3.6.1.4.1.9.1.1", 11),
        ("1.3.6.1.4.1.9.2.1", 21),
        ("1.3.6.1.4.1.9.1.2", 12),
        ("1.3.6.1.4.1.9.2.2", 22),
        ("1.3.6.1.4.1.9.2.1", 21),
        ("1.3.6.1.4.1.9.2.2", ber.END_OF_MIB_VIEW),
    ]
    assert m.varbinds[-1][1] == ber.END_OF_MIB_VIEW_TAG
    # v1: a missing OID is noSuchName with its index; GETBULK does not exist
    m = ask(agent, ber.GET, ["1.3.6.1.4.1.9.1.1", "1.3.6.1.4.1.9.1.9"], version=0)
    assert (m.status, m.index) == (2, 2)
    assert ask(agent, ber.GET_BULK, ["1.3.6.1"], 0, 5, version=0) is None
    assert ask(agent, ber.GET, ["1.3.6.1.2.1.1.1.0"], community=b"private") is None
    assert agent.answer(b"\x30\x03\x02\x01") is None


def test_bulk_answer_is_cut_to_fit_a_datagram():
    big = {"1.3.6.1.4.1.9.1.%d" % i: (ber.OCTET_STRING, b"y" * 100) for i in range(1, 200)}
    agent = SnmpAgent(lambda: big)
    req = ber_request.encode_request(1, b"public", ber.GET_BULK, 1, ["1.3.6.1.4.1.9.1"], 0, 100)
    out = agent.answer(req)
    m = ber.decode_message(out)
    assert len(out) <= 1472 and 5 <= len(m.varbinds) < 100
    assert m.varbinds[0][0] == "1.3.6.1.4.1.9.1.1"


def test_net_snmp_walk_sees_the_live_values():
    walk = shutil.which("snmpbulkwalk")
    assert walk, "net-snmp tools (snmpbulkwalk) are not installed"
    clk = FakeClock()
    with EltekPlant(clock=clk) as plant:
        cmd = [walk, "-v2c", "-c", "public", "-On", "-t", "2", "-r", "0",
               "127.0.0.1:%d" % plant.port, E + "3"]  # fmt: skip
        before = subprocess.run(
            cmd, check=False, capture_output=True, text=True, timeout=20
        ).stdout
        plant.set_mains(False)
        clk.t += 1800.0
        after = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=20).stdout
    assert ".1.3.6.1.4.1.12148.9.3.2.0 = INTEGER: 5400" in before, before
    assert ".1.3.6.1.4.1.12148.9.3.3.0 = INTEGER: -42" in after, after
    assert ".1.3.6.1.4.1.12148.9.3.2.0 = INTEGER: 5006" in after, after  # 41.6 + 9.4 x 0.9
    assert ".1.3.6.1.4.1.12148.9.3.17.1.0 = INTEGER: 0" in after
    assert after.count("\n") == 5
