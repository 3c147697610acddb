"""/metrics: the fleet in the Prometheus text format, checked by Prometheus's own promtool
(Debian package prometheus) and read back series by series."""

import re
import shutil
import subprocess
import urllib.request

import pytest

from agent.core.uplink import contract
from agent.fleet import decode, exposition
from agent.fleet.model import Fleet
from agent.fleet.server import FleetServer

T0 = 1_790_000_000.0
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$')


def promtool(text):
    if not shutil.which(PROMTOOL):
        pytest.fail("promtool is missing: apt-get install prometheus (./run setup installs it)")
    p = subprocess.run([PROMTOOL, "check", "metrics"], input=text.encode(), capture_output=True,
                       timeout=60)  # fmt: skip
    return p.returncode, (p.stdout + p.stderr).decode()


def feed(fleet, site, name, location, values, now, status="online"):
    info = {"name": name, "kind": "bts", "location": location}
    body = contract.status_payload(status, "connection lost" if status == "offline" else None,
                                   time=now - 100, info=info)  # fmt: skip
    fleet.apply(site, "status", decode.decode("status", body), now=now - 100)
    recs = [{"site": site, "device": dev, "metric": m, "value": v, "unit": "", "time": now - 10,
             "quality": "good", "seq": i + 1} for i, (dev, m, v) in enumerate(values)]  # fmt: skip
    payload = contract.encode_batch(site, 1, recs, "data")
    fleet.apply(site, "data", decode.decode("data", payload), now=now - 10)


def small_fleet(now):
    f = Fleet(silent_after=300)
    f.started = now - 1000
    feed(f, "qn-bts-1", "Tịnh Kỳ BTS", {"lat": 15.2463, "lon": 108.8069, "commune": "Tịnh Kỳ",
                                        "province": "Quảng Ngãi"},
         [("site", "site.power_source", "battery"), ("site", "site.battery_charge", 61.0),
          ("site", "site.runtime", 5400), ("site", "site.runtime_estimated", True),
          ("site", "site.on_battery_s", 1800), ("site", "site.backhaul", "degraded"),
          ("plant", "battery.voltage", -49.8)], now)  # fmt: skip
    feed(f, 'odd"site\\x', 'A "quoted" name\\ with\na newline', {"commune": "C"},
         [("site", "site.power_source", "mains")], now)
    feed(f, "gone-1", "Gone", {}, [("site", "site.power_source", "mains")], now,
         status="offline")
    alarms = contract.alarms_payload("qn-bts-1", [
        {"alarm": "RUNTIME_LOW/site/site.runtime", "severity": "critical", "seq": 9},
        {"alarm": "MAINS_LOST/plant/plant.alarm.mains_lost", "severity": "major", "seq": 8}],
        now)  # fmt: skip
    f.apply("qn-bts-1", "alarms", decode.decode("alarms", alarms), retained=True, now=now)
    f.bad_message("qn-bts-1", "data", "x")
    return f


def render(f, now):
    with f.lock:
        counts = dict(f.counts)
    return exposition.render(f.rows(now), counts, True, len(f.sites))


def samples(text):
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        key = (m.group(1), m.group(2) or "")
        assert key not in out, "series twice: %r" % (key,)
        out[key] = float(m.group(3))
    return out


def test_exposition_passes_promtool_and_says_what_the_fleet_knows():
    now = T0
    text = render(small_fleet(now), now)
    rc, out = promtool(text)
    assert rc == 0 and out == "", out
    s = samples(text)
    site = '{site="qn-bts-1"}'
    assert s[("site_agent_up", site)] == 1
    assert s[("site_agent_up", '{site="gone-1"}')] == 0
    assert s[("site_agent_silent", '{site="gone-1"}')] == 1
    assert s[("site_agent_battery_charge_ratio", site)] == 0.61
    assert s[("site_agent_battery_runtime_seconds", site)] == 5400
    assert s[("site_agent_battery_runtime_estimated", site)] == 1
    assert s[("site_agent_on_battery_seconds", site)] == 1810  # advanced to now
    assert s[("site_agent_battery_voltage_volts", '{site="qn-bts-1",device="plant"}')] == 49.8
    assert s[("site_agent_last_heard_timestamp_seconds", site)] == now - 10
    assert s[("site_agent_power_source", '{site="qn-bts-1",source="battery"}')] == 1
    assert s[("site_agent_backhaul", '{site="qn-bts-1",state="degraded"}')] == 1
    assert s[("site_agent_alarms_active", '{site="qn-bts-1",severity="critical"}')] == 1
    assert s[("site_agent_alarms_active", '{site="qn-bts-1",severity="warning"}')] == 0
    assert s[("site_agent_fleet_bad_messages_total", "")] == 1
    assert s[("site_agent_fleet_sites", "")] == 3
    # A value never reported is absent, not 0.
    assert ("site_agent_battery_charge_ratio", '{site="gone-1"}') not in s
    # One power-source series per site, whatever the source.
    assert sum(1 for k in s if k[0] == "site_agent_power_source") == 3
    # Label values are escaped as the format says; Unicode stays as it is.
    assert ('{site="odd\\"site\\\\x",name="A \\"quoted\\" name\\\\ with\\na newline",kind="bts",'
            'commune="C",contract="v1 json"}') in [
                k[1] for k in s if k[0] == "site_agent_site_info"]
    info = [k[1] for k in s if k[0] == "site_agent_site_info" and "qn-bts-1" in k[1]][0]
    assert 'name="Tịnh Kỳ BTS"' in info and 'latitude="15.2463"' in info
    # Every metric has one HELP and one TYPE, before its samples.
    names = {k[0] for k in s}
    for name in names:
        assert text.count("# HELP %s " % name) == 1 and text.count("# TYPE %s " % name) == 1


def test_an_empty_fleet_is_valid_exposition_too():
    text = render(Fleet(), T0)
    rc, out = promtool(text)
    assert rc == 0 and out == "", out
    assert samples(text)[("site_agent_fleet_sites", "")] == 0


def test_metrics_over_http_with_the_content_type_prometheus_expects():
    now = T0
    f = small_fleet(now)
    server = FleetServer(f, "127.0.0.1", 0, status=lambda: {"connected": True}).start()
    try:
        with urllib.request.urlopen(server.url + "metrics", timeout=10) as r:
            assert r.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = r.read().decode()
    finally:
        server.stop()
    rc, out = promtool(text)
    assert rc == 0 and out == "", out
    assert 'site_agent_power_source{site="qn-bts-1",source="battery"} 1' in text


def test_docs_list_every_metric_the_exposition_has():
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "fleet.md")) as f:
        doc = f.read()
    table = set(re.findall(r"^\| `(site_agent_[a-z_]+)`", doc, re.M))
    # "`_bad_messages_total`"-style short names in the last row stand for the fleet_ counters.
    table |= {"site_agent_fleet" + m for m in re.findall(r"`(_[a-z_]+_total)`", doc)}
    text = render(small_fleet(T0), T0)
    names = set(re.findall(r"^# TYPE (\S+) ", text, re.M))
    assert names == table, (names - table, table - names)
