"""The few file operations the durable store uses, behind one small adapter (portable).

The store only calls: open(path, mode) -> file with read/write/seek/flush/close, size(path),
listdir(dir), mkdir(dir), rename(src, dst) (replacing dst), remove(path), and optionally
space(path) -> (total bytes, free bytes, block bytes) or None. OsFs maps them onto the `os`
module, which is the same spelling on CPython (ext4) and on MicroPython (littlefs VFS, whose
statvfs answers from the littlefs block count). Tests substitute other adapters (littlefs-python
images, fault injectors, MemFs) with the same methods.
"""

import os

ENOSPC = 28  # errno: no space left on the medium (the same number on Linux and MicroPython)


class Medium:
    """The store's directory on one fs adapter: the two syncs and the I/O counters every file of
    the store (segments, meta, snapshots) goes through.

    sync(f): makes a flushed file durable (host: os.fsync(f.fileno()); littlefs: None, flush is
    the sync). sync_dir(path): makes new or renamed directory entries durable (host only).
    """

    def __init__(self, fs, path, sync=None, sync_dir=None):
        self.fs = fs
        self.path = path
        self.sync = sync
        self.sync_dir = sync_dir
        self.io = {"bytes": 0, "syncs": 0, "appended": 0}  # for the benchmark and stats

    def p(self, name):
        return self.path + "/" + name

    def flush_sync(self, f):
        f.flush()
        if self.sync is not None:
            self.sync(f)
        self.io["syncs"] += 1

    def dir_sync(self):
        if self.sync_dir is not None:
            self.sync_dir(self.path)

    def space(self):
        """(total, free, block) bytes of the medium holding the directory, or None when the
        adapter cannot tell."""
        fn = getattr(self.fs, "space", None)
        if fn is None:
            return None
        try:
            return fn(self.path)
        except OSError:
            return None

    def read_small(self, name):
        """(content, size) of a small file of the directory; (b"", 0) when absent or empty."""
        size = self.fs.size(self.p(name))
        if not size:
            return b"", 0
        f = self.fs.open(self.p(name), "rb")
        try:
            return f.read(), size
        finally:
            f.close()


class OsFs:
    def open(self, path, mode):
        return open(path, mode)

    def size(self, path):
        """Size in bytes, or None when the file does not exist."""
        try:
            return os.stat(path)[6]
        except OSError:
            return None

    def listdir(self, path):
        return os.listdir(path)

    def mkdir(self, path):
        try:
            os.mkdir(path)
        except OSError:
            if self.size(path) is None:
                raise

    def rename(self, src, dst):
        # POSIX rename and littlefs rename both replace dst atomically.
        os.rename(src, dst)

    def remove(self, path):
        os.remove(path)

    def space(self, path):
        try:
            st = os.statvfs(path)
        except (AttributeError, OSError):  # no statvfs on this port
            return None
        block = st[1] or st[0]  # f_frsize, the unit of the counts (f_bsize where it is 0)
        return st[2] * block, st[4] * block, block


class _MemFile:
    def __init__(self, fs, path, mode):
        self._fs = fs
        self._path = path
        self._w = "w" in mode or "a" in mode
        if "w" in mode:
            fs.files[path] = bytearray()
        elif path not in fs.files:
            if self._w:
                fs.files[path] = bytearray()
            else:
                raise OSError(2)
        self._data = fs.files[path]
        self._pos = len(self._data) if "a" in mode else 0
        self.closed = False

    def read(self, n=-1):
        end = len(self._data) if n is None or n < 0 else min(len(self._data), self._pos + n)
        out = bytes(self._data[self._pos : end])
        self._pos = end
        return out

    def write(self, b):
        if not self._w:
            raise OSError(9)
        end = self._pos + len(b)
        room = min(end, self._fs.limit(self._path)) - self._pos
        if room < len(b):  # a full medium: the part that fits lands, then the error
            room = max(0, room)
            self._data[self._pos : self._pos + room] = b[:room]
            self._pos += room
            raise OSError(ENOSPC, "No space left on device")
        self._data[self._pos : end] = b
        self._pos = end
        return len(b)

    def seek(self, off, whence=0):
        if whence == 2:
            off += len(self._data)
        elif whence == 1:
            off += self._pos
        self._pos = off
        return off

    def tell(self):
        return self._pos

    def flush(self):
        pass

    def close(self):
        self.closed = True


class MemFs:
    """Files in a dict, for portable tests on runtimes without a writable filesystem. Every write
    is immediately 'durable' here; crash semantics are tested on real media in tests/host.
    capacity: a medium of that many bytes in blocks of `block` bytes (every file takes whole
    blocks); a write past it lands in part and raises ENOSPC, as a full filesystem does."""

    def __init__(self, capacity=None, block=256):
        self.files = {}
        self.dirs = set()
        self.capacity = capacity
        self.block = block

    def _blocks(self, n):
        return (n + self.block - 1) // self.block

    def used(self):
        return sum(self._blocks(len(d)) for d in self.files.values()) * self.block

    def limit(self, path):
        """The largest size `path` may grow to on this medium."""
        if self.capacity is None:
            return 1 << 62
        mine = self._blocks(len(self.files[path])) * self.block
        return (self.capacity - self.used() + mine) // self.block * self.block

    def space(self, path):
        if self.capacity is None:
            return None
        return self.capacity, self.capacity - self.used(), self.block

    def open(self, path, mode):
        return _MemFile(self, path, mode)

    def size(self, path):
        if path in self.files:
            return len(self.files[path])
        return 0 if path in self.dirs else None

    def listdir(self, path):
        pre = path.rstrip("/") + "/"
        return [
            p[len(pre) :] for p in self.files if p.startswith(pre) and "/" not in p[len(pre) :]
        ]

    def mkdir(self, path):
        self.dirs.add(path)

    def rename(self, src, dst):
        if src not in self.files:
            raise OSError(2)
        self.files[dst] = self.files.pop(src)

    def remove(self, path):
        if path not in self.files:
            raise OSError(2)
        del self.files[path]
