"""The fleet page as a person in the command room uses it, in Debian's headless Chromium: the
demo site (the real agent against emulated devices) and generated sites on one broker; then, at
night, the demo site loses mains, and then its agent dies (the broker sends its last will)."""

import json
import os
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
    with FleetRig(generated=5, history_step=2.0, history_hours=0.1) as r:
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
    errors = [e for e in b.console() if e.get("level") == "SEVERE"]
    assert errors == [], errors


def test_a_site_page_for_an_unknown_site_says_so(rig, browser):
    browser.get(rig.app.url + "site/no-such-site")
    browser.wait_for("return !document.getElementById('missing').hidden", 30)
