"""Shared machinery for serial device emulators on a pseudo-terminal (host only).

A PtyEmulator owns one pty pair. The slave's path (/dev/pts/N) is what a driver opens, exactly as
it would open /dev/ttyUSB0; the emulator answers on the master side from a background thread.

Subclasses implement `reply_for(request) -> bytes or None` for one request frame, and may
override `split_requests` (line protocols split on TERMINATOR; binary ones such as Modbus RTU
frame by length or silence). Faults that do not depend on the protocol are applied here, on the
way out, so every emulator has them:

    None        answer normally
    "silence"   read requests, answer nothing
    "drip"      send the reply one byte at a time, drip_s apart (a slow or flaky line)
    "truncated" send the first part of the reply and stop (no terminator)
    "garbage"   send random bytes of about the reply's length, then the terminator
    "echo"      send the request back (what a device that does not know a command does)

Protocol faults (bad framing, bad checksum, unknown-value fields) are the subclass's: it lists
them in PROTOCOL_FAULTS and reads self.fault in reply_for.

Invariants: the emulator keeps its own slave descriptor open, so a driver may close and reopen
the path at will without the master seeing a hang-up; stop() joins the thread and closes every
descriptor it opened (master, slave, wake pipe), so nothing is left behind.
"""

import os
import random
import select
import threading
import time
import tty

COMMON_FAULTS = ("silence", "drip", "truncated", "garbage", "echo")


class PtyEmulator:
    TERMINATOR = b"\r"
    PROTOCOL_FAULTS = ()
    MAX_REQUEST = 512  # a request longer than this without a terminator is dropped

    def __init__(self, drip_s=0.02, seed=1, log_size=100):
        self.drip_s = drip_s
        self.fault = None
        self.path = None
        self.requests = 0  # request frames received
        self.replies = 0  # replies sent in full
        self.log = []  # last log_size (request, reply) pairs, reply None when nothing was sent
        self._log_size = log_size
        self._rng = random.Random(seed)
        self._lock = threading.RLock()  # guards the device model against the API thread
        self._master = self._slave = None
        self._wake_r = self._wake_w = None
        self._thread = None
        self._stop = False
        self._pending = b""

    # --- lifecycle ------------------------------------------------------------------------
    def start(self):
        """Create the pty, start answering; return the slave path for the driver to open."""
        if self._thread is not None:
            return self.path
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)  # no echo, no CR/NL translation: bytes pass as sent
        self.path = os.ttyname(self._slave)
        self._wake_r, self._wake_w = os.pipe()
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, name="emulator " + self.path, daemon=True
        )
        self._thread.start()
        return self.path

    def stop(self):
        """Stop the thread and close every descriptor. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            try:
                os.write(self._wake_w, b"x")
            except OSError:
                pass
            thread.join(5.0)
        for name in ("_master", "_slave", "_wake_r", "_wake_w"):
            fd = getattr(self, name)
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
                setattr(self, name, None)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_fault(self, name):
        """Switch the fault mode at run time (None for normal answers)."""
        if name is not None and name not in COMMON_FAULTS and name not in self.PROTOCOL_FAULTS:
            raise ValueError(
                "unknown fault %r; known: %s"
                % (name, ", ".join(COMMON_FAULTS + tuple(self.PROTOCOL_FAULTS)))
            )
        self.fault = name

    # --- what a subclass implements -------------------------------------------------------
    def reply_for(self, request):
        """The reply to one request frame (terminator included), or None for no reply."""
        raise NotImplementedError

    def split_requests(self, data):
        """Split buffered bytes into complete request frames; return (frames, rest)."""
        frames = []
        while True:
            idx = data.find(self.TERMINATOR)
            if idx < 0:
                break
            frames.append(data[: idx + len(self.TERMINATOR)])
            data = data[idx + len(self.TERMINATOR) :]
        if len(data) > self.MAX_REQUEST:
            data = b""
        return frames, data

    # --- the thread -------------------------------------------------------------------------
    def _run(self):
        while not self._stop:
            try:
                ready, _, _ = select.select([self._master, self._wake_r], [], [], 0.5)
            except (OSError, ValueError):
                return
            if self._stop:
                return
            if self._master not in ready:
                continue
            try:
                data = os.read(self._master, 4096)
            except OSError:  # EIO would mean no slave is open; ours always is, so this is stop
                return
            frames, self._pending = self.split_requests(self._pending + data)
            for frame in frames:
                self._answer(frame)

    def _answer(self, request):
        with self._lock:
            self.requests += 1
            fault = self.fault
            reply = None if fault == "silence" else self.reply_for(request)
        if fault == "echo":
            reply = request
        if reply is not None and fault == "garbage":
            body = bytes(self._rng.randrange(256) for _ in range(max(1, len(reply) - 1)))
            reply = body.replace(self.TERMINATOR, b"?") + self.TERMINATOR
        if reply is not None and fault == "truncated":
            reply = reply[: max(1, len(reply) // 2)]
        self._remember(request, reply)
        if reply is None:
            return
        if fault == "drip":
            self._drip(reply)
        else:
            self._write(reply)
        if fault != "truncated":
            self.replies += 1

    def _drip(self, reply):
        for i in range(len(reply)):
            if self._stop:
                return
            if self.fault != "drip":  # fault cleared mid-reply: finish at once
                self._write(reply[i:])
                return
            self._write(reply[i : i + 1])
            time.sleep(self.drip_s)

    def _write(self, data):
        view = memoryview(data)
        while view and not self._stop:
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                time.sleep(0.001)
            except OSError:
                return

    def _remember(self, request, reply):
        self.log.append((request, reply))
        if len(self.log) > self._log_size:
            del self.log[0]
