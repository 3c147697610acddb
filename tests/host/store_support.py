"""Media for the store's host tests: littlefs-python images on an emulated block device that cuts
power at the N-th write, and an fs adapter that fails chosen operations (I/O error, disk full)."""

import errno
import random

import littlefs
from littlefs.context import UserContext

from agent.core.store.fsio import OsFs


class PowerCut(Exception):
    """The emulated device lost power; every later operation raises this."""


class CutDevice(UserContext):
    """Block device that counts writes (prog and erase) and loses power at write `cut` (1-based).

    atomic=True: writes before the cut land, the cut write and later ones do not.
    atomic=False: a write-back cache. Writes since the device's last sync() land at the cut in a
    random order, each with probability 1/2, or not at all (seeded, reproducible)."""

    def __init__(self, size, cut=None, atomic=True, seed=0):
        UserContext.__init__(self, buffsize=size)
        self.durable = bytearray(self.buffer)
        self.pending = []
        self.cut = cut
        self.atomic = atomic
        self.rng = random.Random(seed)
        self.writes = 0
        self.dead = False
        self.image = None  # the medium as it is after the cut

    def _write(self, start, data):
        """0, or littlefs's -5 (LFS_ERR_IO) once the power is gone: littlefs stops there."""
        self.writes += 1
        if self.dead:
            return -5
        if self.cut is not None and self.writes >= self.cut:
            self._lose_power()
            return -5
        self.buffer[start : start + len(data)] = data
        if self.atomic:
            self.durable[start : start + len(data)] = data
        else:
            self.pending.append((start, bytes(data)))
        return 0

    def _lose_power(self):
        self.dead = True
        img = bytearray(self.durable)
        pend = list(self.pending)
        self.rng.shuffle(pend)
        for start, data in pend:
            if self.rng.random() < 0.5:
                img[start : start + len(data)] = data
        self.image = img

    def prog(self, cfg, block, off, data):
        return self._write(block * cfg.block_size + off, data)

    def erase(self, cfg, block):
        return self._write(block * cfg.block_size, b"\xff" * cfg.block_size)

    def read(self, cfg, block, off, size):
        start = block * cfg.block_size + off
        return self.buffer[start : start + size]

    def sync(self, cfg):
        if not self.dead:
            for start, data in self.pending:
                self.durable[start : start + len(data)] = data
            self.pending = []
        return 0


BLOCK = 512


def new_lfs(ctx, blocks):
    fs = littlefs.LittleFS(context=ctx, block_size=BLOCK, block_count=blocks, mount=False)
    fs.format()
    fs.mount()
    return fs


def mount_image(image, blocks):
    """Mount an image as it is after a cut. Raises if littlefs cannot mount it (never formats)."""
    ctx = UserContext(buffer=bytearray(image))
    fs = littlefs.LittleFS(context=ctx, block_size=BLOCK, block_count=blocks, mount=False)
    fs.mount()
    return fs


_KEEP = []


def _lfs(fn, *args):
    """Call littlefs-python; its errors become OSError(errno), as MicroPython's littlefs VFS
    raises them (LFS_ERR_NOSPC -28 -> OSError(28), LFS_ERR_IO -5 -> OSError(5))."""
    try:
        return fn(*args)
    except littlefs.errors.LittleFSError as e:
        raise OSError(-e.code, "littlefs: %s" % e) from e


class LfsFs:
    """The store's fs adapter over a littlefs-python filesystem. With a CutDevice, every call
    after the power cut raises PowerCut, so a workload stops where the device died. space()
    answers from the block count, as os.statvfs does on the board."""

    def __init__(self, lfs, dev=None):
        self.lfs = lfs
        self.dev = dev

    def _alive(self):
        if self.dev is not None and self.dev.dead:
            raise PowerCut()

    def open(self, path, mode):
        self._alive()
        f = _lfs(self.lfs.open, path, mode)
        if self.dev is not None:
            # A close that fails at the cut leaves littlefs-python's handle half-closed, and its
            # finaliser would close it again (a C assertion). Keep every handle of a device that
            # may die referenced for the life of the test process instead.
            _KEEP.append(f)
        return _LfsFile(self, f)

    def size(self, path):
        self._alive()
        try:
            return self.lfs.stat(path).size
        except (OSError, littlefs.errors.LittleFSError):
            return None

    def listdir(self, path):
        self._alive()
        return _lfs(self.lfs.listdir, path)

    def mkdir(self, path):
        self._alive()
        try:
            _lfs(self.lfs.mkdir, path)
        except FileExistsError:
            pass
        except OSError as e:
            if e.errno != errno.EEXIST:
                raise

    def rename(self, src, dst):
        self._alive()
        _lfs(self.lfs.rename, src, dst)

    def remove(self, path):
        self._alive()
        _lfs(self.lfs.remove, path)

    def space(self, path):
        self._alive()
        st = self.lfs.fs_stat()
        free = st.block_count - self.lfs.used_block_count
        return st.block_count * st.block_size, free * st.block_size, st.block_size


class _LfsFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def __getattr__(self, name):
        self._fs._alive()
        return getattr(self._f, name)

    def read(self, *a):
        self._fs._alive()
        return _lfs(self._f.read, *a)

    def write(self, b):
        self._fs._alive()
        return _lfs(self._f.write, b)

    def seek(self, *a):
        self._fs._alive()
        return _lfs(self._f.seek, *a)

    def flush(self):
        # io.BufferedWriter.flush() does not flush its raw file: littlefs's sync is raw.flush().
        self._fs._alive()
        _lfs(self._f.flush)
        raw = getattr(self._f, "raw", None)
        if raw is not None:
            _lfs(raw.flush)

    def close(self):
        if self._fs.dev is not None and self._fs.dev.dead:
            return
        _lfs(self._f.close)


class FailFs(OsFs):
    """OsFs that fails operations: op number k only (mode "once"), or every op from k on until
    heal() (mode "from", like a full or dead medium). Counts every open/read/write/flush/seek,
    rename, remove, listdir, stat and sync as one operation."""

    def __init__(self, k=None, mode="once", err=errno.EIO):
        self.k = k
        self.mode = mode
        self.err = err
        self.ops = 0
        self.healed = False

    def heal(self):
        self.healed = True

    def tick(self):
        self.ops += 1
        if self.healed or self.k is None:
            return
        if self.ops == self.k or (self.mode == "from" and self.ops >= self.k):
            raise OSError(self.err, "injected failure at op %d" % self.ops)

    def open(self, path, mode):
        self.tick()
        return _FailFile(self, OsFs.open(self, path, mode))

    def size(self, path):
        self.tick()
        return OsFs.size(self, path)

    def listdir(self, path):
        self.tick()
        return OsFs.listdir(self, path)

    def rename(self, src, dst):
        self.tick()
        OsFs.rename(self, src, dst)

    def remove(self, path):
        self.tick()
        OsFs.remove(self, path)

    def sync(self, f):
        self.tick()


class _FailFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f

    def read(self, *a):
        self._fs.tick()
        return self._f.read(*a)

    def write(self, b):
        try:
            self._fs.tick()
        except OSError:
            if self._fs.mode == "from":
                self._f.write(b[: len(b) // 2])  # a disk-full write lands in part
            raise
        return self._f.write(b)

    def seek(self, *a):
        self._fs.tick()
        return self._f.seek(*a)

    def flush(self):
        self._fs.tick()
        return self._f.flush()

    def close(self):
        self._f.close()
