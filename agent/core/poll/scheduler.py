"""When each device is polled (portable, pure logic: the caller passes `now`).

Invariants:
- Each device has its own timeline. A slow, hung or failing device changes only its own next poll
  time; nothing here waits, so no device can delay another.
- The first poll of a device is due when it is added (unless spread_first), so the first
  readings of a start do not wait for an interval.
- Polls keep to a grid: the nominal time advances by exactly `interval` on success, so polls do not
  drift by their own duration. The due time is the nominal time plus a random offset in
  [0, jitter * interval], which spreads devices (and sites) that share an interval.
- If a poll overruns so far that the next nominal time has passed, missed slots are skipped rather
  than polled in a burst.
- A failed poll marks the device stale with its reason and retries after a backoff that doubles per
  consecutive failure, from `interval` up to `backoff_max` (or `interval` when that is longer),
  with jitter in [0.5, 1] x backoff so failing devices do not retry in lockstep. One success resets
  the backoff and clears stale.
- A poll running past `budget * HUNG_FACTOR + HUNG_GRACE` is reported by `hung()`, so the caller
  can cancel it even if the driver ignores its own budget.
"""

from agent.core.compat import const

HUNG_FACTOR = 1.5
HUNG_GRACE = const(1)
DEFAULT_BACKOFF_MAX = const(300)


class DeviceState:
    __slots__ = (
        "id",
        "interval",
        "budget",
        "jitter",
        "nominal",
        "due",
        "running_since",
        "stale",
        "reason",
        "failures",
        "polls",
        "errors",
        "last_poll",
        "last_ok",
        "last_duration",
    )

    def __init__(self, dev_id, interval, budget, jitter):
        self.id = dev_id
        self.interval = interval
        self.budget = budget
        self.jitter = jitter
        self.nominal = 0.0
        self.due = 0.0
        self.running_since = None
        self.stale = False
        self.reason = None
        self.failures = 0
        self.polls = 0
        self.errors = 0
        self.last_poll = None  # when the last poll finished (monotonic s)
        self.last_ok = None  # when the last successful poll finished (monotonic s)
        self.last_duration = None

    def running(self):
        return self.running_since is not None


class Scheduler:
    def __init__(self, rand, backoff_max=DEFAULT_BACKOFF_MAX):
        """`rand()` returns a float in [0, 1); injected so tests are deterministic."""
        self.rand = rand
        self.backoff_max = backoff_max
        self.devices = {}
        self.order = []

    def add(self, dev_id, interval, budget, jitter, now, spread_first=False):
        if interval <= 0 or budget <= 0:
            raise ValueError("%s: interval and budget must be > 0" % dev_id)
        st = DeviceState(dev_id, float(interval), float(budget), float(jitter))
        # The first poll is due at once (the first reading must not wait for an interval or
        # its jitter); later ones fall in [nominal, nominal + jitter * interval]. spread_first
        # spreads the first poll over that window too (the board's own health device: polled
        # at once it would read a board whose Wi-Fi and SNTP are not up yet).
        st.nominal = now
        st.due = now + (self.rand() * st.jitter * st.interval if spread_first else 0.0)
        self.devices[dev_id] = st
        self.order.append(dev_id)
        return st

    def state(self, dev_id):
        return self.devices[dev_id]

    def due(self, now):
        """Devices whose poll should start now, in config order; each is then `started`."""
        out = []
        for dev_id in self.order:
            st = self.devices[dev_id]
            if st.running_since is None and st.due <= now:
                out.append(dev_id)
        return out

    def started(self, dev_id, now):
        self.devices[dev_id].running_since = now

    def finished(self, dev_id, now, ok, reason=None):
        st = self.devices[dev_id]
        if st.running_since is not None:
            st.last_duration = now - st.running_since
        st.running_since = None
        st.last_poll = now
        st.polls += 1
        if ok:
            st.stale = False
            st.reason = None
            st.failures = 0
            st.last_ok = now
            st.nominal += st.interval
            if st.nominal <= now:  # overran past the next slot: skip missed slots
                missed = int((now - st.nominal) // st.interval) + 1
                st.nominal += missed * st.interval
            st.due = st.nominal + self.rand() * st.jitter * st.interval
        else:
            st.stale = True
            st.reason = reason or "poll failed"
            st.errors += 1
            st.failures += 1
            delay = self.backoff(st)
            st.due = now + delay * (0.5 + 0.5 * self.rand())
            # The grid restarts from the retry so a recovered device resumes a steady rhythm.
            st.nominal = st.due
        return st

    def backoff(self, st):
        """Upper bound of the retry delay after `st.failures` consecutive failures."""
        cap = self.backoff_max if self.backoff_max > st.interval else st.interval
        delay = st.interval
        n = st.failures - 1
        while n > 0 and delay < cap:
            delay *= 2
            n -= 1
        return delay if delay < cap else cap

    def hung(self, now):
        """Running polls that have far outlived their budget; the caller cancels them and then
        calls finished(dev, now, False, reason)."""
        out = []
        for dev_id in self.order:
            st = self.devices[dev_id]
            if st.running_since is not None:
                if now - st.running_since > st.budget * HUNG_FACTOR + HUNG_GRACE:
                    out.append(dev_id)
        return out

    def next_wakeup(self, now):
        """Seconds until the next device falls due or a running poll could be declared hung
        (0 when something is due already); None when there are no devices."""
        soonest = None
        for st in self.devices.values():
            if st.running_since is None:
                t = st.due
            else:
                t = st.running_since + st.budget * HUNG_FACTOR + HUNG_GRACE
            if soonest is None or t < soonest:
                soonest = t
        if soonest is None:
            return None
        return soonest - now if soonest > now else 0.0

    def set_interval(self, dev_id, interval, now):
        """Change a device's interval (until restart); its next poll moves to the new grid."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        st = self.devices[dev_id]
        st.interval = float(interval)
        if not st.stale and st.running_since is None:
            st.nominal = now
            st.due = now + self.rand() * st.jitter * st.interval

    def poll_now(self, dev_id, now):
        """Make a device due immediately (a technician's or operator's request)."""
        st = self.devices[dev_id]
        if st.running_since is None:
            st.due = now
            st.nominal = now
