"""`site-agent queue stats|export` on a stopped agent's data directory, and the host's store
factory (os.fsync for files, fsync of the directory for new and renamed entries)."""

import json
import os

from agent.core.store import Store

_INSPECT_BUDGET = 1 << 62  # inspection never writes, so the budget does not matter


def fsync_file(f):
    os.fsync(f.fileno())


def fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_store(data_dir, budget_bytes, **kw):
    """The agent's durable queue on the host (ext4 or similar)."""
    return Store(data_dir, budget_bytes, sync=fsync_file, sync_dir=fsync_dir, **kw)


def _inspect(data_dir):
    if not os.path.isdir(data_dir):
        raise FileNotFoundError("no queue directory at %s" % data_dir)
    return Store(data_dir, _INSPECT_BUDGET, readonly=True)


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
    """Write the backlog (alarms, then routine, oldest first) as JSON lines. Returns the count."""
    st = _inspect(data_dir)
    try:
        return st.export(out_path)
    finally:
        st.close()


def main(argv):
    """Small stand-alone entry: queue_cli stats DIR | export DIR OUT."""
    if len(argv) >= 2 and argv[0] == "stats":
        print(json.dumps(stats(argv[1]), indent=2, sort_keys=True))
        return 0
    if len(argv) >= 3 and argv[0] == "export":
        print("%d records written to %s" % (export(argv[1], argv[2]), argv[2]))
        return 0
    print("usage: queue_cli stats DIR | export DIR OUT")
    return 2


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
