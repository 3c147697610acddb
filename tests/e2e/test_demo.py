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
