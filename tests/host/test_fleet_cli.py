"""`site-agent fleet --once` as a script runs it, against mosquitto and a simulated fleet; and
what the command says to bad usage and to a broker that is not there."""

import json
import os
import subprocess
import sys
import time

from hil.broker import Broker
from hil.fleet import FleetSim, make_sites
from hil.net import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def fleet_cmd(*args, timeout=60):
    return subprocess.run([sys.executable, "-m", "agent.host.cli", "fleet"] + list(args),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)  # fmt: skip


def wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    raise AssertionError("timed out")


def test_once_prints_the_fleet_most_urgent_first():
    with Broker(require_mosquitto=True) as b:
        sites = make_sites(6, bts_share=0.5, seed=3)
        on_batt = [s for s in sites if s.kind == "bts"][0]  # a BTS reports its charge
        gone = [s for s in sites if s is not on_batt][0]
        on_batt.mains = False
        on_batt.on_battery_since = time.time() - 600
        on_batt.charge = 40.0
        sim = FleetSim("127.0.0.1", b.port, sites).start()
        try:
            sim.go_silent(gone.id)
            wait(lambda: gone.id not in sim.clients)
            p = fleet_cmd("--broker", "127.0.0.1:%d" % b.port, "--insecure", "--once",
                          "--wait", "1")  # fmt: skip
            pj = fleet_cmd("--broker", "127.0.0.1:%d" % b.port, "--insecure", "--once",
                           "--wait", "0", "--json", "-q", on_batt.location["commune"],
                           "--mqtt", "3.1.1")  # an older broker's protocol works too  # fmt: skip
        finally:
            sim.stop()
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[0].split() == ["LEVEL", "SITE", "NAME", "PLACE", "POWER", "CHARGE", "RUNTIME",
                                "BACKHAUL", "ALARMS", "HEARD", "STATUS"]  # fmt: skip
    assert len(lines) == 7
    first, second = lines[1], lines[2]
    assert on_batt.id in first and "battery 10 min" in first and "40%" in first
    assert first.startswith("CRITICAL") or first.startswith("MAJOR")
    assert "1M" in first  # the site's MAINS_LOST (major) alarm
    assert gone.id in second and "offline: connection lost" in second
    assert second.startswith("OFFLINE")
    assert "6 sites" in p.stderr and "PLAIN TEXT MQTT" in p.stderr
    assert pj.returncode == 0, pj.stderr
    body = json.loads(pj.stdout)
    assert [r["id"] for r in body["sites"]] == [on_batt.id]
    r = body["sites"][0]
    assert r["power"] == "battery" and r["commune"] == on_batt.location["commune"]
    assert r["name"] == on_batt.name and r["alarms"]["major"] == 1


def test_bad_usage_says_what_is_wrong_and_exits_2():
    cases = [
        (["--broker", "host:99999", "--insecure", "--once"], "port must be 1-65535"),
        (["--broker", "[::1", "--once"], "missing ]"),
        (["--broker", "h", "--share", "noc", "--mqtt", "3.1.1"], "--share needs --mqtt 5"),
        (["--broker", "h", "--share", "a/b"], "cannot contain"),
        (["--broker", "h", "--map-image", "/nonexistent.png"], "go together"),
        (["--broker", "h", "--map-bounds", "1,2,3"], "four numbers"),
        (["--broker", "h", "--map-bounds", "16,108,15,109", "--map-image", __file__],
         "south < north"),
        (["--broker", "h", "--listen", "nowhere"], "HOST:PORT"),
    ]
    for args, needle in cases:
        p = fleet_cmd(*args, timeout=30)
        assert p.returncode == 2, (args, p.stderr)
        assert needle in p.stderr, (args, p.stderr)


def test_a_broker_that_is_not_there_fails_the_script_quickly():
    port = free_port()
    started = time.monotonic()
    p = fleet_cmd("--broker", "127.0.0.1:%d" % port, "--insecure", "--once", "--wait", "30")
    assert p.returncode == 1
    assert "127.0.0.1:%d: cannot connect" % port in p.stderr
    assert time.monotonic() - started < 25  # not --wait + 10: two refusals are enough


def test_once_waits_for_each_online_site_to_speak_not_just_its_retained_state():
    """A site's retained state is as of its last connect: a site that lost mains since then
    still says "mains" there. --once listens until every online site has sent live data."""
    with Broker(require_mosquitto=True) as b:
        sites = make_sites(3, bts_share=1.0, seed=5)
        sim = FleetSim("127.0.0.1", b.port, sites).start()
        try:
            wait(lambda: sim.published >= 3 * 4)  # births, states, alarm sets, first backlog
            changed = sites[1]
            changed.mains = False  # after its retained state went out
            changed.on_battery_since = time.time()
            sim.poke(changed.id)
            started = time.monotonic()
            p = fleet_cmd("--broker", "127.0.0.1:%d" % b.port, "--insecure", "--once",
                          "--json", "--wait", "60")  # fmt: skip
            took = time.monotonic() - started
            sim.go_silent(sites[2].id)
            wait(lambda: sites[2].id not in sim.clients)
            q = fleet_cmd("--broker", "127.0.0.1:%d" % b.port, "--insecure", "--once",
                          "--wait", "2")  # fmt: skip
        finally:
            sim.stop()
    assert p.returncode == 0, p.stderr
    power = {r["id"]: r["power"] for r in json.loads(p.stdout)["sites"]}
    assert power[changed.id] == "battery"
    assert took < 45  # BTS sites commit every 5 s: no need to sit out --wait
    assert "sent nothing" not in p.stderr
    # The offline site is not waited for; the online ones that stay quiet are named.
    assert q.returncode == 0
    assert sites[2].id in q.stdout and sites[2].id not in q.stderr.split("connect):")[-1]
