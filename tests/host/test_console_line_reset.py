"""The serial console ends a logged-in session when the line says the terminal may have changed
hands (issue 12, point 11): a break, or the carrier (DCD) dropping after it was seen on.

The console runs on a real pty with the real TtyConsole, Console and ConsoleFacade. A pty carries
no break and no modem lines (Linux's pty driver has no break_ctl, and TIOCMGET fails on it), so:
- the break is checked where it is decoded: BreakDecoder on the exact bytes the tty layer gives
  with PARMRK (FF 00 00 for a break, FF FF for a data byte FF), and on the pty that the line is
  opened with PARMRK (a data byte FF written by the terminal arrives doubled and is decoded back);
- the carrier is read through TtyConsole's `lines` hook, the one place a stand-in replaces the
  TIOCMGET ioctl (the modem lines are silicon this machine does not have).
"""

import asyncio
import os
import termios
import time

from agent.core.config.validate import validate
from agent.core.console import auth
from agent.core.console.facade import ConsoleFacade
from agent.core.console.session import Console
from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from agent.host.console_tty import BreakDecoder, TtyConsole, modem_lines, open_raw

PIN = "6024"
HASH = auth.make_hash(PIN, iterations=100)


def test_break_decoder_undoes_parmrk_marking():
    d = BreakDecoder()
    assert d.feed(b"status\r") == (b"status\r", 0)
    assert d.feed(b"ab\xff\x00\x00cd") == (b"abcd", 1)  # a break between two keys
    assert d.feed(b"\xff\xff") == (b"\xff", 0)  # a data byte FF (noise) stays data
    # Sequences split across reads are held until they complete.
    assert d.feed(b"x\xff") == (b"x", 0)
    assert d.feed(b"\x00") == (b"", 0)
    assert d.feed(b"\x00y") == (b"y", 1)
    assert d.feed(b"\xff") == (b"", 0)
    assert d.feed(b"\xffz") == (b"\xffz", 0)
    assert d.breaks == 2


def test_the_console_line_is_opened_with_parmrk():
    master, slave = os.openpty()
    try:
        fd = open_raw(os.ttyname(slave), 115200)
        try:
            iflag = termios.tcgetattr(fd)[0]
            assert iflag & termios.PARMRK
            assert not iflag & (termios.IGNBRK | termios.BRKINT | termios.INPCK)
            os.write(master, b"a\xffb")
            time.sleep(0.1)
            assert os.read(fd, 64) == b"a\xff\xffb"  # the tty layer marks FF as FF FF
        finally:
            os.close(fd)
    finally:
        os.close(master)
        os.close(slave)
    assert modem_lines(master) is None or isinstance(modem_lines(master), int)


class Lines:
    """The carrier as the test sets it (TIOCM_CAR on or off), or None: no modem lines."""

    def __init__(self):
        self.bits = None

    def __call__(self, fd):
        return self.bits


def rig(tmp_lines):
    console = {"enabled": True, "port": "/dev/null", "pin_hash": HASH}
    cfg = validate({"site": {"id": "s1", "kind": "wifi"}, "console": console})
    log_lines = []
    log = Log(write=log_lines.append)
    loop = Loop("s1", MemoryQueue(), lambda: 0.0, log)
    facade = ConsoleFacade(cfg, loop, loop.queue, log=log)
    access = auth.Access(HASH, idle_timeout=600)
    made = []

    def make_console(write, where):
        con = Console(facade, access, write, where=where, log=log)
        made.append(con)
        return con

    master, slave = os.openpty()
    tty = TtyConsole(os.ttyname(slave), 115200, make_console, log, tick_s=0.05,
                     lines=tmp_lines)  # fmt: skip
    return tty, master, slave, made, log_lines


class Screen:
    def __init__(self, master):
        self.master = master
        self.text = ""
        os.set_blocking(master, False)

    def read(self):
        try:
            self.text += os.read(self.master, 65536).decode(errors="replace")
        except BlockingIOError:
            pass
        return self.text

    async def until(self, what, timeout=10.0):
        end = time.monotonic() + timeout
        while what not in self.read():
            assert time.monotonic() < end, "no %r on the screen: %r" % (what, self.text[-300:])
            await asyncio.sleep(0.02)


def run_console(scenario):
    lines = Lines()
    tty, master, slave, made, log_lines = rig(lines)

    async def main():
        task = asyncio.create_task(tty.run())
        try:
            await scenario(tty, Screen(master), lines, made)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    try:
        asyncio.run(main())
    finally:
        os.close(master)
        os.close(slave)
    return log_lines


async def logged_in(scr, made):
    await scr.until("]> ")
    os.write(scr.master, b"login\r")
    await scr.until("PIN: ")
    os.write(scr.master, PIN.encode() + b"\r")
    await scr.until("logged in;")
    assert made[-1].user


def test_carrier_drop_after_carrier_ends_the_session():
    async def scenario(tty, scr, lines, made):
        lines.bits = termios.TIOCM_CAR | termios.TIOCM_DSR  # a terminal with DTR up
        await logged_in(scr, made)
        await asyncio.sleep(0.2)  # a few ticks see the carrier on
        lines.bits = termios.TIOCM_DSR  # the laptop closed the port: DTR, so our DCD, drops
        await scr.until("session ended (carrier lost: the terminal went away)")
        assert not made[-1].user and made[-1].access.lock.holder is None
        os.write(scr.master, b"devices\r")
        await scr.until("devices needs a login")
        assert tty.resets == 1

    log = "\n".join(run_console(scenario))
    assert "console: line reset" in log and "console: logout" in log


def test_no_carrier_ever_seen_means_no_carrier_watch():
    async def scenario(tty, scr, lines, made):
        lines.bits = 0  # a three-wire cable: DCD never on
        await logged_in(scr, made)
        await asyncio.sleep(0.3)
        assert made[-1].user and tty.resets == 0
        lines.bits = None  # a pty or a gadget port: no modem lines at all
        await asyncio.sleep(0.3)
        assert made[-1].user and tty.resets == 0

    run_console(scenario)


def test_a_data_byte_ff_is_noise_not_a_break():
    async def scenario(tty, scr, lines, made):
        await logged_in(scr, made)
        os.write(scr.master, b"stat\xffus\r")
        await scr.until("line noise (1 bytes not understood)")
        assert made[-1].user and tty.resets == 0

    run_console(scenario)
