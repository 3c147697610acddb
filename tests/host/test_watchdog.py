"""systemd watchdog over a real AF_UNIX datagram socket as $NOTIFY_SOCKET: READY, pings while the
loop makes progress, none once it hangs (asyncio alive or blocked), and the unit file."""

import asyncio
import configparser
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

from agent.host.watchdog import Notifier, Watchdog

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT = os.path.join(ROOT, "config", "site-agent.service")


@pytest.fixture
def notify_socket(tmp_path):
    path = str(tmp_path / "notify")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(5)
    yield path, s
    s.close()


def messages(sock, timeout=0.0):
    """Every datagram waiting now (after up to `timeout` for the first)."""
    out = []
    sock.settimeout(timeout or 0.001)
    try:
        while True:
            out.append(sock.recv(4096).decode())
            sock.settimeout(0.001)
    except (TimeoutError, BlockingIOError):
        return out


def test_from_env_ready_status_and_stopping(notify_socket):
    path, sock = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())}
    wd = Watchdog.from_env(env)
    assert wd.period_s == 30.0 and wd.max_age_s == 30.0
    assert wd.ready()
    lines = messages(sock, 2)[0].split("\n")
    assert lines == ["READY=1", "STATUS=polling", "MAINPID=%d" % os.getpid()]
    assert wd.stopping() and messages(sock, 2) == ["STOPPING=1"]


def test_env_without_socket_or_for_another_pid():
    assert Watchdog.from_env({}) is None
    wd = Watchdog.from_env({"NOTIFY_SOCKET": "/x", "WATCHDOG_USEC": "1000", "WATCHDOG_PID": "1"})
    assert wd.period_s is None  # the watchdog was meant for another process
    assert asyncio.run(asyncio.wait_for(wd.run(), 1)) is None  # returns at once: nothing to ping


def test_abstract_namespace_socket():
    name = "site-agent-test-%d" % os.getpid()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    try:
        assert Notifier("@" + name).send("WATCHDOG=1")
        s.settimeout(5)
        assert s.recv(100) == b"WATCHDOG=1"
    finally:
        s.close()


def test_no_listener_is_not_an_error(tmp_path):
    n = Notifier(str(tmp_path / "absent"))
    assert n.send("READY=1") is False and n.errors == 1


def test_pings_only_while_the_loop_kicks(notify_socket):
    path, sock = notify_socket
    now = [0.0]
    wd = Watchdog(Notifier(path), period_s=10.0, mono=lambda: now[0])
    assert not wd.ping()  # no kick yet: the loop never ran
    wd.kick()
    now[0] = 9.9
    assert wd.ping() and messages(sock, 2) == ["WATCHDOG=1"]
    now[0] = 10.5  # the loop's last pass was 10.5 s ago: withheld
    assert not wd.ping() and wd.withheld == 2 and messages(sock) == []
    wd.kick()
    assert wd.ping() and wd.pings == 2


def test_hung_poll_loop_stops_the_pings_while_asyncio_runs(notify_socket):
    path, sock = notify_socket
    wd = Watchdog(Notifier(path), period_s=0.2, max_age_s=0.2)

    async def poll_loop(hang_after):
        t0 = time.monotonic()
        while time.monotonic() - t0 < hang_after:
            wd.kick()
            await asyncio.sleep(0.02)
        await asyncio.Event().wait()  # hung: awaits something that never happens

    async def main():
        pinger = asyncio.create_task(wd.run())
        looper = asyncio.create_task(poll_loop(0.6))
        await asyncio.sleep(0.6)
        alive = messages(sock)
        await asyncio.sleep(0.4)  # max_age + one period: pings already due may still go out
        messages(sock)
        await asyncio.sleep(1.0)
        hung = messages(sock)
        pinger.cancel()
        looper.cancel()
        return alive, hung

    alive, hung = asyncio.run(main())
    assert len(alive) >= 2 and set(alive) == {"WATCHDOG=1"}
    assert hung == []  # once the last kick is older than max_age, no ping at all
    assert wd.withheld >= 5


CHILD = r"""
import asyncio, sys, time
sys.path.insert(0, sys.argv[1])
from agent.host.watchdog import Watchdog
wd = Watchdog.from_env()
async def main():
    wd.ready()
    asyncio.get_running_loop().create_task(wd.run())
    for _ in range(30):
        wd.kick()
        await asyncio.sleep(0.02)
    time.sleep(30)  # a blocking call hangs the whole asyncio loop
asyncio.run(main())
"""


def test_blocked_process_stops_pinging(notify_socket):
    path, sock = notify_socket
    env = dict(os.environ, NOTIFY_SOCKET=path, WATCHDOG_USEC="200000")
    env.pop("WATCHDOG_PID", None)
    p = subprocess.Popen([sys.executable, "-c", CHILD, ROOT], env=env)
    try:
        first = messages(sock, 5)
        assert first and first[0].startswith("READY=1")
        time.sleep(0.9)  # 0.6 s of progress, then blocked
        before = [m for m in messages(sock) if m == "WATCHDOG=1"]
        time.sleep(1.0)
        after = messages(sock)
        assert len(before) >= 2, before
        assert after == []  # systemd would now restart it after WatchdogSec
        assert p.poll() is None  # still running: only the watchdog notices
    finally:
        p.kill()
        p.wait()


def test_unit_file_is_type_notify_with_a_watchdog():
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    cp.read(UNIT)
    svc = cp["Service"]
    assert svc["Type"] == "notify" and svc["NotifyAccess"] == "main"
    assert int(svc["WatchdogSec"]) >= 15 and svc["Restart"] == "always"
    assert "site-agent run" in svc["ExecStart"]


def test_unit_file_passes_systemd_analyze():
    exe = shutil.which("systemd-analyze")
    assert exe, "systemd-analyze not installed (apt-get install systemd): needed to check the unit"
    r = subprocess.run([exe, "verify", UNIT], capture_output=True, text=True, timeout=60)
    # ExecStart is not installed on a test host; test_flash_pi.py verifies the unit in a Pi root
    # where tools/flash.py installed it, ExecStart included.
    problems = [
        line
        for line in (r.stdout + r.stderr).splitlines()
        if line.strip() and "/opt/site-agent/current/bin/site-agent" not in line
    ]
    assert problems == []
