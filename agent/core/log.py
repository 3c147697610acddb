"""Structured log lines, the same on both runtimes: `<time> <level> <component>: <message> k=v`.

The host sends lines to stderr (agent/host/logsetup.py), the board to its UART and a ring buffer
the console's `log` command reads. Callers never pass secrets; `redact_keys` is a second line of
defence for field names that look like secrets.
"""

import sys

from agent.core.compat import wall_time

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40
_NAMES = {DEBUG: "DEBUG", INFO: "INFO", WARNING: "WARNING", ERROR: "ERROR"}

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
    def __init__(self, write=None, level=INFO, ring=100, clock=wall_time):
        self.write = write or (lambda line: sys.stderr.write(line + "\n"))
        self.level = level
        self.clock = clock
        self.ring = []
        self.ring_size = ring

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
