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
    `allows(now, n, urgent)` says whether n bytes may go now: urgent (alarm) traffic always may."""

    def __init__(self, limit, window_s=86400.0):
        self.limit = int(limit)
        self.window_s = float(window_s)
        self.start = None
        self.used = 0

    def _roll(self, now):
        start = now - (now % self.window_s)
        if self.start != start:
            self.start = start
            self.used = 0

    def allows(self, now, n, urgent=False):
        if self.limit <= 0 or urgent:
            return True
        self._roll(now)
        return self.used + n <= self.limit

    def spend(self, now, n):
        self._roll(now)
        self.used += n

    def reopens_in(self, now):
        """Seconds until the current window ends."""
        self._roll(now)
        return self.start + self.window_s - now

    def state(self, now):
        self._roll(now)
        return {"limit": self.limit, "used": self.used, "window_s": self.window_s}
