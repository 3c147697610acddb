"""The console driven through a pseudo-terminal like a real terminal: an agent process polling an
emulated Megatec UPS and talking to a real mosquitto, its console on a pty; the test types keys on
the master side and reads the screen.

Covers every command, login and lockout, the idle timeout, line noise and long lines, a terminal
that never reads, a cable pulled mid-command, and the Unix socket console with its client."""

import argparse
import io
import json
import os
import stat
import subprocess
import sys
import time

import pytest

from hil.broker import Broker
from hil.emulators.megatec import MegatecEmulator

from console_support import (
    BROKER_PASSWORD,
    PIN,
    PIN_HASH,
    REPO,
    SITE,
    PtyLine,
    Rig,
    fits,
    write_config,
)

PROMPT = "%s [" % SITE


@pytest.fixture(scope="module")
def broker():
    with Broker(require_mosquitto=True) as b:
        yield b


@pytest.fixture
def site(tmp_path, broker):
    """(rig, line, ups, tmp_path): an agent with its console on a pty, logged out."""
    made = []

    def make(idle=30):
        ups = MegatecEmulator()
        ups.start()
        line = PtyLine(tmp_path / "console-tty")
        cfg = write_config(tmp_path, ups.path, line.link, broker.port, idle=idle)
        made.extend([ups, line])
        rig = Rig(cfg)
        made.append(rig)
        line.until("]> ")
        return rig, line, ups

    yield make
    for part in reversed(made):
        part.stop() if not isinstance(part, PtyLine) else part.close()


def login(line, pin=PIN):
    assert line.command("login", prompt="PIN: ").endswith("PIN: ")
    return line.command(pin)


def polls_go_on(ups, seconds=2.5):
    """The agent still polls the UPS: its request count grows."""
    before = ups.requests
    end = time.monotonic() + seconds + 3
    while time.monotonic() < end:
        if ups.requests >= before + 2:
            return
        time.sleep(0.1)
    raise AssertionError("the agent stopped polling (UPS requests %d -> %d)" % (before,
                         ups.requests))  # fmt: skip


def test_every_command_as_a_technician_sees_it(site, tmp_path, broker):
    rig, line, ups = site()
    assert "site-agent console, site %s" % SITE in line.screen
    out = line.command("help")
    fits(out)
    assert "* export <path>" in out and "  status" in out
    out = line.command("status")
    fits(out)
    assert "hue-bts-07 (bts) Hue commune office BTS" in out and "not logged in" in out
    assert "needs a login" in line.command("readings")
    out = login(line)
    assert PIN not in out and "****" in out and "logged in" in out
    time.sleep(1.5)  # a poll or two
    screens = {}
    export = tmp_path / "usb" / "backlog.jsonl"
    export.parent.mkdir()
    for cmd in ("status", "devices", "readings", "readings ups", "alarms", "queue", "poll ups",
                "uplink test", "drain", "config show", "config check", "interval ups 2", "log 5",
                "version"):  # fmt: skip
        out = line.command(cmd, timeout=30)
        fits(out)
        assert "internal" not in out and BROKER_PASSWORD not in out, (cmd, out)
        assert PIN_HASH.split("$")[3] not in out
        screens[cmd] = out
    assert "uplink        connected to loopback (127.0.0.1:" in screens["status"]
    assert "logged in (serial)" in screens["status"]
    assert "ups" in screens["devices"] and "megatec" in screens["devices"]
    assert "input.voltage" in screens["readings ups"] and "good" in screens["readings ups"]
    assert "no active alarms" in screens["alarms"]
    assert "routine" in screens["queue"] and "budget" in screens["queue"]
    assert "ups: ok in" in screens["poll ups"] and "Q1" in screens["poll ups"]
    assert "input.voltage" in screens["poll ups"]
    assert "PUBACK received" in screens["uplink test"] and "PASSED" in screens["uplink test"]
    assert "sent" in screens["drain"] or "records" in screens["drain"]
    # The broker goes away: the backlog grows; drain and uplink test say why; export carries it.
    broker.halt()
    try:
        end = time.monotonic() + 15
        while "[offline]> " not in line.command(""):  # the prompt tells the link is down
            assert time.monotonic() < end, "the prompt never showed the uplink down"
            time.sleep(0.5)
        time.sleep(2.5)
        out = line.command("drain")
        assert "uplink is down (" in out and "go when it connects" in out
        out = line.command("uplink test", timeout=40)
        fits(out)
        assert "live uplink: down" in out and "FAILED" in out
        out = line.command("export %s" % export)
        fits(out)
        n = int(out.split("wrote ")[1].split()[0])
        assert n >= 2, out
        recs = [json.loads(x) for x in export.read_text().splitlines()]
        assert len(recs) == n and all(r["site"] == SITE and "lane" in r for r in recs)
        assert "exists; choose another name" in line.command("export %s" % export)
    finally:
        broker.restart()
    assert 'password = "<secret>"' in screens["config show"]
    assert 'pin_hash = "<secret>"' in screens["config show"]
    assert "OK" in screens["config check"] and "is valid" in screens["config check"]
    assert "ups: polled every 2s" in screens["interval ups 2"]
    assert "console: login" in screens["log 5"]
    assert "site-agent" in screens["version"] and "cpython" in screens["version"]
    # reboot: asks first; "no" changes nothing, "yes" restarts the agent process
    assert line.command("reboot", prompt="confirm: ").endswith("Type yes to confirm: ")
    assert "not restarted" in line.command("no")
    assert rig.proc.poll() is None
    line.command("reboot", prompt="confirm: ")
    line.type("yes\r")
    line.until("restarting the agent")
    rig.wait_log("RESTART REQUESTED")
    assert rig.proc.wait(10) == 3


def test_login_lockout_grows_and_idle_timeout_ends_the_session(site):
    rig, line, ups = site(idle=3)
    for _ in range(2):
        assert "wrong PIN\r\n" in login(line, "0000")
    assert "logins locked for 2s" in login(line, "1111")
    # Refused while locked, but the PIN asked anyway: what the technician types next is masked
    # and never run (it used to run as a command and show: "unknown command '7341'").
    out = line.command("login", prompt="PIN: ")
    assert "too many wrong PINs" in out and "not checked" in out
    out = line.command(PIN)
    assert PIN not in out and "****" in out and "PIN not checked: too many wrong PINs" in out
    out = line.command("login %s" % PIN)  # a PIN as an argument: refused, never shown
    assert PIN not in out and "login ****" in out and "takes no arguments" in out
    time.sleep(2.2)
    assert "logins locked for 4s" in login(line, "2222")
    assert "wrong PIN" in rig.err and "failures=4" in rig.err
    time.sleep(4.2)
    assert "logged in" in login(line)
    assert "EVERY" in line.command("devices")
    line.until("session closed after", timeout=8)
    line.until("]> ")
    assert "needs a login" in line.command("devices")
    polls_go_on(ups)


def test_line_noise_and_long_lines_are_refused_and_polling_goes_on(site):
    rig, line, ups = site()
    login(line)
    noise = bytes((i * 7919 + 13) % 256 for i in range(65536))  # every byte value, no pattern
    line.type(noise)
    polls_go_on(ups)
    line.settle()
    line.type(b"\x03")  # the technician clears whatever the noise left
    line.until("^C\r\n%s" % PROMPT)
    out = line.command("x" * 5000)
    assert "line too long (max 200 characters); ignored" in out
    out = line.command("sta\x1b[D\x1b[Ctus")  # arrow keys are swallowed, not typed
    assert "hue-bts-07 (bts)" in out
    assert "line noise" in line.screen
    out = line.command("devices")
    assert "ups" in out and "EVERY" in out  # still logged in; the console recovered
    assert rig.proc.poll() is None


def test_a_terminal_that_never_reads_does_not_stall_the_agent(site):
    rig, line, ups = site()
    login(line)
    line.read(0.2)
    for _ in range(60):
        line.type("log 200\rconfig show\rhelp\r")
    # Nobody reads the master now: the pty's buffer and then the console's fill up.
    time.sleep(1.0)
    polls_go_on(ups, 3)
    sock = os.path.join(rig_data(line), "console.sock")
    out = socket_session(sock, "status\r")
    assert "hue-bts-07 (bts)" in out
    line.settle()
    assert "bytes of output dropped: the terminal was not reading" in line.screen
    line.type("\x03")
    line.until("^C\r\n%s" % PROMPT)
    assert "site-agent" in line.command("version")


def rig_data(line):
    return os.path.join(os.path.dirname(line.link), "data")


def test_cable_pulled_mid_command_logs_out_and_a_new_cable_works(site):
    rig, line, ups = site()
    login(line)
    line.type("poll ups\r")
    line.unplug()
    rig.wait_log("serial line lost")
    rig.wait_log("console: logout")
    polls_go_on(ups)
    # While the cable is out the login is free: the socket console can take it.
    sock = os.path.join(rig_data(line), "console.sock")
    out = socket_session(sock, "login\r%s\rversion\rexit\r" % PIN)
    assert "logged in" in out and "site-agent" in out
    line.plug()
    line.until("site-agent console, site %s" % SITE, timeout=10)
    line.until("]> ")
    assert "needs a login" in line.command("devices")
    assert "logged in" in login(line)


def socket_session(path, keys, timeout=30):
    """Run `site-agent console --socket path` (the client, as a technician over SSH would) with
    keys on its stdin; return what it printed."""
    code = (
        "import argparse, sys\n"
        "from agent.host.console_host import add_parser, cmd_console\n"
        "p = argparse.ArgumentParser(); s = p.add_subparsers(dest='command')\n"
        "add_parser(s)\n"
        "sys.exit(cmd_console(p.parse_args(sys.argv[1:]), None, None))\n"
    )
    res = subprocess.run([sys.executable, "-c", code, "console", "--socket", path],
                         input=keys.encode(), capture_output=True, timeout=timeout,
                         cwd=str(REPO))  # fmt: skip
    assert res.returncode == 0, res.stderr.decode()
    return res.stdout.decode()


def test_socket_console_same_commands_and_login_one_session_at_a_time(site):
    rig, line, ups = site()
    sock = os.path.join(rig_data(line), "console.sock")
    assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
    out = socket_session(sock, "status\rreadings\rlogin\r%s\rreadings ups\rexit\r" % PIN)
    fits(out)
    assert "hue-bts-07 (bts)" in out and "readings needs a login" in out
    assert "logged in" in out and "input.voltage" in out and PIN not in out
    login(line)  # the serial session holds the login now
    out = socket_session(sock, "login\rexit\r")
    assert "another session is logged in (serial)" in out
    assert "console: login where=socket" in rig.err


def test_hash_pin_tool_prints_a_hash_the_console_accepts():
    from agent.core.console import auth
    from agent.host.console_host import add_parser, hash_pin

    answers = iter(["9182", "9182"])

    out = io.StringIO()
    assert hash_pin(1000, ask=lambda prompt: next(answers), out=out) == 0
    text = out.getvalue()
    h = text.split('"')[1]
    assert text.startswith("pin_hash = ") and auth.verify("9182", h) and "9182" not in text
    mismatch = iter(["9182", "9183"])
    assert hash_pin(1000, ask=lambda prompt: next(mismatch), out=out) == 2
    assert out.getvalue() == text  # nothing printed for a mismatch
    p = argparse.ArgumentParser()
    add_parser(p.add_subparsers(dest="command"))
    args = p.parse_args(["console", "--hash-pin", "--iterations", "5000"])
    assert args.hash_pin and args.iterations == 5000


def test_docs_list_every_command_of_help():
    from agent.core.console.session import HELP

    doc = (REPO / "docs" / "console.md").read_text()
    rows = [line.split("|")[1].strip() for line in doc.splitlines() if line.startswith("| `")]
    documented = " ".join(rows)
    for name, _open, usage, _what in HELP:
        assert "`%s" % name in documented, "docs/console.md does not list %s" % usage
