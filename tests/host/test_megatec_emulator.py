# MegatecDriver + host SerialPort against the pty emulator: readings follow the model, every
# fault mode makes the device stale with a reason, and it recovers when the fault clears.
import asyncio
import gc
import os
import subprocess
import sys

import pytest

from drivers.megatec import MegatecDriver
from hil.emulators.megatec import MegatecEmulator

BUDGET = 3.0


def driver_for(ups, **serial):
    cfg = {"port": ups.path, "read_timeout": 0.5}
    cfg.update(serial)
    return MegatecDriver({"id": "ups1", "serial": cfg})


def values(result):
    return {m: v for m, v, _u in result.samples}


async def poll_until_ok(d, tries=4):
    """After a fault clears, the first poll may still see the tail of a faulty reply."""
    for _ in range(tries):
        r = await d.poll(BUDGET)
        if r.ok:
            return r
    return r


def test_readings_follow_the_model_on_mains_and_on_battery():
    async def go(ups):
        d = driver_for(ups)
        r = await d.poll(BUDGET)
        assert r.ok, r.error
        v, s = values(r), ups.state
        assert v["input.voltage"] == s["input_voltage"] == 230.0
        assert v["output.voltage"] == s["output_voltage"]
        assert v["ups.load"] == s["load"] == 30.0
        assert v["ups.status"] == s["status"] == "OL"
        assert v["mains.present"] is True
        assert abs(v["battery.voltage"] - s["battery_voltage"]) < 0.07  # per-cell x 12
        assert v["ups.rating.battery_voltage"] == 24.0
        assert v["ups.mfr"] == "EMULATED"

        ups.set_load(60)
        ups.set_mains(False)
        r1 = await d.poll(BUDGET)
        await asyncio.sleep(0.3)  # 0.3 s x speed 600 = 180 model seconds on battery
        r2 = await d.poll(BUDGET)
        s = ups.state
        v1, v2 = values(r1), values(r2)
        assert v2["ups.status"].startswith("OB")
        assert v2["mains.present"] is False and v2["ups.beeper"] is True
        assert v2["input.voltage"] == 0.0
        assert v2["output.source"] == "battery"
        assert v2["battery.voltage"] < v1["battery.voltage"]  # discharging
        assert abs(v2["battery.voltage"] - s["battery_voltage"]) < 0.3
        assert s["soc"] < 100.0

        ups.set_soc(10)
        v = values(await d.poll(BUDGET))
        assert v["ups.status"] == ups.state["status"] == "OB LB"
        ups.set_mains(True)
        ups.set_input_voltage(190)
        v = values(await d.poll(BUDGET))
        assert v["ups.status"] == ups.state["status"] == "OL BOOST"
        assert v["output.voltage"] == ups.state["output_voltage"] == 218.5
        ups.set_input_voltage(260)
        v = values(await d.poll(BUDGET))
        assert v["ups.status"] == "OL TRIM"
        await d.close()

    with MegatecEmulator(speed=600, runtime_s=600) as ups:
        asyncio.run(go(ups))


def test_standby_unit_reporting_the_whole_battery():
    async def go(ups):
        d = driver_for(ups)
        r = await d.poll(BUDGET)
        await d.close()
        return values(r)

    with MegatecEmulator(battery_report="whole") as ups:
        v = asyncio.run(go(ups))
        assert v["battery.voltage"] == ups.state["reported_battery"] == 27.0


STALE_REASONS = {
    "silence": "no reply within 0.5s",
    "truncated": "partial reply within 0.5s",
    "garbage": "Q1: ",
    "bad_format": "Q1: 1 fields, need 8",
    "echo": "Q1: the UPS echoed the command",
    "drip": "partial reply within 0.5s",
}


@pytest.mark.parametrize("fault", sorted(STALE_REASONS))
def test_fault_makes_the_device_stale_with_a_reason_then_recovers(fault):
    async def go(ups):
        d = driver_for(ups)
        assert (await d.poll(BUDGET)).ok
        ups.set_fault(fault)
        bad = await d.poll(BUDGET)
        ups.set_fault(None)
        good = await poll_until_ok(d)
        await d.close()
        return bad, good

    # drip: 47 bytes x 0.05 s = 2.35 s per reply, past the 0.5 s read timeout.
    with MegatecEmulator(drip_s=0.05) as ups:
        bad, good = asyncio.run(go(ups))
    assert not bad.ok
    assert bad.error.startswith(STALE_REASONS[fault]), bad.error
    assert bad.samples == []
    assert good.ok, good.error
    assert values(good)["ups.status"] == "OL"


def test_slow_drip_within_the_timeout_still_reads():
    async def go(ups):
        d = driver_for(ups, read_timeout=2.0)
        ups.set_fault("drip")
        r = await d.poll(10)
        await d.close()
        return r

    with MegatecEmulator(drip_s=0.005) as ups:
        r = asyncio.run(go(ups))
    assert r.ok, r.error


def test_at_fields_give_no_sample_for_unknown_values():
    async def go(ups):
        d = driver_for(ups)
        ups.set_fault("at_fields")
        r = await d.poll(BUDGET)
        await d.close()
        return r

    with MegatecEmulator() as ups:
        r = asyncio.run(go(ups))
    assert r.ok, r.error
    v = values(r)
    for gone in ("input.voltage.fault", "ups.temperature", "ups.rating.current", "ups.model"):
        assert gone not in v, gone
    assert v["input.voltage"] == 230.0 and v["ups.mfr"] == "EMULATED"


@pytest.mark.parametrize("option", ["line_echo", "stray_lf", "line_echo+stray_lf"])
def test_an_echoing_converter_and_a_stray_lf_are_read_through(option):
    # Issue 19 point 4, on a pty: the echo used to be taken for "not supported by this model",
    # the LF for a non-printable byte in Q1; both made the poll stale.
    kw = {name: True for name in option.split("+")}

    async def go(ups):
        d = driver_for(ups)
        rs = [await d.poll(BUDGET) for _ in range(3)]
        await d.close()
        return rs

    with MegatecEmulator(battery_report="per_cell", **kw) as ups:
        rs = asyncio.run(go(ups))
        state = ups.state
    for r in rs:
        assert r.ok, r.error
        v = values(r)
        assert v["ups.status"] == "OL"
        assert v["battery.voltage"] == state["battery_voltage"]  # per cell x 12, from F
    assert values(rs[0])["ups.mfr"] == "EMULATED"


def test_a_ups_that_misses_f_publishes_no_battery_voltage_until_it_answers():
    # Issue 19 point 1, on a pty: F unanswered at the start of the session.
    async def go(ups):
        d = driver_for(ups, read_timeout=0.3)
        first = await d.poll(BUDGET)
        ups.answer_f = True
        second = await d.poll(BUDGET)
        await d.close()
        return first, second

    with MegatecEmulator(battery_report="per_cell", answer_f=False) as ups:
        first, second = asyncio.run(go(ups))
        state = ups.state
    assert first.ok, first.error
    assert "battery.voltage" not in values(first)
    assert first.raw["battery"].startswith("%g V as sent, not published" % state["cell_voltage"])
    assert second.ok and values(second)["battery.voltage"] == state["battery_voltage"]


def test_unknown_fault_name_is_refused():
    with pytest.raises(ValueError):
        MegatecEmulator().set_fault("bad_checksum")  # Q1 has no checksum


def _open_fds():
    return set(os.listdir("/proc/self/fd"))


def test_stop_leaves_nothing_behind():
    gc.collect()  # earlier tests' garbage (event loops, sockets) closes its fds now, not during
    before = _open_fds()
    ups = MegatecEmulator()
    path = ups.start()
    assert os.path.exists(path)

    async def go():
        d = driver_for(ups)
        r = await d.poll(BUDGET)
        await d.close()
        return r

    assert asyncio.run(go()).ok
    ups.stop()
    ups.stop()
    assert ups._thread is None
    # Nothing of ours is left open. (A subset, not equality: an earlier test's thread may still
    # close an fd of its own meanwhile, as one did in a CI run.)
    assert _open_fds() <= before
    assert not os.path.exists(path)  # the pty is gone once both ends are closed


def test_cli_prints_the_pty_path_and_serves_it():
    proc = subprocess.Popen(
        [sys.executable, "-m", "hil.emulators.megatec", "--mains", "off"],
        stdout=subprocess.PIPE,
        text=True,
        cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    )
    try:
        path = proc.stdout.readline().strip()
        assert path.startswith("/dev/pts/"), path

        async def go():
            d = MegatecDriver({"id": "u", "serial": {"port": path, "read_timeout": 1.0}})
            r = await d.poll(BUDGET)
            await d.close()
            return r

        r = asyncio.run(go())
        assert r.ok, r.error
        assert values(r)["ups.status"] == "OB"
    finally:
        proc.terminate()
        proc.wait(5)
