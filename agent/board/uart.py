"""Serial transport for the board (MicroPython, machine.UART), keeping the host's contract.

    port = UartPort()                       # pins from the board table (configure()) or `pins`
    await port.open(cfg)                    # cfg = device["serial"], port = "uart1"
    line = await port.request(b"Q1\\r", b"\\r", 128, 1.0)
    await port.send(data); frame = await port.read_exact(n, timeout)   # with `port.lock` held
    chunk = await port.read_some(max_bytes, timeout); port.reset_input(); await port.close()

The methods, their results and their errors are those of agent/host/serial_port.py (SerialPort
and BusPort): read_until raises DeviceTimeout (nothing, or a partial line, in time), ParseError
"line longer than N bytes", DeviceError when the UART failed; read_exact / read_some likewise.

Board specifics:
- Pins are board data, not device config: PINS maps a port name to {"tx", "rx", "de",
  "de_active", "dtr_pin", "rts_pin"} (the board's wiring table, set once with configure()).
- A UART has no DTR or RTS. cfg dtr/rts are applied to dtr_pin/rts_pin when the board wires
  such GPIOs (e.g. to power an isolated interface), and are otherwise ignored.
- RS-485: with a "de" pin, the direction pin is driven active before the first byte and
  inactive once txdone() says the last stop bit has left, so the transceiver never talks over
  the slave's reply nor cuts our own frame short.
- Several devices may share one UART (several Modbus slaves on one RS-485 pair): every UartPort
  on the same port name shares one machine.UART, one input buffer and one asyncio.Lock, `lock`,
  with the same rules as the host's BusPort (request takes the lock; send + read_exact are
  called with it held; not reentrant).

Invariants:
- The loop never blocks on the UART: the UART is made with timeout=0 so read() returns at once;
  waiting is asyncio.sleep_ms between polls of uart.any() (every poll_ms, only while a read is
  pending). Input is claimed only by reads; unclaimed bytes are kept up to _BUFFER_CAP.
  asyncio.StreamReader(uart) would wake on data without polling, but bounding a read then needs
  wait_for to cancel a stream read, and a stand-in UART cannot be polled by select: polling any()
  keeps one code path, the one the tests run. Cost: a wake-up per poll_ms during an exchange.
- Writes go in chunks no larger than the driver's TX buffer (txbuf) and only when txdone() says
  the line is idle, so uart.write() never waits for buffer space (it would, on the ESP32).
- Trade-off: releasing DE must follow the last byte within a few character times (a Modbus slave
  may answer 3.5 characters after our frame). An asyncio sleep cannot promise that, so the last
  stretch of a frame (at most SPIN_MS) is awaited by spinning on txdone(); the loop is held for
  that long at most, once per RS-485 frame. Boards whose firmware offers a hardware
  RS-485 half-duplex mode, or auto-direction transceivers, need no DE pin at all.
"""

import asyncio

from agent.core import serial_line
from agent.core.compat import monotonic
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError

# The one table of line defaults (agent/core/serial_line.py), and what only a UART has.
DEFAULTS = dict(serial_line.LINE)
DEFAULTS.update({
    "poll_ms": 5,  # how often a pending read looks at uart.any()
    "rxbuf": 1024,  # driver RX buffer: holds rxbuf / (baud / 10) s of input between polls
    "txbuf": 256,
})  # fmt: skip
_PARITY = {"N": None, "E": 0, "O": 1}  # machine.UART's spelling
_BUFFER_CAP = 4096
SPIN_MS = 3  # the longest the loop is held waiting for the last byte before DE is released

# The board's wiring table: port name -> pins. Data, set by the board at boot (configure()).
PINS = {}


def configure(pins):
    """Set the board's wiring table, e.g. {"uart1": {"tx": 17, "rx": 16, "de": 4}}."""
    PINS.clear()
    PINS.update(pins)


if hasattr(asyncio, "sleep_ms"):
    _sleep_ms = asyncio.sleep_ms
else:  # CPython, for the tests

    def _sleep_ms(ms):
        return asyncio.sleep(ms / 1000)


def uart_id(port):
    """Port name "uart1" -> 1; None when the name is not uart<n>."""
    if isinstance(port, str) and port.startswith("uart") and port[4:].isdigit():
        return int(port[4:])
    return None


def settings(cfg, pins=None):
    """cfg merged over DEFAULTS and checked, with the port's pins under "pins"; raises
    ConfigError listing every bad key."""
    s = dict(DEFAULTS)
    s.update(cfg or {})
    errors = []
    if uart_id(s.get("port")) is None:
        errors.append('serial.port: expected "uart<n>" on a board, got %r' % (s.get("port"),))
    if not isinstance(s["baud"], int) or s["baud"] <= 0:
        errors.append("serial.baud: expected a positive integer, got %r" % (s["baud"],))
    if s["bytesize"] not in (5, 6, 7, 8):
        errors.append("serial.bytesize: expected 5-8, got %r" % (s["bytesize"],))
    if not isinstance(s["parity"], str) or s["parity"].upper() not in _PARITY:
        errors.append("serial.parity: expected one of N E O on a UART, got %r" % (s["parity"],))
    if s["stopbits"] not in (1, 2):
        errors.append("serial.stopbits: expected 1 or 2 on a UART, got %r" % (s["stopbits"],))
    for key in ("dtr", "rts"):
        if s[key] not in (None, True, False):
            errors.append("serial.%s: expected true, false or unset, got %r" % (key, s[key]))
    for key, low, what in (("read_timeout", 0, "seconds > 0"), ("gap_ms", -1, "ms >= 0"),
                           ("poll_ms", 0, "ms > 0")):  # fmt: skip
        if not isinstance(s[key], (int, float)) or s[key] <= low:
            errors.append("serial.%s: expected %s, got %r" % (key, what, s[key]))
    for key in ("rxbuf", "txbuf"):
        if not isinstance(s[key], int) or s[key] < 32:
            errors.append("serial.%s: expected an integer >= 32, got %r" % (key, s[key]))
    table = PINS if pins is None else pins
    p = dict(table.get(s.get("port")) or {})
    for key in p:
        if key not in ("tx", "rx", "de", "de_active", "dtr_pin", "rts_pin"):
            errors.append("pins.%s.%s: unknown pin option" % (s.get("port"), key))
    if p.get("de_active", 1) not in (0, 1):
        errors.append("pins.%s.de_active: expected 0 or 1" % (s.get("port"),))
    if errors:
        raise ConfigError(errors)
    s["parity"] = s["parity"].upper()
    s["pins"] = p
    return s


class _Line:
    """One machine.UART and what its users share (see the module doc)."""

    def __init__(self, s):
        self.cfg = s
        self.name = s["port"]
        self.uart = None
        self.de = None
        self.de_on = s["pins"].get("de_active", 1)
        self.lock = asyncio.Lock()
        self.users = 0
        self.buf = b""  # bytes, not bytearray: MicroPython cannot delete a bytearray slice
        self.error = None
        self.last_io = 0.0
        self.tx_end = 0.0  # when the bytes written so far will have left, by line rate
        self.char_s = serial_line.char_s(s)  # seconds per character on the line
        self.dropped = 0

    def open(self):
        s = self.cfg
        p = s["pins"]
        try:
            import machine

            if p.get("de") is not None:
                self.de = machine.Pin(p["de"], machine.Pin.OUT, value=1 - self.de_on)
            for key in ("dtr", "rts"):
                if p.get(key + "_pin") is not None and s[key] is not None:
                    machine.Pin(p[key + "_pin"], machine.Pin.OUT, value=1 if s[key] else 0)
            kw = {
                "baudrate": s["baud"],
                "bits": s["bytesize"],
                "parity": _PARITY[s["parity"]],
                "stop": s["stopbits"],
                "timeout": 0,
                "timeout_char": 0,
                "rxbuf": s["rxbuf"],
                "txbuf": s["txbuf"],
            }
            for key in ("tx", "rx"):
                if p.get(key) is not None:
                    kw[key] = p[key]
            self.uart = machine.UART(uart_id(self.name), **kw)
        except (ImportError, AttributeError, OSError, ValueError, TypeError) as e:
            raise DeviceError("cannot open serial port %s: %s" % (self.name, e)) from None
        self.buf = b""
        self.error = None
        self.last_io = monotonic()

    def close(self):
        uart, self.uart = self.uart, None
        if self.de is not None:
            try:
                self.de.value(1 - self.de_on)
            except Exception:
                pass
        if uart is not None:
            try:
                uart.deinit()
            except Exception:
                pass

    def fail(self, what, e):
        if self.error is None:
            self.error = "serial port %s failed (%s): %s" % (self.name, what, e)
        return DeviceError(self.error)

    def pull(self):
        """Move what the UART holds into buf (never waits)."""
        if self.error:
            return
        try:
            n = self.uart.any()
            data = self.uart.read(n) if n else None
        except OSError as e:
            self.fail("read", e)
            return
        if data:
            self.buf += bytes(data)
            if len(self.buf) > _BUFFER_CAP:
                extra = len(self.buf) - _BUFFER_CAP
                self.buf = self.buf[extra:]
                self.dropped += extra
            self.last_io = monotonic()


_LINES = {}  # port name -> _Line, while at least one UartPort holds it open
_LINE_KEYS = ("baud", "bytesize", "parity", "stopbits")


def open_lines():
    """{port name: number of users} of the UARTs open now (for the console and tests)."""
    return dict((k, v.users) for k, v in _LINES.items())


class UartPort:
    """A device's handle on a UART (see the module doc); the host SerialPort's contract."""

    def __init__(self, pins=None):
        self.pins = pins  # None: the board table PINS
        self._line = None
        self.cfg = None

    @property
    def is_open(self):
        return self._line is not None

    @property
    def lock(self):
        return self._checked().lock

    @property
    def failed(self):
        return self._line.error if self._line is not None else None

    @property
    def uart(self):
        """The machine.UART in use (tests, the console's status)."""
        return self._checked().uart

    async def open(self, cfg):
        s = settings(cfg, self.pins)
        name = s["port"]
        line = _LINES.get(name)
        if line is not None and line.users > 0 and line.uart is not None:
            for k in _LINE_KEYS:
                if line.cfg[k] != s[k]:
                    raise DeviceError(
                        "serial port %s is open with %s=%r; this device asks %r"
                        % (name, k, line.cfg[k], s[k])
                    )
        if line is None or line.users <= 0:
            line = _Line(s)
        if line.uart is None or line.error:
            line.close()
            line.open()  # DeviceError leaves nothing registered
        line.users += 1
        _LINES[name] = line
        self._line = line
        self.cfg = line.cfg

    async def close(self):
        """Release the port. Never raises; safe to call twice."""
        line, self._line = self._line, None
        if line is None:
            return
        line.users -= 1
        if line.users <= 0:
            if _LINES.get(line.name) is line:
                del _LINES[line.name]
            line.close()

    def _checked(self):
        if self._line is None:
            raise DeviceError("serial port is not open")
        return self._line

    # --- input ------------------------------------------------------------------------------
    def reset_input(self):
        """Drop everything received so far (the UART's buffer and ours)."""
        line = self._checked()
        line.pull()
        line.buf = b""

    async def _wait(self, line, deadline):
        """Sleep one poll interval (not past `deadline`); False once the deadline has passed."""
        left = deadline - monotonic()
        if left <= 0:
            return False
        await _sleep_ms(max(1, min(line.cfg["poll_ms"], int(left * 1000) + 1)))
        return True

    async def read_until(self, terminator=b"\r", max_bytes=256, timeout=None):
        """The next line up to and including `terminator` (errors as the host's)."""
        line = self._checked()
        if timeout is None:
            timeout = line.cfg["read_timeout"]
        deadline = monotonic() + timeout
        while True:
            line.pull()
            buf = line.buf
            idx = buf.find(terminator)
            if idx >= 0 and idx + len(terminator) <= max_bytes:
                end = idx + len(terminator)
                line.buf = buf[end:]
                return buf[:end]
            if idx >= 0 or len(buf) >= max_bytes:
                line.buf = b""
                raise ParseError("line longer than %d bytes" % max_bytes)
            if line.error:
                raise DeviceError(line.error)
            if not await self._wait(line, deadline):
                if line.buf:
                    part = line.buf
                    raise DeviceTimeout(
                        "partial reply within %gs (%d bytes, no terminator): %r"
                        % (timeout, len(part), part[:64])
                    )
                raise DeviceTimeout("no reply within %gs" % timeout)

    async def read_exact(self, n, timeout=None):
        """Exactly `n` bytes (a binary frame whose length is known, as Modbus RTU's is)."""
        line = self._checked()
        if timeout is None:
            timeout = line.cfg["read_timeout"]
        deadline = monotonic() + timeout
        while True:
            line.pull()
            if len(line.buf) >= n:
                out = line.buf[:n]
                line.buf = line.buf[n:]
                return out
            if line.error:
                raise DeviceError(line.error)
            if not await self._wait(line, deadline):
                if line.buf:
                    part = line.buf
                    raise DeviceTimeout(
                        "partial reply within %gs (%d of %d bytes): %r"
                        % (timeout, len(part), n, part[:64])
                    )
                raise DeviceTimeout("no reply within %gs" % timeout)

    async def read_some(self, max_bytes=256, timeout=None):
        """What has arrived (1 to max_bytes bytes), waiting up to `timeout` for the first byte."""
        line = self._checked()
        if timeout is None:
            timeout = line.cfg["read_timeout"]
        deadline = monotonic() + timeout
        while True:
            line.pull()
            if line.buf:
                out = line.buf[:max_bytes]
                line.buf = line.buf[max_bytes:]
                return out
            if line.error:
                raise DeviceError(line.error)
            if not await self._wait(line, deadline):
                raise DeviceTimeout("no data within %gs" % timeout)

    # --- output -----------------------------------------------------------------------------
    async def _tx_idle(self, line, deadline, spin=False):
        """Wait until the last byte written has left the line. With `spin`, the final SPIN_MS
        are spent polling txdone() without yielding (see the module's trade-off)."""
        uart = line.uart
        done = getattr(uart, "txdone", None)
        while True:
            if done is not None:
                if done():
                    return
                left_s = line.tx_end - monotonic()
            else:  # no txdone on this port: trust the line rate
                left_s = line.tx_end - monotonic()
                if left_s <= 0:
                    return
            if monotonic() > deadline:
                raise DeviceTimeout("write to %s stalled (TX not draining)" % line.name)
            if spin and left_s * 1000 <= SPIN_MS:
                hard = monotonic() + SPIN_MS / 1000 + 2 * line.char_s
                while monotonic() < hard:
                    if done is None or done():
                        if done is None:
                            while monotonic() < line.tx_end:
                                pass
                        return
                spin = False  # not done when it should be: stop holding the loop
            await _sleep_ms(max(1, min(line.cfg["poll_ms"], int(left_s * 1000) - SPIN_MS)))

    async def write(self, data):
        """Write all of `data` (DE active around it), never waiting on the UART's buffer."""
        line = self._checked()
        if line.error:
            raise DeviceError(line.error)
        data = bytes(data)
        budget = max(line.cfg["read_timeout"], 2 * len(data) * line.char_s)
        deadline = monotonic() + budget
        step = line.cfg["txbuf"]
        de = None  # the direction pin once driven active
        try:
            await self._tx_idle(line, deadline)
            if line.de is not None:
                de = line.de
                de.value(line.de_on)
            i = 0
            while i < len(data):
                if i:
                    await self._tx_idle(line, deadline)
                chunk = data[i : i + step]
                n = line.uart.write(chunk)
                n = len(chunk) if n is None else n
                line.tx_end = max(monotonic(), line.tx_end) + n * line.char_s
                i += n
            if de is not None:
                await self._tx_idle(line, deadline, spin=True)
        except OSError as e:
            raise line.fail("write", e) from None
        finally:
            if de is not None:
                de.value(1 - line.de_on)
        line.last_io = monotonic()

    async def send(self, data):
        """Start an exchange: keep gap_ms of quiet after the last byte, drop stale input, write."""
        line = self._checked()
        gap = line.cfg["gap_ms"] / 1000
        if gap:
            wait = max(line.last_io, line.tx_end) + gap - monotonic()
            if wait > 0:
                await _sleep_ms(int(wait * 1000 + 0.999))
        self.reset_input()
        await self.write(data)

    async def request(self, data, terminator=b"\r", max_bytes=256, timeout=None):
        """One exchange with the line's lock held: send, then read one line."""
        line = self._checked()
        async with line.lock:
            await self.send(data)
            return await self.read_until(terminator, max_bytes, timeout)
