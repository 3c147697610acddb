"""`site-agent queue stats|export` on a stopped agent's data directory, and the host's store
factory (os.fsync for files, fsync of the directory for new and renamed entries)."""

import os
import time

from agent.core.store.fsio import OsFs
from agent.core.store.report import export_failed
from agent.core.store.store import Store

QUEUE_SUBDIR = "queue"  # storage.dir also holds clock.json, alarms.json and console.sock
_INSPECT_BUDGET = 1 << 62  # inspection never writes, so the budget does not matter


def fsync_file(f):
    os.fsync(f.fileno())


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class _WriteThrough:
    """A segment file opened for writing without a Python buffer: each write() is write(2)
    calls until every byte is in the page cache (a short write is continued, so a frame is
    never left half written by us; the next call then raises ENOSPC, as a full disk does)."""

    def __init__(self, f):
        self._f = f

    def write(self, b):
        mv = memoryview(b)
        n = len(mv)
        while mv:
            mv = mv[self._f.write(mv) :]
        return n

    def __getattr__(self, name):  # flush, close, fileno, seek, tell, read
        return getattr(self._f, name)


class HostFs(OsFs):
    """OsFs whose segment files are written through (unbuffered): a record is handed to the
    kernel when the store appends it, so killing the process loses nothing; the fsync stays
    grouped at the commit, so a power cut loses at most the last commit interval. Other files
    (meta, snapshots, a thinning's temp copy) keep Python's buffer: they are synced whole."""

    def open(self, path, mode):
        if "r" in mode or not path.endswith(".seg"):
            return open(path, mode)
        return _WriteThrough(open(path, mode, buffering=0))


def open_store(data_dir, budget_bytes, **kw):
    """The agent's durable queue on the host (ext4 or similar): records written through to
    the kernel at append, synced (fsync) at each group commit."""
    kw.setdefault("fs", HostFs())
    kw.setdefault("write_through", True)
    return Store(data_dir, budget_bytes, sync=fsync_file, sync_dir=fsync_dir, **kw)


def queue_dir(data_dir):
    """Where the store lives inside the agent's data directory (storage.dir)."""
    return os.path.join(data_dir, QUEUE_SUBDIR)


def _inspect(data_dir):
    path = queue_dir(data_dir)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            "no queue at %s (is %s the agent's storage.dir?)" % (path, data_dir)
        )
    return Store(path, _INSPECT_BUDGET, readonly=True)


def stats(data_dir):
    """Depth per lane, bytes, oldest/newest record, seq range, counters. Reads only."""
    st = _inspect(data_dir)
    try:
        s = st.stats()
    finally:
        st.close()
    for k in ("budget", "io", "fault", "inflight_batches"):
        s.pop(k, None)
    return s


def export(data_dir, out_path):
    """Write the backlog (alarms, then routine, oldest first) as JSON lines. Returns the count.
    Raises QueueError saying what to do when out_path cannot be written (nothing left behind)."""
    st = _inspect(data_dir)
    try:
        return st.export(out_path)
    except OSError as e:
        try:
            os.remove(out_path)
        except OSError:
            pass
        raise export_failed(out_path, e) from e
    finally:
        st.close()


def _when(t):
    if t is None:
        return "time unknown"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def format_stats(s):
    """Plain text for a technician, 80 columns."""
    lines = ["%-8s %7s  %-31s %s" % ("LANE", "RECORDS", "OLDEST", "NEWEST")]
    for lane in sorted(s["depth"]):
        old = s.get("oldest", {}).get(lane)
        new = s.get("newest", {}).get(lane)
        lines.append(
            "%-8s %7d  %-31s %s"
            % (
                lane,
                s["depth"][lane],
                ("seq %d, %s" % (old["seq"], _when(old.get("time")))) if old else "-",
                ("seq %d, %s" % (new["seq"], _when(new.get("time")))) if new else "-",
            )
        )
    lines.append("")
    lines.append(
        "bytes used:   %d in %d segment files" % (s["bytes"], sum(s.get("segments", {}).values()))
    )
    delivered = s.get("delivered", {})
    lines.append(
        "delivered:    %s"
        % ", ".join(
            "%s %s"
            % (lane, "up to seq %d" % delivered[lane] if delivered[lane] >= 0 else "none yet")
            for lane in sorted(delivered)
        )
    )
    lines.append("next seq:     %d" % s["next_seq"])
    lines.append("thinned:      %d routine readings aggregated to make room" % s.get("thinned", 0))
    lines.append(
        "dropped:      %d records dropped to stay within the budget" % s.get("dropped", 0)
    )
    return "\n".join(line.rstrip() for line in lines) + "\n"
