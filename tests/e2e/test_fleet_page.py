"""The fleet page as a person in the command room uses it, in Debian's headless Chromium: the
demo site (the real agent against emulated devices) and generated sites on one broker, two of
them speaking contract v2 (its compact form and its JSON form); then, at night, the demo site
loses mains, and then its agent dies (the broker sends its last will). And a fleet view that
starts while v2 compact sites are mid-stream: their values are unknown, and the page says so,
until their integrity refresh."""

import json
import os
import re
import time
import urllib.request

import pytest

from hil.fleet_rig import FleetRig
from hil.webdriver import Browser

DEMO = "demo-bts-01"

ROWS_JS = """
return Array.from(document.querySelectorAll('#sites tbody tr')).map(tr => ({
  site: tr.dataset.site, cls: tr.className, why: tr.title,
  level: tr.querySelector('.c-level').innerText.trim(),
  name: tr.querySelector('.c-site a').innerText.trim(),
  sub: tr.querySelector('.c-site .sub').innerText.trim(),
  place: tr.querySelector('.c-place').innerText.trim(),
  power: tr.querySelector('.c-power').innerText.trim(),
  charge: tr.querySelector('.c-charge').innerText.trim(),
  runtime: tr.querySelector('.c-runtime').innerText.trim(),
  backhaul: tr.querySelector('.c-backhaul').innerText.trim(),
  alarms: tr.querySelector('.c-alarms').innerText.trim(),
  heard: tr.querySelector('.c-heard').innerText.trim(),
  status: tr.querySelector('.c-status .st').innerText.trim()}));
"""
TOTALS_JS = "return Array.from(document.querySelectorAll('#totals .chip')).map(c => c.innerText)"
# Count the canvas's pixels of one colour (within a small tolerance).
PIXELS_JS = """
const [id, r, g, b] = arguments;
const c = document.getElementById(id);
const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
let n = 0;
for (let i = 0; i < d.length; i += 4)
  if (Math.abs(d[i] - r) < 8 && Math.abs(d[i + 1] - g) < 8 && Math.abs(d[i + 2] - b) < 8) n++;
return n;
"""
CHARGE_LINE = (31, 95, 191)  # #1f5fbf
BATTERY_BAND = (196, 0, 29)  # #c4001d


@pytest.fixture(scope="module")
def rig():
    # A short, fine history (6 minutes in 2 s steps) so the plot has a line within seconds.
    with FleetRig(generated=5, history_step=2.0, history_hours=0.1, v2=2) as r:
        yield r


@pytest.fixture(scope="module")
def browser():
    with Browser(width=1500, height=1000) as b:
        yield b


def rows(b):
    return b.js(ROWS_JS)


def api(rig, path):
    with urllib.request.urlopen(rig.app.url + path.lstrip("/"), timeout=10) as r:
        return json.loads(r.read())


def wait_rows(b, pred, what, timeout=90):
    try:
        return b.wait_for("const rows = (function(){%s})(); return (%s) ? rows : null;"
                          % (ROWS_JS, pred), timeout)  # fmt: skip
    except TimeoutError:
        raise AssertionError("the page never showed %s; it shows %s" % (what, rows(b))) from None


def shot(b, name):
    out = os.environ.get("FLEET_SCREENSHOTS")  # hil/fleet_screens.py sets it for docs/
    if out:
        b.screenshot(os.path.join(out, name))


def test_the_page_shows_the_fleet_then_a_site_on_battery_then_a_silent_one(rig, browser):
    b = browser
    b.get(rig.app.url)
    # Every site, the demo one with what its agent's birth says about it.
    got = wait_rows(b, "rows.length == 6 && rows.some(r => r.site == '%s' && r.power != "
                       "'unknown')" % DEMO, "six sites with the demo site's power")
    demo = [r for r in got if r["site"] == DEMO][0]
    assert demo["name"] == "Simulated hardened BTS (demo)"
    assert demo["place"].startswith("Demo commune") and "Loopback" in demo["place"]
    assert demo["status"] == "online" and demo["power"] == "mains" and demo["level"] == "OK"
    for r in got:
        assert r["name"] and r["place"] != "–" and r["status"] == "online", r
    # The two v2 sites (a BTS in the compact form, a Wi-Fi point in JSON) show as the v1 ones.
    got = wait_rows(b, "rows.filter(r => r.sub.includes(' · v2 ')).length == 2",
                    "the v2 sites with their contract")  # fmt: skip
    v2 = {r["site"]: r for r in got if " · v2 " in r["sub"]}
    bts, wifi = v2["sim-bts-00003"], v2["sim-wifi-00004"]
    assert bts["sub"].endswith("v2 compact") and wifi["sub"].endswith("v2 JSON")
    assert bts["power"] == "mains" and bts["charge"] == "100 %" and bts["backhaul"] == "up"
    assert bts["runtime"] == "4 h 00 min" and bts["level"] == "OK" and bts["name"]
    assert wifi["power"] == "mains" and wifi["backhaul"] == "up" and wifi["level"] == "OK"
    assert "unknown" not in json.dumps(list(v2.values()))
    assert [r["sub"].endswith("v1 JSON") or r["sub"].endswith("v1 compact")
            for r in got if r["site"] not in v2] == [True] * 4
    assert b.js("return state.hits.length") == 6  # every site has coordinates: all on the map
    assert b.js(PIXELS_JS, "map", 46, 125, 50) > 50  # the green of sites that are fine
    assert [r["site"] for r in got] == [r["id"] for r in api(rig, "/api/fleet")["sites"]]
    shot(b, "fleet-calm.png")

    # Filter by commune: typing part of it, without its case, finds it.
    b.js("location.hash = 'q=demo%20COMM'")
    got = wait_rows(b, "rows.length == 1", "only the demo site")
    assert got[0]["site"] == DEMO
    areas = b.js("return Array.from(document.querySelectorAll('#area option')).map(o => o.text)")
    assert "Demo commune (1)" in areas and "Loopback (1)" in areas
    b.js("location.hash = 'area=Loopback'")
    assert wait_rows(b, "rows.length == 1", "the Loopback province")[0]["site"] == DEMO
    b.js("location.hash = ''")
    wait_rows(b, "rows.length == 6", "every site again")

    # A typhoon night: the sun is down (the site's solar controller gives nothing) and the
    # demo site's UPS loses mains. The real agent says the site is on battery; the page puts it
    # first.
    rig.night_and_no_mains()
    got = wait_rows(b, "rows[0].site == '%s' && rows[0].power.startsWith('battery') && "
                       "rows[0].alarms != '–'" % DEMO,
                    "the demo site first, on battery, with its alarm")  # fmt: skip
    top = got[0]
    assert top["level"] in ("CRITICAL", "MAJOR") and "lvl-" in top["cls"]
    assert top["why"].startswith("on battery")
    assert top["charge"].endswith("%") and top["runtime"] != "–"
    assert "major" in top["alarms"]  # UPS_ON_BATTERY
    assert "1 on battery" in b.js(TOTALS_JS)
    shot(b, "fleet-on-battery.png")

    # Its site page: the cards, the active alarm, and the last hour as a plot.
    b.get(rig.app.url + "site/" + DEMO)
    b.wait_for("return document.querySelector('[data-card=power] .value') && document"
               ".querySelector('[data-card=power] .value').innerText.startsWith('battery')", 60)
    cards = b.js("return Object.fromEntries(Array.from(document.querySelectorAll('.card'))"
                 ".map(c => [c.dataset.card, c.innerText]))")
    assert cards["status"].startswith("STATUS\nonline")
    assert "%" in cards["charge"] and ("h" in cards["runtime"] or "min" in cards["runtime"])
    b.wait_for("return Array.from(document.querySelectorAll('#alarms tbody tr'))"
               ".some(tr => tr.dataset.alarm.startsWith('UPS_ON_BATTERY/'))", 60)
    assert b.js("return document.getElementById('place').innerText").startswith(
        "Demo commune, Loopback (16.4637, 107.5909)")
    # The plot: the red "on battery" band and the charge line.
    b.wait_for("return (function(){%s})() > 20" % PIXELS_JS.replace(
        "arguments", "['plot', %d, %d, %d]" % BATTERY_BAND), 60)  # fmt: skip
    b.wait_for("return (function(){%s})() > 20" % PIXELS_JS.replace(
        "arguments", "['plot', %d, %d, %d]" % CHARGE_LINE), 60)  # fmt: skip
    shot(b, "site-on-battery.png")

    # The agent dies (SIGKILL: no goodbye). The broker's last will marks the site offline.
    b.get(rig.app.url)
    wait_rows(b, "rows.length == 6", "the fleet again")
    rig.kill_agent()
    got = wait_rows(b, "rows.some(r => r.site == '%s' && r.status.startsWith('offline'))" % DEMO,
                    "the demo site offline")  # fmt: skip
    demo = [r for r in got if r["site"] == DEMO][0]
    assert demo["status"] == "offline: connection lost"
    assert demo["level"] == "OFFLINE" and "lvl-offline" in demo["cls"]
    assert demo["why"] == "offline: connection lost (was on battery)"
    assert demo["power"].startswith("last: battery")  # what it said last, shown as such
    assert got[0]["site"] == DEMO  # nothing else is on battery: the silent site comes first
    assert "1 offline or silent" in b.js(TOTALS_JS) and "0 on battery" in b.js(TOTALS_JS)
    shot(b, "fleet-silent.png")

    # The v2 compact site's link dies: its last will (under site-agent/v2) on the page too.
    rig.sim.go_silent("sim-bts-00003")
    got = wait_rows(b, "rows.some(r => r.site == 'sim-bts-00003' && r.status.startsWith("
                       "'offline'))", "the v2 site offline")  # fmt: skip
    assert [r for r in got if r["site"] == "sim-bts-00003"][0]["status"] == \
        "offline: connection lost"
    errors = [e for e in b.console() if e.get("level") == "SEVERE"]
    assert errors == [], errors


def test_a_site_page_for_an_unknown_site_says_so(rig, browser):
    browser.get(rig.app.url + "site/no-such-site")
    browser.wait_for("return !document.getElementById('missing').hidden", 30)


def test_a_view_that_joins_v2_compact_streams_mid_way_shows_unknown_until_the_refresh(browser):
    """The fleet view starts while two v2 compact sites are mid-stream (their clock is the
    test's: FleetSim.step). The stream sends a value only when it moves, so what it leaves out
    is unknown to the new view: the page says "unknown until HH:MM", never the retained state's
    older value, and explains why; at the sites' integrity refresh the values appear."""
    from agent.fleet.app import FleetApp
    from hil.broker import Broker
    from hil.fleet import FleetSim, make_sites

    integrity = 60.0
    b = browser
    with Broker(require_mosquitto=True) as broker:
        t0 = time.time() - 600
        sites = make_sites(2, seed=21, bts_share=1.0, start=t0, contract_version=2,
                           fmt="compact", integrity=integrity)  # fmt: skip
        for s in sites:
            s.commit_s = 5.0
            for d in s.devices:
                d.interval = 10.0
        sim = FleetSim("127.0.0.1", broker.port, sites).start(run=False, now=t0)
        app = None
        try:
            t = t0
            # Past the first refresh, and not due for the next one for a while.
            while t < t0 + 2 * integrity or min(s.next_refresh() for s in sites) - t < 20:
                t += 1.0
                sim.step(t)
            app = FleetApp("127.0.0.1", broker.port, ("127.0.0.1", 0)).start()
            assert app.sub.wait_synced(30)
            b.get(app.url)
            join = t
            for _ in range(8):  # the live stream, as the view first hears it
                t += 1.0
                sim.step(t)
            got = wait_rows(b, "rows.length == 2 && rows.every(r => r.power.startsWith("
                               "'unknown until'))", "both sites' power unknown")  # fmt: skip
            for r in got:
                assert r["charge"] == "unknown" and r["runtime"] == "unknown", r
                assert r["backhaul"] == "unknown" and r["level"] == "UNKNOWN"
                assert "integrity refresh" in r["why"]
            note = b.js("return document.querySelector('#sites tbody td.c-power').title")
            assert "joined the site's data stream mid-way" in note
            assert any("values unknown until their integrity refresh" in c
                       for c in b.js(TOTALS_JS))  # fmt: skip
            with urllib.request.urlopen(app.url + "metrics", timeout=10) as r:
                text = r.read().decode()
            unknown = re.search(r'^site_agent_values_unknown\{site="%s"\} (\d+)$' % sites[0].id,
                                text, re.M)  # fmt: skip
            assert unknown and int(unknown.group(1)) >= 5  # power, charge, runtime, backhaul...
            shot(b, "fleet-unknown.png")
            while t - join < integrity + 20:  # past the refresh, in the sites' clock
                t += 1.0
                sim.step(t)
            got = wait_rows(b, "rows.length == 2 && rows.every(r => r.power == 'mains')",
                            "the values after the integrity refresh")  # fmt: skip
            for r in got:
                assert r["charge"] == "100 %" and r["backhaul"] == "up" and r["level"] == "OK"
            assert not any("unknown" in c for c in b.js(TOTALS_JS))
        finally:
            if app is not None:
                app.stop()
            sim.stop()
