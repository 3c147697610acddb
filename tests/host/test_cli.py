"""The CLI as a technician meets it: real subprocesses, exit codes, --help, messages."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from agent import __version__

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBCOMMANDS = ["run", "check", "poll", "demo", "queue", "console"]


def cli(*args, timeout=60, **kw):
    return subprocess.run(
        [sys.executable, "-m", "agent.host.cli", *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT, **kw,
    )


def write(tmp_path, text, name="site.toml"):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


MINIMAL = """
[site]
id = "cli-test"
kind = "wifi"

[storage]
dir = "{data}"
commit_interval = 0.2
"""

# A device on a loopback port where nothing answers: it must go stale, not hang the command.
SILENT_DEVICE = """
[[devices]]
id = "ups"
driver = "snmp"
interval = 5
timeout = 1

[devices.snmp]
host = "127.0.0.1"
port = {port}
community = "x"
profile = "ups-mib"
"""


def test_version():
    r = cli("--version")
    assert r.returncode == 0
    assert r.stdout.strip() == "site-agent " + __version__


def test_no_command_is_usage_error():
    r = cli()
    assert r.returncode == 2
    assert "usage: site-agent" in r.stderr


def test_unknown_option_is_usage_error():
    r = cli("check", "--bogus")
    assert r.returncode == 2
    assert "unrecognized arguments: --bogus" in r.stderr


@pytest.mark.parametrize("sub", SUBCOMMANDS)
def test_help_on_each_subcommand(sub):
    r = cli(sub, "--help")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("usage: site-agent " + sub)


def test_check_valid_config(tmp_path):
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "data") + SILENT_DEVICE.format(port=9))
    r = cli("check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "config %s is valid" % path in r.stdout
    assert "site cli-test (wifi)" in r.stdout
    assert "ups" in r.stdout and "snmp v2c 127.0.0.1:9 profile ups-mib" in r.stdout


def test_check_reports_every_error_with_file_and_key_path(tmp_path):
    bad = MINIMAL.format(data=tmp_path) + """
[[devices]]
id = "ups"
driver = "snmp"
intervall = 30
[devices.snmp]
host = "127.0.0.1"
version = "4"
"""
    path = write(tmp_path, bad)
    r = cli("check", "-c", path)
    assert r.returncode == 2
    assert '%s: devices[0].intervall: unknown key (did you mean "interval"?)' % path in r.stderr
    assert '%s: devices[0].snmp.version: expected "1", "2c" or "3", got "4"' % path in r.stderr
    assert "Traceback" not in r.stderr


def test_check_toml_syntax_error_names_the_line(tmp_path):
    path = write(tmp_path, '[site]\nid = "x"\nkind = \n')
    r = cli("check", "-c", path)
    assert r.returncode == 2
    assert "%s:3:" % path in r.stderr


def test_check_missing_file(tmp_path):
    r = cli("check", "-c", str(tmp_path / "nope.toml"))
    assert r.returncode == 2
    assert "nope.toml" in r.stderr and "Traceback" not in r.stderr


def test_poll_silent_device_is_stale_and_exits_1(tmp_path):
    import socket

    from hil.net import free_port

    port = free_port(kind=socket.SOCK_DGRAM)
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "d") + SILENT_DEVICE.format(port=port))
    started = time.monotonic()
    r = cli("poll", "-c", path)
    assert r.returncode == 1
    assert "ups: STALE:" in r.stderr
    assert time.monotonic() - started < 30  # bounded by the device's budget, not hanging


def test_poll_of_a_missing_serial_port_says_why_once_and_prints_no_empty_table(tmp_path):
    # Issue 19 point 6: the errno came twice ("[Errno 2] could not open port X: [Errno 2] No such
    # file or directory: 'X'") under a table header with no readings.
    device = '[[devices]]\nid = "ups"\ndriver = "megatec"\n[devices.serial]\nport = "%s"\n'
    missing = str(tmp_path / "ttyUSB9")
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "d") + device % missing)
    r = cli("poll", "-c", path)
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.splitlines()[-1] == (
        "ups: STALE: cannot open serial port %s: No such file or directory (is the adapter "
        "plugged in? ls /dev/serial/by-id/)" % missing
    )


def test_poll_unknown_device_is_usage_error(tmp_path):
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "d"))
    r = cli("poll", "-c", path, "--device", "nope")
    assert r.returncode == 2
    assert "no device 'nope'" in r.stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_cleanly_on_signal(tmp_path, sig):
    import socket

    from hil.net import free_port

    port = free_port(kind=socket.SOCK_DGRAM)
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "d") + SILENT_DEVICE.format(port=port))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.host.cli", "run", "-c", path],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
    )
    deadline = time.monotonic() + 20
    lines = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        lines.append(line)
        if not line and proc.poll() is not None:
            break
        if " agent: started" in line:
            break
    if not any(" agent: started" in line for line in lines):
        proc.kill()
        pytest.fail("agent did not start: %s" % "".join(lines))
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert " agent: stopped restart=False site=cli-test" in err
    # Structured lines: "<time> <LEVEL> <component>: <message> key=value ..."
    for line in ("".join(lines) + err).splitlines():
        parts = line.split(" ")
        assert parts[0].endswith("Z") and parts[1] in ("DEBUG", "INFO", "WARNING", "ERROR"), line


def test_queue_stats_and_export_on_a_stopped_agents_store(tmp_path):
    from agent.host.queue_cli import open_store, queue_dir

    data = tmp_path / "data"
    data.mkdir()
    st = open_store(queue_dir(str(data)), 1 << 20)
    for i in range(3):
        st.append("routine", {"site": "s", "device": "ups", "metric": "battery.charge",
                              "value": 90 - i, "unit": "%", "time": 1.7e9 + i, "quality": "good"})
    st.append("alarm", {"id": "MAINS_LOST", "state": "raise", "time": 1.7e9})
    st.commit()
    st.close()
    r = cli("queue", "stats", str(data))
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["LANE", "RECORDS", "OLDEST", "NEWEST"]
    assert lines[1].split()[:2] == ["alarm", "1"] and lines[2].split()[:2] == ["routine", "3"]
    assert all(len(line) <= 80 for line in lines)
    r = cli("queue", "stats", "--json", str(data))
    assert json.loads(r.stdout)["depth"] == {"alarm": 1, "routine": 3}
    out = tmp_path / "backlog.jsonl"
    r = cli("queue", "export", str(data), str(out))
    assert r.returncode == 0 and "exported 4 records" in r.stderr
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r.get("metric", r.get("id")) for r in recs] == ["MAINS_LOST"] + ["battery.charge"] * 3
    assert [r["value"] for r in recs[1:]] == [90, 89, 88]
    r = cli("queue", "stats", str(tmp_path / "missing"))
    assert r.returncode == 2 and "no queue here" in r.stderr


def cli_into_a_closed_pipe(*args, cwd=ROOT):
    """Run the CLI with stdout on a pipe nobody reads any more (what `| head` leaves once head
    has its lines): every write to it fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run([sys.executable, "-m", "agent.host.cli", *args], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=60, cwd=cwd)  # fmt: skip
    finally:
        os.close(w)


def test_every_command_output_into_a_closed_pipe_ends_quietly(tmp_path):
    import socket

    from agent.host.queue_cli import open_store, queue_dir
    from hil.net import free_port

    data = tmp_path / "data"
    data.mkdir()
    st = open_store(queue_dir(str(data)), 1 << 20)
    st.append("routine", {"site": "s", "device": "ups", "metric": "battery.charge", "value": 1,
                          "unit": "%", "time": 1.7e9, "quality": "good"})  # fmt: skip
    st.commit()
    st.close()
    port = free_port(kind=socket.SOCK_DGRAM)
    path = write(tmp_path, MINIMAL.format(data=tmp_path / "d") + SILENT_DEVICE.format(port=port))
    for args, code in ((["--version"], 0), (["--help"], 0), (["check", "--help"], 0),
                       (["check", "-c", path], 0), (["poll", "-c", path], 1),
                       (["poll", "--json", "-c", path], 1), (["queue", "stats", str(data)], 0),
                       (["queue", "stats", "--json", str(data)], 0)):  # fmt: skip
        r = cli_into_a_closed_pipe(*args)
        assert "BrokenPipe" not in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
        assert "agent: failed" not in r.stderr, (args, r.stderr)
        assert r.returncode == code, (args, r.returncode, r.stderr)  # the command's own answer
    r = cli_into_a_closed_pipe("poll", "-c", path)
    assert "ups: STALE: snmp" in r.stderr  # stderr, still read, keeps its lines
