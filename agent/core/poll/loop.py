"""The poll loop (portable asyncio): scheduler + drivers + queue.

Each due device is polled in its own task, so a slow or hung device holds only its own slot. A poll
result becomes readings stamped with the site, device and time; they go to the queue's routine lane
and to the table of latest values. The queue is committed (group commit) at least once per
`commit_interval` seconds, or sooner when `commit_records` readings are waiting, and listeners are
told only after the commit, because only then do those readings count as stored. The first
pass (every device polled once after the start; first polls are due at once) is committed as
soon as it is done, so the first readings go upstream within about a second of the start; later
commits follow the end of a pass of polls once half an interval has passed (_pass_done): at
most two commits per interval, one on a steady grid. A commit that falls due during a pass
waits for its end, at most PASS_GAP_S: records wait at most commit_interval + PASS_GAP_S for
their sync.
A poll's readings are appended to the queue as soon as the poll returns, in one step; with a
write-through store (the host's) a killed process therefore loses no reading it polled.

Time: `mono` is the site's clock (intervals, jitter, the commit interval). A poll's budget is
machine time: a device answers in real seconds. With accelerated site time (`scale` > 1, a HIL
drill, agent/core/simtime.py) the scheduler holds budgets in site seconds (budget x scale, so a
hung poll is still one that outlived its budget) and the loop sleeps wait / scale real seconds.
"""

import asyncio

from agent.core import readings as rd
from agent.core.compat import monotonic, wait_for, wall_time
from agent.core.log import ERROR, INFO, WARNING
from agent.core.poll.scheduler import Scheduler
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE

STALE_METRIC = "agent.device.stale"
PASS_GAP_S = 1.0  # polls closer than this (site seconds) belong to one pass: commit after it


class Loop:
    def __init__(
        self,
        site_id,
        queue,
        rand,
        log,
        mono=monotonic,
        wall=wall_time,
        commit_interval=5.0,
        commit_records=500,
        backoff_max=300,
        monitor=None,
        clock=None,
        on_pass=None,
        scale=1.0,
    ):
        self.site_id = site_id
        self.queue = queue
        self.log = log
        self.mono = mono
        self.scale = scale
        self.wall = wall  # returns epoch seconds, or None while the clock is not trusted
        self.sched = Scheduler(rand, backoff_max)
        self.commit_interval = commit_interval
        self.commit_records = commit_records
        self.drivers = {}
        self.latest = {}  # (device, metric) -> Reading, newest value of every series
        self.last_result = {}  # device -> PollResult
        self.listeners = []  # called as fn(confirmed_seq) after each commit, failed ones too
        self.monitor = monitor  # SiteMonitor: site state and alarm events from each poll result
        self.clock = clock  # Clock: (boot, mono) stamps on records made before time is trusted
        self.on_pass = on_pass  # called on every loop pass (the watchdog's proof of progress)
        self.alarm_listeners = []  # called as fn() after a commit when the active set changed
        self.cycle_listeners = []  # called once as fn() after the first commit that follows a
        # complete poll cycle (every device polled once): the retained state is then fresh
        self._cycle_told = False
        self._first_pass = False  # the first poll of every device has been committed
        self._timed = False  # the last commit was the timer's, not a pass end's
        self._alarms_changed = False
        self.store_error = None  # last queue error text, None when the store works
        self._tasks = {}
        self._pending = 0
        self._last_commit = mono()
        self._stopping = False
        self._wake = asyncio.Event()

    # --- setup and control ----------------------------------------------------------------
    def add_device(self, device, driver):
        self.drivers[device["id"]] = driver
        self.sched.add(
            device["id"],
            device["interval"],
            device["timeout"] * self.scale,
            device.get("jitter", 0.1),
            self.mono(),
            device.get("spread_first", False),
        )

    def poll_now(self, dev_id=None):
        now = self.mono()
        for d in [dev_id] if dev_id else list(self.drivers):
            self.sched.poll_now(d, now)
        self._wake.set()

    def set_interval(self, dev_id, seconds):
        self.sched.set_interval(dev_id, seconds, self.mono())
        self._wake.set()

    def wake(self):
        """Make the loop pass now (on_pass runs): the board's watchdog asks for a pass rather
        than wait out a sleep as long as a commit interval."""
        self._wake.set()

    def stop(self):
        self._stopping = True
        self._wake.set()

    # --- one poll -------------------------------------------------------------------------
    async def poll_device(self, dev_id):
        """Poll one device now and record the result; returns the PollResult."""
        st = self.sched.state(dev_id)
        # A reading's time is when the device was asked: the poll's own duration (machine time,
        # stretched by the scale in a drill) must not shift it.
        asked = (self.mono(), self.wall())
        self.sched.started(dev_id, asked[0])
        try:
            result = await self.drivers[dev_id].poll(st.budget / self.scale)
        except asyncio.CancelledError:
            # Cancelled by hung() handling or shutdown: whoever cancelled settles the state.
            raise
        now = self.mono()
        was_stale = st.stale
        for level, text in getattr(result, "remarks", ()):  # what the driver found worth saying
            say = self.log.warning if level == "warning" else self.log.info
            say("poll", text, device=dev_id)
        self.sched.finished(dev_id, now, result.ok, result.error)
        self.last_result[dev_id] = result
        self._record(dev_id, result, was_stale, st.polls == 1, asked)
        return result

    async def poll_fresh(self, dev_id):
        """A poll of one device for someone waiting (the console's poll, the MQTT command): when
        the schedule is polling it right now, that poll's result, awaited; otherwise a new poll.
        Never two polls of one device at once (they would share one transport)."""
        st = self.sched.state(dev_id)
        if st.running():
            # Watched, not awaited: awaiting the task would cancel it with this caller on
            # CPython, and MicroPython has no asyncio.shield. A poll ends within its budget.
            while st.running():
                await asyncio.sleep(0.02)
            return self.last_result.get(dev_id) or _Hung("poll cancelled")
        return await self.poll_device(dev_id)

    async def poll_all(self):
        """Poll every device once, concurrently; returns {device: PollResult}. Commits."""
        ids = list(self.drivers)
        results = await asyncio.gather(*[self.poll_device(d) for d in ids])
        self.commit()
        return dict(zip(ids, results))

    def _record(self, dev_id, result, was_stale, first, asked=None):
        """asked: (mono, wall) when the poll started; None (a hung poll settled now): now."""
        t = self.wall() if asked is None else asked[1]
        quality = rd.GOOD if t is not None else rd.EST_TIME
        out = rd.stamp(result.samples, self.site_id, dev_id, t, quality)
        if result.ok != (not was_stale) or first:
            out.append(
                rd.Reading(self.site_id, dev_id, STALE_METRIC, not result.ok, "", t, quality)
            )
            if result.ok and was_stale:
                # A flapping device would write two lines per flip: summarised (core/log.py)
                self.log.repeating(("poll", dev_id), INFO, "poll", "device recovered",
                                   burst=2, device=dev_id)  # fmt: skip
        if not result.ok:
            if not was_stale:
                self.log.repeating(("poll", dev_id), WARNING, "poll", "device stale",
                                   burst=2, device=dev_id, reason=result.error)  # fmt: skip
            for key, r in self.latest.items():
                if key[0] == dev_id and r.metric != STALE_METRIC:
                    r.quality = rd.STALE
        derived = ()
        if self.monitor is not None:
            try:
                at = None if asked is None else asked[0]
                derived, events = self.monitor.record(dev_id, result.ok, out, at)
            except Exception as e:  # a rule bug must not cost the readings
                self.log.error("alarm", "rule evaluation failed", device=dev_id, error=repr(e))
                derived, events = (), ()
            for event in events:
                self._append(LANE_ALARM, event)
            if self.monitor.take_changed():
                self._alarms_changed = True
        for group in (out, derived):
            for r in group:
                self.latest[(r.device, r.metric)] = r
                rec = r.to_dict()
                if self.clock is not None:
                    self.clock.mark(rec)
                self._append(LANE_ROUTINE, rec)
                # The retained state carries each reading's seq, so that a consumer can tell it
                # from the older backlog that follows it after a reconnect (docs/mqtt.md).
                r.seq = rec.get("seq")

    def _append(self, lane, record):
        try:
            self.queue.append(lane, record)
            self._pending += 1
        except Exception as e:  # a failing medium must not stop polling; the store reports it
            self._store_failed(e)

    def _store_failed(self, e):
        # One line when the store starts failing, a summary while it does (Log.repeating): the
        # error text may carry counts, so it is a field, never the key.
        text = "%s: %s" % (e.__class__.__name__, e)
        self.log.repeating(("queue", "store"), ERROR, "queue", "store failed; readings wait in "
                           "RAM and alarms still go upstream", error=text)  # fmt: skip
        self.store_error = text

    def commit(self):
        self._last_commit = self.mono()
        self._timed = False
        if not self._pending:
            return
        try:
            seq = self.queue.commit()
        except Exception as e:
            self._store_failed(e)
            # The readings wait in the store's RAM, but alarms it could not write are read out
            # from memory: the uplink is woken all the same.
            seq = getattr(self.queue, "confirmed_seq", None)
        else:
            if self.store_error:
                self.log.repeating(("queue", "store", "ok"), INFO, "queue", "store working again")
                self.store_error = None
            self._pending = 0
        self._tell(self.listeners, seq)
        if not self._cycle_told and self.store_error is None and self._cycle_complete():
            self._cycle_told = True
            self._tell(self.cycle_listeners)
        if self._alarms_changed:
            self._alarms_changed = False
            self._tell(self.alarm_listeners)

    def _first_pass_done(self):
        """True once, when every device has been polled since the start: the first readings
        are committed (and so sent) at once, not at the end of the first commit interval."""
        if self._first_pass or not self._cycle_complete():
            return False
        self._first_pass = True
        return True

    def _pass_done(self):
        """A pass of polls has just ended (none running, none due within PASS_GAP_S) and half
        a commit interval has passed since the last commit: commit now rather than when the
        interval is up. The commit then follows the polls instead of falling just before the
        next ones (the peers bench: readings waited 4.5 s, a whole interval), so readings go
        upstream about as soon as their pass is done and a power cut loses less; at most two
        syncs per commit interval (one on a steady grid, as before)."""
        if not self._pending:
            return False
        now = self.mono()
        # After a timed commit (made away from a pass end, e.g. after the health device's own
        # pass shifted the timer) the next pass end commits at once: else the timer can lock
        # onto a phase mid-way between passes (seen on the peers bench: 3.1 s latency).
        if now - self._last_commit < self.commit_interval / 2 and not self._timed:
            return False
        return not self._in_pass(now)

    def _in_pass(self, now):
        """A poll is running, or one is due within PASS_GAP_S."""
        if self._tasks:
            return True
        wait = self.sched.next_wakeup(now)
        return wait is not None and wait <= PASS_GAP_S

    def _cycle_complete(self):
        devs = self.sched.devices
        return bool(devs) and all(st.polls for st in devs.values())

    def _tell(self, listeners, *args):
        for fn in listeners:
            try:
                fn(*args)
            except Exception as e:
                self.log.error("loop", "listener failed", error=repr(e))

    # --- the loop -------------------------------------------------------------------------
    async def _poll_task(self, dev_id):
        try:
            await self.poll_device(dev_id)
        except asyncio.CancelledError:
            pass
        except Exception as e:  # never lose the loop to a bug in recording
            self.log.error("poll", "poll task failed", device=dev_id, error=repr(e))
            st = self.sched.state(dev_id)
            if st.running():
                self.sched.finished(dev_id, self.mono(), False, "internal error: %r" % e)
        finally:
            self._tasks.pop(dev_id, None)
            if self.store_error is None and (self._pending >= self.commit_records
                                             or self._first_pass_done()
                                             or self._pass_done()):  # fmt: skip
                self.commit()  # a failing store is retried at the commit interval, not per poll
            # The loop slept until this poll's hung deadline; the device's next due time is new.
            self._wake.set()

    def _tick(self):
        """One pass: settle hung polls, start due ones, commit when it is time.
        Returns the seconds to sleep before the next pass."""
        now = self.mono()
        if self.on_pass is not None:
            self.on_pass()
        self.log.tick()
        for dev_id in self.sched.hung(now):
            task = self._tasks.pop(dev_id, None)
            if task is not None:
                task.cancel()
            st = self.sched.state(dev_id)
            reason = "poll hung for %.0fs (budget %gs)" % (
                (now - st.running_since) / self.scale,
                st.budget / self.scale,
            )
            was_stale = st.stale
            self.sched.finished(dev_id, now, False, reason)
            self._record(dev_id, _Hung(reason), was_stale, False)
        for dev_id in self.sched.due(now):
            self._tasks[dev_id] = asyncio.create_task(self._poll_task(dev_id))
        since = now - self._last_commit
        if self._first_pass_done():
            self.commit()
        elif since >= self.commit_interval:
            # Due; while a pass of polls goes on, wait for its end (at most PASS_GAP_S more),
            # where _pass_done commits: a commit in the middle of a pass would leave the rest
            # of its readings waiting a whole interval (seen on the peers bench).
            if since >= self.commit_interval + PASS_GAP_S or not self._in_pass(now):
                self.commit()
                self._timed = True
        wait = self.sched.next_wakeup(now)
        to_commit = self.commit_interval - (now - self._last_commit)
        if to_commit <= 0:  # deferred to the end of the pass
            to_commit = self.commit_interval + PASS_GAP_S - (now - self._last_commit)
        if wait is None or to_commit < wait:
            wait = to_commit
        return 0.01 if wait < 0.01 else wait

    async def run(self):
        """Poll until stop(); then cancel running polls, close drivers and commit."""
        self._stopping = False
        try:
            while not self._stopping:
                wait = self._tick()
                self._wake.clear()
                try:
                    await wait_for(self._wake.wait(), wait / self.scale)  # no task per pass
                except asyncio.TimeoutError:
                    pass
        finally:
            for task in list(self._tasks.values()):
                task.cancel()
            for task in list(self._tasks.values()):
                try:
                    await task
                except BaseException:
                    pass
            for drv in self.drivers.values():
                await drv._safe_close()
            self.commit()


class _Hung:
    """A PollResult stand-in for a poll the loop had to cancel."""

    ok = False
    samples = ()
    raw = None
    duration = 0.0

    def __init__(self, reason):
        self.error = reason
