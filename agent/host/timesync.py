"""Is the host's system clock synchronized? (CPython, Linux; no dependency.)

The runner asks this at start and every minute until it says yes, then calls
`clock.trust(None, "ntp")` (agent/core/clock.py). Two sources, either is enough:
- the kernel: adjtimex(2) with modes = 0 only reads the state; it returns TIME_ERROR (5) while the
  clock is unsynchronized (STA_UNSYNC), which every NTP client (systemd-timesyncd, chrony, ntpd)
  clears once it disciplines the clock;
- systemd-timesyncd's flag file /run/systemd/timesync/synchronized (it touches it on sync).
"""

import os

TIME_ERROR = 5
SYNC_FLAG = "/run/systemd/timesync/synchronized"
_TIMEX_BYTES = 256  # struct timex is 208 bytes on 64-bit Linux; a zeroed, larger buffer is safe


def kernel_state(adjtimex=None):
    """adjtimex's return value (0 TIME_OK ... 5 TIME_ERROR), or None where it cannot be asked."""
    # ctypes only here: a daemon whose clock is trusted never asks, and never imports it.
    import ctypes

    if adjtimex is None:
        try:
            # The process's own symbols include libc's (no ctypes.util.find_library: on Linux it
            # runs ldconfig in a subprocess).
            adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
        except (OSError, AttributeError):
            return None
    buf = ctypes.create_string_buffer(_TIMEX_BYTES)  # modes = 0: read only, changes nothing
    state = adjtimex(buf)
    return None if state < 0 else state


def ntp_synced(adjtimex=None, flag=SYNC_FLAG):
    """True when the system clock is known to be synchronized."""
    if flag and os.path.exists(flag):
        return True
    state = kernel_state(adjtimex)
    return state is not None and state != TIME_ERROR
