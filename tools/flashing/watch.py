"""Watch a board's serial output after the reset: did the agent start, did its first batch reach
the broker, or did it fall into safe mode or crash?

The board prints the agent's log lines (agent/core/log.py: `<time> <LEVEL> <component>: <message>
k=v ...`) on the REPL's UART. The lines this watcher acts on are data, here:
"""

import re
import time

STARTED = re.compile(r"\bINFO agent: started\b(?P<fields>.*)")
ACKED = re.compile(r"\bINFO uplink: (first batch acknowledged|batch acknowledged|acked)\b"
                   r"(?P<fields>.*)")  # fmt: skip
CONNECTED = re.compile(r"\bINFO uplink: connected\b(?P<fields>.*)")
BOOT = re.compile(r"\bINFO agent: boot\b(?P<fields>.*)")
SAFE = re.compile(r"\bERROR agent: SAFE MODE\b")
FATAL = re.compile(r"^(Traceback \(most recent call last\)|site-agent: (no code|cannot start))"
                   r"|\bERROR agent: fatal error\b")  # fmt: skip
FIELD = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*"|\S+)')


def fields(text):
    out = {}
    for k, v in FIELD.findall(text):
        out[k] = v[1:-1].replace('\\"', '"') if v.startswith('"') else v
    return out


class Watch:
    """Feed it bytes; it keeps lines and what it learned. `done` once the agent started and
    (when `want_ack`) its first batch was acknowledged, or once something went wrong."""

    def __init__(self, want_ack=True):
        self.want_ack = want_ack
        self.lines = []
        self.started = None  # fields of the "agent: started" line
        self.boot = None
        self.connected = None
        self.acked = None
        self.problem = None  # a line that says the agent will not run
        self._buf = b""

    def feed(self, data):
        self._buf += data
        *complete, self._buf = self._buf.split(b"\n")
        for raw in complete:
            line = raw.decode("utf-8", "replace").rstrip("\r")
            self.lines.append(line)
            self._line(line)

    def _line(self, line):
        for pattern, attr in ((STARTED, "started"), (BOOT, "boot"), (CONNECTED, "connected"),
                              (ACKED, "acked")):  # fmt: skip
            m = pattern.search(line)
            if m and getattr(self, attr) is None:
                setattr(self, attr, fields(m.group("fields")))
                return
        if self.problem is None and self.started is None and (FATAL.search(line)
                                                             or SAFE.search(line)):  # fmt: skip
            self.problem = line

    @property
    def done(self):
        if self.problem is not None:
            return True
        if self.started is None:
            return False
        return self.acked is not None or not self.want_ack


def watch(read, feed_ui, start_s, ack_s, want_ack=True, clock=time.monotonic):
    """Read from the board (read() -> bytes, never blocking long) until the agent started (within
    start_s) and, if wanted, a batch was acknowledged (within ack_s after the start)."""
    w = Watch(want_ack)
    t0 = clock()
    t_started = None
    while not w.done:
        now = clock()
        if w.started is not None and t_started is None:
            t_started = now
        if t_started is None and now - t0 > start_s:
            break
        if t_started is not None and now - t_started > ack_s:
            break
        data = read()
        if data:
            before = len(w.lines)
            w.feed(data)
            for line in w.lines[before:]:
                feed_ui(line)
        else:
            time.sleep(0.05)
    return w
