"""Small state files (the active alarm set, the clock's anchors) kept beside the store (portable).

Invariant: a reader finds the old document or the new one, never a mix or a torn file, whatever
the moment of a power cut; an unreadable file reads as None, never as an exception.
"""

import json

from agent.core.store.fsio import OsFs


class JsonFile:
    """One small JSON document in a file, replaced atomically (write a temporary file, sync,
    rename over the old one: a power cut leaves the old or the new document, never a mix).
    `fs` is an agent.core.store.fsio adapter (OsFs by default)."""

    def __init__(self, path, fs=None):
        if fs is None:
            fs = OsFs()
        self.path = path
        self.fs = fs

    def load(self):
        """The stored snapshot, or None when there is none or it cannot be read."""
        if self.fs.size(self.path) is None:
            return None
        try:
            f = self.fs.open(self.path, "rb")
            try:
                return json.loads(f.read())
            finally:
                f.close()
        except (OSError, ValueError):
            return None  # a damaged file costs its contents (re-raised alarms...), never a crash

    def save(self, snap):
        tmp = self.path + ".tmp"
        f = self.fs.open(tmp, "wb")
        try:
            f.write(json.dumps(snap).encode())
            f.flush()
            _fsync(f)
        finally:
            f.close()
        self.fs.rename(tmp, self.path)
        _fsync_dir(self.path)


def _fsync_dir(path):
    """Make the rename itself durable on the host (ext4); a no-op on MicroPython."""
    try:
        import os

        d = path.rsplit("/", 1)[0] or "/"
        fd = os.open(d, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except (AttributeError, OSError, ValueError):
        pass


def _fsync(f):
    try:
        import os

        os.fsync(f.fileno())
    except (AttributeError, OSError, ValueError):
        pass  # MicroPython: close() commits on littlefs
