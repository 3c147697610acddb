"""The host's end of the simulated board's UART (host only; hil/fake_board.py's serial line).

    line = Line()
    line.open()                 # a new pty: line.path is what mpremote opens
    line.send(b"...")           # queued, written as the pty takes it
    line.wait_output(b">>> ")   # on the transcript, every byte written so far
    line.close()

The pty is raw: bytes pass as sent (the board does its own \\n -> \\r\\n). The transcript holds
what was written to the pty, not what was queued, so a test that saw some output in it can flush
the pty's input and know that output is gone. It keeps the last TRANSCRIPT_MAX bytes.
"""

import os
import re
import threading
import time
import tty

TRANSCRIPT_MAX = 8 * 1024 * 1024


class Line:
    def __init__(self):
        self.master = self.slave = None
        self.path = None
        self.transcript = bytearray()
        self.cond = threading.Condition()  # notified on every write to the transcript
        self.out = bytearray()  # queued, not yet written

    def open(self):
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)

    def close(self):
        for name in ("master", "slave"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)

    def send(self, data):
        if self.master is None or not data:
            return
        self.out += data
        self.flush()

    def flush(self):
        """Write what is pending to the pty, as far as it takes it."""
        while self.out and self.master is not None:
            try:
                n = os.write(self.master, self.out)
            except BlockingIOError:
                return
            except OSError:
                self.out.clear()
                return
            with self.cond:
                self.transcript += self.out[:n]
                if len(self.transcript) > TRANSCRIPT_MAX:
                    del self.transcript[: len(self.transcript) - TRANSCRIPT_MAX]
                self.cond.notify_all()
            del self.out[:n]

    def wait_output(self, pattern, timeout=30.0, since=0):
        """Wait until the transcript (from byte `since`) matches a bytes regex or contains bytes;
        return the match end. Raises TimeoutError with the tail of the transcript."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                text = bytes(self.transcript[since:])
                if isinstance(pattern, bytes) and not pattern.startswith(b"(?"):
                    i = text.find(pattern)
                    if i >= 0:
                        return since + i + len(pattern)
                else:
                    m = re.search(pattern, text)
                    if m:
                        return since + m.end()
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("board output never showed %r; last output: %r"
                                       % (pattern, text[-400:]))
                self.cond.wait(min(left, 0.5))
