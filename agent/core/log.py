"""Structured log lines, the same on both runtimes: `<time> <level> <component>: <message> k=v`.

The host sends lines to stderr (agent/host/logsetup.py), the board to its UART and a ring buffer
the console's `log` command reads. Callers never pass secrets; `redact_keys` is a second line of
defence for field names that look like secrets.

Repeats: a line that can come again and again (a device that flaps every few seconds, a medium
that fails every commit) goes through `repeating(key, ...)`. Per key, a window of `repeat_s`
(default REPEAT_S) starts at the first line: its first `burst` lines are written as they come,
later ones are only counted. When the window has passed (seen at the next repeating() for the
key, or at tick(), which the poll loop calls every pass), the latest held line is written once,
at the highest level held, with `repeats=<lines it stands for>` and `in_s=<window>`, and a new
window starts with it. A key with nothing held when its window passes is forgotten, so the next
line for it goes out at once. A device flapping every 5 s for an hour: 24 lines, not 1,440.
"""

import sys

from agent.core.compat import monotonic, wall_time

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}

REPEAT_S = 300  # a repeating line is summarised at most this often

_SECRET_HINTS = ("password", "secret", "community", "key", "pin", "token", "passphrase")


def _fmt_value(v):
    s = str(v)
    if not s or " " in s or "=" in s or '"' in s:
        s = '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return s


def _timestamp(t):
    # ISO-like UTC without depending on time.strftime (absent on MicroPython).
    import time

    y, mo, d, h, mi, s = time.gmtime(int(t))[:6]
    return "%04d-%02d-%02dT%02d:%02d:%02dZ" % (y, mo, d, h, mi, s)


class Log:
    def __init__(self, write=None, level=INFO, ring=100, clock=wall_time, mono=monotonic,
                 repeat_s=REPEAT_S):  # fmt: skip
        self.write = write or (lambda line: sys.stderr.write(line + "\n"))
        self.level = level
        self.clock = clock
        self.mono = mono
        self.repeat_s = repeat_s
        self.ring = []
        self.ring_size = ring
        # key -> [window start, lines written in it, lines held, (level, component, message,
        # fields) of the latest held line]
        self._repeats = {}

    def repeating(self, key, level, component, message, burst=1, **fields):
        """log() for a line that may repeat fast (see the module doc). Returns True when the
        line was written now, False when it was held to be counted."""
        now = self.mono()
        r = self._repeats.get(key)
        if r is not None and now - r[0] >= self.repeat_s:
            self._close_window(key, r, now)
            r = self._repeats.get(key)
        if r is None:
            self._repeats[key] = [now, 1, 0, None]
            self.log(level, component, message, **fields)
            return True
        if r[1] < burst:
            r[1] += 1
            self.log(level, component, message, **fields)
            return True
        held = r[3]
        if held is not None and held[0] > level:
            level = held[0]  # a summary is never quieter than what it stands for
        r[2] += 1
        r[3] = (level, component, message, fields)
        return False

    def tick(self):
        """Write the summaries whose window has passed; forget quiet keys. Cheap when idle."""
        if not self._repeats:
            return
        now = self.mono()
        for key in list(self._repeats):
            r = self._repeats[key]
            if now - r[0] >= self.repeat_s:
                self._close_window(key, r, now)

    def _close_window(self, key, r, now):
        if not r[2]:
            del self._repeats[key]
            return
        level, component, message, fields = r[3]
        fields = dict(fields)
        fields["repeats"] = r[2]
        fields["in_s"] = int(now - r[0])
        self._repeats[key] = [now, 1, 0, None]
        self.log(level, component, message, **fields)

    def log(self, level, component, message, **fields):
        if level < self.level:
            return
        parts = [_timestamp(self.clock()), _NAMES.get(level, str(level)), component + ":", message]
        for k in sorted(fields):
            v = fields[k]
            for hint in _SECRET_HINTS:
                if hint in k.lower():
                    v = "<secret>"
                    break
            parts.append("%s=%s" % (k, _fmt_value(v)))
        line = " ".join(parts)
        self.ring.append(line)
        if len(self.ring) > self.ring_size:
            del self.ring[0]
        try:
            self.write(line)
        except Exception:  # a broken log sink must not stop the agent
            pass

    def debug(self, component, message, **f):
        self.log(DEBUG, component, message, **f)

    def info(self, component, message, **f):
        self.log(INFO, component, message, **f)

    def warning(self, component, message, **f):
        self.log(WARNING, component, message, **f)

    def error(self, component, message, **f):
        self.log(ERROR, component, message, **f)

    def tail(self, n=20):
        return self.ring[-n:]
