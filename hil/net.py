"""Small helpers for loopback services: free ports and waiting until something listens."""

import socket
import time


def free_port(host="127.0.0.1", kind=socket.SOCK_STREAM):
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, kind) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_tcp(host, port, timeout=10.0, proc=None):
    """Wait until a TCP connect to host:port succeeds; raise RuntimeError naming what failed."""
    deadline = time.monotonic() + timeout
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening on %s:%s"
                               % (proc.returncode, host, port))
        try:
            with socket.socket(family, socket.SOCK_STREAM) as s:
                s.settimeout(0.5)
                s.connect((host, port))
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("nothing listening on %s:%s after %.0fs" % (host, port, timeout))
