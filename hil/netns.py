"""Network namespaces for rigs (host only, Linux, root): run a command or a function in one.

    if netns.available():                      # root, `ip` present, a namespace can be made
        argv = netns.exec_argv("hil123s", ["mosquitto", "-c", conf])
        sock = netns.call_in("hil123s", lambda: socket.create_connection((host, port)))

call_in() runs the function on a short-lived thread that has joined the namespace (setns(2)
affects only the calling thread), so a socket it creates belongs to that namespace for good and
can then be used from any thread. The caller's own thread never changes namespace.
"""

import ctypes
import os
import shutil
import subprocess
import threading

CLONE_NEWNET = 0x40000000
_libc = None


def ip_path():
    return shutil.which("ip") or ("/usr/sbin/ip" if os.path.exists("/usr/sbin/ip") else None)


def available():
    """(True, None) when this process can make namespaces, else (False, why)."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False, "not root: network namespaces need CAP_SYS_ADMIN"
    ip = ip_path()
    if ip is None:
        return False, "no `ip` command (apt-get install iproute2)"
    name = "hilprobe%d" % os.getpid()
    r = subprocess.run([ip, "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        return False, "ip netns add failed: %s" % r.stderr.strip()
    subprocess.run([ip, "netns", "del", name], capture_output=True)
    return True, None


def exec_argv(ns, argv):
    """argv run inside namespace ns (None: as it is)."""
    if ns is None:
        return list(argv)
    return [ip_path(), "netns", "exec", ns] + list(argv)


def _setns(ns):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open("/run/netns/%s" % ns, os.O_RDONLY)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, "setns(%s): %s" % (ns, os.strerror(err)))
    finally:
        os.close(fd)


def call_in(ns, fn, *args):
    """fn(*args) on a thread inside namespace ns (None: here); returns its result or raises."""
    if ns is None:
        return fn(*args)
    box = {}

    def run():
        try:
            _setns(ns)
            box["value"] = fn(*args)
        except BaseException as e:  # handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name="in netns " + ns, daemon=True)
    t.start()
    t.join()
    if "error" in box:
        raise box["error"]
    return box.get("value")
