"""A scripted stand-in for MicroPython's `machine` module (UART and Pin), for portable tests.

Only the ESP32's machine module cannot be real here; everything above it (UartPort, the drivers,
the console) is the real code. Tests install it with `install()`, which puts this module into
sys.modules["machine"]; product code never imports this file.

The UART keeps a timeline, so tests can check what a real line would show:
- `write(buf)` records (t, bytes) in `sent` and appends to `wire`. The bytes leave at line rate
  (bits per character / baud), so `txdone()` is False until the last one is out. With
  `stuck = True` nothing leaves (CTS held off, a USB-CDC host that never reads): `txdone()`
  stays False, and a write larger than the free TX buffer is what would hang a real board, so
  the fake records it in `blocked_writes` and raises OSError.
- The far end is a Peer, one per UART id (`peer(id)`), so it outlives a UART that the driver
  deinits and makes again after a failed poll. `responder(request_bytes)` returns the reply
  (bytes) or None (silence). The reply arrives `latency_s` after the request's last byte left,
  then byte by byte every `drip_s` if set. `garbage` bytes come before every reply;
  `silent = True` answers nothing. `uart.inject(data)` makes bytes arrive now (a terminal typing).
- `read(n)`, `any()`, `readinto` never block (timeout=0 semantics of the ESP32 port).
Every Pin change and every UART write is also appended to the module-level EVENTS list as
("pin", id, value, t) or ("tx", uart_id, bytes, t_start, t_end), for ordering checks.
"""

import sys

from agent.core.compat import monotonic

EVENTS = []
UARTS = {}  # id -> the last UART made with it
PEERS = {}  # id -> Peer
FIFO = 128  # the ESP32 UART's hardware TX FIFO, in front of the driver's txbuf


class Peer:
    """What is at the other end of a UART: a scripted device or terminal."""

    def __init__(self):
        self.responder = None
        self.latency_s = 0.002
        self.drip_s = 0.0
        self.garbage = b""
        self.silent = False
        self.stuck = False  # takes no bytes: the UART's TX never drains
        self.stick_on_write = False  # becomes stuck at the next write (mid-frame)
        self.fail_reads = False  # the UART's read raises OSError (a driver fault)


def peer(uart_id):
    p = PEERS.get(uart_id)
    if p is None:
        p = PEERS[uart_id] = Peer()
    return p


def install():
    """Put this module in sys.modules["machine"], clear EVENTS and UARTS; returns the module."""
    mod = sys.modules[__name__]
    sys.modules["machine"] = mod
    del EVENTS[:]
    UARTS.clear()
    PEERS.clear()
    return mod


def uninstall():
    if sys.modules.get("machine") is sys.modules[__name__]:
        del sys.modules["machine"]


class Pin:
    IN = 1
    OUT = 3

    def __init__(self, pin_id, mode=None, value=None):
        self.id = pin_id
        self.mode = mode
        self.history = []  # [(t, value)]
        self._v = 0
        if value is not None:
            self.value(value)

    def value(self, v=None):
        if v is None:
            return self._v
        self._v = 1 if v else 0
        t = monotonic()
        self.history.append((t, self._v))
        EVENTS.append(("pin", self.id, self._v, t))
        return None

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class UART:
    def __init__(self, uart_id, baudrate=9600, **kw):
        self.id = uart_id
        self.kw = {}
        self.deinited = False
        self.sent = []  # [(t, bytes)]
        self.wire = bytearray()
        self.peer = peer(uart_id)
        self.blocked_writes = []
        self.waiting_writes = []
        self._rx = []  # [(t_available, byte)] in order
        self._tx_end = 0.0  # when the last byte written leaves the line
        self._tx_pending = 0  # bytes written but not yet gone (only grows while stuck)
        self.init(baudrate, **kw)
        UARTS[uart_id] = self

    def init(self, baudrate=9600, bits=8, parity=None, stop=1, **kw):
        if bits not in (5, 6, 7, 8) or parity not in (None, 0, 1) or stop not in (1, 2):
            raise ValueError("invalid UART settings")
        self.baudrate = baudrate
        self.bits = bits
        self.parity = parity
        self.stop = stop
        self.kw = dict(kw)
        self.txbuf = kw.get("txbuf", 256)

    def deinit(self):
        self.deinited = True

    def char_s(self):
        """Seconds one character takes on the line (start, data, parity, stop bits)."""
        return (1 + self.bits + (self.parity is not None) + self.stop) / self.baudrate

    # --- TX ------------------------------------------------------------------------------
    def write(self, buf):
        if self.deinited:
            raise OSError("UART deinit")
        data = bytes(buf)
        now = monotonic()
        p = self.peer
        if p.stick_on_write:
            p.stick_on_write = False
            p.stuck = True
        if p.stuck:
            if self._tx_pending + len(data) > self.txbuf:
                self.blocked_writes.append((now, data))
                raise OSError("fake UART: this write would block (TX buffer full, never drains)")
            self._tx_pending += len(data)
            self.sent.append((now, data))
            self.wire += data
            return len(data)
        in_flight = max(0.0, self._tx_end - now) / self.char_s()
        if in_flight + len(data) > self.txbuf + FIFO:
            self.waiting_writes.append((now, data))  # a real write() would wait for room here
        start = max(now, self._tx_end)
        self._tx_end = start + len(data) * self.char_s()
        self.sent.append((now, data))
        self.wire += data
        EVENTS.append(("tx", self.id, data, start, self._tx_end))
        if p.responder is not None and not p.silent:
            reply = p.responder(data)
            if reply is not None:
                self._schedule(p.garbage + reply, self._tx_end + p.latency_s)
        return len(data)

    def unstick(self):
        """The terminal starts reading: what was held leaves now."""
        self.peer.stuck = False
        now = monotonic()
        self._tx_end = max(now, self._tx_end) + self._tx_pending * self.char_s()
        self._tx_pending = 0

    def txdone(self):
        if self.peer.stuck:  # idle only if nothing was ever held (CTS off since)
            return self._tx_pending == 0 and monotonic() >= self._tx_end
        if self._tx_pending:  # held bytes left when the far end started reading again
            self.unstick()
        return monotonic() >= self._tx_end

    def flush(self):
        raise AssertionError("flush() blocks the event loop; the adapter must not call it")

    # --- RX ------------------------------------------------------------------------------
    def _schedule(self, data, at):
        step = self.peer.drip_s
        for i, b in enumerate(data):
            self._rx.append((at + i * step, b))

    def inject(self, data):
        """Bytes arriving now from the far end."""
        self._schedule(bytes(data), monotonic())

    # --- IRQ (the ESP32 port's UART.irq: IRQ_RX, IRQ_RXIDLE, IRQ_BREAK) ---------------------
    IRQ_RX = 1
    IRQ_RXIDLE = 2
    IRQ_BREAK = 4

    def irq(self, handler=None, trigger=0, hard=False):
        self.irq_handler = handler
        self.irq_trigger = trigger

    def line_break(self):
        """The far end holds the line low for longer than a character: the port calls the
        handler registered for IRQ_BREAK (as a scheduled, soft callback)."""
        handler = getattr(self, "irq_handler", None)
        if handler is not None and getattr(self, "irq_trigger", 0) & self.IRQ_BREAK:
            handler(self)

    def any(self):
        if self.peer.fail_reads:
            raise OSError(5)  # EIO
        now = monotonic()
        n = 0
        for t, _b in self._rx:
            if t > now:
                break
            n += 1
        return n

    def read(self, n=-1):
        avail = self.any()
        if n is None or n < 0 or n > avail:
            n = avail
        if n == 0:
            return None
        out = bytes([b for _t, b in self._rx[:n]])
        del self._rx[:n]
        return out

    def readinto(self, buf, n=None):
        data = self.read(len(buf) if n is None else n)
        if not data:
            return None
        buf[: len(data)] = data
        return len(data)
