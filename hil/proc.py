"""Child processes that cannot outlive the rig that started them.

A rig's parent may die without running its cleanup (SIGKILL, a closed terminal, a crashed test
runner). On Linux, PR_SET_PDEATHSIG makes the kernel send the child SIGTERM when its parent dies,
so brokers, SNMP agents and agents started here never linger. Elsewhere it is a no-op.
`stop(p)` ends one such child the ordinary way: SIGTERM, then SIGKILL if it does not go.
"""

import ctypes
import signal
import subprocess
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent():
    """preexec_fn for subprocess.Popen: runs in the child between fork and exec."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def stop(p, timeout):
    """Terminate a Popen child and reap it; SIGKILL when it is still there after timeout s."""
    if p is None or p.poll() is not None:
        return
    p.terminate()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(timeout)
