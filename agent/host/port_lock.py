"""An exclusive claim on a serial device for one process (host, Linux).

    claim(fd, path)      # after opening the port; DeviceError if another process holds it
    release(fd)          # before closing it (closing also ends the claim)

Two processes on one serial line break each other: their requests and replies interleave, and
each reads the other's answers as garbage. So the agent claims every serial device it opens:
- flock(LOCK_EX | LOCK_NB) on the open descriptor: advisory, held until the descriptor closes
  (a crash releases it too), and the lock pyserial's `exclusive=True` and tools such as picocom
  take, so they and the agent keep off each other's line. Who holds it is read from /proc/locks
  (the lock's inode and pid), so the refusal can say "in use by the running agent (pid N)".
- TIOCEXCL on the tty: further open() calls fail with EBUSY for everyone but root, so a program
  that takes no lock (a shell's `cat /dev/ttyUSB0`, minicom without lock files) is refused at
  open instead of stealing bytes. It is cleared (TIOCNXCL) on release.
URL ports (socket://, rfc2217://) are not devices of this machine and are not claimed.
"""

import fcntl
import os
import termios

from agent.core.errors import DeviceError


def holder(st):
    """(pid, name) of the process holding a flock on the file `st` (an os.stat result) is, or
    None. Linux's /proc/locks lists each lock as "<n>: FLOCK ADVISORY WRITE <pid>
    <maj>:<min>:<inode> ..."."""
    dev = "%02x:%02x:%d" % (os.major(st.st_dev), os.minor(st.st_dev), st.st_ino)
    try:
        with open("/proc/locks") as f:
            rows = f.read().splitlines()
    except OSError:
        return None
    for row in rows:
        parts = row.split()
        if "->" in parts:  # a waiter, not the holder
            continue
        if len(parts) >= 6 and parts[1] == "FLOCK" and parts[5] == dev:
            pid = int(parts[4])
            return pid, _name(pid)
    return None


def _name(pid):
    """"the running agent" for a site-agent process, else the program's name."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "another process"
    text = " ".join(argv)
    if "site-agent" in text or "agent.host.cli" in text or "console_rig" in text:
        return "the running agent"
    return os.path.basename(argv[0]) if argv else "another process"


def in_use(path, fd=None):
    """The refusal for a port another process holds, naming it when /proc/locks does (from the
    open descriptor, or from the path when the open itself was refused with EBUSY)."""
    try:
        who = holder(os.fstat(fd) if fd is not None else os.stat(path))
    except OSError:
        who = None
    if who is None:
        return "serial port %s is in use by another process" % path
    pid, name = who
    if pid == os.getpid():
        return "serial port %s is already open in this process" % path
    return "serial port %s is in use by %s (pid %d)" % (path, name, pid)


def claim(fd, path):
    """Claim the device open on `fd`; DeviceError naming the holder if another process has it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise DeviceError(in_use(path, fd)) from None
    except OSError:
        return  # a file that takes no locks: nothing to claim
    try:
        fcntl.ioctl(fd, termios.TIOCEXCL)
    except OSError:
        pass  # not a tty (a test's plain file): the flock is the claim


def release(fd):
    """Give the claim up before the descriptor closes (the flock ends with the close anyway)."""
    try:
        fcntl.ioctl(fd, termios.TIOCNXCL)
    except OSError:
        pass
    try:
        fcntl.flock(fd, fcntl.LOCK_UN)
    except OSError:
        pass
