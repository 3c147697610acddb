"""The inside of the simulated board: runs under the MicroPython unix port, not CPython.

hil/fake_board.py (CPython) speaks the REPL protocols on the pty and starts this program once per
boot: `micropython hil/fake_board_vm.py CONFIG.json`. One process is one boot of the board, so a
soft or hard reset really does start from an empty heap. This program:

- sets up what an ESP32 running MicroPython has and the unix port lacks: the board's flash
  filesystem (littlefs2 on a block device backed by a host file, mounted at /, formatted on first
  boot as the ESP32's inisetup does), a ROMFS partition (a host file; `vfs.rom_ioctl` to query and
  write it as mpremote's `romfs deploy` does, and /rom mounted with vfs.VfsRom when it holds an
  image), `os.uname()` naming the board's chip, and a `machine` stand-in whose reset() ends this
  boot: ours (reset and identity only), or with `stand_ins` the board's (hil/board_vm: UARTs on
  ptys, WDT, Pin, and `network`), configured through $SIM_CONFIG, with the host's filesystem
  mounted at /host for them;
- then obeys commands from the supervisor on stdin, one frame each: b"E" code to run as raw
  REPL input, b"L" a friendly REPL line, b"B" boot (run /boot.py, and /main.py when the payload
  is b"main"). Output goes to stdout (the UART's TX); the outcome goes to the pipe `ctl_fd`
  (from the config) as a frame:
  b"D" + error text (empty when the code ran to its end), b"S" when it raised SystemExit (the
  REPL does a soft reset), b"R" + cause when machine.reset() was called.
  Frame: one kind byte, a 4-byte little-endian length, the payload.

Invariant: everything this program writes to stdout for a command is written before the command's
outcome frame on fd 3, and the supervisor drains stdout before it reads the outcome, so output
never crosses the REPL's \\x04 framing.

Modules imported from the host (the machine stand-in) are imported before the littlefs mount
hides the host's filesystem; anything they import lazily later must be in ROMFS or littlefs.
"""

import io
import json
import sys
from collections import namedtuple

import vfs

_HOST_OS = __import__("os")
_Uname = namedtuple("uname_result", ("sysname", "nodename", "release", "version", "machine"))

_ROMFS_HEADER = b"\xd2\xcd\x31"
_ENODEV = 19
_EINVAL = 22


def _frame(kind, payload=b""):
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload)
    return kind + bytes((n & 0xFF, (n >> 8) & 0xFF, (n >> 16) & 0xFF, (n >> 24) & 0xFF)) + payload


class FileBlockDev:
    """A block device on a host file (opened before / is mounted over the host's filesystem).
    Erase sets a block to 0xFF, as NOR flash does."""

    def __init__(self, f, block_size, block_count):
        self.f = f
        self.block_size = block_size
        self.block_count = block_count

    def readblocks(self, block, buf, offset=0):
        self.f.seek(block * self.block_size + offset)
        self.f.readinto(buf)

    def writeblocks(self, block, buf, offset=None):
        self.f.seek(block * self.block_size + (offset or 0))
        self.f.write(buf)
        self.f.flush()

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.block_count
        if op == 5:  # block size
            return self.block_size
        if op == 6:  # erase a block
            self.f.seek(arg * self.block_size)
            self.f.write(b"\xff" * self.block_size)
            self.f.flush()
            return 0
        return 0


class RomPartition:
    """The ROMFS partition: bytes in memory (what VfsRom reads, as memory-mapped flash) and on a
    host file (what survives a reset). Writes land in both at once, so a cable that drops mid-
    deploy leaves a partly written partition, as on a board."""

    def __init__(self, f, size, block_size):
        self.f = f
        self.size = size
        self.block_size = block_size
        f.seek(0)
        self.data = bytearray(f.read(size))
        if len(self.data) < size:
            self.data.extend(b"\xff" * (size - len(self.data)))

    def valid(self):
        return self.data[:3] == _ROMFS_HEADER

    def write(self, offset, buf):
        end = offset + len(buf)
        if offset < 0 or end > self.size:
            return -_EINVAL
        self.data[offset:end] = buf
        self.f.seek(offset)
        self.f.write(buf)
        self.f.flush()
        return 0

    def erase(self, offset, length):
        end = min(self.size, offset + length)
        return self.write(offset, b"\xff" * (end - offset))


class Board:
    def __init__(self, cfg):
        self.cfg = cfg
        self.ctl = open("/proc/self/fd/%d" % cfg["ctl_fd"], "wb")
        self.cmd = sys.stdin.buffer
        self.globals = {"__name__": "__main__"}
        lfs_file = open(cfg["fs_path"], "r+b")
        rom_file = open(cfg["rom_path"], "r+b")
        self.bdev = FileBlockDev(lfs_file, cfg["block_size"], cfg["fs_blocks"])
        self.rom = RomPartition(rom_file, cfg["rom_size"], cfg["block_size"])

    # --- what the board offers -------------------------------------------------------------
    def rom_ioctl(self, op, *args):
        """vfs.rom_ioctl as the ESP32 port has it: 1 partition count, 2 the partition's memory,
        3 prepare (erase) for writing, 4 write, 5 end of writing, 6 the erase block size."""
        if op == 1:
            return 1
        if not args or args[0] != 0:
            return -_ENODEV
        if op == 2:
            return memoryview(self.rom.data)
        if op == 3:  # (3, id, length) or (3, id, offset, length)
            if len(args) == 2:
                return self.rom.erase(0, args[1]) or 4
            return self.rom.erase(args[1], args[2]) or 4
        if op == 4:
            return self.rom.write(args[1], args[2])
        if op == 5:
            return 0
        if op == 6:
            return self.rom.block_size
        return -_EINVAL

    def statvfs(self, path):
        st = list(_HOST_OS.statvfs(path))
        extra = self.cfg.get("statvfs_extra_blocks", 0)
        if extra and st[0] == self.cfg["block_size"]:
            # A fault for tests: the filesystem says it has more room than it has.
            st[3] += extra
            st[4] += extra
        return tuple(st)

    def uname(self):
        release = self.cfg["version"]
        return _Uname(
            "esp32",
            "esp32",
            release,
            "v%s on %s" % (release, self.cfg["build_date"]),
            self.cfg["machine"],
        )

    def reset(self, cause="SW_CPU_RESET"):
        """machine.reset(): say so to the supervisor, which ends this process. A reset cannot
        be interrupted: a Ctrl-C arriving meanwhile is ignored, as on the chip."""
        self.tell(b"R", cause)
        while True:
            try:
                sys.stdin.buffer.read(1)  # wait to be killed; run no more Python
            except KeyboardInterrupt:
                pass

    def soft_reset(self):
        raise SystemExit

    # --- setting up a boot ------------------------------------------------------------------
    def install_modules(self):
        board = self

        class _Vfs:
            VfsRom = vfs.VfsRom
            VfsLfs2 = vfs.VfsLfs2
            VfsLfs1 = vfs.VfsLfs1
            VfsFat = vfs.VfsFat
            mount = staticmethod(vfs.mount)
            umount = staticmethod(vfs.umount)

        if self.cfg["rom_size"]:
            _Vfs.rom_ioctl = staticmethod(board.rom_ioctl)  # else: firmware without ROMFS

        class _Os:
            pass

        for name in dir(_HOST_OS):
            if not name.startswith("__") and name not in ("system", "putenv", "unsetenv"):
                setattr(_Os, name, staticmethod(getattr(_HOST_OS, name)))
        _Os.uname = staticmethod(board.uname)
        _Os.statvfs = staticmethod(board.statvfs)
        import micropython as _mp

        class _Micropython:
            pass

        for name in dir(_mp):
            if not name.startswith("__"):
                setattr(_Micropython, name, staticmethod(getattr(_mp, name)))
        # kbd_intr(-1) on the unix port would make SIGINT fatal; here it tells the supervisor,
        # which then passes Ctrl-C through as a byte, as the board's UART does.
        _Micropython.kbd_intr = staticmethod(lambda c: board.tell(b"K", b"1" if c == 3 else b"0"))
        _Micropython.const = staticmethod(lambda x: x)
        sys.modules["micropython"] = _Micropython()
        sys.modules["vfs"] = _Vfs()
        sys.modules["os"] = _Os()
        sys.modules["fakeboard"] = self
        stand_ins = self.cfg.get("stand_ins")
        if stand_ins:
            # The board's own stand-ins (hil/board_vm: machine with UARTs on ptys, WDT, Pin,
            # and network), imported now, while the host's filesystem is still /.
            sys.path.insert(0, stand_ins)
            import machine  # noqa: F401
            import network  # noqa: F401

            sys.path.remove(stand_ins)
        else:
            sys.modules["machine"] = _machine_module(self)

    def mount(self):
        host = vfs.VfsPosix("/") if self.cfg.get("stand_ins") else None
        try:
            fs = vfs.VfsLfs2(self.bdev)
        except OSError:
            # A blank or damaged filesystem: format it, as the ESP32's inisetup does.
            vfs.VfsLfs2.mkfs(self.bdev)
            fs = vfs.VfsLfs2(self.bdev)
            vfs.mount(fs, "/")
            with open("/boot.py", "w") as f:
                f.write("# This file is executed on every boot (including wake-boot from "
                        "deepsleep)\n#import esp\n#esp.osdebug(None)\n")
        else:
            vfs.mount(fs, "/")
        if host is not None:
            vfs.mount(host, "/host")  # the stand-ins reach ptys and control files through it
        if self.cfg["rom_size"] and self.rom.valid():
            try:
                vfs.mount(vfs.VfsRom(memoryview(self.rom.data)), "/rom")
            except OSError:
                pass
        _HOST_OS.chdir("/")
        sys.path.clear()
        for p in ("", ".frozen", "/rom", "/rom/lib", "/lib"):
            sys.path.append(p)

    # --- running code ----------------------------------------------------------------------
    def _error_text(self, exc):
        buf = io.StringIO()
        sys.print_exception(exc, buf)
        # Drop this program's own frames: a board's traceback starts at the code it was sent.
        lines = [ln for ln in buf.getvalue().split("\n") if "fake_board_vm.py" not in ln]
        return "\n".join(lines)

    def tell(self, kind, payload=b""):
        """A frame to the supervisor. Never interrupted: a Ctrl-C meant for code that has just
        ended is dropped here (a pipe write of a few bytes is atomic, so a retry is exact)."""
        while True:
            try:
                self.ctl.write(_frame(kind, payload))  # unbuffered: no flush (EINVAL on pipes)
                return
            except KeyboardInterrupt:
                pass

    def run(self, src, name, mode):
        """Run source; return (kind, payload) for the outcome frame. Only the code itself is
        interruptible: the supervisor sends SIGINT between the "X" and "x" frames only."""
        kind, err = b"D", b""
        try:
            code = compile(src, name, mode)
            self.tell(b"X")
            try:
                exec(code, self.globals)
            finally:
                self.tell(b"x")
        except SystemExit:
            kind = b"S"
        except BaseException as e:  # noqa: BLE001 - a board's REPL reports every exception
            kind, err = b"D", self._error_text(e)
        return kind, err

    def run_file(self, path):
        try:
            with open(path) as f:
                src = f.read()
        except OSError:
            return b"D", b""  # no such file: the same as an empty one
        self.globals["__file__"] = path.lstrip("/")
        kind, err = self.run(src, path.lstrip("/"), "exec")
        if err:
            sys.stdout.write(err)
        return kind, b""

    def _read(self, n):
        data = b""
        while len(data) < n:
            try:
                part = self.cmd.read(n - len(data))
            except KeyboardInterrupt:
                continue  # a Ctrl-C that came after the code it was meant for had ended
            if not part:
                return None
            data += part
        return data

    def _dispatch(self, kind, body):
        if kind == b"E":
            return self.run(body, "<stdin>", "exec")
        if kind == b"L":
            return self.run(body, "<stdin>", "single")
        if kind == b"B":
            outcome = self.run_file("/boot.py")
            if outcome[0] == b"D" and body == b"main":
                outcome = self.run_file("/main.py")
            return outcome
        return b"D", "unknown command %r" % kind

    def serve(self):
        # The supervisor interrupts (SIGINT) only after this frame: before it, the process may
        # not be able to take a KeyboardInterrupt.
        self.tell(b"H")
        while True:
            head = self._read(5)
            if head is None:
                return
            n = head[1] | head[2] << 8 | head[3] << 16 | head[4] << 24
            body = self._read(n) if n else b""
            outcome = None
            while outcome is None:
                try:
                    outcome = self._dispatch(head[:1], body)
                except KeyboardInterrupt:
                    pass  # raised outside the code (a late Ctrl-C): ignore, as the chip would
            self.tell(outcome[0], outcome[1])


def _machine_module(board):
    """The `machine` stand-in when the config names none: reset and identity only."""

    class _Machine:
        PWRON_RESET = 1
        HARD_RESET = 2
        WDT_RESET = 3
        DEEPSLEEP_RESET = 4
        SOFT_RESET = 5

        @staticmethod
        def reset():
            board.reset("SW_CPU_RESET")

        @staticmethod
        def soft_reset():
            raise SystemExit

        @staticmethod
        def reset_cause():
            return board.cfg.get("reset_cause", 1)

        @staticmethod
        def unique_id():
            return bytes.fromhex(board.cfg.get("unique_id", "a4cf12000001"))

        @staticmethod
        def freq(*args):
            return 240000000

    return _Machine()


def main():
    with open(sys.argv[1]) as f:
        cfg = json.load(f)
    board = Board(cfg)
    board.install_modules()
    board.mount()
    board.serve()


main()
