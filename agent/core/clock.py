"""Time without a trusted clock (portable).

    clock = Clock(boot_id(), state=ClockFile(path))     # at start, before the first poll
    clock.now()            # epoch seconds when trusted, else None (the Loop's `wall`)
    clock.stamp()          # (wall or None, [boot, mono]): what a record carries
    clock.mark(record)     # adds "boot" and "mono" to a record dict that has no time
    clock.trust(t, "ntp")  # the clock is now right (NTP synced, broker or console time)
    clock.resolve(record)  # a copy with wall times filled in, marked estimated: call at read-out

Model: every record is stamped when it is made with the monotonic time of this boot, and with wall
time too once the clock is trusted. An anchor per boot (wall minus monotonic at the moment of
trust) maps monotonic stamps to wall time. Anchors are persisted, so a record made before a reboot
is resolved by the anchor of its own boot; a boot that never got trusted time is chained to the
next boot that did, assuming no gap between them (the best estimate there is; marked estimated).

Invariants:
- Records are never rewritten in the store. resolve() works on a copy at read-out, so a record is
  resolved with the best anchor known when it leaves, and the store stays append-only.
- Order in the queue is the sequence number, never time. A clock step back or forward changes the
  time later records carry, never which records exist or their order: nothing is reordered,
  duplicated or dropped. A step is logged and counted (`steps`), and now() follows it.
- A boot's anchor is fixed by its first trust; later steps do not move records already stamped.
- A wall time before MIN_EPOCH is never trusted (a board's RTC at its 2000-01-01 reset value).
"""

from agent.core import readings as rd
from agent.core.compat import monotonic, wall_time
from agent.core.errors import os_reason
from agent.core.log import ERROR, INFO

MIN_EPOCH = 1704067200  # 2024-01-01T00:00:00Z: any earlier "time" is a clock that was never set
STEP_TOLERANCE = 2.0  # seconds of disagreement between wall and monotonic counted as a step
MAX_BOOTS = 16  # anchors kept; older boots' records are long delivered or were dropped

# Record fields that hold a wall time, each with the field holding its [boot, mono] stamp.
# ("time" pairs with the record's own "boot" and "mono" fields.)
TIME_FIELDS = (("first_seen", "first_at"), ("last_seen", "last_at"))


def boot_id():
    """A new id for this boot: the kernel's boot id where there is one, else 64 random bits."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip().replace("-", "")[:16]
    except OSError:
        pass
    import os

    try:
        raw = os.urandom(8)
    except (AttributeError, NotImplementedError):
        import random

        raw = bytes([random.getrandbits(8) for _ in range(8)])
    import binascii

    return binascii.hexlify(raw).decode()


class Clock:
    def __init__(self, boot, mono=monotonic, wall=wall_time, state=None, log=None):
        """`boot`: this boot's id. `mono`, `wall`: time sources (injected by tests). `state`: a
        ClockFile (or anything with load() and save(dict)) that keeps anchors across boots."""
        self.boot = boot
        self.mono = mono
        self.wall = wall
        self.store = state
        self.log = log
        self._save_failed = False  # the last save failed: say when one works again
        self.source = None  # what made the clock trusted: "ntp", "broker", "console", ...
        self.offset = None  # wall - mono now (follows steps); None while untrusted
        self.steps = 0
        self.follow = False  # now() follows the system clock (trusted as a whole, e.g. NTP)
        self.boots = []  # [[boot id, anchor or None, last mono seen], ...] oldest first
        loaded = state.load() if state is not None else None
        if loaded and loaded.get("v") == 1:
            self.boots = [list(b) for b in loaded.get("boots", ()) if b[0] != boot]
        self.boots.append([boot, None, mono()])
        del self.boots[:-MAX_BOOTS]
        self._save()

    # --- trust ----------------------------------------------------------------------------
    def trusted(self):
        return self.offset is not None

    def trust(self, t=None, source="system"):
        """The wall clock is right from now on: `t` is the true epoch time now, or None when the
        system clock itself has been set (NTP). Returns False, changing nothing, for a time before
        MIN_EPOCH."""
        follow = t is None
        t = self.wall() if follow else float(t)
        if t < MIN_EPOCH:
            if self.log is not None:
                self.log.warning("clock", "implausible time refused", time=t, source=source)
            return False
        m = self.mono()
        offset = t - m
        if self.offset is not None and abs(offset - self.offset) > STEP_TOLERANCE:
            self._stepped(offset)
        self.offset = offset
        self.source = source
        self.follow = follow
        mine = self.boots[-1]
        if mine[1] is None:
            mine[1] = offset
            if self.log is not None:
                self.log.info("clock", "trusted", source=source)
        mine[2] = m
        self._save()
        return True

    def _stepped(self, offset):
        self.steps += 1
        if self.log is not None:
            self.log.warning("clock", "step", by_s=round(offset - self.offset, 3))

    def now(self):
        """Epoch seconds when trusted, else None. Follows steps of the system clock: when the
        system clock disagrees with monotonic time by more than STEP_TOLERANCE, the step is
        counted and believed (NTP stepped it, or someone set it). A clock trusted from a given time
        (broker, console) ignores the system clock, which may be plausible but wrong."""
        if self.offset is None:
            return None
        m = self.mono()
        w = self.wall() if self.follow else 0
        if self.follow and w >= MIN_EPOCH and abs((w - m) - self.offset) > STEP_TOLERANCE:
            self._stepped(w - m)
            self.offset = w - m
        return m + self.offset

    def stamp(self):
        """(wall or None, [boot, mono]) for a record made now."""
        m = self.mono()
        return self.now(), [self.boot, m]

    def mark(self, record):
        """Give a record dict without a time its (boot, mono) stamp; returns the record."""
        if record.get("time") is None:
            record["boot"] = self.boot
            record["mono"] = self.mono()
        return record

    def checkpoint(self):
        """Persist how far this boot has run (call every few minutes and at shutdown), so an
        untrusted boot's records can be chained to the next boot's anchor."""
        self.boots[-1][2] = self.mono()
        self._save()

    def state(self):
        """For the console and the status command (AgentFacade.status)."""
        return {
            "boot": self.boot,
            "trusted": self.trusted(),
            "source": self.source,
            "steps": self.steps,
            "time": self.now(),
        }

    # --- resolving stamps -----------------------------------------------------------------
    def anchor(self, boot):
        """wall - mono for records of `boot`, or None when it cannot be known yet. A boot without
        its own anchor takes the next anchored boot's start (its anchor at mono 0, assuming it
        booted at once) minus how long this boot ran after the stamp (last mono seen)."""
        i = 0
        while i < len(self.boots) and self.boots[i][0] != boot:
            i += 1
        if i == len(self.boots):
            return None
        if self.boots[i][1] is not None:
            return self.boots[i][1]
        # Chain forward: each unanchored boot ends where the next one starts.
        end = 0.0  # seconds of unanchored run time between this boot's mono 0 and the anchor
        j = i
        while j < len(self.boots) and self.boots[j][1] is None:
            end += self.boots[j][2]
            j += 1
        if j == len(self.boots):
            return None
        # The anchored boot started at wall = its anchor (mono counts from its boot); the boots
        # before it ran back to back, so boot i started `end` seconds earlier.
        return self.boots[j][1] - end

    def resolve(self, record):
        """A copy of `record` with its missing wall times filled in from its (boot, mono) stamps
        and quality EST_TIME; the record itself when nothing is missing or nothing is known."""
        out = None
        if record.get("time") is None and record.get("boot") is not None:
            a = self.anchor(record["boot"])
            if a is not None:
                out = dict(record)
                out["time"] = round(record["mono"] + a, 3)
                out["quality"] = rd.EST_TIME
        for wall_key, at_key in TIME_FIELDS:
            at = record.get(at_key)
            if record.get(wall_key) is None and at:
                a = self.anchor(at[0])
                if a is not None:
                    if out is None:
                        out = dict(record)
                    out[wall_key] = round(at[1] + a, 3)
        return record if out is None else out

    def _save(self):
        if self.store is not None:
            try:
                self.store.save({"v": 1, "boots": self.boots})
            except OSError as e:  # time bookkeeping must not stop the agent
                self._save_failed = True
                if self.log is not None:
                    self.log.repeating(("clock", "save"), ERROR, "clock", "cannot save anchors",
                                       error=os_reason(e))  # fmt: skip
                return
            if self._save_failed and self.log is not None:
                self.log.repeating(("clock", "saved"), INFO, "clock", "anchors saved again")
            self._save_failed = False


class ClockFile:
    """Anchors in a small JSON file, replaced atomically (see store/jsonfile.py)."""

    def __init__(self, path, fs=None):
        from agent.core.store.jsonfile import JsonFile

        self._f = JsonFile(path, fs)

    def load(self):
        return self._f.load()

    def save(self, d):
        self._f.save(d)
