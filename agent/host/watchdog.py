"""systemd readiness and watchdog over $NOTIFY_SOCKET (CPython, no dependency).

    wd = Watchdog.from_env()           # None when systemd gave no NOTIFY_SOCKET
    wd.ready()                          # READY=1 once the agent polls
    loop_kick = wd.kick                 # the poll loop calls this on every pass (Loop._tick)
    task = asyncio.create_task(wd.run())   # sends WATCHDOG=1 every WATCHDOG_USEC / 2
    wd.stopping()                       # STOPPING=1 at shutdown

Invariant: a ping says "the poll loop made progress recently". The pinger sends WATCHDOG=1 only
while the loop's last kick is younger than `max_age` (the watchdog period by default), so a hung
poll loop stops the pings even if the asyncio loop itself still runs; a blocked asyncio loop stops
them because the pinger cannot run at all. Either way systemd restarts the service after
WatchdogSec. The loop wakes at least every commit interval (5 s), well inside max_age.

The protocol (sd_notify(3)): one datagram of newline-separated KEY=VALUE lines to the AF_UNIX
socket named in $NOTIFY_SOCKET; a name starting with "@" is in the abstract namespace.
"""

import asyncio
import os
import socket
import time


class Notifier:
    def __init__(self, address):
        if address.startswith("@"):
            address = "\0" + address[1:]
        self.address = address
        self.sent = 0
        self.errors = 0

    def send(self, *lines):
        """Send one message; True when the datagram went out. Never raises: a missing systemd
        must not stop the agent (systemd then restarts it, which is the point)."""
        msg = "\n".join(lines).encode()
        try:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            try:
                s.sendto(msg, self.address)
            finally:
                s.close()
        except OSError:
            self.errors += 1
            return False
        self.sent += 1
        return True


class Watchdog:
    def __init__(self, notifier, period_s=None, max_age_s=None, mono=time.monotonic):
        """`period_s`: WatchdogSec (None: readiness only, no pings)."""
        self.notifier = notifier
        self.period_s = period_s
        self.max_age_s = max_age_s if max_age_s is not None else period_s
        self.mono = mono
        self.last_kick = None
        self.pings = 0
        self.withheld = 0  # pings not sent because the loop was not making progress

    @classmethod
    def from_env(cls, environ=None):
        env = os.environ if environ is None else environ
        addr = env.get("NOTIFY_SOCKET")
        if not addr:
            return None
        period = None
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        if usec and (not pid or pid == str(os.getpid())):
            try:
                period = int(usec) / 1e6
            except ValueError:
                period = None
        return cls(Notifier(addr), period)

    def ready(self, status="polling"):
        self.kick()
        return self.notifier.send("READY=1", "STATUS=" + status, "MAINPID=%d" % os.getpid())

    def status(self, text):
        return self.notifier.send("STATUS=" + text)

    def stopping(self):
        return self.notifier.send("STOPPING=1")

    def kick(self):
        """The poll loop made progress (call from every loop pass)."""
        self.last_kick = self.mono()

    def ping_due(self):
        """True when the loop kicked within max_age, i.e. a ping may be sent now."""
        return self.last_kick is not None and self.mono() - self.last_kick <= self.max_age_s

    def ping(self):
        if self.ping_due():
            if self.notifier.send("WATCHDOG=1"):
                self.pings += 1
                return True
        else:
            self.withheld += 1
        return False

    async def run(self):
        """Ping every period / 2 while the loop makes progress; return at once without a period."""
        if not self.period_s:
            return
        while True:
            self.ping()
            await asyncio.sleep(self.period_s / 2)
