"""The serial link to a board running MicroPython: mpremote's transport (raw REPL, raw paste),
with the operations the deploy needs and every failure turned into a FlashError.

    link = BoardLink(port, ui).open()
    link.stop_program()            # hard reset, Ctrl-C in the boot window: the agent and its
                                   # watchdog are not running while we write
    info = link.info()             # MicroPython version, .mpy version, chip, ROMFS, free space
    link.write_file("/site.json", data, progress)
    link.hashes(["/boot.py", ...]) # {path: sha256 hex or None}, computed on the board
    link.romfs_write(image, progress); link.romfs_sha256(len(image))
    link.reset(); link.lines(timeout)   # then read what the board prints

Why stop_program resets first: once the firmware has started machine.WDT, nothing stops it (as
on the ESP32), so a program interrupted with Ctrl-C after that would be reset by the watchdog in
the middle of the deploy. Interrupting in the first seconds of a fresh boot, before the agent
starts its watchdog, avoids that (firmware/main.py waits a few seconds for exactly this).
"""

import binascii
import contextlib
import io
import re
import struct
import time

import serial
from mpremote.transport import TransportError, TransportExecError
from mpremote.transport_serial import SerialTransport

from tools.flashing.errors import CableDropped, FlashError

CHUNK = 2048  # raw bytes per exec when writing: 2.7 KB of base64 on the wire
# MicroPython says "OSError: [Errno 28] ENOSPC" or, without errno names, "OSError: 28".
_ENOSPC = re.compile(r"OSError: (\[Errno 28\]|28\b)|ENOSPC")
LINK_ERRORS = (serial.SerialException, OSError, struct.error, TransportError)

_HASH_FN = """\
import hashlib, binascii
def _sa_h(p, n=None):
    try:
        f = open(p, 'rb')
    except OSError:
        return None
    h = hashlib.sha256(); b = bytearray(512); mv = memoryview(b)
    while True:
        k = f.readinto(b)
        if not k:
            break
        h.update(mv[:k])
    f.close()
    return binascii.hexlify(h.digest()).decode()
"""

_INFO = """\
import sys, os, gc
try:
    import vfs
except ImportError:
    vfs = None
_i = {'version': os.uname().release,
      'mpy': getattr(sys.implementation, '_mpy', 0), 'machine': os.uname().machine,
      'platform': sys.platform}
_s = os.statvfs('/')
_i['fs_block'] = _s[0]; _i['fs_blocks'] = _s[2]; _i['fs_free_blocks'] = _s[3]
_i['romfs'] = None
if vfs is not None and hasattr(vfs, 'rom_ioctl') and vfs.rom_ioctl(1) > 0:
    _d = vfs.rom_ioctl(2, 0)
    if not (isinstance(_d, int) and _d < 0):
        if hasattr(_d, 'ioctl'):
            _i['romfs'] = {'object': True, 'size': _d.ioctl(4, 0) * _d.ioctl(5, 0),
                           'block': _d.ioctl(5, 0)}
        else:
            _i['romfs'] = {'object': False, 'size': len(_d), 'block': vfs.rom_ioctl(6, 0)}
print(repr(_i))
"""


class BoardLink:
    def __init__(self, port, ui, baud=115200, answer_s=10.0):
        self.port = port
        self.ui = ui
        self.baud = baud
        self.answer_s = answer_s
        self.t = None
        self.doing = "connecting"  # what a dropped cable interrupted, for the message
        self.info_cache = None

    # --- the line ---------------------------------------------------------------------------
    def open(self):
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                # timeout: a read on a pty would otherwise block forever (mpremote reads ptys
                # one byte at a time without checking what is waiting).
                self.t = SerialTransport(self.port, baudrate=self.baud, timeout=2)
        except (TransportError, serial.SerialException, OSError) as e:
            raise self._open_error(e) from None
        return self

    def _open_error(self, e):
        text = str(e)
        if "ermission" in text:
            return FlashError("no permission to open %s" % self.port,
                              "add yourself to the dialout group (sudo usermod -aG dialout "
                              "$USER), log out and in again")  # fmt: skip
        if "busy" in text.lower() or "lock" in text.lower():
            return FlashError("%s is in use by another program" % self.port,
                              "close the serial terminal (picocom, screen, Thonny, the Arduino "
                              "IDE) that holds it, then run again")  # fmt: skip
        return FlashError("cannot open %s: %s" % (self.port, text),
                          "check the cable and the port name")

    def close(self):
        if self.t is not None:
            try:
                self.t.serial.close()
            except Exception:  # noqa: BLE001 - closing a dead line must not hide the real error
                pass
            self.t = None

    def _dropped(self, e):
        return CableDropped(
            "the connection to the board on %s broke while %s (%s)"
            % (self.port, self.doing, str(e) or e.__class__.__name__),
            "check the USB cable (and that the board has power), then run the same command "
            "again: it checks what is on the board and writes only what is missing. The board "
            "will not run a half-written image (boot.py finds no matching /image.json)",
        )

    @contextlib.contextmanager
    def _guard(self, doing):
        self.doing = doing
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        except TransportExecError as e:
            if _ENOSPC.search(e.error_output):
                raise FlashError(
                    "the board's filesystem is full (while %s)" % doing,
                    "the board keeps its unsent readings in /data; let it send them, or run "
                    "again with --wipe-data to delete them, or use a board with more flash",
                ) from None
            raise FlashError("the board failed while %s:\n%s" % (doing, e.error_output.strip()),
                             "run again; if it repeats, write fresh firmware with --firmware "
                             "FILE --erase") from None  # fmt: skip
        except LINK_ERRORS as e:
            raise self._dropped(e) from None

    # --- the REPL ---------------------------------------------------------------------------
    def _no_answer(self, said=b""):
        said = said.strip()[-120:]
        return FlashError(
            "the board on %s does not answer MicroPython's REPL%s" % (
                self.port, " (it said %r)" % said if said else ""),
            "is MicroPython on it? (write it with --firmware FILE --erase) Is another program "
            "using the port? Press the board's EN/RST button and run again",
        )

    def enter_raw(self, soft_reset=False, timeout=None):
        printed = io.StringIO()
        with self._guard("entering the REPL"), contextlib.redirect_stdout(printed):
            try:
                self.t.enter_raw_repl(soft_reset=soft_reset,
                                      timeout_overall=timeout or self.answer_s)  # fmt: skip
            except TransportError as e:
                if "could not enter raw repl" in str(e):
                    # mpremote printed what it received instead of the prompt (a bytes repr).
                    text = printed.getvalue().strip()
                    raise self._no_answer(text.encode()) from None
                raise

    def stop_program(self):
        """Get a raw REPL with no program (and so no watchdog) running: reset the board and
        interrupt it while it boots."""
        self.enter_raw()
        with self._guard("resetting the board"):
            self.t.exec_raw_no_follow("import machine\nmachine.reset()")
        self.ui.info("reset; interrupting the boot before the agent starts")
        deadline = time.monotonic() + 20
        seen = b""
        while time.monotonic() < deadline:
            try:
                self.t.serial.write(b"\r\x03")
                time.sleep(0.1)
                n = self.t.serial.in_waiting
                seen = (seen + (self.t.serial.read(n) if n else b""))[-2000:]
            except LINK_ERRORS:
                # A board on its own USB (ESP32-S3) drops off the bus while it resets.
                self.close()
                time.sleep(0.5)
                try:
                    self.open()
                except FlashError:
                    continue
                continue
            if seen.endswith(b">>> ") and self._quiet(0.3):
                break
        else:
            raise self._no_answer(seen)
        self.t.in_raw_repl = False
        self.enter_raw()

    def _quiet(self, wait):
        time.sleep(wait)
        return self.t.serial.in_waiting == 0

    def exec(self, code, doing, timeout=30):
        with self._guard(doing):
            out, err = self.t.exec_raw(code, timeout=timeout)
            if err:
                raise TransportExecError(out, err.decode(errors="replace"))
            return out.decode(errors="replace")

    def eval(self, expr, doing):
        import ast

        text = self.exec("print(repr(%s))" % expr, doing).strip()
        return ast.literal_eval(text)

    # --- what the board is ---------------------------------------------------------------------
    def info(self):
        import ast

        self.info_cache = ast.literal_eval(self.exec(_INFO, "reading the board's version").strip())
        return self.info_cache

    # --- files ---------------------------------------------------------------------------------
    def hashes(self, paths):
        self.exec(_HASH_FN, "preparing to check files")
        out = {}
        for i in range(0, len(paths), 16):
            part = paths[i : i + 16]
            out.update(self.eval("{p: _sa_h(p) for p in %r}" % (part,), "checking files"))
        return out

    def mkdirs(self, path):
        parts = [p for p in path.split("/")[:-1] if p]
        code = "import os\nfor _p in %r:\n try:\n  os.mkdir(_p)\n except OSError:\n  pass\n" % [
            "/" + "/".join(parts[: i + 1]) for i in range(len(parts))]  # fmt: skip
        if parts:
            self.exec(code, "making folders for " + path)

    def write_file(self, path, data, progress=None):
        """Write `path` as `path.new`, then rename: a drop mid-file leaves the old file."""
        self.mkdirs(path)
        doing = "writing " + path
        self.exec("from binascii import a2b_base64 as _sa_b\n_sa_f=open(%r,'wb')"
                  % (path + ".new"), doing)  # fmt: skip
        for i in range(0, len(data), CHUNK):
            b64 = binascii.b2a_base64(data[i : i + CHUNK], newline=False)
            self.exec("_sa_f.write(_sa_b(%r))" % b64, doing)
            if progress:
                progress(min(len(data), i + CHUNK))
        self.exec("_sa_f.close()\nimport os\nos.rename(%r,%r)" % (path + ".new", path), doing)
        if progress and not data:
            progress(0)

    def remove(self, paths):
        if paths:
            self.exec("import os\nfor _p in %r:\n try:\n  os.remove(_p)\n except OSError:\n  "
                      "pass\n" % (list(paths),), "removing old files")  # fmt: skip

    def listdir_tree(self, top="/"):
        """{path: size} of every file under `top` on the board's own filesystem (folders that
        are another mount, such as /rom, are left out: their statvfs differs)."""
        code = ("import os\n_sa_v=os.statvfs(%r)\ndef _sa_w(d,r):\n try:\n"
                "  it=list(os.ilistdir(d))\n except OSError:\n  return r\n for e in it:\n"
                "  p=(d.rstrip('/'))+'/'+e[0]\n"
                "  if e[1]&0x4000:\n   if os.statvfs(p)==_sa_v:\n    _sa_w(p,r)\n  else:\n"
                "   r[p]=e[3] if len(e)>3 else os.stat(p)[6]\n return r\n"
                "print(repr(_sa_w(%r,{})))" % (top, top))  # fmt: skip
        import ast

        return ast.literal_eval(self.exec(code, "listing the board's files").strip())

    # --- the ROMFS partition -------------------------------------------------------------------
    def romfs_sha256(self, n):
        code = ("import vfs, hashlib, binascii\n_d=vfs.rom_ioctl(2,0)\n_m=memoryview(_d)\n"
                "_h=hashlib.sha256()\nfor _o in range(0,%d,1024):\n"
                " _h.update(_m[_o:min(%d,_o+1024)])\n"
                "print(binascii.hexlify(_h.digest()).decode())" % (n, n))  # fmt: skip
        return self.exec(code, "checking the ROMFS partition").strip()

    def romfs_write(self, image, romfs, progress=None):
        """Write a ROMFS image to partition 0 the way mpremote's `romfs deploy` does."""
        doing = "writing the ROMFS partition"
        self.exec("import vfs\ntry:\n vfs.umount('/rom')\nexcept OSError:\n pass\n"
                  "from binascii import a2b_base64 as _sa_b\n_d=vfs.rom_ioctl(2,0)", doing)
        block = romfs["block"] or 4096
        if romfs["object"]:
            for off in range(0, len(image), block):
                self.exec("_d.ioctl(6,%d)" % (off // block), doing)
            chunk = min(CHUNK, block)
        else:
            prepare = (len(image) + block - 1) // block * block
            self.exec("_sa_r=vfs.rom_ioctl(3,0,0,%d)\nif _sa_r<0:raise OSError(-_sa_r)"
                      % prepare, doing)  # fmt: skip
            chunk = CHUNK
        for off in range(0, len(image), chunk):
            piece = image[off : off + chunk]
            b64 = binascii.b2a_base64(piece, newline=False)
            if romfs["object"]:
                self.exec("_d.writeblocks(%d,_sa_b(%r),%d)" % (off // block, b64, off % block),
                          doing)  # fmt: skip
            else:
                self.exec("_sa_r=vfs.rom_ioctl(4,0,%d,_sa_b(%r))\n"
                          "if _sa_r<0:raise OSError(-_sa_r)" % (off, b64), doing)  # fmt: skip
            if progress:
                progress(min(len(image), off + chunk))
        if not romfs["object"]:
            self.exec("vfs.rom_ioctl(5,0)", doing)

    # --- after the deploy ----------------------------------------------------------------------
    def reset(self):
        with self._guard("resetting the board"):
            self.t.exec_raw_no_follow("import machine\nmachine.reset()")
            self.t.in_raw_repl = False

    def read_available(self):
        """Bytes the board sent since the last call (never blocks long); b"" when none."""
        with self._guard("watching the board start"):
            n = self.t.serial.in_waiting
            return self.t.serial.read(n) if n else b""
