"""Shared pieces of the console tests: a site config with the console on, the rig process, and a
terminal on the master side of a pty that types keystrokes and reads the screen."""

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from agent.core.console import auth
from hil.proc import die_with_parent

REPO = Path(__file__).resolve().parents[2]
RIG = REPO / "tests" / "host" / "console_rig.py"
PIN = "7341"
PIN_HASH = auth.make_hash(PIN, iterations=2000)
SITE = "hue-bts-07"
BROKER_PASSWORD = "mqtt-pass-never-shown"

CONFIG = """\
[site]
id = "{site}"
kind = "bts"
name = "Hue commune office BTS"

[[devices]]
id = "ups"
driver = "megatec"
interval = 1
timeout = 0.9
[devices.serial]
port = "{ups}"
baud = 2400

[uplink]
[[uplink.brokers]]
name = "loopback"
host = "127.0.0.1"
port = {mqtt_port}
insecure = true
username = "site"
password = "{password}"

[storage]
dir = "{data}"
budget_mb = 4
commit_interval = 1

[console]
enabled = true
port = "{tty}"
baud = 115200
pin_hash = "{pin_hash}"
idle_timeout = {idle}
socket = true
"""


def write_config(tmp, ups_path, tty_link, mqtt_port, idle=30):
    path = Path(tmp) / "site.toml"
    path.write_text(CONFIG.format(site=SITE, ups=ups_path, mqtt_port=mqtt_port,
                                  password=BROKER_PASSWORD, data=Path(tmp) / "data",
                                  tty=tty_link, pin_hash=PIN_HASH, idle=idle))  # fmt: skip
    return path


class Rig:
    """The agent process (tests/host/console_rig.py); stderr is collected in self.err."""

    def __init__(self, config_path):
        self.proc = subprocess.Popen(
            [sys.executable, str(RIG), str(config_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            cwd=str(REPO), preexec_fn=die_with_parent,
        )  # fmt: skip
        self.err = ""
        self._t = threading.Thread(target=self._drain, daemon=True)
        self._t.start()
        self.wait_log("RIG READY", 20)

    def _drain(self):
        for line in iter(self.proc.stderr.readline, b""):
            self.err += line.decode(errors="replace")

    def wait_log(self, text, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in self.err:
                return
            if self.proc.poll() is not None:
                time.sleep(0.2)
                raise AssertionError("agent exited %s before %r:\n%s" % (
                    self.proc.returncode, text, self.err))  # fmt: skip
            time.sleep(0.05)
        raise AssertionError(
            "no %r in the agent's log within %gs:\n%s" % (text, timeout, self.err)
        )

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._t.join(5)
        return self.proc.returncode


class PtyLine:
    """A pty pair standing in for the serial cable: the agent opens `link` (a symlink to the slave,
    as udev's /dev/serial/by-id names are); the test is the terminal on the master side."""

    def __init__(self, link):
        self.link = str(link)
        self.master = None
        self.plug()

    def plug(self):
        """A new cable: a fresh pty, the link pointed at it atomically."""
        self.master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the pts node lives as long as the master is open
        tmp = self.link + ".new"
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        os.set_blocking(self.master, False)
        self.screen = ""
        self.pos = 0

    def unplug(self):
        os.close(self.master)
        self.master = None

    def type(self, data, per_key=0.0):
        data = data.encode() if isinstance(data, str) else data
        if per_key:
            for i in range(len(data)):
                os.write(self.master, data[i : i + 1])
                time.sleep(per_key)
        else:
            while data:
                try:
                    n = os.write(self.master, data[:1024])
                except BlockingIOError:  # the agent has not read yet: wait, as a UART would
                    time.sleep(0.01)
                    continue
                data = data[n:]

    def read(self, wait=0.0):
        """Read what has arrived (after waiting `wait` seconds); returns it and adds to screen."""
        time.sleep(wait)
        out = b""
        while True:
            try:
                chunk = os.read(self.master, 65536)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            out += chunk
        text = out.decode("ascii", errors="replace")
        self.screen += text
        return text

    def until(self, text, timeout=10.0):
        """Read until `text` appears after the last match; return the screen up to its end."""
        end = time.monotonic() + timeout
        while True:
            i = self.screen.find(text, self.pos)
            if i >= 0:
                got = self.screen[self.pos : i + len(text)]
                self.pos = i + len(text)
                return got
            if time.monotonic() > end:
                raise AssertionError("no %r on the screen within %gs; got:\n%s" % (
                    text, timeout, self.screen[self.pos :][-2000:]))  # fmt: skip
            self.read()
            time.sleep(0.02)

    def settle(self, quiet=0.3, timeout=20.0):
        """Read until nothing arrives for `quiet` seconds; what came before is done with."""
        end = time.monotonic() + timeout
        while self.read(quiet) and time.monotonic() < end:
            pass
        self.pos = len(self.screen)

    def command(self, cmd, timeout=15.0, prompt="]> "):
        """Type a command and Enter as a person would; return the output up to the next prompt."""
        self.read()
        self.pos = len(self.screen)
        self.type(cmd + "\r")
        out = self.until(prompt, timeout)
        return out

    def close(self):
        if self.master is not None:
            self.unplug()


def fits(text, width=80):
    """Every line the console wrote fits the terminal (the first line, the echo of what was
    typed, is the technician's own)."""
    for line in text.split("\r\n")[1:]:
        assert len(line) <= width, "line of %d columns: %r" % (len(line), line)
        assert all(" " <= c <= "~" or c == "\x08" for c in line), repr(line)
