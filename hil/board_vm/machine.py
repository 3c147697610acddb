# A stand-in for the ESP32's `machine` module, for the simulated board (runs INSIDE the
# MicroPython unix port; hil/board_sim.py is its CPython side). Only the silicon is simulated:
# the firmware above it is the real image.
#
# - UART(n): the port named "uart<n>" in the sim config is a pseudo-terminal (a device emulator
#   from hil/emulators, or the console pty the test holds); reads never block (VMIN=0), any()
#   counts bytes already read in, txdone() is always true (a pty takes bytes at once).
# - WDT(timeout=ms): start and every feed() are reported to the supervisor (a UDP datagram);
#   the supervisor, like the hardware, kills the VM when a feed is late and starts it again
#   with reset cause WDT_RESET. It cannot be stopped once started (as on the ESP32).
# - reset(): tells the supervisor, which kills the VM and starts it again with HARD_RESET (what
#   an ESP32 reports after machine.reset()); nothing after reset() runs.
# - reset_cause(): given by the supervisor at each start.
# - Pin: outputs are kept; an input reads the level the sim config gives (the safe-mode button
#   "held" or not), else its pull's idle level.
# - RTC: keeps what it is set to (the host clock is not changed).
# - FlashBlockDevice: the board's flash partition as a file, for vfs.VfsLfs2; it can cut the
#   power at its Nth write, or at the first write after the sim's cut file appears (a HIL
#   drill's power cut at the flash level), tearing that write (first half of the bytes only).
import json
import os
import socket
import termios
import time

PWRON_RESET = 1
HARD_RESET = 2
WDT_RESET = 3
DEEPSLEEP_RESET = 4
SOFT_RESET = 5
_CAUSES = {"power_on": PWRON_RESET, "hard": HARD_RESET, "watchdog": WDT_RESET,
           "deep_sleep": DEEPSLEEP_RESET, "soft": SOFT_RESET}

with open(os.getenv("SIM_CONFIG")) as _f:
    CFG = json.load(_f)
HOST = CFG.get("host_prefix", "/host")  # where the host's filesystem is mounted in the VM
_sup = None


def _tell(msg):
    global _sup
    if _sup is None:
        _sup = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM),
                socket.getaddrinfo("127.0.0.1", CFG["supervisor_port"])[0][-1])
    try:
        _sup[0].sendto(msg.encode(), _sup[1])
    except OSError:
        pass


def _halt(msg):
    """Tell the supervisor and wait to be killed (a reset is external to the program)."""
    _tell(msg)
    while True:
        time.sleep(1)


def reset_cause():
    return _CAUSES.get(CFG.get("reset_cause", "power_on"), 0)


def reset():
    _halt("reset")


def soft_reset():
    _halt("reset")


def unique_id():
    return b"\x24\x0a\xc4\x00\x51\x42"


def freq(*a):
    return 240000000


def idle():
    pass


class WDT:
    def __init__(self, id=0, timeout=5000):
        self.timeout = timeout
        _tell("wdt start %d" % timeout)

    def feed(self):
        _tell("wdt feed")


class Pin:
    IN = 1
    OUT = 3
    OPEN_DRAIN = 7
    PULL_UP = 2
    PULL_DOWN = 1

    def __init__(self, pin_id, mode=None, pull=None, value=None):
        self.id = pin_id
        self.mode = mode
        self.pull = pull
        self._v = 0 if value is None else value

    def init(self, mode=None, pull=None, value=None):
        self.mode = mode
        self.pull = pull

    def value(self, v=None):
        if v is not None:
            self._v = 1 if v else 0
            return None
        if self.mode == Pin.IN:
            held = CFG.get("pins", {}).get(str(self.id))
            if held is not None:
                return held
            return 1 if self.pull == Pin.PULL_UP else 0
        return self._v

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)

    def __call__(self, v=None):
        return self.value(v)


class RTC:
    _t = None

    def datetime(self, t=None):
        if t is None:
            return RTC._t or time.gmtime()
        RTC._t = t
        return None


class UART:
    def __init__(self, uart_id, baudrate=9600, **kw):
        self.id = uart_id
        path = CFG.get("uarts", {}).get("uart%d" % uart_id)
        if path is None:
            raise OSError(19)  # ENODEV: nothing wired to this UART in the sim
        self.path = path
        self.f = open(HOST + path, "r+b")
        fd = self.f.fileno()
        attrs = termios.tcgetattr(fd)
        attrs[6][6] = 0  # VMIN: a read returns at once with what there is
        attrs[6][5] = 0  # VTIME
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        self.buf = b""
        self.init(baudrate, **kw)

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        self.baudrate = baudrate
        self.kw = kw

    def _fill(self):
        if self.f is None:
            raise OSError(9)
        more = self.f.read(512)
        if more:
            self.buf += more

    def any(self):
        self._fill()
        return len(self.buf)

    def read(self, n=None):
        self._fill()
        if not self.buf:
            return None
        n = len(self.buf) if n is None else n
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def readinto(self, b, n=None):
        data = self.read(len(b) if n is None else n)
        if not data:
            return None
        b[: len(data)] = data
        return len(data)

    def write(self, data):
        if self.f is None:
            raise OSError(9)
        n = self.f.write(data)  # unbuffered; flush() would fsync, which a tty refuses
        hang = CFG.get("hang_file")  # while it names this UART, a write blocks (WDT tests)
        if hang and ("uart%d" % self.id) in _read(hang).split():
            while True:
                time.sleep(1)
        return n

    def txdone(self):
        return True

    def flush(self):
        pass

    def deinit(self):
        if self.f is not None:
            self.f.close()
            self.f = None


def _read(path):
    try:
        with open(HOST + path) as f:
            return f.read()
    except OSError:
        return ""


def _exists(path):
    try:
        os.stat(HOST + path)
        return True
    except OSError:
        return False


class FlashBlockDevice:
    """The flash partition in a host file: block_size-byte erase blocks, littlefs on top."""

    def __init__(self, path, block_size, blocks, cut_after=None):
        self.bs = block_size
        self.n = blocks
        self.writes = 0
        self.cut_after = cut_after  # cut the power during this write (1-based), or None
        self.cut_file = CFG.get("cut_file")  # while this host file exists: cut at the next write
        self.f = open(path, "r+b")

    def readblocks(self, n, buf, off=0):
        self.f.seek(n * self.bs + off)
        self.f.readinto(buf)

    def _write(self, pos, data):
        self.writes += 1
        if self.cut_file and self.cut_after is None and _exists(self.cut_file):
            self.cut_after = self.writes
        if self.cut_after is not None and self.writes >= self.cut_after:
            self.f.seek(pos)
            self.f.write(data[: len(data) // 2])  # the write tears: half the bytes landed
            self.f.flush()
            _halt("cut %d" % self.writes)
        self.f.seek(pos)
        self.f.write(data)
        self.f.flush()

    def writeblocks(self, n, buf, off=None):
        self._write(n * self.bs + (off or 0), bytes(buf))

    def ioctl(self, op, arg):
        if op == 4:  # block count
            return self.n
        if op == 5:  # block size
            return self.bs
        if op == 6:  # erase
            self._write(arg * self.bs, b"\xff" * self.bs)
            return 0
        return 0
