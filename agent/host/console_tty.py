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
- Line settings: raw 8N1, no echo or translation by the kernel, CLOCAL (no modem lines), no
  XON/XOFF or RTS/CTS flow control (a terminal that never reads must not stop our writes).
"""

import asyncio
import os
import termios

from agent.core.config.tables import STANDARD_BAUDS
from agent.core.console.output import DROP_NOTE, BoundedOutput, LineLost  # noqa: F401 (re-exported)

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
        iflag &= ~(termios.IGNBRK | termios.BRKINT | termios.PARMRK | termios.ISTRIP
                   | termios.INLCR | termios.IGNCR | termios.ICRNL | termios.IXON
                   | termios.IXOFF | termios.IXANY | termios.INPCK)  # fmt: skip
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


class TtyConsole:
    def __init__(self, path, baud, make_console, log, reopen_s=2.0, out_limit=16384,
                 tick_s=1.0):  # fmt: skip
        """make_console(write, where) -> agent.core.console.session.Console."""
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

    async def run(self):
        down_since = None
        while True:
            try:
                fd = open_raw(self.path, self.baud)
            except OSError as e:
                if down_since is None:
                    down_since = True
                    self.log.warning("console", "serial port unavailable; retrying",
                                     port=self.path, error=e.strerror or str(e))  # fmt: skip
                await asyncio.sleep(self.reopen_s)
                continue
            down_since = None
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
        con.start()
        while True:
            data = await self._read(fd, aloop)
            if self.out.lost is not None:
                raise LineLost(self.out.lost)
            if data:
                await con.feed(data)
            else:
                con.tick()

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
