"""The console on a serial line (host): a UART, the USB gadget port /dev/ttyGS0, a USB-serial
adapter or a pty, opened raw at the configured speed.

    tty = TtyConsole("/dev/ttyGS0", 115200, make_console, log)
    task = asyncio.create_task(tty.run())     # until cancelled

Invariants (the agent must never wait on the technician's terminal):
- The descriptor is non-blocking and nothing on this path blocks: output goes through an
  OutBuffer of at most `out_limit` bytes; past that, output is dropped and a note saying how much
  is written once the terminal reads again.
- Input is read only between commands, so a flood of input is held by the kernel's tty buffer
  (which drops on overflow), never by us.
- A read of EOF or an error (EIO when the cable or the pty's far end goes, ENXIO when a USB
  adapter is unplugged) ends the session (logged out, half-typed line forgotten); the port is
  reopened every `reopen_s` seconds until it works again, with one log line per outage.
- Line settings: raw 8N1, no echo or translation by the kernel, CLOCAL (the kernel does not
  hang up on modem lines: we watch them), no XON/XOFF or RTS/CTS flow control (a terminal that
  never reads must not stop our writes).
- A break or a carrier drop ends a logged-in session (Console.line_reset), since the terminal
  may have changed hands; the line itself stays open. A break is read with PARMRK, which makes
  the tty layer deliver it as the bytes FF 00 00 and a data byte FF as FF FF (BreakDecoder
  undoes both). The carrier (DCD, TIOCMGET) counts only once it has been seen on: a three-wire
  cable, a USB gadget port or a pty never shows it, and there the idle timeout, a read error or
  end of file (the far end of a pty closing) are what end a session.
"""

import asyncio
import fcntl
import os
import struct
import termios

from agent.core.config.tables import STANDARD_BAUDS
from agent.core.console.output import DROP_NOTE, BoundedOutput, LineLost  # noqa: F401 (re-exported)
from agent.core.log import WARNING

# The config's rates (one list for every serial port) as termios speeds; a test checks that each
# has its constant here, so a rate `check` accepts is one the console can set.
BAUDS = {b: getattr(termios, "B%d" % b) for b in STANDARD_BAUDS if hasattr(termios, "B%d" % b)}


class OutBuffer(BoundedOutput):
    """Bounded, non-blocking output to a file descriptor (see the module invariants)."""

    def __init__(self, fd, aloop, limit=16384, on_lost=None):
        BoundedOutput.__init__(self, limit)
        self.fd = fd
        self.aloop = aloop
        self.on_lost = on_lost
        self._watching = False

    def pump(self):
        while self.buf:
            try:
                n = os.write(self.fd, self.buf[:4096])
            except BlockingIOError:
                n = 0
            except OSError as e:
                self._lose(e)
                return
            if n == 0:
                break
            self.sent(n)
        if self.buf and not self._watching:
            self._watching = True
            self.aloop.add_writer(self.fd, self._writable)
        elif not self.buf and self._watching:
            self._unwatch()

    def _writable(self):
        self.pump()

    def _unwatch(self):
        if self._watching:
            self._watching = False
            try:
                self.aloop.remove_writer(self.fd)
            except (OSError, ValueError):
                pass

    def _lose(self, e):
        self.lost = e
        self.buf = b""
        self._unwatch()
        if self.on_lost is not None:
            self.on_lost(e)

    def close(self):
        self._unwatch()
        self.buf = b""


def open_raw(path, baud):
    """Open path non-blocking, raw 8N1 at baud, no flow control, CLOCAL. Returns the fd."""
    fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    try:
        attrs = termios.tcgetattr(fd)
        iflag, oflag, cflag, lflag = attrs[0], attrs[1], attrs[2], attrs[3]
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                   | termios.IXOFF | termios.IXANY | termios.INPCK)  # fmt: skip
        iflag |= termios.PARMRK  # a break arrives as FF 00 00 (see BreakDecoder)
        oflag &= ~termios.OPOST
        lflag &= ~(termios.ECHO | termios.ECHONL | termios.ICANON | termios.ISIG | termios.IEXTEN)
        cflag &= ~(
            termios.CSIZE | termios.PARENB | termios.CSTOPB | getattr(termios, "CRTSCTS", 0)
        )
        cflag |= termios.CS8 | termios.CLOCAL | termios.CREAD
        speed = BAUDS[baud]
        attrs[0:6] = [iflag, oflag, cflag, lflag, speed, speed]
        attrs[6][termios.VMIN] = 1  # with 0, Linux returns 0 (looks like EOF) instead of EAGAIN
        attrs[6][termios.VTIME] = 0
        termios.tcsetattr(fd, termios.TCSANOW, attrs)
        termios.tcflush(fd, termios.TCIOFLUSH)  # noise from before we were listening
    except BaseException:
        os.close(fd)
        raise
    return fd


class BreakDecoder:
    """Undoes PARMRK marking of a byte stream from a tty: FF FF is a data byte FF, FF 00 00 is a
    break (counted and dropped); a sequence split across reads is held until it completes. With
    INPCK off the tty layer marks nothing else."""

    def __init__(self):
        self.pending = b""
        self.breaks = 0

    def feed(self, data):
        """(bytes of data, breaks seen in them)."""
        data = self.pending + bytes(data)
        self.pending = b""
        out = bytearray()
        breaks = 0
        i, n = 0, len(data)
        while i < n:
            b = data[i]
            if b != 0xFF:
                out.append(b)
                i += 1
                continue
            if i + 1 >= n:
                self.pending = data[i:]
                break
            nxt = data[i + 1]
            if nxt == 0xFF:
                out.append(0xFF)
                i += 2
            elif nxt == 0x00:
                if i + 2 >= n:
                    self.pending = data[i:]
                    break
                if data[i + 2] == 0x00:
                    breaks += 1
                else:
                    out.append(data[i + 2])  # a marked character (not made with INPCK off)
                i += 3
            else:
                out.append(b)
                i += 1
        self.breaks += breaks
        return bytes(out), breaks


def modem_lines(fd):
    """The TIOCMGET modem-line bits of fd, or None where the tty has none (a pty, a gadget)."""
    try:
        got = fcntl.ioctl(fd, termios.TIOCMGET, struct.pack("i", 0))
    except OSError:
        return None
    return struct.unpack("i", got)[0]


class TtyConsole:
    def __init__(self, path, baud, make_console, log, reopen_s=2.0, out_limit=16384,
                 tick_s=1.0, lines=modem_lines):  # fmt: skip
        """make_console(write, where) -> agent.core.console.session.Console. lines(fd) gives
        the modem-line bits (TIOCM_*) or None (injected by tests: a pty has no carrier)."""
        if baud not in BAUDS:
            raise ValueError("console baud %r: expected one of %s" % (baud, sorted(BAUDS)))
        self.path = path
        self.baud = baud
        self.make_console = make_console
        self.log = log
        self.reopen_s = reopen_s
        self.out_limit = out_limit
        self.tick_s = tick_s
        self.console = None
        self.out = None
        self.sessions = 0  # times the line was opened
        self.losses = 0
        self.lines = lines
        self.resets = 0  # sessions ended by a break or a carrier drop

    async def run(self):
        while True:
            try:
                fd = open_raw(self.path, self.baud)
            except OSError as e:
                # One line, then a summary per window while it stays away (Log.repeating);
                # "serial console open" says when it is back.
                self.log.repeating(("console", "port"), WARNING, "console",
                                   "serial port unavailable; retrying", port=self.path,
                                   error=e.strerror or str(e))  # fmt: skip
                await asyncio.sleep(self.reopen_s)
                continue
            self.sessions += 1
            self.log.info("console", "serial console open", port=self.path, baud=self.baud)
            try:
                await self._serve(fd)
            except LineLost as e:
                self.losses += 1
                self.log.warning("console", "serial line lost", port=self.path, error=str(e))
            finally:
                if self.console is not None:
                    self.console.hangup("serial line lost")
                if self.out is not None:
                    self.out.close()
                os.close(fd)
            await asyncio.sleep(self.reopen_s)

    async def _serve(self, fd):
        aloop = asyncio.get_running_loop()
        self.out = OutBuffer(fd, aloop, self.out_limit)
        con = self.make_console(self.out.write, "serial")
        self.console = con
        decoder = BreakDecoder()
        carrier = None  # None: never seen on (the line may not carry it); then True or False
        con.start()
        while True:
            data = await self._read(fd, aloop)
            if self.out.lost is not None:
                raise LineLost(self.out.lost)
            if data:
                data, breaks = decoder.feed(data)
                if breaks:
                    self._reset(con, "break on the line")
                if data:
                    await con.feed(data)
            else:
                con.tick()
                bits = self.lines(fd)
                on = None if bits is None else bool(bits & termios.TIOCM_CAR)
                if on:
                    carrier = True
                elif on is False and carrier:
                    carrier = False
                    self._reset(con, "carrier lost: the terminal went away")

    def _reset(self, con, why):
        self.resets += 1
        self.log.info("console", "line reset", port=self.path, why=why)
        con.line_reset(why)

    async def _read(self, fd, aloop):
        """Bytes from fd, or b"" after tick_s with nothing; raises LineLost."""
        for attempt in (0, 1):
            try:
                data = os.read(fd, 1024)
            except BlockingIOError:
                data = None
            except OSError as e:
                raise LineLost(e.strerror or str(e)) from e
            if data is not None:
                if data == b"":
                    raise LineLost("end of file (the far end closed)")
                return data
            if attempt:
                return b""
            # No asyncio.wait_for here: on 3.11 it can swallow a cancellation that races with
            # the inner future completing, and then this task would never stop.
            ready = aloop.create_future()

            def wake(ready=ready):
                if not ready.done():
                    ready.set_result(None)

            aloop.add_reader(fd, wake)
            timer = aloop.call_later(self.tick_s, wake)
            try:
                await ready
            finally:
                timer.cancel()
                aloop.remove_reader(fd)
        return b""
