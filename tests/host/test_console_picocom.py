"""A real terminal program against the console: picocom in a tmux pane of 80x30, on one end of a
socat pty pair whose other end is the agent's console port (a null-modem cable in software).
The test types with `tmux send-keys` and reads the screen with `tmux capture-pane`: what a
technician would see, after picocom and tmux have interpreted every byte."""

import os
import shutil
import subprocess
import time

import pytest

from hil.broker import Broker
from hil.emulators.megatec import MegatecEmulator
from hil.proc import die_with_parent

from console_support import PIN, SITE, Rig, write_config

NEEDED = ("tmux", "picocom", "socat")


def need_tools():
    missing = [t for t in NEEDED if shutil.which(t) is None]
    if missing:
        pytest.fail("missing %s: apt-get install %s (the project's setup list has them)"
                    % (", ".join(missing), " ".join(missing)))  # fmt: skip


class Tmux:
    def __init__(self, sock, cmd, width=80, height=30):
        self.base = ["tmux", "-S", sock]
        subprocess.run(self.base + ["new-session", "-d", "-x", str(width), "-y", str(height),
                       cmd], check=True)  # fmt: skip

    def keys(self, *keys):
        subprocess.run(self.base + ["send-keys"] + list(keys), check=True)

    def text(self, s):
        subprocess.run(self.base + ["send-keys", "-l", s], check=True)

    def screen(self):
        res = subprocess.run(self.base + ["capture-pane", "-p"], capture_output=True, check=True)
        return res.stdout.decode()

    def wait(self, text, timeout=10.0):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            s = self.screen()
            if text in s:
                return s
            time.sleep(0.05)
        raise AssertionError("%r never appeared; the screen:\n%s" % (text, self.screen()))

    def kill(self):
        subprocess.run(self.base + ["kill-server"], capture_output=True)


@pytest.fixture
def picocom(tmp_path):
    need_tools()
    parts = []
    with Broker(require_mosquitto=True) as broker:
        ups = MegatecEmulator()
        ups.start()
        parts.append(ups.stop)
        agent_end, term_end = str(tmp_path / "ttyAgent"), str(tmp_path / "ttyTerm")
        socat = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=%s" % agent_end, "pty,raw,echo=0,link=%s" % term_end],
            stderr=subprocess.DEVNULL, preexec_fn=die_with_parent,
        )  # fmt: skip
        parts.append(lambda: (socat.terminate(), socat.wait(5)))
        end = time.monotonic() + 5
        while not (os.path.exists(agent_end) and os.path.exists(term_end)):
            assert time.monotonic() < end, "socat made no pty pair"
            time.sleep(0.05)
        rig = Rig(write_config(tmp_path, ups.path, agent_end, broker.port))
        parts.append(rig.stop)
        tm = Tmux(str(tmp_path / "tmux.sock"), "picocom -q -b 115200 %s" % term_end)
        parts.append(tm.kill)
        try:
            yield tm, rig
        finally:
            for stop in reversed(parts):
                stop()


def prompt_line(screen):
    lines = [x for x in screen.rstrip("\n").split("\n") if x.strip()]
    return lines[-1]


def test_what_a_technician_sees_in_picocom(picocom):
    tm, rig = picocom
    tm.keys("Enter")
    s = tm.wait("%s [ok]>" % SITE)  # capture-pane drops trailing blanks
    tm.text("status")
    tm.keys("Enter")
    s = tm.wait("console       not logged in")
    assert "site          hue-bts-07 (bts) Hue commune office BTS" in s
    assert "uplink        connected to loopback" in s
    # A PIN typed as an argument is masked as it is typed, and refused.
    tm.text("login " + PIN)
    tm.keys("Enter")
    s = tm.wait("login takes no arguments")
    assert "]> login ****" in s and PIN not in s
    # Login: the PIN shows as stars on the screen, never as digits.
    tm.text("login")
    tm.keys("Enter")
    tm.wait("PIN:")
    tm.text(PIN)
    tm.keys("Enter")
    s = tm.wait("logged in; type logout when you leave")
    assert "PIN: ****" in s and PIN not in s
    # A typo fixed with Backspace: the screen shows the corrected line, the command runs.
    tm.keys("C-l")  # form feed: ignored by the console (not noise); nothing to see
    tm.text("versiom")
    tm.keys("BSpace")
    tm.text("n")
    time.sleep(0.3)
    assert prompt_line(tm.screen()).endswith("]> version")
    tm.keys("Enter")
    s = tm.wait("runtime     cpython")
    # Arrow keys send escape sequences: nothing of them lands on the line.
    tm.keys("Up", "Left", "Right", "Down")
    tm.text("alarms")
    time.sleep(0.3)
    assert prompt_line(tm.screen()).endswith("]> alarms")
    tm.keys("Enter")
    tm.wait("no active alarms")
    tm.keys("C-l")
    tm.text("readings")
    tm.keys("Enter")
    s = tm.wait("ups.temperature")
    lines = s.split("\n")
    header = [x for x in lines if x.startswith("DEVICE  METRIC")][-1]
    row = [x for x in lines if "input.voltage " in x][-1]
    assert row.index("V ") == header.index("UNIT")  # columns line up under their headings
    assert all(len(x) <= 80 for x in lines)
    tm.text("logout")
    tm.keys("Enter")
    tm.wait("logged out")
    rig.wait_log("console: logout")
