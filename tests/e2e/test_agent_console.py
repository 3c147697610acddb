"""The console of the real daemon: `site-agent run` with its socket console, a technician who
logs in over the socket, reads the devices, and restarts the agent with `reboot`."""

import os
import socket
import subprocess
import sys
import time

from agent.core.console.auth import make_hash
from hil.net import free_port

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
[site]
id = "console-e2e"
kind = "wifi"

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

[storage]
dir = "{data}"

[console]
pin_hash = "{pin_hash}"
"""


class Terminal:
    """A technician's side of the socket: send keystrokes, read what the screen shows."""

    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(0.2)
        self.screen = b""

    def send(self, keys):
        self.s.sendall(keys)

    def expect(self, text, timeout=15):
        deadline = time.monotonic() + timeout
        want = text.encode()
        while want not in self.screen:
            if time.monotonic() > deadline:
                raise AssertionError(
                    "never saw %r; screen:\n%s" % (text, self.screen.decode(errors="replace"))
                )
            try:
                chunk = self.s.recv(4096)
            except socket.timeout:
                continue
            if not chunk:
                raise AssertionError(
                    "connection closed; screen:\n%s" % self.screen.decode(errors="replace")
                )
            self.screen += chunk
        before, _, self.screen = self.screen.partition(want)
        return before.decode(errors="replace")

    def close(self):
        self.s.close()


def _wait_for(path, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        assert proc.poll() is None, "agent exited: %s" % proc.stderr.read()
        assert time.monotonic() < deadline, "no console socket at %s" % path
        time.sleep(0.05)


def test_socket_console_login_devices_and_reboot(tmp_path):
    data = tmp_path / "data"
    port = free_port(kind=socket.SOCK_DGRAM)
    cfg = tmp_path / "site.toml"
    cfg.write_text(CONFIG.format(port=port, data=data, pin_hash=make_hash("2468", 1000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.host.cli", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    sock = str(data / "console.sock")
    try:
        _wait_for(sock, proc)
        term = Terminal(sock)
        term.send(b"\r")
        term.expect("console-e2e [")
        term.send(b"devices\r")
        term.expect("login")  # refused before login
        term.send(b"login\r")
        term.expect("PIN")
        term.send(b"2468\r")
        term.send(b"devices\r")
        # The silent SNMP device is stale with its reason; the agent's own health device is not.
        shown = term.expect("console-e2e [", timeout=20)
        shown += term.expect("console-e2e [", timeout=20)
        assert "ups" in shown and "agent" in shown, shown
        term.send(b"reboot\r")
        term.expect("yes")
        term.send(b"yes\r")
        term.close()
        # The agent stops (its socket goes), execs itself again (not under systemd) and opens a
        # fresh console socket.
        deadline = time.monotonic() + 30
        while os.path.exists(sock):
            assert time.monotonic() < deadline, "the console socket never went away"
            time.sleep(0.05)
        while True:
            assert time.monotonic() < deadline, "no console after the restart"
            time.sleep(0.2)
            if not os.path.exists(sock):
                continue
            t2 = Terminal(sock)
            try:
                t2.send(b"\r")
                t2.expect("console-e2e [", timeout=5)
                break
            except (OSError, AssertionError):
                continue
            finally:
                t2.close()
        assert proc.poll() is None, "agent did not come back after reboot"
    finally:
        proc.terminate()
        try:
            out, err = proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
            raise AssertionError("agent did not stop on SIGTERM:\n" + err[-3000:]) from None
    assert "agent: stopped restart=True" in err, err[-2000:]
    assert err.count("agent: started") == 2, err[-2000:]
    assert proc.returncode == 0, err[-2000:]
    assert "2468" not in err  # the PIN never reaches a log line


def test_sigterm_during_a_console_restart_stops_the_agent(tmp_path):
    data = tmp_path / "data"
    cfg = tmp_path / "site.toml"
    port = free_port(kind=socket.SOCK_DGRAM)
    cfg.write_text(CONFIG.format(port=port, data=data, pin_hash=make_hash("2468", 1000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "agent.host.cli", "run", "-c", str(cfg)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    sock = str(data / "console.sock")
    try:
        _wait_for(sock, proc)
        term = Terminal(sock)
        for keys, answer in (
            (b"login\r", "PIN"),
            (b"2468\r", "console-e2e ["),
            (b"reboot\r", "yes"),
        ):
            term.send(keys)
            term.expect(answer)
        term.send(b"yes\r")
        term.expect("console-e2e [")  # the console answered; the restart is 0.2 s away
        proc.terminate()  # the operator's stop arrives while the agent is about to restart
        term.close()
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err[-2000:]
    assert err.count("agent: started") == 1, err[-2000:]
    assert "agent: stopped restart=False" in err
