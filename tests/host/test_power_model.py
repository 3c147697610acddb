"""The state model the emulators share (hil/emulators/power.py): model time, a battery, and the
states a site's power goes through, as every mains-fed emulator reports them to the drill."""

import pytest

from hil.emulators.eltek import EltekPlant
from hil.emulators.megatec import MegatecEmulator
from hil.emulators.modbus_epever import EpeverEmulator
from hil.emulators.power import Battery, ModelTime, SitePower
from hil.emulators.pylontech import PylontechEmulator
from hil.emulators.vedirect import VeDirectEmulator
from hil.emulators.voltronic import VoltronicEmulator


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_model_time_scales_and_never_runs_back():
    c = Clock()
    t = ModelTime(c, speed=60.0)
    c.t += 2.0
    assert t.step() == 120.0
    c.t -= 1.0  # a clock that steps back gives no time, and the next step counts from there
    assert t.step() == 0.0
    c.t += 0.5
    assert t.step() == 30.0


def test_battery_flow_stays_within_bounds():
    b = Battery(100.0, soc=50.0)
    b.flow(-10.0, 1800.0)  # 5 Ah out of 100
    assert b.soc == pytest.approx(45.0)
    assert b.seconds_to_empty(10.0) == pytest.approx(45 * 360.0)
    b.flow(-100.0, 3600.0)
    assert b.soc == 0.0
    b.flow(500.0, 3600.0)
    assert b.soc == 100.0
    assert b.seconds_to_empty(0.0) is None


@pytest.mark.parametrize("latch", [True, False])
def test_site_power_goes_through_the_states(latch):
    p = SitePower(Battery(10.0), low_pct=20.0, latch=latch)
    assert p.power_state(5.0) == {"mains": True, "on_battery": False, "discharging": False,
                                  "soc": 100.0, "low_battery": False, "cut_off": False,
                                  "runtime_left": None}  # fmt: skip
    p.set_mains(False)
    p.step(3600.0, load_a=5.0, charge_a=2.0)  # half the bank
    s = p.power_state(5.0)
    assert s["on_battery"] and s["discharging"] and not s["low_battery"]
    assert s["soc"] == pytest.approx(50.0) and s["runtime_left"] == pytest.approx(3600.0)
    p.step(3000.0, 5.0)
    s = p.power_state(5.0)
    assert s["low_battery"] and s["soc"] == pytest.approx(50.0 / 6)
    p.step(1000.0, 5.0)
    s = p.power_state(5.0)
    assert s["cut_off"] and not s["on_battery"] and s["runtime_left"] is None and s["soc"] == 0
    p.battery.soc = 5.0  # the bank recovers a little with no load: only a UPS comes back on
    assert p.cut_off is latch
    p.set_mains(True)
    p.step(1800.0, 5.0, charge_a=2.0)
    s = p.power_state(5.0)
    assert s["mains"] and not s["cut_off"] and s["soc"] == pytest.approx(15.0)


def test_every_mains_fed_emulator_reports_the_same_states():
    """Eltek plant, Megatec UPS and Voltronic inverter, on one fake clock at 1 s per second:
    mains lost, discharge, low battery (Megatec), cut-off at empty, mains back."""
    c = Clock()
    plant = EltekPlant(capacity_ah=10.0, load_a=10.0, clock=c)  # 1 h from full
    ups = MegatecEmulator(load=100.0, runtime_s=3600.0, clock=c)  # 1 h from full
    inv = VoltronicEmulator(soc=100.0, load_w=2500.0, capacity_ah=50.0, clock=c)  # 50 A: 1 h
    emus = (plant, ups, inv)
    for e in emus:
        assert e.power_state()["mains"] and not e.power_state()["on_battery"]
        e.set_mains(False)
    c.t += 1800.0
    for e in emus:
        s = e.power_state()
        assert s["on_battery"] and s["discharging"], (e, s)
        assert s["soc"] == pytest.approx(50.0, abs=0.01), (e, s)
        assert s["runtime_left"] == pytest.approx(1800.0, rel=0.001), (e, s)
    c.t += 1620.0
    assert ups.power_state()["low_battery"] and ups.state["low_battery"]
    c.t += 400.0
    assert plant.power_state()["cut_off"] and plant.state["lvd_open"]
    assert ups.power_state()["cut_off"] and ups.state["shutdown"]
    assert inv.power_state()["cut_off"] and inv.power_state()["soc"] == 0.0
    for e in emus:
        e.set_mains(True)
    c.t += 600.0
    for e in emus:
        s = e.power_state()
        assert s["mains"] and not s["cut_off"] and s["soc"] > 0.0, (e, s)


def test_current_driven_emulators_share_the_battery_and_the_speed():
    c = Clock()
    bus = EpeverEmulator(slaves=(1,), speed=60.0, clock=c)
    bus.unit(1).set_sun(0.0)  # night: 2 A load from 100 Ah
    bms = PylontechEmulator(addresses=(2,), speed=60.0, clock=c)
    bms.pack(2).set_current(-25.0)  # 25 A from 50 Ah
    bmv = VeDirectEmulator(soc=90.0, current=-20.0, capacity_ah=200.0, speed=60.0, clock=c)
    c.t += 60.0  # one model hour each
    assert bus.state(1)["soc"] == 78  # 80 % - 2 %
    assert bms.state(2)["soc"] == pytest.approx(20.0)  # 70 % - 50 %
    assert bmv.state["soc"] == pytest.approx(80.0)  # 90 % - 10 %
    assert bmv.state["consumed_ah"] == pytest.approx(-40.0)
