"""The typhoon night, scripted, on a fake clock (host only): what the site records when mains
flaps and fails, the battery discharges, the backhaul drops and mains returns.

    night = bts_night()      # {"site": Site, "accuracy": [...], "volts": [...], "requests": n}
    night = wifi_night()     # {"site": Site, "accuracy": [...]}
    night = once("bts")      # the same, run at most once per process (a night takes 2-30 s)
    night["site"].q          # every record made (alarm and routine lanes), in a MemoryQueue
    night["site"].events     # (minute, "raise"/"clear", alarm id)

Wi-Fi point: a real MegatecDriver reads the Megatec Q1 emulator over a pty (the emulator's model
runs on the same fake clock), and a scripted gateway probe, every 30 s for 110 minutes. BTS: the
real SnmpDriver (v2c: the portable BER client) reads the Eltek Smartpack emulator (a -48 V DC
plant model behind an SNMP agent on the loopback, on the same fake clock) and a router whose
IF-MIB rows the script sets,
served by a second SNMP agent, every 60 s for 6 h 15 min. tests/host/test_typhoon.py asserts the
alarm sequence and the runtime estimate; the wire tests send the same records over the contract.
"""

import asyncio

from agent.core import readings as rd
from agent.core.clock import Clock
from agent.core.monitor.pipeline import SiteMonitor
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue
from drivers.megatec import MegatecDriver
from drivers.proto import ber
from drivers.snmp import SnmpDriver
from hil.emulators.eltek import EltekPlant
from hil.emulators.megatec import MegatecEmulator
from hil.emulators.snmp_agent import SnmpAgent

EPOCH = 1788000000.0  # a September 2026 night
SITE_ID = "site-1"


class FakeTime:
    def __init__(self):
        self.m = 5000.0

    def mono(self):
        return self.m

    def wall(self):
        return 946684800.0  # never used: the clock is trusted from a given time


class Site:
    """The wiring the runner does: poll results -> SiteMonitor -> queue (alarm and routine)."""

    def __init__(self, kind, backhaul=None, banks=None):
        self.t = FakeTime()
        self.clock = Clock("boot-1", mono=self.t.mono, wall=self.t.wall)
        self.clock.trust(EPOCH, "test")
        self.t0 = self.t.m
        self.mon = SiteMonitor(SITE_ID, kind, self.clock, backhaul=backhaul, banks=banks)
        self.q = MemoryQueue()
        self.events = []  # (minute, "raise"/"clear", alarm id)
        self.derived = {}
        self.made = []  # every record appended, in order (the queue's seq order)

    def minute(self):
        return (self.t.m - self.t0) / 60.0

    def record(self, device, ok, samples):
        now = self.clock.now()
        readings = rd.stamp(samples, SITE_ID, device, now)
        if not ok:
            readings.append(rd.Reading(SITE_ID, device, "agent.device.stale", True, "", now))
        derived, events = self.mon.record(device, ok, readings)
        for r in readings + derived:
            rec = r.to_dict()
            self.q.append(LANE_ROUTINE, rec)
            self.made.append(rec)
        for ev in events:
            self.q.append(LANE_ALARM, ev)
            self.made.append(ev)
            self.events.append((round(self.minute(), 1), ev["event"], ev["alarm"]))
        self.derived = {r.metric: r.value for r in derived}


# --- Wi-Fi point: Megatec UPS on a pty, gateway probe ----------------------------------------


def wifi_night():
    site = Site("wifi")
    # 30 % load, 1800 s at full load: 100 minutes from full; the model runs on the fake clock.
    ups = MegatecEmulator(load=30.0, runtime_s=1800.0, clock=site.t.mono)
    ups.start()
    accuracy = []  # (true SOC, estimate s, true remaining s)
    try:
        drv = MegatecDriver({"id": "ups", "serial": {"port": ups.path, "read_timeout": 0.3}})

        async def night():
            for step in range(0, 110 * 2):  # every 30 s for 110 minutes
                m = step / 2.0
                # The script: flapping mains (one poll out, one back) 4-7 min; mains fails at
                # 10; the gateway probe fails 25-40; the UPS cable glitches 50-52; mains is back
                # at 99.5 (SOC about 10 %).
                if 4.0 <= m < 7.0:
                    ups.set_mains(step % 2 == 1)
                elif m == 7.0:
                    ups.set_mains(True)
                elif m == 10.0:
                    ups.set_mains(False)
                elif m == 99.5:
                    ups.set_mains(True)
                probe_ok = not (25.0 <= m < 40.0)
                ups.fault = "silence" if 50.0 <= m < 52.0 else None
                res = await drv.poll(2.0)
                site.record("ups", res.ok, res.samples)
                site.record("gw", True, [("probe.gw.ok", probe_ok, "")])
                if site.derived.get("site.runtime_estimated") and res.ok:
                    st = ups.state
                    accuracy.append((st["soc"], site.derived["site.runtime"], st["runtime_left"]))
                site.t.m += 30.0
            await drv.close()

        asyncio.run(night())
    finally:
        ups.stop()
    return {"site": site, "accuracy": accuracy}


# --- BTS: the Eltek plant emulator and a router, both on SNMP agents --------------------------


# The DC plant is hil/emulators/eltek.py: an Eltek Smartpack model behind a real SNMP agent on
# the loopback, read by the real SnmpDriver (profile "eltek", v2c) once per fake minute; the
# model runs on the fake clock. What the Smartpack MIB the profile reads does not give comes from
# the site config, as on a real site ([devices.battery], PLANT_BANK): the bank's nominal voltage
# and the LVD voltage per cell. Without a charge reading the runtime estimate is the voltage
# trend down to that LVD voltage (SiteState's configured end point).
#
# The router is a second SnmpAgent serving IF-MIB rows (ifDescr, ifOperStatus, ifName) that the
# script sets each minute, read by SnmpDriver with profile "if-mib": the interface states are
# still the script's (a router has no physics to model), but they reach the monitor through the
# same SNMP path as on a real site.

PLANT_LVD_CELL_V = 1.8  # the site's LVD setting, 43.2 V on a 24-cell bank
PLANT_BANK = {"nominal_v": 48.0, "cutoff_cell_v": PLANT_LVD_CELL_V}  # [devices.battery]

IF_ROWS = ((1, "wan0"), (2, "sat0"), (3, "eth3"))
IF_UP, IF_DOWN = 1, 2


def snmp_device(dev_id, port, profile):
    snmp = {"host": "127.0.0.1", "port": port, "profile": profile, "retries": 0}
    return {"id": dev_id, "timeout": 1.0, "snmp": snmp}


class Router:
    """IF-MIB rows on an SnmpAgent; `oper` holds each interface's state for the next request."""

    def __init__(self):
        self.oper = {name: IF_UP for _i, name in IF_ROWS}
        self.agent = SnmpAgent(self.table)

    def table(self):
        t = {}
        for i, name in IF_ROWS:
            t["1.3.6.1.2.1.2.2.1.2.%d" % i] = (ber.OCTET_STRING, name.encode())
            t["1.3.6.1.2.1.2.2.1.8.%d" % i] = (ber.INTEGER, self.oper[name])
            t["1.3.6.1.2.1.31.1.1.1.1.%d" % i] = (ber.OCTET_STRING, name.encode())
        return t


def bts_night():
    site = Site("bts", backhaul=("if.wan0.oper", "if.sat0.oper"), banks={"plant": PLANT_BANK})
    # +-0.05 V of jitter on the bus voltage as read (a controller's ADC), against a fall of
    # 1.56 V an hour: the trend line has to average it out.
    plant = EltekPlant(capacity_ah=210.0, load_a=42.0, lvd_v=24 * PLANT_LVD_CELL_V, noise_v=0.05,
                       clock=site.t.mono)  # fmt: skip
    router = Router()
    accuracy = []  # (true SOC, estimate s, true remaining s)
    volts = []
    plant.start()
    router.agent.start()
    try:
        dc = SnmpDriver(snmp_device("plant", plant.port, "eltek"))
        rtr = SnmpDriver(snmp_device("rtr", router.agent.port, "if-mib"))

        async def night():
            for step in range(6 * 60 + 15):  # every 60 s for 6 h 15 min
                m = float(step)
                if 5 <= m < 9:
                    plant.set_mains(step % 2 == 1)  # the feed flickers before it goes
                elif m == 9:
                    plant.set_mains(True)
                elif m == 10:
                    plant.set_mains(False)
                elif m == 300:
                    plant.set_mains(True)
                router.oper["wan0"] = IF_DOWN if 40 <= m < 330 else IF_UP
                router.oper["sat0"] = IF_DOWN if 120 <= m < 180 else IF_UP
                router.oper["eth3"] = IF_DOWN
                res = await dc.poll(2.0)
                if not res.ok:
                    raise AssertionError("plant poll failed at minute %s: %r" % (m, res))
                site.record("plant", True, res.samples)
                volts.append({k: v for k, v, _u in res.samples}["battery.voltage"])
                res = await rtr.poll(2.0)
                if not res.ok:
                    raise AssertionError("router poll failed at minute %s: %r" % (m, res))
                site.record("rtr", True, res.samples)
                if site.derived.get("site.runtime_estimated"):
                    st = plant.state
                    accuracy.append((st["soc"], site.derived["site.runtime"], st["runtime_left"]))
                if 60 <= m < 300:
                    if site.derived["site.power_source"] != "battery":
                        raise AssertionError("not on battery at minute %s" % m)
                    if site.derived["site.on_battery_s"] != (step - 10) * 60:
                        raise AssertionError("on_battery_s wrong at minute %s" % m)
                site.t.m += 60.0
            await dc.close()
            await rtr.close()

        asyncio.run(night())
    finally:
        plant.stop()
        router.agent.stop()
    return {"site": site, "accuracy": accuracy, "volts": volts,
            "requests": dc.requests + rtr.requests, "dc_requests": dc.requests,
            "rtr_requests": rtr.requests}  # fmt: skip


_NIGHTS = {}


def once(kind):
    """bts_night() or wifi_night(), run at most once per process: the typhoon tests and the wire
    tests read the same night. Callers must not change what it returns."""
    if kind not in _NIGHTS:
        _NIGHTS[kind] = {"bts": bts_night, "wifi": wifi_night}[kind]()
    return _NIGHTS[kind]
