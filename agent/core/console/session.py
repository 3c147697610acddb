"""The technician's console (portable): one session on one line, commands over ConsoleFacade.

    con = Console(facade, access, write, where="serial")   # write(bytes) must never block
    con.start()                 # banner and prompt
    await con.feed(data)        # bytes from the terminal; runs whole lines as commands
    con.tick()                  # about once a second: idle timeout
    con.hangup("cable pulled")  # the line dropped: log out, forget the half-typed line
    con.line_reset("break")     # the line says someone else may be there: log out, say so

Invariants:
- Only help, status, login and logout/exit run without a login; everything else answers "needs a
  login". A login holds access.lock: one logged-in session in the agent at a time.
- A command that fails prints one "error:" line and the session goes on; nothing from a command
  escapes feed() except cancellation.
- Output is plain ASCII lines ending CRLF, at most 80 columns (console_fmt); secrets are never
  printed (config show prints cfg.redacted(); the PIN echoes as "*").
- `login` always asks for the PIN, masked, and says only after it whether a login was possible
  (locked out, another session, no PIN hash): the line typed after `login` is never run or
  shown. `login` with arguments is refused (line.py masks them as they are typed).
- Changes a technician makes (interval, drain, export) are logged with who and where.
- The transport owns buffering: write() gets whole lines and must drop, not block, when the
  terminal does not read.
"""

from agent.core.compat import monotonic, wall_time
from agent.core.console import auth, fmt
from agent.core.console.line import LineDiscipline
from agent.core.errors import AgentError

MAX_LINE = 200
MAX_LOG = 200
NOISE_EVERY = 2.0  # seconds between "line noise" messages (a noisy line must not flood output)
DRAIN_WAIT = 10.0  # seconds `drain` watches the queue shrink

# name -> (open without login, usage, what it does); the order is the order of `help`.
HELP = (
    ("help", True, "help", "this list"),
    ("status", True, "status", "power, runtime, battery, backhaul, alarms; the agent"),
    ("login", True, "login", "log in with the PIN"),
    ("logout", True, "logout | exit", "log out (exit also closes a socket session)"),
    ("devices", False, "devices", "each device: last poll, stale or not and why"),
    ("readings", False, "readings [device]", "latest value of every metric (site: derived)"),
    ("alarms", False, "alarms", "active alarms"),
    ("queue", False, "queue", "stored records per lane, bytes, oldest and newest"),
    ("poll", False, "poll <device>", "poll now; readings and raw values (site: all)"),
    ("uplink", False, "uplink test", "connect and publish a probe, step by step"),
    ("drain", False, "drain", "send the backlog now"),
    ("export", False, "export <path>", "write the backlog as JSON lines to a file"),
    ("config", False, "config show | check", "the config (secrets hidden) / check the file"),
    ("interval", False, "interval <device> <s>", "poll interval until restart"),
    ("log", False, "log [n]", "the last n log lines (default 20)"),
    ("version", False, "version", "agent version and runtime"),
    ("reboot", False, "reboot", "restart the agent (asks first)"),
)
OPEN = ("help", "status", "login", "logout", "exit", "quit", "")


class Console:
    def __init__(self, facade, access, write, where="serial", echo=True, clock=monotonic,
                 log=None, sleep=None):  # fmt: skip
        self.facade = facade
        self.access = access
        self._write = write
        self.where = where
        self.clock = clock
        self.log = log
        self.sleep = sleep  # async fn(seconds); None: asyncio.sleep
        self.ld = LineDiscipline(MAX_LINE, echo)
        self.mode = None  # None (commands), "pin" or "reboot" (waiting for an answer)
        self.user = False  # logged in
        self.closed = False  # the session asked to end (exit on a socket)
        self.busy = False
        self.last_active = clock()
        self._noise_at = None
        self.site = facade.cfg.site["id"]
        self.cmds = {
            "help": self.c_help, "status": self.c_status, "login": self.c_login,
            "logout": self.c_logout, "exit": self.c_exit, "quit": self.c_exit,
            "devices": self.c_devices, "readings": self.c_readings, "alarms": self.c_alarms,
            "queue": self.c_queue, "poll": self.c_poll, "uplink": self.c_uplink,
            "drain": self.c_drain, "export": self.c_export, "config": self.c_config,
            "interval": self.c_interval, "log": self.c_log, "version": self.c_version,
            "reboot": self.c_reboot,
        }  # fmt: skip

    # --- output ---------------------------------------------------------------------------
    def say(self, *lines):
        out = []
        for line in lines:
            if isinstance(line, (list, tuple)):
                out.extend(line)
            else:
                out.extend(fmt.wrap(line))
        self._write(("\r\n".join(fmt.clean(x) for x in out) + "\r\n").encode())

    def state(self):
        """The short state shown in the prompt: "ok" or e.g. "2 alarms, 1 stale, offline"."""
        try:
            st = self.facade.status()
        except Exception:
            return "?"
        parts = []
        if (st.get("site_state") or {}).get("power_source") == "battery":
            parts.append("on battery")
        if st.get("store_error"):
            parts.append("store failing")
        n = len(st.get("active_alarms") or ())
        if n:
            parts.append("%d alarm%s" % (n, "" if n == 1 else "s"))
        if st.get("stale"):
            parts.append("%d stale" % len(st["stale"]))
        up = st.get("uplink")
        if up is not None and not up.get("connected"):
            parts.append("offline")
        return ", ".join(parts) or "ok"

    def prompt(self):
        if self.mode == "pin":
            text = "PIN: "
        elif self.mode == "reboot":
            text = "Restart the agent now? Type yes to confirm: "
        else:
            text = "%s [%s]> " % (self.site, self.state())
        self._write(fmt.clean(text).encode())

    def start(self):
        self.say(
            "",
            "site-agent console, site %s. Type help for commands%s."
            % (self.site, "" if self.user else ", login to log in"),
        )
        self.prompt()

    # --- input ----------------------------------------------------------------------------
    async def feed(self, data):
        self.last_active = self.clock()
        i = 0
        while i < len(data) and not self.closed:
            events, i = self.ld.step(data, i)
            await self._events(events)

    async def _events(self, events):
        for kind, val in events:
            if self.closed:
                return
            if kind == "echo":
                self._write(val)
            elif kind == "cancel":
                self._set_mode(None)
                self.prompt()
            elif kind == "error":
                self._set_mode(None)
                now = self.clock()
                if self._noise_at is None or now - self._noise_at >= NOISE_EVERY:
                    self._noise_at = now
                    self.say("error: " + val)
                self.prompt()
            else:
                await self.line(val)
                if not self.closed:
                    self.prompt()

    def _set_mode(self, mode):
        self.mode = mode
        self.ld.mask = mode == "pin"

    async def line(self, text):
        """Run one line typed at the prompt (or the answer to a question)."""
        mode = self.mode
        self._set_mode(None)
        if mode == "pin":
            return await self._check_pin(text)
        if mode == "reboot":
            return self._confirm_reboot(text)
        words = text.split()
        if not words:
            return
        name = words[0].lower()
        fn = self.cmds.get(name)
        if fn is None:
            if name.isdigit():  # perhaps a PIN typed at the wrong prompt: do not repeat it
                return self.say("unknown command (digits only, not shown); type help")
            return self.say("unknown command %r; type help" % fmt.cut(words[0], 20))
        if name not in OPEN and not self.user:
            return self.say("%s needs a login: type login first" % name)
        self.busy = True
        try:
            await fn(words[1:])
        except AgentError as e:
            self.say("error: %s" % e)
        except (KeyError, ValueError) as e:
            self.say("error: %s" % (e.args[0] if e.args else e))
        except Exception as e:  # a bug must cost one command, not the console
            self.say("error: internal: %s: %s" % (e.__class__.__name__, e))
            if self.log is not None:
                self.log.error("console", "command failed", command=name, error=repr(e))
        finally:
            self.busy = False
            self.last_active = self.clock()

    def tick(self):
        """End an idle logged-in session (or an unanswered question). True if it ended one."""
        if self.busy or (not self.user and self.mode is None):
            return False
        idle = self.clock() - self.last_active
        if idle < self.access.idle_timeout:
            return False
        self._write(b"\r\n")
        self._set_mode(None)
        self.ld.reset()
        if self.user:
            self._logout("idle for %ds" % idle)
            self.say("session closed after %ds without input; login to continue" % idle)
        self.prompt()
        return True

    def hangup(self, reason):
        """The line dropped (cable pulled, socket closed): log out and forget partial input."""
        self._set_mode(None)
        self.ld.reset()
        if self.user:
            self._logout(reason)

    def line_reset(self, reason):
        """The transport saw a break or a line reset (the terminal may have changed hands): end
        the session as a logout would, forget partial input, and say so on the line."""
        self._set_mode(None)
        self.ld.reset()
        if self.user:
            self._logout(reason)
            self.say("", "session ended (%s); login to continue" % reason)
            self.prompt()

    def _logout(self, why):
        self.user = False
        self.access.lock.release(self)
        if self.log is not None:
            self.log.info("console", "logout", where=self.where, why=why)

    # --- access ---------------------------------------------------------------------------
    def _login_refused(self):
        acc = self.access
        if acc.pin_hash is None:
            return "no console.pin_hash in the config: nobody can log in (see docs/console.md)"
        wait = acc.guard.wait()
        if wait > 0:
            return "too many wrong PINs: logins locked for %ds more" % (int(wait) + 1)
        holder = acc.lock.holder
        if holder is not None and holder is not self:
            return "another session is logged in (%s); it ends at logout or when idle" % (
                getattr(holder, "where", "?"))  # fmt: skip
        return None

    async def c_login(self, args):
        if args:
            # The argument was masked as it was typed (line.py); it is never checked, so a PIN
            # on the command line is not a way in, only a PIN on the screen.
            return self.say("login takes no arguments: type login, then the PIN at the PIN: "
                            "prompt, where it is not shown")  # fmt: skip
        if self.user:
            return self.say("already logged in")
        why = self._login_refused()
        if why:
            self.say(why + "; a PIN typed now is not checked")
        # Ask in every case: whatever comes next is the PIN the technician already types.
        self._set_mode("pin")

    async def _check_pin(self, pin):
        why = self._login_refused()  # refused before, or the state changed while typing
        if why:
            return self.say("PIN not checked: " + why)
        acc = self.access
        ok = await auth.verify_async(pin, acc.pin_hash)
        if ok and acc.lock.acquire(self):
            acc.guard.succeeded()
            self.user = True
            if self.log is not None:
                self.log.info("console", "login", where=self.where)
            return self.say("logged in; type logout when you leave (the session also ends "
                            "after %ds without input)" % acc.idle_timeout)  # fmt: skip
        if ok:
            return self.say("another session logged in meanwhile")
        delay = acc.guard.failed()
        if self.log is not None:
            self.log.warning("console", "wrong PIN", where=self.where, failures=acc.guard.failures)
        self.say("wrong PIN" + (" (logins locked for %ds)" % delay if delay else ""))

    async def c_logout(self, args):
        if not self.user:
            return self.say("not logged in")
        self._logout("logout")
        self.say("logged out")

    async def c_exit(self, args):
        if self.user:
            self._logout("exit")
            self.say("logged out")
        if self.where != "serial":
            self.closed = True

    # --- commands -------------------------------------------------------------------------
    async def c_help(self, args):
        rows = []
        for _name, open_, usage, what in HELP:
            rows.append(("  " if open_ else "* ") + usage + " " * (24 - len(usage)) + what)
        self.say("Commands (* needs a login; Ctrl-C abandons a line):", rows)

    async def c_status(self, args):
        from agent.core.console import views

        self.say(views.status(self.facade, self.clock(), self.user, self.where))

    async def c_devices(self, args):
        from agent.core.console import views

        self.say(views.devices(self.facade.devices()))

    async def c_readings(self, args):
        from agent.core.console import views

        dev = args[0] if args else None
        self._known(dev)
        self.say(views.readings(self.facade.readings(dev), wall_time()))

    async def c_alarms(self, args):
        from agent.core.console import views

        self.say(views.alarms(self.facade.active_alarms(), wall_time()))

    async def c_queue(self, args):
        from agent.core.console import views

        self.say(views.queue(self.facade.queue_stats()))

    async def c_poll(self, args):
        from agent.core.console import views

        if len(args) != 1:
            return self.say("usage: poll <device>")
        self._known(args[0])
        self.say("polling %s ..." % args[0])
        self.say(views.poll(args[0], await self.facade.poll_device(args[0])))

    async def c_uplink(self, args):
        if args != ["test"]:
            return self.say("usage: uplink test")
        ok = await self.facade.uplink_test(lambda text: self.say("  " + text))
        self.say("uplink test: " + ("PASSED" if ok else "FAILED"))

    async def c_drain(self, args):
        import asyncio

        res = self.facade.drain(by="console", where=self.where)
        if res["connected"] is None:
            return self.say("no uplink configured: %d records stay stored" % res["depth"])
        if not res["connected"]:
            err = (res.get("state") or {}).get("last_error") or "not connected"
            return self.say("uplink is down (%s); %d records will go when it connects"
                            % (err, res["depth"]))  # fmt: skip
        self.say("sending %d stored records ..." % res["depth"])
        sleep = self.sleep or asyncio.sleep
        start = depth = res["depth"]
        end = self.clock() + DRAIN_WAIT
        while depth and self.clock() < end:
            await sleep(1.0)
            depth = self.facade.queue_depth()
        self.say("%d sent, %d still queued%s" % (max(0, start - depth), depth,
                 "" if not depth else " (the uplink goes on sending)"))  # fmt: skip

    async def c_export(self, args):
        if len(args) != 1:
            return self.say("usage: export <path>   (e.g. export /media/usb/backlog.jsonl)")
        path = args[0]
        if not path.startswith("/"):
            return self.say("error: give an absolute path, e.g. /media/usb/backlog.jsonl")
        self.say("exporting to %s ..." % path)
        n = self.facade.export(path, by="console", where=self.where)
        self.say("wrote %d records to %s" % (n, path))

    async def c_config(self, args):
        from agent.core.console import views

        if args == ["show"]:
            return self.say(views.config(self.facade.config_redacted()))
        if args == ["check"]:
            return self.say(views.checks(self.facade.config_check()))
        self.say("usage: config show | config check")

    async def c_interval(self, args):
        if len(args) != 2:
            return self.say("usage: interval <device> <seconds>")
        self._known(args[0])
        if args[0] not in self.facade.loop.drivers:
            return self.say("%s is derived from every device's poll: it has no interval of its "
                            "own" % args[0])  # fmt: skip
        try:
            secs = float(args[1])
        except ValueError:
            return self.say("error: %r is not a number of seconds" % fmt.cut(args[1], 20))
        got = self.facade.set_interval(args[0], secs, by="console", where=self.where)
        self.say("%s: polled every %gs until the agent restarts" % (args[0], got))

    async def c_log(self, args):
        n = 20
        if args:
            if not args[0].isdigit() or not (1 <= int(args[0]) <= MAX_LOG):
                return self.say("usage: log [n]   (n from 1 to %d)" % MAX_LOG)
            n = int(args[0])
        lines = self.facade.log_tail(n)
        out = []
        for line in lines:
            out.extend(fmt.wrap(line, fmt.WIDTH, "    "))
        self.say(out or ["(no log lines yet)"])

    async def c_version(self, args):
        v = self.facade.version_info()
        self.say(fmt.kv([("site-agent", v["version"]), ("runtime", v["runtime"])]))

    async def c_reboot(self, args):
        self._set_mode("reboot")

    def _confirm_reboot(self, answer):
        if answer.strip().lower() != "yes":
            return self.say("not restarted")
        self.say("restarting the agent ...")
        self.facade.restart()

    def _known(self, dev):
        if dev is not None and not self.facade.has_device(dev):
            names = ", ".join(sorted(self.facade.loop.drivers) + ["site"])
            raise KeyError("no device %r here (devices: %s)" % (fmt.cut(dev, 20), names))
