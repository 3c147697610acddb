"""Typhoon night, one scripted timeline per site kind, on a fake clock.

Wi-Fi point: a real MegatecDriver reads the Megatec Q1 emulator over a pty (the emulator's model
runs on the same fake clock), and a scripted gateway probe; two more Wi-Fi tests run the UPS's
battery all the way to its shutdown. BTS: the real pysnmp SnmpDriver reads the Eltek Smartpack
emulator (a -48 V DC plant model behind an SNMP agent on the loopback, on the same fake clock)
and a router whose IF-MIB rows the script sets, served by a second SNMP agent. Each timeline:
mains fails (after a spell of flapping), the battery discharges, the backhaul drops, mains
returns. Asserted: the
exact alarm event sequence with its times, the runtime estimate against the known discharge, and
no storm (one raise and at most one clear per alarm) despite flapping input.
"""

import asyncio

from drivers.megatec import MegatecDriver
from hil.emulators.megatec import MegatecEmulator
from hil.typhoon import Site, once


def no_storm(events):
    per = {}
    for _m, kind, aid in events:
        per.setdefault(aid, []).append(kind)
    for aid, kinds in per.items():
        assert kinds in (["raise"], ["raise", "clear"]), (aid, kinds)


def check_estimates(accuracy, margin_s=300.0, within=0.10):
    """Every (soc, estimate, true seconds left) made while at least margin_s remain is within
    `within` of the truth; returns the worst relative error among them."""
    worst = 0.0
    for soc, est, true_left in accuracy:
        if true_left >= margin_s:
            err = abs(est - true_left) / true_left
            assert err <= within, (soc, est, true_left)
            worst = max(worst, err)
    return worst


# --- Wi-Fi point: Megatec UPS on a pty, gateway probe ----------------------------------------

WIFI_EXPECTED = [
    (10.5, "raise", "UPS_ON_BATTERY/ups/ups.status"),
    (25.5, "raise", "BACKHAUL_DOWN/site/site.backhaul"),
    (40.5, "clear", "BACKHAUL_DOWN/site/site.backhaul"),
    (51.0, "raise", "DEVICE_UNREACHABLE/ups/agent.device.stale"),
    (52.0, "clear", "DEVICE_UNREACHABLE/ups/agent.device.stale"),
    (90.5, "raise", "UPS_BATTERY_LOW/ups/ups.status"),
    # Empty at 110.0 (100 minutes at 30 % load from 10.0): 900 s left at 95.0, then the 60 s
    # debounce, seen at the next 30 s poll.
    (96.5, "raise", "RUNTIME_LOW/site/site.runtime"),
    (99.5, "clear", "UPS_BATTERY_LOW/ups/ups.status"),
    (99.5, "clear", "RUNTIME_LOW/site/site.runtime"),
    (100.5, "clear", "UPS_ON_BATTERY/ups/ups.status"),
]


def test_wifi_typhoon_night(capsys):
    night = once("wifi")
    site, accuracy = night["site"], night["accuracy"]

    assert site.events == WIFI_EXPECTED
    no_storm(site.events)
    # Runtime from the battery-voltage trend (Megatec reports no charge), against the model's
    # time to shutdown, at every estimate (mains is back with about 10 minutes left; the whole
    # discharge to the cut-off is test_wifi_discharge_to_shutdown below).
    worst = check_estimates(accuracy)
    assert len(accuracy) >= 120
    with capsys.disabled():
        print(
            "\nwifi runtime estimate: %d estimates, worst error %.1f%%; last (SOC %.0f%%): "
            "%.0f s vs %.0f s" % (len(accuracy), 100 * worst, *accuracy[-1])
        )
    # Every event is in the alarm lane, and the alarm lane leaves first.
    batch = site.q.next_batch(1000) if site.q.commit() is not None else None
    alarms = [r for r in batch[1] if "event" in r]
    assert [(r["event"], r["alarm"]) for r in alarms] == [(e[1], e[2]) for e in WIFI_EXPECTED]
    assert batch[1][: len(alarms)] == alarms
    assert site.mon.engine.active() == []


# --- Wi-Fi point: the whole discharge, down to the UPS's own shutdown -------------------------


async def discharge(site, ups, drv, accuracy, step_s=30.0, limit_s=4 * 3600.0):
    """Poll every step_s on battery until the UPS reports its shutdown (FSD); collect
    (soc, estimate, true seconds left) for every estimate. Returns the seconds it ran."""
    t = 0.0
    while t < limit_s:
        res = await drv.poll(2.0)
        assert res.ok, res
        site.record("ups", True, res.samples)
        st = ups.state
        if st["shutdown"]:
            return t
        if site.derived.get("site.runtime_estimated"):
            accuracy.append((st["soc"], site.derived["site.runtime"], st["runtime_left"]))
        site.t.m += step_s
        t += step_s
    raise AssertionError("no shutdown within %d s" % limit_s)


def test_wifi_discharge_to_shutdown(capsys):
    # Two UPSes the Q1 protocol covers: per-cell report at 30 % load (100 min), whole-battery
    # report at 60 % load (50 min). No charge reading: the estimate is the voltage trend down to
    # the end of discharge from F's rated battery voltage (NUT's 104/120 rule).
    lines = []
    for load, report in ((30.0, "per_cell"), (60.0, "whole")):
        site = Site("wifi")
        ups = MegatecEmulator(
            load=load, runtime_s=1800.0, battery_report=report, clock=site.t.mono
        )
        ups.start()
        try:
            drv = MegatecDriver({"id": "ups", "serial": {"port": ups.path, "read_timeout": 0.3}})
            ups.set_mains(False)
            accuracy = []

            async def run(site, ups, drv, accuracy):
                ran = await discharge(site, ups, drv, accuracy)
                await drv.close()
                return ran

            ran = asyncio.run(run(site, ups, drv, accuracy))
        finally:
            ups.stop()
        full = 1800.0 * 100.0 / load
        assert abs(ran - full) <= 30.0, (ran, full)
        worst = check_estimates(accuracy)
        # Estimates start after the 20 min trend and go on to the last poll before shutdown.
        assert min(a[2] for a in accuracy) < 60.0
        assert len([a for a in accuracy if a[2] >= 300.0]) >= (full - 1200 - 300) / 30 - 2
        lines.append(
            "load %d%% (%s): %d estimates, worst %.1f%% with >= 5 min left"
            % (load, report, len(accuracy), 100 * worst)
        )
    with capsys.disabled():
        print("\nwifi discharge to shutdown: " + "; ".join(lines))


def test_wifi_end_point_learned_from_a_shutdown(capsys):
    # A UPS whose firmware cuts off at 1.75 V per cell (10.5 V per block), not where NUT's rule
    # puts it: the first discharge's estimate runs long near the end; the agent takes the voltage
    # the UPS shut down at (fitted line at the FSD) and the next discharge is right to the end.
    site = Site("wifi")
    ups = MegatecEmulator(load=30.0, runtime_s=1800.0, cutoff_cell_v=1.75, clock=site.t.mono)
    ups.start()
    try:
        drv = MegatecDriver({"id": "ups", "serial": {"port": ups.path, "read_timeout": 0.3}})
        first, second = [], []

        async def run():
            ups.set_mains(False)
            await discharge(site, ups, drv, first)
            # Mains back, the battery recharged, mains fails again.
            ups.set_mains(True)
            site.record("ups", True, (await drv.poll(2.0)).samples)
            assert site.derived["site.power_source"] == "mains"
            ups.set_soc(100.0)
            ups.set_mains(False)
            await discharge(site, ups, drv, second)
            await drv.close()

        asyncio.run(run())
    finally:
        ups.stop()
    learned = site.mon.site.cutoffs["ups"]
    assert abs(learned - 12 * 1.75) <= 12 * 0.002, learned  # within 2 mV per cell
    worst_first = max(abs(e - t) / t for _s, e, t in first if t >= 300.0)
    assert worst_first > 0.10  # the default end point is wrong for this UPS: the test can fail
    worst = check_estimates(second)
    with capsys.disabled():
        print(
            "\nwifi learned cut-off %.3f V/cell; worst with >= 5 min left: %.1f%% before, "
            "%.1f%% after" % (learned / 12, 100 * worst_first, 100 * worst)
        )


# --- BTS: the Eltek plant emulator and a router, both on SNMP agents (hil/typhoon.py) -----------
# Without a charge reading the runtime estimate is the voltage trend down to the LVD voltage of
# the site config (SiteState's configured end point), so the charge-based BATTERY_LOW of the
# scripted plant is gone from the sequence and RUNTIME_LOW, from the estimate, takes its place.

BTS_EXPECTED = [
    (11.0, "raise", "MAINS_LOST/plant/plant.alarm.mains_lost"),
    (40.0, "raise", "LINK_DOWN/rtr/if.wan0.oper"),
    (120.0, "raise", "LINK_DOWN/rtr/if.sat0.oper"),
    (121.0, "raise", "BACKHAUL_DOWN/site/site.backhaul"),
    (180.0, "clear", "LINK_DOWN/rtr/if.sat0.oper"),
    (181.0, "clear", "BACKHAUL_DOWN/site/site.backhaul"),
    # 42 A from 210 Ah is 300 min; the flicker took 2 of them (off at 6 and 8), so the LVD
    # would open at 308.0: 900 s left at 293.0, the estimate (whole seconds, 1-2 s under the
    # truth) is first below 900 at 294.0, then the 60 s debounce.
    (294.0, "raise", "RUNTIME_LOW/site/site.runtime"),
    (300.0, "clear", "RUNTIME_LOW/site/site.runtime"),
    (301.0, "clear", "MAINS_LOST/plant/plant.alarm.mains_lost"),
    (330.0, "clear", "LINK_DOWN/rtr/if.wan0.oper"),
]


def test_bts_typhoon_night(capsys):
    night = once("bts")
    site, accuracy, volts = night["site"], night["accuracy"], night["volts"]

    assert site.events == BTS_EXPECTED
    no_storm(site.events)
    worst = check_estimates(accuracy)
    assert len(accuracy) >= 250, len(accuracy)
    assert min(a[2] for a in accuracy) <= 900.0  # estimates go on into RUNTIME_LOW territory
    # the plant really discharged and recharged on the wire: float, fall to the LVD, float
    assert 53.9 <= volts[0] <= 54.1 and 53.9 <= volts[-1] <= 54.1
    assert 43.2 < min(volts) < 44.0, min(volts)
    with capsys.disabled():
        print(
            "\nbts runtime estimate (Eltek emulator over SNMP, voltage trend): %d estimates, "
            "worst error %.1f%%; last (SOC %.1f%%): %.0f s vs %.0f s; %d + %d SNMP requests"
            % (len(accuracy), 100 * worst, *accuracy[-1], night["dc_requests"],
               night["rtr_requests"])
        )
    assert site.mon.engine.active() == []
