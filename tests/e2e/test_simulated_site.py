"""End to end: the simulated BTS site (snmpsim serving real recordings, a Megatec UPS on a pty, a
real broker), the real agent daemon in a subprocess, and a subscriber in the operations centre's
place. Values that reach the broker must be the values in the recordings and the emulator."""

import os
import signal
import subprocess
import sys

import pytest

from hil.site import ROUTER_RECORDING, UPS_RECORDING, SimulatedSite
from hil.snmpsim import read_snmprec
from hil.upstream import Upstream

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UPS_MIB = "1.3.6.1.2.1.33.1."


@pytest.fixture(scope="module")
def running_site(tmp_path_factory):
    site = SimulatedSite(interval=1)
    site.start()
    upstream = Upstream("127.0.0.1", site.broker.port, site.prefix, site.site_id).start()
    log_path = os.path.join(site.dir, "agent.log")
    log = open(log_path, "w")
    agent = subprocess.Popen(
        [sys.executable, "-m", "agent.host.cli", "run", "-c", site.config_path],
        stdout=log, stderr=log, cwd=ROOT,
    )
    try:
        yield site, upstream, agent, log_path
    finally:
        if agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(15)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        upstream.stop()
        site.stop()


def _recorded(site, recording):
    """{oid: (type tag, value text)} as the recording file holds it."""
    return read_snmprec(site.snmp.recording_path(recording))


def _value(rows, oid):
    return rows[oid][1]


def _value_of(upstream, key):
    return upstream.snapshot()[0][key][0]["value"]


def _wait(upstream, agent, log_path, keys, timeout=60):
    try:
        return upstream.wait_for(lambda latest: all(k in latest for k in keys), timeout)
    except TimeoutError as e:
        with open(log_path) as f:
            log = f.read()[-3000:]
        raise AssertionError("%s\nagent exit=%s log:\n%s" % (e, agent.poll(), log)) from e


def test_ups_mib_values_from_the_recording_reach_the_broker(running_site):
    site, upstream, agent, log_path = running_site
    keys = [("ups-snmp", m) for m in ("battery.charge", "battery.voltage", "input.voltage",
                                      "output.source", "ups.status")]
    latest = _wait(upstream, agent, log_path, keys)
    rows = _recorded(site, UPS_RECORDING)

    def got(metric):
        return latest[("ups-snmp", metric)][0]

    assert got("battery.charge")["value"] == float(_value(rows, UPS_MIB + "2.4.0"))
    assert got("battery.voltage")["value"] == pytest.approx(
        float(_value(rows, UPS_MIB + "2.5.0")) / 10
    )
    assert got("input.voltage")["value"] == float(_value(rows, UPS_MIB + "3.3.1.3.1"))
    assert (
        got("output.source")["value"]
        == {"3": "normal", "5": "battery", "4": "bypass"}[_value(rows, UPS_MIB + "4.1.0")]
    )
    assert got("battery.charge")["unit"] == "%"
    assert got("battery.voltage")["unit"] == "V"
    for metric in ("battery.charge", "battery.voltage"):
        r = got(metric)
        assert r["site"] == site.site_id and r["quality"] == "good"
        assert isinstance(r["seq"], int) and isinstance(r["time"], float)


def test_router_readings_reach_the_broker(running_site):
    site, upstream, agent, log_path = running_site
    latest = _wait(upstream, agent, log_path, [("router", "device.uptime")])
    rows = _recorded(site, ROUTER_RECORDING)
    uptime_ticks = int(_value(rows, "1.3.6.1.2.1.1.3.0"))
    got = latest[("router", "device.uptime")][0]["value"]
    # snmpsim may advance TimeTicks values with wall time; the recording is the lower bound.
    assert uptime_ticks // 100 <= got <= uptime_ticks // 100 + 3600
    opers = [
        k for k in latest if k[0] == "router" and k[1].startswith("if.") and k[1].endswith(".oper")
    ]
    assert opers, sorted(latest)
    # site.backhaul follows the router's eth0 (the site's configured backhaul): up in the recording
    assert _value_of(upstream, ("router", "if.eth0.oper")) == "up"
    backhaul = upstream.wait_for(lambda latest: ("site", "site.backhaul") in latest, 30)
    assert backhaul[("site", "site.backhaul")][0]["value"] == "up"


def test_serial_ups_readings_match_the_emulator(running_site):
    site, upstream, agent, log_path = running_site
    keys = [
        ("ups-serial", m) for m in ("input.voltage", "output.voltage", "ups.load", "ups.status")
    ]
    latest = _wait(upstream, agent, log_path, keys)
    state = site.ups_serial.state
    assert latest[("ups-serial", "input.voltage")][0]["value"] == pytest.approx(
        state["input_voltage"], abs=0.2
    )
    assert "OL" in latest[("ups-serial", "ups.status")][0]["value"].split()


def test_sequence_numbers_are_unique_and_the_agent_is_online(running_site):
    site, upstream, agent, log_path = running_site
    latest, seqs, status, batches = upstream.snapshot()
    assert batches > 0
    assert status is not None and '"online"' in status
    # QoS 1 may deliver a batch twice; a seq must never stand for two different readings.
    by_seq = {}
    for (dev, metric), (rec, _) in latest.items():
        assert by_seq.setdefault(rec["seq"], (dev, metric)) == (dev, metric)


def test_solar_controller_and_bms_readings_match_their_emulators(running_site):
    site, upstream, agent, log_path = running_site
    keys = [
        ("solar", "solar.voltage"),
        ("solar", "battery.charge"),
        ("li-bms", "battery.charge"),
        ("li-bms", "battery.cell.1.voltage"),
        ("li-bms", "battery.cycles"),
    ]
    latest = _wait(upstream, agent, log_path, keys)
    solar = site.solar.state(1)
    bms = site.bms.state(2)
    assert latest[("solar", "solar.voltage")][0]["value"] == solar["pv_v"]
    assert abs(latest[("solar", "battery.charge")][0]["value"] - solar["soc"]) <= 1
    assert abs(latest[("li-bms", "battery.charge")][0]["value"] - bms["soc"]) <= 1
    assert latest[("li-bms", "battery.cycles")][0]["value"] == bms["cycles"]
    cell = latest[("li-bms", "battery.cell.1.voltage")][0]
    assert cell["unit"] == "V" and 3.0 < cell["value"] < 3.6


def test_mains_failure_raises_an_alarm_upstream(running_site):
    """Runs last in this module: it changes the emulator's state. Pull mains on the serial UPS:
    the agent sees OB, the default rule UPS_ON_BATTERY (OB for 10 s) raises, the event arrives on
    the alarm topic and the retained active-alarm set names it; at night the site state says
    battery."""
    import json
    import time

    site, upstream, agent, log_path = running_site
    # A typhoon night: no sun on the panels (else the site would rightly say "solar"), then mains
    # goes.
    site.solar.unit(1).set_sun(0.0)
    site.ups_serial.set_mains(False)
    deadline = time.monotonic() + 60
    raised = []
    while time.monotonic() < deadline and not raised:
        with upstream.lock:
            raised = [
                e
                for e in upstream.alarm_events
                if e.get("rule") == "UPS_ON_BATTERY" and e.get("event") == "raise"
            ]
        time.sleep(0.2)
    if not raised:
        with open(log_path) as f:
            raise AssertionError("no UPS_ON_BATTERY event; agent log:\n" + f.read()[-3000:])
    event = raised[0]
    assert event["alarm"] == "UPS_ON_BATTERY/ups-serial/ups.status"
    assert event["severity"] == "major" and event["device"] == "ups-serial"
    assert "OB" in json.dumps(event).split('"value"', 1)[1][:40]
    assert isinstance(event["seq"], int) and isinstance(event["time"], float)
    # The retained set is republished after the event's commit.
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with upstream.lock:
            retained = upstream.retained.get("alarms")
        if retained and b"UPS_ON_BATTERY" in retained:
            break
        time.sleep(0.2)
    else:
        raise AssertionError("retained alarm set never named UPS_ON_BATTERY: %r" % retained)
    latest = upstream.wait_for(
        lambda got: got.get(("site", "site.power_source"), ({},))[0].get("value") == "battery", 20
    )
    assert latest[("site", "site.power_source")][0]["value"] == "battery"
