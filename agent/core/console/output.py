"""Console output to a terminal that may never read (portable).

Invariant: at most `limit` bytes are ever held. Output that does not fit is dropped and counted,
never waited for, so a terminal that stops reading cannot stall the agent; once the held bytes
are out, a note tells the technician how much was lost. Each transport subclasses this and says
only how bytes reach its line (`pump`), reporting each write with `sent(n)`.
"""

DROP_NOTE = "\r\n[console: %d bytes of output dropped: the terminal was not reading]\r\n"


class LineLost(Exception):
    """The console's line failed (read or write error, cable pulled, far end closed)."""


class BoundedOutput:
    def __init__(self, limit):
        self.limit = limit
        self.buf = b""  # bytes, not bytearray: MicroPython cannot delete a bytearray slice
        self.dropped = 0  # bytes dropped since the terminal last caught up
        self.dropped_total = 0
        self.lost = None  # the error that ended the line

    def write(self, data):
        if self.lost is not None:
            return
        if len(self.buf) + len(data) > self.limit:
            self.dropped += len(data)
            self.dropped_total += len(data)
            return
        self.buf += data
        self.pump()

    def sent(self, n):
        """The line took the first n held bytes; when all are out, queue the drop note."""
        self.buf = self.buf[n:]
        if not self.buf and self.dropped:
            self.buf = (DROP_NOTE % self.dropped).encode()
            self.dropped = 0

    def pump(self):
        """Hand held bytes to the line without waiting; call sent(n) for what it took."""
        raise NotImplementedError
