"""`site-agent demo` as a newcomer runs it: readings appear in the table, and when it stops,
nothing it started is left running and no files are left behind."""

import glob
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _children_of(pid):
    out = set()
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.add(int(stat.split("/")[2]))
    return out


def test_demo_shows_readings_and_cleans_up(tmp_path):
    # A private TMPDIR: whatever the demo leaves in it is ours alone to see.
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.host.cli", "demo", "--duration", "12", "--plain"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "site-agent demo: site demo-bts-01" in out
    # The last table printed holds readings from all three simulated devices.
    last = out.rsplit("site-agent demo:", 1)[1]
    for needle in ("ups-snmp  ", "battery.charge", "router  ", "device.uptime", "ups-serial",
                   "input.voltage"):
        assert needle in last, (needle, last[-2000:])
    assert "agent status: online" in last
    assert "everything it started has been stopped" in proc.stderr
    # Nothing left behind: no child processes of ours, no temp dirs of the run.
    assert _children_of(os.getpid()) == set()
    assert os.listdir(scratch) == []


def test_demo_serves_the_fleet_page_with_generated_sites(tmp_path):
    """The demo prints the fleet page's address; the page knows the demo site and the generated
    ones, one of them in a typhoon; Ctrl-C-like SIGTERM stops all of it."""
    import json
    import signal
    import time
    import urllib.request

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = dict(os.environ, TMPDIR=str(scratch))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.host.cli", "demo", "--duration", "120", "--plain",
         "--fleet-port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
    )  # fmt: skip
    try:
        url = None
        deadline = time.monotonic() + 90
        while url is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, "the demo ended early: %s" % proc.stderr.read()[-3000:]
            if line.startswith("fleet page: "):
                url = line.split()[2]
        assert url and url.startswith("http://127.0.0.1:"), url
        sites = {}
        while time.monotonic() < deadline:
            with urllib.request.urlopen(url + "api/fleet", timeout=10) as r:
                sites = {s["id"]: s for s in json.loads(r.read())["sites"]}
            if len(sites) == 6 and sites.get("demo-bts-01", {}).get("power"):
                break
            time.sleep(0.5)
        assert len(sites) == 6, sorted(sites)
        assert sites["demo-bts-01"]["name"] == "Simulated hardened BTS (demo)"
        assert "gen-bts-00000" in sites  # the generated site in a typhoon
        with urllib.request.urlopen(url, timeout=10) as r:
            assert b'<script src="/static/fleet.js">' in r.read()
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-3000:]
    assert "everything it started has been stopped" in err
    assert _children_of(os.getpid()) == set()
    assert os.listdir(scratch) == []
