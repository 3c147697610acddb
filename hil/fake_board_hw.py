"""The simulated board below its REPL (host only; hil/fake_board.py is the board): its flash, the
VM of each boot (the MicroPython unix port running hil/fake_board_vm.py), and the port on which
the VM's board stand-ins report resets and the watchdog.

    flash = Flash(state_dir, fs_kb, rom_kb, block_size).prepare()   # erased images when missing
    flash.littlefs_files(); flash.romfs_partition()                  # read back, host side
    sup = Supervisor(); sup.read(reset); sup.starved()               # the stand-ins' reports

    child = Child(micropython, cfg, cfg_path, env)   # cfg: the VM's settings, written as JSON
    child.command(b"E", code)      # False: the VM is gone (the board treats it as a crash)
    child.read_output()            # what its program printed, b"" when nothing is waiting
    child.read_ctl(); child.frames()   # its control frames: kind (1 byte), length (4, LE), body
    child.kill()

Both directions are framed the same way: commands on the VM's stdin (B boot, E exec, L line),
frames on a pipe of its own (H up, X/x code runs or not, K kbd_intr, and the outcome of a
command), so the program's output on stdout is never mistaken for the protocol.
"""

import json
import os
import socket
import subprocess
import time

from hil.proc import die_with_parent


class Flash:
    """Two host files in the board's folder: `littlefs.img` (vfs.VfsLfs2, fs_kb) and `romfs.bin`
    (the ROMFS partition, rom_kb); erased (0xff) when missing or of another size, kept between
    boots and between boards made on the same folder."""

    def __init__(self, state_dir, fs_kb, rom_kb, block_size):
        self.state_dir = state_dir
        self.block_size = block_size
        self.fs_blocks = fs_kb * 1024 // block_size
        self.rom_size = rom_kb * 1024
        self.fs_path = os.path.join(state_dir, "littlefs.img")
        self.rom_path = os.path.join(state_dir, "romfs.bin")

    def prepare(self):
        os.makedirs(self.state_dir, exist_ok=True)
        for path, size in ((self.fs_path, self.fs_blocks * self.block_size),
                           (self.rom_path, self.rom_size)):  # fmt: skip
            if not os.path.exists(path) or os.path.getsize(path) != size:
                with open(path, "wb") as f:
                    f.write(b"\xff" * size)
        return self

    def vm_config(self):
        """The flash's part of the VM's settings."""
        return {"fs_path": self.fs_path, "rom_path": self.rom_path, "block_size": self.block_size,
                "fs_blocks": self.fs_blocks, "rom_size": self.rom_size}  # fmt: skip

    def littlefs_files(self):
        """Every file on the littlefs image, read with littlefs-python: {path: bytes}."""
        from littlefs import LittleFS

        with open(self.fs_path, "rb") as f:
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
        with open(self.rom_path, "rb") as f:
            return f.read()


VM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_board_vm.py")


class Child:
    def __init__(self, micropython, cfg, cfg_path, env):
        ctl_r, ctl_w = os.pipe()
        with open(cfg_path, "w") as f:
            json.dump(dict(cfg, ctl_fd=ctl_w), f)
        self.proc = subprocess.Popen(
            [micropython, VM, cfg_path], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, pass_fds=(ctl_w,), preexec_fn=die_with_parent, env=env,
        )  # fmt: skip
        os.close(ctl_w)
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(ctl_r, False)
        self.stdout = self.proc.stdout.fileno()
        self.ctl = ctl_r
        self._ctl_buf = b""

    def alive(self):
        return self.proc.poll() is None

    def command(self, kind, payload=b""):
        try:
            self.proc.stdin.write(kind + len(payload).to_bytes(4, "little") + payload)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return False
        return True

    def read_output(self):
        try:
            return os.read(self.stdout, 65536)
        except BlockingIOError:
            return b""

    def read_ctl(self):
        """Read what the control pipe holds; False at its end (the VM exited)."""
        try:
            data = os.read(self.ctl, 65536)
        except BlockingIOError:
            return True
        if not data:
            return False
        self._ctl_buf += data
        return True

    def frames(self):
        """Yield each whole (kind, body) frame read so far, taking it off the buffer first."""
        while len(self._ctl_buf) >= 5:
            n = int.from_bytes(self._ctl_buf[1:5], "little")
            if len(self._ctl_buf) < 5 + n:
                return
            kind, body = self._ctl_buf[:1], self._ctl_buf[5 : 5 + n]
            self._ctl_buf = self._ctl_buf[5 + n :]
            yield kind, body

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        os.close(self.ctl)


class Supervisor:
    """Where the board stand-ins (hil/board_vm) report: a UDP port on loopback. "reset" is their
    machine.reset(); "wdt start <ms>" and "wdt feed" keep the watchdog's state here, so a WDT not
    fed in time resets the board although the VM cannot tell."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.wdt = None  # [timeout_s, last feed] once the program started machine.WDT

    def fileno(self):
        return self.sock.fileno()

    def read(self, reset):
        """Take every waiting report; reset() for each "reset", in order."""
        while True:
            try:
                msg = self.sock.recv(512).decode(errors="replace")
            except (BlockingIOError, OSError):
                return
            if msg == "reset":
                reset()
            elif msg.startswith("wdt start"):
                self.wdt = [int(msg.split()[2]) / 1000.0, time.monotonic()]
            elif msg == "wdt feed" and self.wdt is not None:
                self.wdt[1] = time.monotonic()

    def starved(self):
        return self.wdt is not None and time.monotonic() - self.wdt[1] > self.wdt[0]

    def close(self):
        self.sock.close()
