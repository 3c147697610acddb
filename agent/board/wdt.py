"""The hardware watchdog, fed only while the agent makes progress (MicroPython's machine.WDT).

    dog = Watchdog(machine.WDT, timeout_s=60, log=log, poke=wake_the_loop)
    loop.on_pass = dog.kick                       # every pass of the poll loop
    dog.watch("uplink", uplink.progress_age, 180) # seconds since the uplink last made progress
    asyncio.create_task(dog.run())                # starts the WDT and feeds it

The WDT is fed from a task every timeout/4 seconds, but only while the poll loop has passed
within the last timeout/2 seconds and every watched part has made progress within its limit.
The loop may sleep longer than that between passes (a 30 s commit interval, 60 s polls), so the
task first pokes it awake (`poke`) and looks for its pass a quarter period later.
So a driver that blocks the interpreter (no loop pass, no task runs), a loop that stops passing,
or an uplink wedged in a send that never returns ends in a watchdog reset, not a silent board;
the reason is logged once before the reset, and the next boot reports reset cause "watchdog".
A poll that merely hangs in an await is the loop's to cancel (the device goes stale), not a
reset. The ESP32's WDT cannot be stopped once started: start() is called only after the boot
window in which Ctrl-C reaches the REPL (firmware/main.py).
"""

import asyncio

from agent.core.compat import monotonic


class Watchdog:
    def __init__(self, wdt_class, timeout_s=60.0, log=None, mono=monotonic, poke=None):
        self.wdt_class = wdt_class
        self.poke = poke
        self.timeout_s = float(timeout_s)
        self.log = log
        self.mono = mono
        self.wdt = None
        self.last_pass = mono()
        self.watched = []  # (name, age_fn, limit_s)
        self.starved = None  # why feeding stopped, once it has
        self.feeds = 0

    def kick(self):
        self.last_pass = self.mono()

    def watch(self, name, age_fn, limit_s):
        self.watched.append((name, age_fn, float(limit_s)))

    def start(self):
        self.wdt = self.wdt_class(timeout=int(self.timeout_s * 1000))

    def why_not(self):
        """None when the agent is making progress, else the reason not to feed."""
        idle = self.mono() - self.last_pass
        if idle > self.timeout_s / 2:
            return "poll loop has not passed for %.0fs" % idle
        for name, age_fn, limit in self.watched:
            try:
                age = age_fn()
            except Exception as e:  # a broken check must not keep feeding a dead board
                return "%s check failed: %r" % (name, e)
            if age is not None and age > limit:
                return "%s made no progress for %.0fs (limit %.0fs)" % (name, age, limit)
        return None

    def feed_once(self):
        why = self.why_not()
        if why is None:
            self.wdt.feed()
            self.feeds += 1
            self.starved = None
            return True
        if self.starved is None and self.log is not None:
            self.log.error("watchdog", "not fed: the board will reset", reason=why,
                           timeout_s=self.timeout_s)  # fmt: skip
        self.starved = why
        return False

    async def run(self):
        if self.wdt is None:
            self.start()
        while True:
            self.feed_once()
            if self.poke is not None:
                self.poke()
            await asyncio.sleep(self.timeout_s / 4)
