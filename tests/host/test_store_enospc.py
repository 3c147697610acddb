"""A disk that fills while a group commit's bytes are still in the file's write buffer (found by
the typhoon drill, issue 15): the flush lands in part, the rest of the buffer is gone. The
records of that commit were never confirmed; once the disk has room again, the next commit must
write them again before it confirms them, and every confirmed record must be there on reopen."""

import errno

from agent.core.errors import QueueError
from agent.core.store.fsio import OsFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import Store


class BufferedFullFs(OsFs):
    """Files buffer their writes until flush(), as a buffered file does. While `full`, a flush
    writes the first half of its buffer, loses the rest and raises ENOSPC (what a flush into a
    full disk does: what fitted landed, a torn tail; a later close cannot write the rest)."""

    def __init__(self):
        self.full = False

    def open(self, path, mode):
        return _BufferedFile(self, OsFs.open(self, path, mode))

    def sync(self, f):
        pass


class _BufferedFile:
    def __init__(self, fs, f):
        self._fs = fs
        self._f = f
        self._buf = bytearray()

    def read(self, *a):
        return self._f.read(*a)

    def seek(self, *a):
        return self._f.seek(*a)

    def write(self, b):
        self._buf += b
        return len(b)

    def flush(self):
        buf, self._buf = bytes(self._buf), bytearray()
        if self._fs.full and buf:
            self._f.write(buf[: len(buf) // 2])
            self._f.flush()
            raise OSError(errno.ENOSPC, "No space left on device")
        self._f.write(buf)
        self._f.flush()

    def close(self):
        try:
            if self._buf and not self._fs.full:
                self.flush()
        finally:
            self._buf = bytearray()
            self._f.close()


def _rec(i):
    return {"site": "s", "device": "d", "metric": "battery.charge", "value": float(i), "unit": "%",
            "time": 1.8e9 + i, "quality": "good"}  # fmt: skip


def test_records_of_a_commit_torn_by_a_full_disk_are_written_again_before_confirmed(tmp_path):
    path = str(tmp_path / "q")
    fs = BufferedFullFs()
    st = Store(path, 1 << 20, sync=fs.sync, fs=fs, thin_window=0)
    appended = {}
    for _cycle in range(3):
        for _ in range(4):
            rec = _rec(len(appended))
            st.append(LANE_ROUTINE, rec)
            appended[rec["seq"]] = rec
        st.commit()
    fs.full = True
    torn = []
    for lane in (LANE_ALARM, LANE_ROUTINE, LANE_ROUTINE, LANE_ROUTINE, LANE_ROUTINE):
        rec = _rec(len(appended))
        st.append(lane, rec)
        appended[rec["seq"]] = rec
        torn.append(rec["seq"])
    try:
        st.commit()
        raise AssertionError("a commit into a full disk must fail")
    except QueueError:
        pass
    assert st.confirmed_seq < torn[0]  # nothing of that commit is confirmed
    fs.full = False
    conf = st.commit()  # room again: the store recovers and confirms
    assert conf >= torn[-1]
    st.close()
    st = Store(path, 1 << 20, fs=OsFs(), thin_window=0, readonly=True)
    seen = {r["seq"] for lane in (LANE_ALARM, LANE_ROUTINE) for r in st.records(lane)}
    lost = sorted(s for s in appended if s <= conf and s not in seen)
    assert not lost, "confirmed but not stored: %r" % lost
