"""The console on a board UART (MicroPython): the technician's USB-serial cable on the ESP32.

    con = UartConsole("uart2", 115200, make_console, log)   # make_console(write, where)
    task = asyncio.create_task(con.run())                   # until cancelled

Same invariants as the host's agent/host/console_tty.py (the agent never waits on the
technician's terminal):
- Output goes through UartOut, at most `out_limit` bytes held; past that, output is dropped and
  a note saying how much is written once the terminal takes bytes again. uart.write() is called
  only when txdone() says the line is idle and with at most `chunk` bytes (<= the UART's TX
  buffer), so it never waits for buffer space: a UART held by flow control, or a USB-CDC host that
  never reads, costs at most `out_limit` bytes of RAM and nothing else.
- Input is read only between commands, `read_max` bytes per poll, so a flood of input is held by
  the UART driver's RX buffer (which drops on overflow), never by us.
- The UART is made with timeout=0; the task polls uart.any() every `poll_ms` (the cost of a
  serial console on a board with no fd to wait on: one wake-up per poll_ms, about 50 a second).
- A UART error (OSError) ends the session (logged out, half-typed line forgotten) and the UART is
  made again after `reopen_s`.
- A break on the line ends a logged-in session (Console.line_reset): on firmware whose
  machine.UART has irq() with IRQ_BREAK (the ESP32 port), the handler counts breaks and the
  serve loop acts on them. A bare UART has no carrier line, and a USB-serial cable pulled from
  the laptop shows nothing here unless its TX falls to a break: the session then ends by the
  console's idle timeout.
"""

import asyncio

from agent.board.uart import PINS, _sleep_ms, uart_id
from agent.core.compat import monotonic
from agent.core.console.output import DROP_NOTE, BoundedOutput, LineLost  # noqa: F401 (re-exported)
from agent.core.log import WARNING


class UartOut(BoundedOutput):
    """Bounded, non-blocking output to a machine.UART (see the module invariants)."""

    def __init__(self, uart, limit=4096, chunk=128):
        BoundedOutput.__init__(self, limit)
        self.uart = uart
        self.chunk = chunk
        self.written = 0
        self._done = getattr(uart, "txdone", None)

    def pump(self):
        """Hand the UART one chunk if its line is idle. Never waits."""
        if not self.buf or self.lost is not None:
            return
        try:
            if self._done is not None and not self._done():
                return
            chunk = self.buf[: self.chunk]
            n = self.uart.write(chunk)
        except OSError as e:
            self.lost = e
            self.buf = b""
            return
        n = len(chunk) if n is None else n
        self.written += n
        self.sent(n)


class UartConsole:
    def __init__(self, port, baud, make_console, log, pins=None, out_limit=4096, tick_s=1.0,
                 poll_ms=20, reopen_s=2.0, chunk=128, read_max=128):  # fmt: skip
        """make_console(write, where) -> agent.core.console.session.Console."""
        if uart_id(port) is None:
            raise ValueError('console port %r: expected "uart<n>" on a board' % (port,))
        self.port = port
        self.baud = baud
        self.make_console = make_console
        self.log = log
        self.pins = pins  # None: the board table agent.board.uart.PINS
        self.out_limit = out_limit
        self.tick_s = tick_s
        self.poll_ms = poll_ms
        self.reopen_s = reopen_s
        self.chunk = chunk
        self.read_max = read_max
        self.console = None
        self.out = None
        self.uart = None
        self.sessions = 0  # times the UART was made
        self.losses = 0
        self.breaks = 0  # breaks the UART reported (IRQ_BREAK), counted by the handler
        self.resets = 0  # sessions ended by a break

    def _open(self):
        import machine

        p = (PINS if self.pins is None else self.pins).get(self.port) or {}
        kw = {
            "baudrate": self.baud,
            "bits": 8,
            "parity": None,
            "stop": 1,
            "timeout": 0,
            "timeout_char": 0,
            "rxbuf": 512,  # 44 ms of input at 115200 between two polls of 20 ms
            "txbuf": max(256, self.chunk),  # one chunk always fits: write() never waits
        }
        for key in ("tx", "rx"):
            if p.get(key) is not None:
                kw[key] = p[key]
        uart = machine.UART(uart_id(self.port), **kw)
        trigger = getattr(machine.UART, "IRQ_BREAK", None)
        if trigger is not None and hasattr(uart, "irq"):
            uart.irq(handler=self._on_break, trigger=trigger)
        return uart

    def _on_break(self, uart):
        self.breaks += 1  # a soft IRQ: count only; the serve loop ends the session

    async def run(self):
        while True:
            try:
                uart = self._open()
            except (ImportError, OSError, ValueError, TypeError) as e:
                self.log.repeating(("console", "port"), WARNING, "console",
                                   "serial port unavailable; retrying", port=self.port,
                                   error=str(e))  # fmt: skip
                await _sleep_ms(int(self.reopen_s * 1000))
                continue
            self.uart = uart
            self.sessions += 1
            self.log.info("console", "serial console open", port=self.port, baud=self.baud)
            try:
                await self._serve(uart)
            except LineLost as e:
                self.losses += 1
                self.log.warning("console", "serial line lost", port=self.port, error=str(e))
            finally:
                if self.console is not None:
                    self.console.hangup("serial line lost")
                try:
                    uart.deinit()
                except Exception:  # noqa: BLE001, S110 - the UART is being given up anyway
                    pass
            await _sleep_ms(int(self.reopen_s * 1000))

    async def _serve(self, uart):
        self.out = out = UartOut(uart, self.out_limit, self.chunk)
        con = self.make_console(out.write, "serial")
        self.console = con
        con.start()
        pump = asyncio.create_task(self._pump(out))
        next_tick = monotonic() + self.tick_s
        breaks = self.breaks
        try:
            while True:
                if out.lost is not None:
                    raise LineLost(str(out.lost))
                if self.breaks != breaks:
                    breaks = self.breaks
                    self.resets += 1
                    con.line_reset("break on the line")
                try:
                    n = uart.any()
                    data = uart.read(min(n, self.read_max)) if n else None
                except OSError as e:
                    raise LineLost("read: %s" % e) from None
                if data:
                    await con.feed(data)
                now = monotonic()
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    con.tick()
                await _sleep_ms(self.poll_ms)
        finally:
            pump.cancel()

    async def _pump(self, out):
        """Keeps output moving while a long command runs (feed() does not return meanwhile)."""
        while True:
            out.pump()
            await _sleep_ms(self.poll_ms // 2 or 1)
