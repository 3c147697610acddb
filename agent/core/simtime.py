"""Accelerated site time for HIL drills (portable). Off unless the environment asks for it.

    SITE_AGENT_TIME_SCALE="240"                            site time runs 240 x the machine's
    SITE_AGENT_TIME_SCALE="240,1760000000.25,1788000000"   ... from this real instant, at which
                                                           the site's wall clock read this epoch
    SITE_AGENT_CLOCK_STEP_FILE=/run/drill/step             seconds added to the wall clock: the
                                                           drill steps the site's "system clock"

    from agent.core import simtime
    simtime.SCALE          # 1.0 when off
    simtime.mono()         # site seconds, never backwards
    simtime.wall()         # site epoch seconds (with the step file's offset)
    simtime.real(s)        # machine seconds for a site duration s

Every process started with the same variables (the agent after each power cut, the drill's
device models) computes the same site time from the machine's clocks, so the timeline goes on
across restarts and the emulators' physics and the agent agree.

Which parts of the agent run on site time and which on machine time (docs/drill.md):
- site time: when devices are polled (interval, jitter, the retry backoff of a failing device),
  the group-commit interval, alarm debounce and hold times, the runtime estimate, the time on
  every record, the byte budget's windows. These describe the site's physics and the operations
  centre's view, so they scale.
- machine time: whatever waits on I/O or a peer: poll budgets (a device answers in milliseconds
  whatever the scale), MQTT keepalive, connect and acknowledgement timeouts, reconnect backoff,
  link probes, message and byte rates, the watchdog, the console, log line times. A TCP
  handshake over a 600 ms satellite link takes 1.2 s of real time at any scale.
Invariant: with the variables unset, mono() and wall() are compat.monotonic() and wall_time().
"""

from agent.core.compat import monotonic, wall_time


def _env(name):
    try:
        import os

        return os.getenv(name)
    except (ImportError, AttributeError):  # a board has no environment
        return None


class SiteTime:
    """Site time from the machine's clocks: scale, the real instant it starts from (origin), the
    site's wall clock at that instant (epoch), and an optional step file (clock jumps)."""

    def __init__(self, scale=1.0, origin=None, epoch=None, step_file=None):
        scale = float(scale)
        if not scale >= 1.0:
            raise ValueError("time scale must be at least 1, got %r" % (scale,))
        real_now, mono_now = wall_time(), monotonic()
        self.scale = scale
        self.origin = real_now if origin is None else float(origin)
        self.epoch = self.origin if epoch is None else float(epoch)
        # The monotonic clock's reading at the origin: both clocks have advanced alike since.
        self.mono0 = mono_now - (real_now - self.origin)
        self.step_file = step_file
        self._step = 0.0
        self._step_checked = None

    @classmethod
    def parse(cls, spec, step_file=None):
        """From the variable's text, 'scale[,origin[,epoch]]'. Raises ValueError."""
        parts = [p.strip() for p in spec.split(",")]
        if not 1 <= len(parts) <= 3:
            raise ValueError("SITE_AGENT_TIME_SCALE: expected 'scale[,origin[,epoch]]'")
        nums = [float(p) for p in parts]
        return cls(*nums, step_file=step_file)

    def spec(self):
        """The variable's text that gives another process this same site time."""
        return "%r,%.6f,%.6f" % (self.scale, self.origin, self.epoch)

    def step_offset(self):
        """The step file's seconds, read at most twice a (real) second; 0 without a file."""
        if self.step_file is None:
            return 0.0
        now = monotonic()
        if self._step_checked is None or now - self._step_checked >= 0.5:
            self._step_checked = now
            try:
                with open(self.step_file) as f:
                    self._step = float(f.read().strip() or 0)
            except (OSError, ValueError):
                pass  # no file yet, or one being written: keep the last offset
        return self._step

    def mono(self):
        return self.mono0 + (monotonic() - self.mono0) * self.scale

    def wall(self):
        return self.epoch + (wall_time() - self.origin) * self.scale + self.step_offset()

    def site_of_real(self, real_epoch):
        """The site's wall time (without steps) at a real epoch time."""
        return self.epoch + (real_epoch - self.origin) * self.scale

    def real_of_site(self, site_epoch):
        return self.origin + (site_epoch - self.epoch) / self.scale


_spec = _env("SITE_AGENT_TIME_SCALE")
CURRENT = SiteTime.parse(_spec, _env("SITE_AGENT_CLOCK_STEP_FILE")) if _spec else None
ACTIVE = CURRENT is not None
SCALE = CURRENT.scale if ACTIVE else 1.0


def mono():
    return CURRENT.mono() if ACTIVE else monotonic()


def wall():
    return CURRENT.wall() if ACTIVE else wall_time()


def real(site_seconds):
    """Machine seconds that pass while site_seconds of site time do."""
    return site_seconds / SCALE


def describe():
    """One line for the start-up log, or None when off."""
    if not ACTIVE:
        return None
    return "site time runs %g x the machine's (HIL drill only; never in the field)" % SCALE
