"""Serial transport for the host (CPython, pyserial), driven by the asyncio loop.

The contract every serial transport keeps (the board's machine.UART adapter keeps it too), so
drivers stay portable:

    port = SerialPort()
    await port.open(cfg)      # cfg = device["serial"]; DeviceError if the port cannot be had
    line = await port.request(b"Q1\\r", b"\\r", 128, 1.0)   # flush input, gap, write, read a line
    await port.write(data); await port.read_until(terminator, max_bytes, timeout)
    await port.send(data)     # gap, flush input, write: the start of an exchange
    frame = await port.read_exact(n, timeout)   # binary frames of known length (Modbus RTU)
    chunk = await port.read_some(max_bytes, timeout)   # streaming devices (VE.Direct)
    port.reset_input()
    await port.close()        # never raises

read_exact returns exactly n bytes or raises DeviceTimeout naming how many of n came (with the
partial bytes); read_some returns 1 to max_bytes bytes, whatever has arrived, waiting up to the
timeout for the first. Both raise DeviceError when the port failed.

read_until returns the line including its terminator. It raises DeviceTimeout when nothing, or only
part of a line, arrived in time (the message says which and shows the partial bytes), ParseError
"line longer than N bytes" when N bytes came without a terminator, and DeviceError when the port
failed (unplugged adapter, closed pty, dropped socket).

cfg keys: port (a device path or a pyserial URL such as socket://127.0.0.1:7000 or
rfc2217://...), baud, bytesize, parity (N E O M S), stopbits (1, 1.5, 2), dtr, rts (True/False,
or None to leave the line as the OS sets it), read_timeout (s), gap_ms (quiet time kept between
the last byte of one exchange and the next request). What cfg leaves out comes from the one table
of line defaults, agent/core/serial_line.py LINE (turnaround_ms there is the drivers' business).

Invariant: the event loop never blocks on the port. Where the port has a file descriptor (device
paths, ptys, socket://) the loop watches it (add_reader) and bytes are read non-blocking as they
arrive; otherwise (rfc2217://, loop://) a reader thread feeds the same buffer through
call_soon_threadsafe. Unclaimed input is kept up to _BUFFER_CAP bytes, oldest dropped first.
"""

import asyncio
import errno
import os
import threading
import time

import serial

from agent.core import serial_line
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError
from agent.host import port_lock

DEFAULTS = serial_line.LINE  # the one table of line defaults (agent/core/serial_line.py)

_PARITY = {
    "N": serial.PARITY_NONE,
    "E": serial.PARITY_EVEN,
    "O": serial.PARITY_ODD,
    "M": serial.PARITY_MARK,
    "S": serial.PARITY_SPACE,
}
_STOPBITS = {1: serial.STOPBITS_ONE, 1.5: serial.STOPBITS_ONE_POINT_FIVE, 2: serial.STOPBITS_TWO}
_BYTESIZE = {5: serial.FIVEBITS, 6: serial.SIXBITS, 7: serial.SEVENBITS, 8: serial.EIGHTBITS}
_BUFFER_CAP = 4096
_THREAD_POLL_S = 0.05  # reader thread's read timeout: bounds how long close() waits for it


def settings(cfg):
    """cfg merged over DEFAULTS and checked; raises ConfigError listing every bad key."""
    s = dict(DEFAULTS)
    s.update(cfg or {})
    errors = []
    if not isinstance(s.get("port"), str) or not s.get("port"):
        errors.append("serial.port: expected a device path or URL, got %r" % (s.get("port"),))
    if not isinstance(s["baud"], int) or s["baud"] <= 0:
        errors.append("serial.baud: expected a positive integer, got %r" % (s["baud"],))
    if s["bytesize"] not in _BYTESIZE:
        errors.append("serial.bytesize: expected 5-8, got %r" % (s["bytesize"],))
    if not isinstance(s["parity"], str) or s["parity"].upper() not in _PARITY:
        errors.append("serial.parity: expected one of N E O M S, got %r" % (s["parity"],))
    if s["stopbits"] not in _STOPBITS:
        errors.append("serial.stopbits: expected 1, 1.5 or 2, got %r" % (s["stopbits"],))
    for key in ("dtr", "rts"):
        if s[key] not in (None, True, False):
            errors.append("serial.%s: expected true, false or unset, got %r" % (key, s[key]))
    if not isinstance(s["read_timeout"], (int, float)) or s["read_timeout"] <= 0:
        errors.append("serial.read_timeout: expected seconds > 0, got %r" % (s["read_timeout"],))
    if not isinstance(s["gap_ms"], (int, float)) or s["gap_ms"] < 0:
        errors.append("serial.gap_ms: expected milliseconds >= 0, got %r" % (s["gap_ms"],))
    if errors:
        raise ConfigError(errors)
    return s


# What a technician can do about the usual reasons a port does not open.
_OPEN_HINTS = {
    errno.ENOENT: "is the adapter plugged in? ls /dev/serial/by-id/",
    errno.ENODEV: "is the adapter plugged in? ls /dev/serial/by-id/",
    errno.EACCES: "is the agent's user in the dialout group?",
    errno.EBUSY: "another program holds the port",
    errno.ENOTTY: "not a serial port",
}


def errno_of(e):
    """The OS errno behind an open error, through pyserial's wrapping; None if there is none."""
    inner = e
    while inner is not None:
        n = getattr(inner, "errno", None)
        if isinstance(n, int):
            return n
        args = getattr(inner, "args", ())  # termios.error: (errno, text)
        if len(args) == 2 and isinstance(args[0], int):
            return args[0]
        inner = inner.__context__
    return None


def why_not(e):
    """Why a port did not open, said once: pyserial wraps the OS error in its own text, which
    repeats the port and the errno ("[Errno 2] could not open port X: [Errno 2] No such file
    or directory: 'X'"). The OS's words for the errno, and a hint when there is one."""
    code = errno_of(e)
    if code is None:
        text = str(e)
        for prefix in ("could not open port ", "Could not open port "):
            if text.startswith(prefix):  # "... <port>: <reason>": keep the reason
                text = text.split(": ", 1)[-1]
        return text
    hint = _OPEN_HINTS.get(code)
    return os.strerror(code) + (" (" + hint + ")" if hint else "")


class SerialPort:
    """One serial port, opened once and used by one driver (requests are not interleaved)."""

    def __init__(self):
        self.cfg = None
        self._ser = None
        self._loop = None
        self._fd = None  # watched by the loop, or None when a reader thread is used
        self._thread = None
        self._stop = False
        self._buf = bytearray()
        self._data = None  # asyncio.Event set whenever bytes arrive or the port fails
        self._error = None  # why the port failed, once it has
        self._last_io = 0.0  # time.monotonic() of the last byte in or out
        self.dropped = 0  # unclaimed input bytes dropped beyond _BUFFER_CAP
        self._claimed = None  # the descriptor holding this process's claim on the device

    @property
    def is_open(self):
        return self._ser is not None

    async def open(self, cfg):
        s = settings(cfg)
        self.cfg = s
        self._loop = asyncio.get_running_loop()
        self._data = asyncio.Event()
        self._buf = bytearray()
        self._error = None
        try:
            ser = serial.serial_for_url(s["port"], do_not_open=True)
            ser.baudrate = s["baud"]
            ser.bytesize = _BYTESIZE[s["bytesize"]]
            ser.parity = _PARITY[s["parity"].upper()]
            ser.stopbits = _STOPBITS[s["stopbits"]]
            ser.timeout = 0  # non-blocking reads; waiting is the loop's job
            # No write_timeout here: ports with a descriptor are written with os.write, and
            # pyserial's rfc2217:// client refuses any write_timeout at all.
            if s["dtr"] is not None:
                ser.dtr = s["dtr"]
            if s["rts"] is not None:
                ser.rts = s["rts"]
            ser.open()
        except (serial.SerialException, OSError, ValueError) as e:
            if errno_of(e) == errno.EBUSY:  # another process holds it (TIOCEXCL)
                raise DeviceError(port_lock.in_use(s["port"])) from None
            raise DeviceError("cannot open serial port %s: %s" % (s["port"], why_not(e))) from None
        fd = None
        try:
            fd = ser.fileno()
        except Exception:  # URL handlers without a descriptor (rfc2217://, loop://)
            fd = None
        if fd is not None and isinstance(fd, int) and s["port"].startswith("/"):
            try:
                port_lock.claim(fd, s["port"])  # one process per line (agent/host/port_lock.py)
            except DeviceError:
                ser.close()
                raise
            self._claimed = fd
        self._ser = ser
        if fd is not None and isinstance(fd, int):
            self._fd = fd
            self._loop.add_reader(fd, self._on_readable)
        else:
            ser.timeout = _THREAD_POLL_S
            self._stop = False
            self._thread = threading.Thread(target=self._reader_thread, daemon=True)
            self._thread.start()
        self._last_io = time.monotonic()

    # --- input ------------------------------------------------------------------------------
    def _on_readable(self):
        try:
            data = os.read(self._fd, 4096)
        except BlockingIOError:
            return
        except OSError as e:
            self._fail("serial port %s failed: %s" % (self.cfg["port"], e))
            return
        if not data:  # EOF: the peer hung up (socket closed, pty master gone)
            self._fail("serial port %s closed by the other end" % self.cfg["port"])
            return
        self._feed(data)

    def _reader_thread(self):
        ser = self._ser
        while not self._stop:
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as e:
                if not self._stop:
                    self._loop.call_soon_threadsafe(self._fail, "serial port failed: %s" % e)
                return
            if data and not self._stop:
                self._loop.call_soon_threadsafe(self._feed, data)

    def _feed(self, data):
        self._buf += data
        if len(self._buf) > _BUFFER_CAP:
            extra = len(self._buf) - _BUFFER_CAP
            del self._buf[:extra]
            self.dropped += extra
        self._last_io = time.monotonic()
        self._data.set()

    def _fail(self, reason):
        if self._error is None:
            self._error = reason
        if self._fd is not None:
            self._loop.remove_reader(self._fd)
            self._fd = None
        self._data.set()

    def reset_input(self):
        """Drop everything received so far (kernel buffer and ours)."""
        if self._ser is not None and self._error is None:
            try:
                self._ser.reset_input_buffer()
            except Exception:  # a pty or socket that cannot flush still gets our buffer cleared
                pass
        self._buf = bytearray()

    async def read_until(self, terminator=b"\r", max_bytes=256, timeout=None):
        """The next line up to and including `terminator` (see the module doc for errors)."""
        self._check_open()
        if timeout is None:
            timeout = self.cfg["read_timeout"]
        deadline = time.monotonic() + timeout
        while True:
            idx = self._buf.find(terminator)
            if idx >= 0 and idx + len(terminator) <= max_bytes:
                end = idx + len(terminator)
                line = bytes(self._buf[:end])
                del self._buf[:end]
                return line
            if idx >= 0 or len(self._buf) >= max_bytes:
                self._buf = bytearray()
                raise ParseError("line longer than %d bytes" % max_bytes)
            if self._error:
                raise DeviceError(self._error)
            left = deadline - time.monotonic()
            if left <= 0:
                if self._buf:
                    part = bytes(self._buf)
                    raise DeviceTimeout(
                        "partial reply within %gs (%d bytes, no terminator): %r"
                        % (timeout, len(part), part[:64])
                    )
                raise DeviceTimeout("no reply within %gs" % timeout)
            self._data.clear()
            try:
                await asyncio.wait_for(self._data.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def _wait_data(self, deadline):
        """Wait until bytes arrive, the port fails, or `deadline`; False once it has passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        self._data.clear()
        try:
            await asyncio.wait_for(self._data.wait(), left)
        except asyncio.TimeoutError:
            pass
        return True

    async def read_exact(self, n, timeout=None):
        """Exactly `n` bytes (a binary frame whose length is known, as Modbus RTU's is)."""
        self._check_open()
        if timeout is None:
            timeout = self.cfg["read_timeout"]
        deadline = time.monotonic() + timeout
        while True:
            if len(self._buf) >= n:
                out = bytes(self._buf[:n])
                del self._buf[:n]
                return out
            if self._error:
                raise DeviceError(self._error)
            if not await self._wait_data(deadline):
                if self._buf:
                    part = bytes(self._buf)
                    raise DeviceTimeout(
                        "partial reply within %gs (%d of %d bytes): %r"
                        % (timeout, len(part), n, part[:64])
                    )
                raise DeviceTimeout("no reply within %gs" % timeout)

    async def read_some(self, max_bytes=256, timeout=None):
        """What has arrived (1 to max_bytes bytes), waiting up to `timeout` for the first byte."""
        self._check_open()
        if timeout is None:
            timeout = self.cfg["read_timeout"]
        deadline = time.monotonic() + timeout
        while True:
            if self._buf:
                out = bytes(self._buf[:max_bytes])
                del self._buf[:max_bytes]
                return out
            if self._error:
                raise DeviceError(self._error)
            if not await self._wait_data(deadline):
                raise DeviceTimeout("no data within %gs" % timeout)

    # --- output -----------------------------------------------------------------------------
    async def write(self, data):
        """Write all of `data`, waiting (without blocking the loop) while the OS buffer is full."""
        self._check_open()
        if self._error:
            raise DeviceError(self._error)
        view = memoryview(bytes(data))
        if self._fd is None:
            try:
                await self._loop.run_in_executor(None, self._blocking_write, bytes(view))
            except Exception as e:
                raise DeviceError("write to %s failed: %s" % (self.cfg["port"], e)) from None
        else:
            deadline = time.monotonic() + self.cfg["read_timeout"]
            while view:
                try:
                    n = os.write(self._fd, view)
                    view = view[n:]
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise DeviceTimeout("write to %s stalled" % self.cfg["port"]) from None
                    await self._writable()
                except OSError as e:
                    raise DeviceError("write to %s failed: %s" % (self.cfg["port"], e)) from None
        self._last_io = time.monotonic()

    def _blocking_write(self, data):
        try:
            self._ser.write_timeout = max(1.0, self.cfg["read_timeout"])
        except NotImplementedError:  # rfc2217://: its socket write has its own timeout
            pass
        self._ser.write(data)

    async def _writable(self):
        fut = self._loop.create_future()
        self._loop.add_writer(self._fd, lambda: fut.done() or fut.set_result(None))
        try:
            await asyncio.wait_for(fut, 0.1)
        except asyncio.TimeoutError:
            pass
        finally:
            if self._fd is not None:
                self._loop.remove_writer(self._fd)

    async def send(self, data):
        """Start an exchange: keep gap_ms of quiet after the last byte, drop stale input, write."""
        self._check_open()
        gap = self.cfg["gap_ms"] / 1000.0
        if gap:
            wait = self._last_io + gap - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        self.reset_input()
        await self.write(data)

    async def request(self, data, terminator=b"\r", max_bytes=256, timeout=None):
        """One exchange: drop stale input, keep gap_ms of quiet, write `data`, read one line."""
        await self.send(data)
        return await self.read_until(terminator, max_bytes, timeout)

    @property
    def failed(self):
        """Why the port failed (peer hung up, adapter unplugged), or None while it works."""
        return self._error

    def _check_open(self):
        if self._ser is None:
            raise DeviceError("serial port is not open")

    async def close(self):
        """Release the port. Never raises; safe to call twice."""
        ser, self._ser = self._ser, None
        if ser is None:
            return
        if self._fd is not None:
            try:
                self._loop.remove_reader(self._fd)
            except Exception:
                pass
            self._fd = None
        self._stop = True
        thread, self._thread = self._thread, None
        if self._claimed is not None:
            port_lock.release(self._claimed)
            self._claimed = None
        try:
            ser.close()
        except Exception:
            pass
        if thread is not None:
            await self._loop.run_in_executor(None, thread.join, 1.0)
