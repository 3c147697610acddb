"""What tools/flash.py prints: steps, progress bars, the dry-run plan, the final summary.

Every long step shows progress: on a terminal one line redrawn in place, elsewhere (a log file,
CI) a line at each 25 %, so a log stays readable. `--dry-run` goes through the same code with
`dry=True`: each step prints what it would do, prefixed "would", and does nothing.
"""

import sys
import time


class Ui:
    def __init__(self, out=None, dry=False, quiet=False):
        self.out = out or sys.stdout
        self.dry = dry
        self.quiet = quiet
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self._bar = None

    def _write(self, text):
        self._end_bar()
        self.out.write(text + "\n")
        self.out.flush()

    def step(self, text):
        """A step starts (or, in a dry run, is described)."""
        self._write(("would " if self.dry else "==> ") + text)

    def info(self, text):
        if not self.quiet:
            self._write("    " + text)

    def warn(self, text):
        self._write("warning: " + text)

    def result(self, text):
        self._write(text)

    def progress(self, label, done, total):
        """done/total units of a long step (bytes, files)."""
        if total <= 0:
            return
        pct = min(100, int(done * 100 / total))
        if self.tty:
            width = 30
            fill = width * pct // 100
            line = "\r    %s [%s%s] %3d%%" % (label, "#" * fill, "." * (width - fill), pct)
            self.out.write(line)
            self.out.flush()
            self._bar = label
            if done >= total:
                self._end_bar()
            return
        last = self._bar if isinstance(self._bar, tuple) and self._bar[0] == label else None
        step = pct // 25
        if last is None or step > last[1] or (done >= total and last[1] < 4):
            self._bar = (label, step)
            self.out.write("    %s %d%%\n" % (label, pct))
            self.out.flush()

    def _end_bar(self):
        if self._bar is not None and self.tty and not isinstance(self._bar, tuple):
            self.out.write("\n")
        self._bar = None


class Timer:
    def __init__(self):
        self.t0 = time.monotonic()

    def seconds(self):
        return time.monotonic() - self.t0
