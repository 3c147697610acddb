"""The console's line discipline and commands over a real ConsoleFacade, Loop and queue (portable).

The terminal is played by feeding bytes and reading what the console wrote; device readings come
from a stand-in driver, the queue is the real MemoryQueue or Store (on MemFs)."""

from agent.core.config.validate import validate
from agent.core.console import auth
from agent.core.console.facade import ConsoleFacade
from agent.core.console.line import LineDiscipline
from agent.core.console.session import Console
from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.fsio import MemFs
from agent.core.store.queue import MemoryQueue
from agent.core.store.store import Store
from drivers.base import Driver

from support import run

PIN = "2580"
SECRET = "hunter2-do-not-leak"
HASH = auth.make_hash(PIN, iterations=50)


class Meter(Driver):
    INFO = {"name": "meter", "version": "1", "maturity": "experimental", "transport": "none"}

    def __init__(self, device):
        Driver.__init__(self, device)
        self.calls = 0
        self.fail = None
        self.status = "OL"
        self.runtime = None  # battery.runtime in seconds, when the UPS reports one

    async def read(self):
        self.calls += 1
        self.raw = {"Q1": "(230.0 140.0 229.0 034 50.0 2.2%d 35.0 00001000" % self.calls}
        if self.fail:
            from agent.core.errors import DeviceError

            raise DeviceError(self.fail)
        out = [("battery.charge", 90.0 + self.calls, "%"), ("ups.status", self.status, "")]
        if self.runtime is not None:
            out.append(("battery.runtime", self.runtime, "s"))
        return out


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


class Screen:
    """What the terminal received, as text."""

    def __init__(self):
        self.data = b""

    def __call__(self, b):
        assert isinstance(b, bytes)
        self.data += b

    def take(self):
        out = self.data.decode()
        self.data = b""
        return out


def make(durable=False, clock=None, restart=None, access=None, where="serial", devices=(),
         drivers=None, monitor=False):
    raw = {
        "site": {"id": "hue-bts-01", "kind": "bts", "name": "Hue commune BTS"},
        "devices": [
            {"id": "ups", "driver": "megatec", "serial": {"port": "/dev/ttyUSB0"}},
            {"id": "ups2", "driver": "megatec", "serial": {"port": "/dev/ttyUSB1"}},
        ],
        "uplink": {"brokers": [{"host": "127.0.0.1", "ca_file": "/ca.pem", "username": "u",
                                "password": SECRET}]},
        "console": {"enabled": True, "port": "/dev/ttyGS0", "pin_hash": HASH},
    }  # fmt: skip
    raw["devices"] += list(devices)
    cfg = validate(raw, drivers=drivers)
    log = Log(write=lambda s: None)
    q = Store("/q", 1 << 20, fs=MemFs()) if durable else MemoryQueue()
    mon = None
    if monitor:  # the real site state and alarm engine, as the runner wires them
        from agent.core.clock import Clock as AgentClock
        from agent.core.monitor.pipeline import SiteMonitor

        agent_clock = AgentClock("boot-1")
        agent_clock.trust(None, "system")
        mon = SiteMonitor("hue-bts-01", "bts", agent_clock, log=log)
    loop = Loop("hue-bts-01", q, lambda: 0.0, log, commit_interval=0.02, monitor=mon)
    drvs = {}
    for d in cfg.devices:
        dev = {"id": d["id"], "driver": "meter", "interval": 3600, "timeout": 1, "jitter": 0.0}
        drvs[d["id"]] = Meter(dev)
        loop.add_device(dev, drvs[d["id"]])
    fac = ConsoleFacade(cfg, loop, q, log=log, restart=restart, runtime="TestPython 1.0")
    if mon is not None:
        fac.alarms = mon.engine
    clock = clock or Clock()
    acc = access or auth.Access(HASH, idle_timeout=60, clock=clock)
    scr = Screen()
    con = Console(fac, acc, scr, where=where, clock=clock, log=log)
    return con, scr, loop, drvs


def type_(con, scr, text):
    run(con.feed(text.encode() if isinstance(text, str) else text))
    return scr.take()


def login(con, scr):
    type_(con, scr, "login\r")
    out = type_(con, scr, PIN + "\r")
    assert "logged in" in out, out
    return out


def check_screen(out):
    for line in out.split("\r\n"):
        assert len(line) <= 80, line
        for ch in line:
            assert ch == "\x08" or " " <= ch <= "~", repr(line)


# --- line discipline --------------------------------------------------------------------


def lines(ld, data):
    return [v for k, v in ld.feed(data) if k == "line"]


def test_cr_lf_and_crlf_each_end_one_line_even_split_across_reads():
    ld = LineDiscipline()
    assert lines(ld, b"a\rb\nc\r\nd") == ["a", "b", "c"]
    assert lines(ld, b"\r") == ["d"]
    assert lines(ld, b"\n") == []  # the LF of a CRLF split across two reads
    assert lines(ld, b"\n") == [""]  # a second LF is an empty line
    assert lines(ld, b"x\r\r\n") == ["x", ""]


def test_backspace_and_delete_edit_and_echo_rubout():
    ld = LineDiscipline()
    ev = ld.feed(b"stq\x08a\x7fatus\r")
    assert ("line", "status") in ev
    echo = b"".join(v for k, v in ev if k == "echo")
    assert echo == b"stq\x08 \x08a\x08 \x08atus\r\n"
    assert lines(ld, b"\x08\x08ok\r") == ["ok"]  # rubout on an empty line does nothing


def test_escape_sequences_are_swallowed_not_typed():
    ld = LineDiscipline()
    data = b"\x1b[Ast\x1b[1;5Dat\x1bOPus\x1b]0;title\x07\x1b]2;t\x1b\\\x1bx\r"
    assert lines(ld, data) == ["status"]
    assert ld.noise_total == 0


def test_noise_throws_the_line_away_with_a_message():
    ld = LineDiscipline()
    ev = ld.feed(b"sta\xfe\x01tus\r")
    assert ("error", "line noise (2 bytes not understood); line ignored") in ev
    assert not [v for k, v in ev if k == "line"]
    assert lines(ld, b"status\r") == ["status"]  # clean again: works at once
    ev = ld.feed(b"\x1b[" + b"1" * 40 + b"m\r")  # an escape that never ends is noise too
    assert [k for k, v in ev if k == "error"] == ["error"]


def test_long_line_is_refused_whole_and_memory_stays_bounded():
    ld = LineDiscipline(max_line=10)
    ev = ld.feed(b"x" * 5000)
    assert len(ld.buf) == 10
    ev = ld.feed(b"\x7f\r")
    assert ("error", "line too long (max 10 characters); ignored") in ev
    assert lines(ld, b"0123456789\r") == ["0123456789"]


def test_ctrl_c_cancels_and_mask_hides_the_pin():
    ld = LineDiscipline()
    ev = ld.feed(b"reb\x03")
    assert ("cancel", None) in ev and ld.buf == []
    ld.mask = True
    ev = ld.feed(b"1234\r")
    assert b"".join(v for k, v in ev if k == "echo") == b"****\r\n"
    assert lines(LineDiscipline(echo=False), b"ab\r") == ["ab"]


# --- access -----------------------------------------------------------------------------


def test_banner_and_prompt_show_site_and_state():
    con, scr, loop, _ = make()
    con.start()
    out = scr.take()
    assert "site hue-bts-01" in out and out.endswith("hue-bts-01 [ok]> ")


def test_only_help_and_status_run_without_login():
    con, scr, _, _ = make()
    out = type_(con, scr, "help\r")
    assert "* readings [device]" in out and "  status" in out
    check_screen(out)
    out = type_(con, scr, "status\r")
    assert "hue-bts-01 (bts) Hue commune BTS" in out and "not logged in" in out
    for cmd in ("devices", "readings", "alarms", "queue", "poll ups", "uplink test", "drain",
                "export /tmp/x", "config show", "config check", "interval ups 5", "log",
                "version", "reboot"):  # fmt: skip
        out = type_(con, scr, cmd + "\r")
        assert "needs a login" in out, (cmd, out)


def test_login_with_pin_masked_then_logout():
    con, scr, _, _ = make()
    out = type_(con, scr, "login\r")
    assert out.endswith("PIN: ")
    out = type_(con, scr, PIN + "\r")
    assert PIN not in out and "****" in out and "logged in" in out
    assert "Hue commune BTS" not in type_(con, scr, "version\r")
    assert "needs a login" not in type_(con, scr, "version\r")
    assert "logged out" in type_(con, scr, "logout\r")
    assert "needs a login" in type_(con, scr, "version\r")


def test_wrong_pins_lock_logins_with_growing_delays():
    clock = Clock()
    con, scr, _, _ = make(clock=clock)
    for _ in range(2):
        type_(con, scr, "login\r")
        assert "wrong PIN\r\n" in type_(con, scr, "0000\r")
    type_(con, scr, "login\r")
    assert "logins locked for 2s" in type_(con, scr, "0000\r")
    out = type_(con, scr, "login\r")
    assert "too many wrong PINs" in out and "not checked" in out
    out = type_(con, scr, PIN + "\r")  # the PIN the technician types anyway: masked, unchecked
    assert PIN not in out and "****" in out and "PIN not checked: too many wrong PINs" in out
    assert not con.user
    clock.t += 2.5
    type_(con, scr, "login\r")
    assert "logins locked for 4s" in type_(con, scr, "1111\r")
    clock.t += 4.5
    login(con, scr)
    assert con.access.guard.failures == 0


def test_lockout_holds_across_sessions_and_one_session_at_a_time():
    clock = Clock()
    con, scr, _, _ = make(clock=clock)
    other = Console(con.facade, con.access, Screen(), where="socket", clock=clock)
    login(con, scr)
    other_scr = other._write
    run(other.feed(b"login\r"))
    assert "another session is logged in (serial)" in other_scr.take()
    con.hangup("cable pulled")
    assert not con.user and con.access.lock.holder is None
    for _ in range(3):
        run(other.feed(b"login\r9999\r"))
    assert "locked" in other_scr.take()
    out = type_(con, scr, "login\r")
    assert "too many wrong PINs" in out  # a fresh connection does not reset the guard


def test_idle_timeout_ends_the_session():
    clock = Clock()
    con, scr, _, _ = make(clock=clock)
    login(con, scr)
    clock.t += 59
    assert not con.tick()
    type_(con, scr, "\r")  # any input counts as activity
    clock.t += 61
    assert con.tick()
    assert "session closed after 61s without input" in scr.take()
    assert not con.user and con.access.lock.holder is None
    assert "needs a login" in type_(con, scr, "devices\r")
    type_(con, scr, "login\r")
    clock.t += 61  # a PIN prompt left unanswered goes back to the command prompt
    assert con.tick() and con.mode is None


def test_no_pin_hash_means_no_login():
    clock = Clock()
    con, scr, _, _ = make(access=auth.Access(None, clock=clock), clock=clock)
    assert "nobody can log in" in type_(con, scr, "login\r")
    assert "hue-bts-01" in type_(con, scr, "status\r")


# --- commands ---------------------------------------------------------------------------


def test_every_command_fits_80_columns_and_hides_secrets():
    restarted = []
    con, scr, loop, drvs = make(durable=True, restart=lambda: restarted.append(1))
    run(loop.poll_all())
    drvs["ups2"].fail = (
        "no answer within 1s: check the RS-232 cable to the UPS in the cabinet " * 2
    )
    run(loop.poll_all())
    login(con, scr)
    screens = {}
    for cmd in ("help", "status", "devices", "readings", "readings ups", "alarms", "queue",
                "poll ups", "poll ups2", "uplink test", "drain", "config show", "config check",
                "interval ups 30", "log 5", "version", "export rel/path"):  # fmt: skip
        out = type_(con, scr, cmd + "\r")
        check_screen(out)
        assert SECRET not in out and HASH.split("$")[3] not in out, cmd
        assert "internal" not in out, (cmd, out)
        screens[cmd] = out
    assert 'password = "<secret>"' in screens["config show"]
    assert 'pin_hash = "<secret>"' in screens["config show"]
    assert "ups2: no answer within 1s" in screens["devices"] and "STALE" in screens["devices"]
    row = [x for x in screens["readings ups"].split("\r\n") if "battery.charge" in x][0]
    assert row.split() == ["ups", "battery.charge", "92", "%", "0s", "good"], row
    assert "ups2" not in screens["readings ups"]
    assert "ups: ok in" in screens["poll ups"] and "Q1  (230.0" in screens["poll ups"]
    assert "ups2: FAILED after" in screens["poll ups2"] and "Q1" in screens["poll ups2"]
    assert "ups: polled every 30s" in screens["interval ups 30"]
    assert loop.sched.state("ups").interval == 30
    assert "routine  " in screens["queue"] and "budget" in screens["queue"]
    assert "OK      config in use" in screens["config check"]
    assert "TestPython 1.0" in screens["version"]
    assert "absolute path" in screens["export rel/path"]
    assert "no [uplink]" not in screens["uplink test"] and "FAILED" in screens["uplink test"]
    assert "no uplink configured" in screens["drain"]
    assert "device stale" in screens["log 5"]
    assert not restarted


def test_bad_arguments_get_usage_not_errors():
    con, scr, _, _ = make()
    login(con, scr)
    out = type_(con, scr, "readings nope\r")
    assert "no device 'nope' here (devices: ups, ups2, site)" in out
    assert "usage: poll <device>" in type_(con, scr, "poll\r")
    assert "no device" in type_(con, scr, "poll nope\r")
    assert "not a number" in type_(con, scr, "interval ups soon\r")
    assert "expected a number from 1 to 86400, got 0.1" in type_(con, scr, "interval ups 0.1\r")
    assert "usage: log [n]" in type_(con, scr, "log 9999\r")
    assert "usage: config show | config check" in type_(con, scr, "config\r")
    assert "usage: uplink test" in type_(con, scr, "uplink\r")
    assert "unknown command 'frobnicate'" in type_(con, scr, "frobnicate\r")
    out = type_(con, scr, "   \r")
    assert out == "   \r\nhue-bts-01 [ok]> "


def test_export_writes_the_backlog_and_refuses_to_overwrite():
    con, scr, loop, _ = make(durable=True)
    run(loop.poll_all())
    login(con, scr)
    out = type_(con, scr, "export /usb/backlog.jsonl\r")
    assert "wrote 6 records to /usb/backlog.jsonl" in out, out
    fs = loop.queue.fs
    body = fs.files["/usb/backlog.jsonl"]
    assert body.count(b"\n") == 6 and b'"lane"' in body
    assert "/usb/backlog.jsonl.part" not in fs.files
    assert "exists; choose another name" in type_(con, scr, "export /usb/backlog.jsonl\r")
    mem, mscr, _, _ = make()
    login(mem, mscr)
    assert "in memory only" in type_(mem, mscr, "export /usb/x.jsonl\r")


def test_reboot_asks_first_and_only_yes_restarts():
    restarted = []
    con, scr, _, _ = make(restart=lambda: restarted.append(1))
    login(con, scr)
    out = type_(con, scr, "reboot\r")
    assert out.endswith("Type yes to confirm: ")
    assert "not restarted" in type_(con, scr, "y\r") and not restarted
    type_(con, scr, "reboot\r")
    type_(con, scr, "\x03")  # Ctrl-C abandons the question
    type_(con, scr, "yes\r")
    assert not restarted
    type_(con, scr, "reboot\r")
    assert "restarting the agent" in type_(con, scr, "YES\r") and restarted == [1]


def test_prompt_state_follows_the_agent():
    con, scr, loop, drvs = make()
    drvs["ups"].fail = "cable"
    run(loop.poll_all())
    out = type_(con, scr, "\r")
    assert out.endswith("hue-bts-01 [1 stale]> "), out
    loop.store_error = "QueueError: disk full"
    assert type_(con, scr, "\r").endswith("[store failing, 1 stale]> ")


def test_garbage_never_runs_a_command_and_messages_are_rate_limited():
    clock = Clock()
    con, scr, _, _ = make(clock=clock)
    out = type_(con, scr, b"stat\x9dus\r" + bytes(range(256)) * 4 + b"\r\r\r")
    assert out.count("line noise") == 1 and "hue-bts-01 (bts)" not in out
    assert "\x1b" not in out and "\x9d" not in out  # nothing but printable ASCII echoes back
    clock.t += 3
    assert "hue-bts-01 (bts)" in type_(con, scr, b"\r\nstatus\r\n")


def test_a_failing_facade_costs_one_command_not_the_console():
    con, scr, _, _ = make()
    login(con, scr)

    def broken():
        raise RuntimeError("boom")

    con.facade.queue_stats = broken
    assert "error: internal: RuntimeError: boom" in type_(con, scr, "queue\r")
    assert "TestPython" in type_(con, scr, "version\r")


def test_type_ahead_pin_is_masked_too():
    # A paste or a fast typist: the PIN arrives in the same read as "login"; the mask must
    # already be on when its characters are echoed.
    con, scr, _, _ = make()
    out = type_(con, scr, "login\r" + PIN + "\rversion\r")
    assert PIN not in out and "PIN: ****\r\n" in out and "TestPython" in out


def test_habit_keys_are_ignored_not_noise():
    ld = LineDiscipline()
    assert lines(ld, b"\x0cst\x00a\x04t\x09u\x1as\x07\r") == ["status"]
    assert ld.noise_total == 0


class FreeOptions:
    """A driver without an OPTIONS table: its options pass unchecked and count as secrets."""

    OPTIONS = None

    def __init__(self, device):
        pass


def test_config_show_hides_options_unless_the_driver_declares_them_public():
    import drivers

    def lookup(name):
        return FreeOptions if name == "voltronic" else drivers.load(name)

    devices = [
        {"id": "inv", "driver": "voltronic", "serial": {"port": "/dev/ttyUSB3"},
         "options": {"passwd": "inv-pass-1", "level": "inv-level-2"}},
        {"id": "bms", "driver": "pylontech", "serial": {"port": "/dev/ttyUSB4"},
         "options": {"address": 3}},
    ]  # fmt: skip
    con, scr, _, _ = make(devices=devices, drivers=lookup)
    login(con, scr)
    out = type_(con, scr, "config show\r")
    assert "inv-pass-1" not in out and "inv-level-2" not in out, out
    assert 'devices[2].options.passwd = "<secret>"' in out
    assert 'devices[2].options.level = "<secret>"' in out
    assert "devices[3].options.address = 3" in out


# --- the PIN never shows; a session says how it ends (issue 12, 10 and 11) --------------------


def test_the_line_after_a_refused_login_is_a_masked_pin_never_a_command():
    clock = Clock()
    cases = []
    con, scr, _, _ = make(clock=clock)  # locked out
    for _ in range(4):
        type_(con, scr, "login\r0000\r")
    cases.append((con, scr, "too many wrong PINs"))
    con, scr, _, _ = make(clock=clock)  # another session holds the lock
    other = Console(con.facade, con.access, Screen(), where="socket", clock=clock)
    login(other, other._write)
    cases.append((con, scr, "another session is logged in (socket)"))
    con, scr, _, _ = make(access=auth.Access(None, clock=clock), clock=clock)  # no PIN hash
    cases.append((con, scr, "nobody can log in"))
    for con, scr, why in cases:
        out = type_(con, scr, "login\r")
        assert why in out and out.endswith("PIN: "), out
        out = type_(con, scr, PIN + "\r")
        assert PIN not in out and "****" in out, out
        flat = out.replace("\r\n", " ")
        assert "unknown command" not in out and "PIN not checked: " in flat and why in flat, out
        assert not con.user


def test_login_with_an_argument_is_refused_and_never_shows_it():
    con, scr, _, _ = make()
    out = type_(con, scr, b"login 2580\r")
    assert PIN not in out and "login ****" in out, out
    assert "login takes no arguments" in out and not con.user
    out = type_(con, scr, b"LOGIN  25x\x7f80\r")  # any case, edited: still masked
    assert "2" not in out.split("\r\n")[0].replace("LOGIN", ""), out
    assert not con.user


def test_digits_typed_at_the_command_prompt_are_not_repeated():
    con, scr, _, _ = make()
    out = type_(con, scr, PIN + "\r")
    assert out.count(PIN) == 1  # the echo as typed; the answer does not repeat it
    assert "unknown command (digits only, not shown)" in out


def test_login_says_that_logout_ends_the_session():
    out = login(*make()[:2]).replace("\r\n", " ")
    assert "type logout when you leave" in out and "after 60s without input" in out


def test_a_break_or_line_reset_ends_the_session_and_says_so():
    con, scr, _, _ = make()
    login(con, scr)
    type_(con, scr, "devi")  # half a command
    con.line_reset("break on the line")
    out = scr.take()
    assert "session ended (break on the line); login to continue" in out
    assert not con.user and con.access.lock.holder is None
    assert "unknown command 'ces'" in type_(con, scr, "ces\r")  # the half line was forgotten
    con.line_reset("break on the line")  # not logged in: nothing to say
    assert scr.take() == ""


def test_the_default_idle_timeout_is_short():
    from agent.core.config.tables import IDLE_TIMEOUT_S

    assert IDLE_TIMEOUT_S <= 120 and auth.Access(HASH).idle_timeout == IDLE_TIMEOUT_S


# --- status answers the 2 a.m. question first; readings site, poll site (12) ------------------


def test_status_puts_the_site_state_first():
    con, scr, loop, drvs = make(monitor=True)
    out = type_(con, scr, "status\r")
    lines = out.split("\r\n")
    assert lines[1].split() == ["power", "unknown", "(no", "poll", "yet)"], out
    drvs["ups"].status = "OB DISCHRG"
    drvs["ups"].runtime = 3900
    run(loop.poll_all())
    out = type_(con, scr, "status\r")
    check_screen(out)
    assert out.endswith("hue-bts-01 [on battery]> "), out  # the prompt says it too
    lines = [x.rstrip() for x in out.split("\r\n")[1:6]]
    assert lines[0].startswith("power ") and lines[0].endswith("ON BATTERY for 0s"), lines
    assert lines[1].endswith("runtime left  1 h 05 min") or lines[1].split()[-4:] == [
        "1", "h", "05", "min"], lines  # fmt: skip
    assert lines[2].split()[-2:] == ["91", "%"], lines  # the lowest charge of the two UPSes
    assert lines[3].split() == ["backhaul", "unknown"], lines
    assert lines[4].split()[:2] == ["alarms", "none"] or "active" in lines[4], lines
    assert out.index("power") < out.index("site ") < out.index("uptime")


def test_status_counts_alarms_by_severity():
    from agent.core.console import views

    alarms = [{"severity": "critical"}, {"severity": "major"}, {"severity": "major"}]
    pairs = dict(views.site_lines({"power_source": "mains", "backhaul": "down"}, alarms))
    assert pairs["alarms"] == "3 active: 1 critical, 2 major"
    assert pairs["backhaul"] == "DOWN" and pairs["power"] == "mains"
    assert views.hours_minutes(59) == "less than 1 min"
    assert views.hours_minutes(45 * 60) == "45 min" and views.hours_minutes(7260) == "2 h 01 min"


def test_readings_site_and_poll_site_work():
    con, scr, loop, drvs = make(monitor=True)
    login(con, scr)
    out = type_(con, scr, "readings site\r")
    assert "no readings yet" in out and "error" not in out
    out = type_(con, scr, "poll site\r")
    check_screen(out)
    assert "site: ok in" in out and "site.power_source" in out and "mains" in out, out
    assert drvs["ups"].calls == 1 and drvs["ups2"].calls == 1  # every device polled once
    out = type_(con, scr, "readings site\r")
    assert "site.power_source" in out and "site.battery_charge" in out
    assert "ups.status" not in out
    assert "no interval of its own" in type_(con, scr, "interval site 60\r")


def test_a_console_poll_waits_for_a_running_poll_instead_of_doubling_it():
    import asyncio

    con, scr, loop, drvs = make()
    login(con, scr)
    gate = asyncio.Event()
    slow = drvs["ups"]
    calls = []

    async def read():
        calls.append(1)
        await gate.wait()
        return [("battery.charge", 50.0, "%")]

    slow.read = read

    async def scenario():
        scheduled = asyncio.create_task(loop.poll_device("ups"))  # as the schedule starts one
        await asyncio.sleep(0)
        console_poll = asyncio.create_task(con.feed(b"poll ups\r"))
        await asyncio.sleep(0.05)
        gate.set()
        await console_poll
        await scheduled

    run(scenario())
    assert len(calls) == 1 and "ups: ok in" in scr.take()


# --- technician changes are logged with who and where; interval obeys the config (14) ---------


def test_changes_are_logged_with_who_and_where():
    con, scr, loop, _ = make(durable=True, where="socket")
    lines = []
    con.facade.log.write = lines.append
    login(con, scr)
    type_(con, scr, "interval ups 45\r")
    type_(con, scr, "drain\r")
    type_(con, scr, "export /usb/b.jsonl\r")
    text = "\n".join(lines)
    assert "command: interval changed by=console device=ups interval=45.0 was=3600.0 " \
           "where=socket" in text, text
    assert "command: drain requested by=console queued=" in text and "where=socket" in text
    assert "command: backlog exported by=console path=/usb/b.jsonl records=" in text


def test_interval_obeys_the_configs_rules():
    con, scr, loop, _ = make()
    login(con, scr)
    # The stand-in devices have a poll budget (timeout) of 1 s: the interval must exceed it.
    assert "expected more than the poll budget of ups (timeout 1s), got 1" in type_(
        con, scr, "interval ups 1\r")  # fmt: skip
    for bad in ("nan", "inf", "1e300", "86401", "0.5"):
        out = type_(con, scr, "interval ups %s\r" % bad)
        assert "error: interval: expected a number from 1 to 86400" in out, (bad, out)
    assert loop.sched.state("ups").interval == 3600
    assert "polled every 2s" in type_(con, scr, "interval ups 2\r")
