"""The technician's console on a board UART (agent/board/console_uart.py), over a scripted
machine.UART (fake_machine): login and a command, garbage and an overlong line, a terminal whose
TX never drains, a UART that fails and comes back. The console, facade and loop are the real ones
(built as tests/portable/test_console.py builds them). Portable: pytest and MicroPython."""

import asyncio

from test_console import PIN, make

from agent.board import uart as board
from agent.board.console_uart import DROP_NOTE, UartConsole, UartOut
from agent.core.compat import monotonic
from agent.core.console.session import Console
from agent.core.log import Log

import fake_machine
from support import run

UART = 2


def rig(out_limit=4096):
    fake_machine.install()
    board.configure({"uart2": {"tx": 43, "rx": 44}})
    con0, _scr, _loop, _drvs = make()
    made = []

    def make_console(write, where):
        c = Console(con0.facade, con0.access, write, where=where, clock=con0.clock, log=con0.log)
        made.append(c)
        return c

    log = Log(write=lambda s: None)
    uc = UartConsole("uart2", 115200, make_console, log, out_limit=out_limit, poll_ms=5,
                     tick_s=0.05, reopen_s=0.05)  # fmt: skip
    return uc, con0.clock, made


def screen():
    u = fake_machine.UARTS.get(UART)
    return bytes(u.wire).decode() if u is not None else ""


def typed(text):
    fake_machine.UARTS[UART].inject(text.encode() if isinstance(text, str) else text)


async def until(pred, what, timeout=3.0):
    end = monotonic() + timeout
    while not pred():
        if monotonic() > end:
            raise AssertionError("timed out waiting for %s; screen: %r" % (what, screen()[-400:]))
        await asyncio.sleep(0.005)


async def session(uc, script):
    task = asyncio.create_task(uc.run())
    try:
        await script()
    finally:
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass


def board_test(fn):
    """Run the test with the stand-in machine module, and take it out again afterwards so no
    later test in the same interpreter sees it."""

    def test():
        try:
            fn()
        finally:
            fake_machine.uninstall()

    return test


@board_test
def test_login_and_a_command_over_the_uart():
    uc, _clock, made = rig()

    async def script():
        await until(lambda: screen().endswith("]> "), "the prompt")
        u = fake_machine.UARTS[UART]
        assert u.baudrate == 115200 and u.kw["tx"] == 43 and u.kw["rx"] == 44
        assert u.kw["timeout"] == 0 and u.kw["timeout_char"] == 0
        assert "site-agent console, site hue-bts-01" in screen()
        typed("devices\r")
        await until(lambda: "needs a login" in screen(), "the login refusal")
        typed("login\r")
        await until(lambda: screen().endswith("PIN: "), "the PIN prompt")
        typed(PIN + "\r")
        await until(lambda: "logged in" in screen(), "the login")
        assert PIN not in screen() and "****" in screen()  # the PIN echoes as stars
        typed("devices\r")
        await until(lambda: "ups2" in screen().split("devices")[-1], "the device list")
        for line in screen().split("\r\n"):
            assert len(line) <= 80, line
        assert not u.blocked_writes and not u.waiting_writes
        assert made[0].user

    run(session(uc, script))


@board_test
def test_garbage_and_an_overlong_line_are_reported_and_the_console_recovers():
    uc, clock, _made = rig()

    async def script():
        await until(lambda: screen().endswith("]> "), "the prompt")
        typed(b"\x00\xff\xfe\x9b\x81" * 8 + b"\r")
        await until(lambda: "line noise" in screen(), "the noise message")
        clock.t += 5  # past the console's rate limit on noise messages
        typed("x" * 500 + "\r")
        await until(lambda: "line too long (max 200 characters)" in screen(), "the long line")
        typed("help\r")
        await until(lambda: "uplink test" in screen(), "help after the noise")

    run(session(uc, script))


@board_test
def test_a_terminal_that_never_reads_costs_a_bounded_buffer_and_never_stalls_the_agent():
    uc, _clock, made = rig(out_limit=1024)
    p = fake_machine.peer(UART)
    p.stuck = True  # flow control held off / a USB-CDC host that never reads
    beats = [0]

    async def heartbeat():
        while True:
            beats[0] += 1
            await asyncio.sleep(0.005)

    async def script():
        hb = asyncio.create_task(heartbeat())
        await until(lambda: uc.out is not None, "the console to start")
        for _ in range(6):
            typed("help\r")
        await until(lambda: uc.out.dropped > 1000, "output to be dropped")
        typed("login\r" + PIN + "\r")  # input is still taken and acted on
        await until(lambda: made[0].user, "the login while the terminal is stuck")
        u = fake_machine.UARTS[UART]
        held = len(uc.out.buf)
        assert held <= 1024, held
        assert not u.blocked_writes and not u.waiting_writes  # write() never had to wait
        before = beats[0]
        await asyncio.sleep(0.1)
        assert beats[0] - before >= 5, beats  # the loop kept running other tasks
        dropped = uc.out.dropped
        p.stuck = False  # the terminal reads again
        await until(lambda: (DROP_NOTE % dropped).strip() in screen(), "the dropped-bytes note")
        typed("version\r")
        await until(lambda: "TestPython" in screen(), "output after the terminal caught up")
        print("held %d bytes, dropped %d while the terminal did not read" % (held, dropped))
        hb.cancel()

    run(session(uc, script))


@board_test
def test_a_failing_uart_ends_the_session_and_the_console_comes_back():
    uc, _clock, made = rig()
    p = fake_machine.peer(UART)

    async def script():
        await until(lambda: screen().endswith("]> "), "the prompt")
        typed("login\r" + PIN + "\r")
        await until(lambda: made[0].user, "the login")
        p.fail_reads = True
        await until(lambda: uc.losses == 1, "the line loss")
        assert not made[0].user  # logged out: the next person must log in again
        first = fake_machine.UARTS[UART]
        p.fail_reads = False
        await until(lambda: uc.sessions == 2 and screen().endswith("]> "), "the new session")
        assert first.deinited and fake_machine.UARTS[UART] is not first
        assert len(made) == 2 and not made[1].user

    run(session(uc, script))


@board_test
def test_uart_out_drops_beyond_its_limit_and_notes_how_much():
    fake_machine.install()
    import machine

    u = machine.UART(3, 115200)
    out = UartOut(u, limit=100, chunk=40)
    fake_machine.peer(3).stuck = True
    out.write(b"a" * 90)  # first chunk leaves (the line was idle), the rest is held
    out.write(b"b" * 60)  # over the limit: dropped
    assert bytes(u.wire) == b"a" * 40 and len(out.buf) == 50 and out.dropped == 60
    out.pump()
    assert bytes(u.wire) == b"a" * 40  # not idle: nothing more handed over
    fake_machine.peer(3).stuck = False
    end = monotonic() + 1.0
    while out.buf and monotonic() < end:
        out.pump()
    assert bytes(u.wire) == b"a" * 90 + (DROP_NOTE % 60).encode()
    assert out.dropped == 0 and out.dropped_total == 60
    assert not u.blocked_writes and not u.waiting_writes


@board_test
def test_a_break_on_the_uart_ends_the_logged_in_session():
    uc, _clock, made = rig()

    async def script():
        await until(lambda: screen().endswith("]> "), "the prompt")
        u = fake_machine.UARTS[UART]
        assert u.irq_trigger & fake_machine.UART.IRQ_BREAK  # the console asked for breaks
        typed("login\r" + PIN + "\r")
        await until(lambda: made[0].user, "the login")
        u.line_break()  # the terminal went away (or another one was plugged in)
        await until(lambda: "session ended (break on the line)" in screen(), "the reset")
        assert not made[0].user and uc.resets == 1 and uc.sessions == 1  # the line stays open
        typed("devices\r")
        await until(lambda: "devices needs a login" in screen(), "the login refusal")

    run(session(uc, script))
