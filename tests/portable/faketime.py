"""A settable time source for portable tests of clock-driven code (no pytest imports)."""

from agent.core.clock import Clock

EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z


class FakeTime:
    """mono() and wall() read two settable counters; advance(dt) moves both, as real time does.
    wall starts unset (a board at its RTC reset value) unless `wall` is given."""

    def __init__(self, mono=100.0, wall=946684800.0):
        self.m = float(mono)
        self.w = float(wall)

    def mono(self):
        return self.m

    def wall(self):
        return self.w

    def advance(self, dt):
        self.m += dt
        self.w += dt


def trusted_clock(boot="b1", t=None, state=None):
    """(FakeTime, Clock) with the clock trusted at EPOCH."""
    t = t or FakeTime()
    c = Clock(boot, mono=t.mono, wall=t.wall, state=state)
    c.trust(EPOCH, "test")
    return t, c
