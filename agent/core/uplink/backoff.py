"""Pacing for the uplink (portable): reconnect backoff, a connect-rate limiter, a token bucket and
a per-broker byte budget. Pure arithmetic on times the caller passes in, so the same code runs on
the host, on the board and in the 10,000-agent simulation (bench/fleet_reconnect.py).

Invariants:
- Backoff.next_delay() is uniform in [0, min(cap, base * 2**n)] where n counts failures since the
  last reset ("full jitter"); reset() is called only after a connect AND a first acknowledged
  publish, so a broker that accepts CONNECT and then drops us does not reset the backoff.
- ConnectLimiter never allows more than `per_min` attempts in any 60 s window.
- ByteBudget windows are fixed (aligned to multiples of `window_s` on the clock it is given);
  alarms may overdraw it, routine traffic never does.
- LinkWatch paces what the uplink does while no broker answers at all (no TCP): cheap probes
  `every` x [0.5, 1.5) apart, and once one answers, a full connect after a delay uniform in
  [0, spread]. Backoff paces full attempts at a broker that answers TCP but refuses or drops us.

Why two regimes (docs/mqtt.md, bench/fleet_reconnect.py): full jitter protects a broker that is
up but overloaded, at the cost of minutes of delay after a long outage (the ceiling has grown to
the cap). While nothing answers, though, no attempt reaches any broker, so there is nothing to
protect: a TCP probe (SYN, and a close if accepted; no TLS, no MQTT) costs the broker at most one
accept per agent per outage. So an agent notices a link's return within a probe period, and a
fleet whose links all return at once arrives spread over `spread` seconds, not in lockstep.
"""


class Backoff:
    """Exponential backoff with full jitter. `rand()` returns a float in [0, 1)."""

    def __init__(self, rand, base=2.0, cap=300.0):
        if base <= 0 or cap < base:
            raise ValueError("backoff needs 0 < base <= cap")
        self.rand = rand
        self.base = float(base)
        self.cap = float(cap)
        self.failures = 0

    def ceiling(self, n=None):
        """The upper bound of the delay after n failures (default: the current count)."""
        n = self.failures if n is None else n
        # Stop doubling once past the cap: avoids huge floats after days of outage.
        c = self.base
        while n > 0 and c < self.cap:
            c *= 2
            n -= 1
        return min(self.cap, c)

    def next_delay(self):
        """Record one more failure and return how long to wait before the next attempt."""
        hi = self.ceiling()
        self.failures += 1
        return self.rand() * hi

    def reset(self):
        self.failures = 0


class LinkWatch:
    """Probe pacing while unreachable, and the spread of the arrival once a probe answers.
    `rand()` returns a float in [0, 1)."""

    def __init__(self, rand, every=4.0, spread=8.0):
        if every <= 0 or spread < 0:
            raise ValueError("link watch needs every > 0 and spread >= 0")
        self.rand = rand
        self.every = float(every)
        self.spread = float(spread)

    def probe_delay(self):
        """Seconds until the next probe: every x [0.5, 1.5), so agents do not probe in step."""
        return self.every * (0.5 + self.rand())

    def arrival_delay(self):
        """Seconds between a probe that answered and the full connect: uniform in [0, spread]."""
        return self.spread * self.rand()


class ConnectLimiter:
    """At most `per_min` connection attempts in any sliding 60 s window."""

    WINDOW = 60.0

    def __init__(self, per_min=6):
        if per_min < 1:
            raise ValueError("per_min must be at least 1")
        self.per_min = per_min
        self.attempts = []  # times of the attempts in the current window, oldest first

    def _trim(self, now):
        # The same expression as in wait_time(), so float rounding cannot make the two disagree.
        while self.attempts and self.attempts[0] + self.WINDOW - now <= 0:
            self.attempts.pop(0)

    def wait_time(self, now):
        """Seconds until an attempt is allowed (0 when allowed now)."""
        self._trim(now)
        if len(self.attempts) < self.per_min:
            return 0.0
        return self.attempts[0] + self.WINDOW - now

    def record(self, now):
        self._trim(now)
        self.attempts.append(now)


class TokenBucket:
    """`rate` units per second with a burst of `burst` units; rate 0 means unlimited."""

    def __init__(self, rate, burst=None, now=0.0):
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(rate, 1))
        self.tokens = self.burst
        self.t = now

    def _fill(self, now):
        if now > self.t:
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now

    def wait_time(self, now, n=1):
        """Seconds until `n` units may be taken. A request above the burst is allowed once the
        bucket is full (it then goes into debt), so one large message is never blocked forever."""
        if self.rate <= 0:
            return 0.0
        self._fill(now)
        need = min(n, self.burst)
        if self.tokens >= need:
            return 0.0
        return (need - self.tokens) / self.rate

    def take(self, now, n=1):
        if self.rate <= 0:
            return
        self._fill(now)
        self.tokens -= n


class ByteBudget:
    """A byte allowance per fixed window (a metered satellite or LTE link). limit 0 = unlimited.
    `allows(now, n, urgent)` says whether n bytes may go now: urgent (alarm) traffic always may.
    `now` is the site's wall clock; windows are its calendar hours or days (the carrier's).

    A wall clock steps (SNTP answering after a boot, a server that was wrong, a technician), and a
    window that followed it would overdraw: a step forward ended a spent window early and opened
    the next (the board drill: +10 min from its SNTP server, 23.6 KB of 16 KB in one site hour),
    a step back across a boundary opened a spent one again. With `mono` (the site's monotonic
    clock, seconds) a window ends when both clocks say so: the monotonic clock, anchored when the
    window began, at its wall end; and the wall clock, in a later window. A wall clock that is
    more than a tenth of a window behind the monotonic end was set back: the monotonic clock
    alone then ends the window (else a clock set back by days would hold the budget for days).
    So a step never makes a window shorter than its true length; it may make one longer (spends
    less, never more). Without `mono` (wall only) a step back never reopens a spent window, a
    step forward does end it early, and a wall clock set back by more than a window starts one."""

    def __init__(self, limit, window_s=86400.0, mono=None):
        self.limit = int(limit)
        self.window_s = float(window_s)
        self.mono = mono
        self.start = None
        self.end_mono = None  # the monotonic time the current window ends at (with mono)
        self.used = 0
        self.window = 0  # which window: counts the rolls

    def _roll(self, now):
        w = self.window_s
        start = now - (now % w)
        if self.start is not None:
            if self.mono is None:
                # A later window rolls; a step back into the spent window or the one before it
                # does not; a clock set back further (wrong before its first sync) does.
                if start <= self.start < start + 2 * w:
                    return
            else:
                if self.mono() < self.end_mono:
                    return  # the window's true length has not passed (a step forward)
                if start == self.start and self.start + w - now < w / 10:
                    return  # the wall clock lags a little behind: its boundary is near
        self.start = start
        if self.mono is not None:
            self.end_mono = self.mono() + (start + w - now)
        self.used = 0
        self.window += 1

    def allows(self, now, n, urgent=False):
        if self.limit <= 0 or urgent:
            return True
        self._roll(now)
        return self.used + n <= self.limit

    def spend(self, now, n):
        """n bytes handed to the link now; returns the window they were counted in (for
        acked())."""
        self._roll(now)
        self.used += n
        return self.window

    def acked(self, now, window, n):
        """The broker acknowledged n bytes spent in `window`: they crossed the carrier's meter
        between the two, so a window begun since counts them too (a link's own bytes in flight
        at a boundary: a few KB over a satellite, whole site minutes of a drill at 240x)."""
        self._roll(now)
        if self.limit > 0 and window != self.window:
            self.used += n

    def reopens_in(self, now):
        """Seconds until the current window ends (at least until the wall clock says so; a
        caller asks again then)."""
        self._roll(now)
        wall = self.start + self.window_s - now
        if self.mono is None:
            return max(wall, 0.0)
        return max(wall, self.end_mono - self.mono(), 0.0)

    def state(self, now):
        self._roll(now)
        return {"limit": self.limit, "used": self.used, "window_s": self.window_s}
