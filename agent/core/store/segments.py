"""Segment files of the durable store: what one holds, reading its frames back, and each lane's
open tail (portable; the layout and the invariants are in agent/core/store/store.py).

    files = SegmentFiles(medium, chunk, say)
    files.load(names, readonly)           # the a*.seg / r*.seg among the directory's names
    files.write(lane, [(seq, frame)])     # append to the lane's tail (new segment if sealed)
    files.sync_tail(lane)                 # flush and sync what was written: now confirmed
    files.seal(seg); files.replace(seg, frames, flags); files.remove(seg)
    recs, pos, skipped = files.read(lane, n, pos, after)

`bytes` is the size of every segment file, synced or not, SEAL frames included.
"""

from agent.core.store import codec
from agent.core.store.codec import HEADER
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE

PREFIX = {LANE_ALARM: "a", LANE_ROUTINE: "r"}
LANE_OF = {"a": LANE_ALARM, "r": LANE_ROUTINE}


class Segment:
    def __init__(self, lane, name, path):
        self.lane = lane
        self.name = name  # first seq when created; the sort key
        self.path = path
        self.size = 0  # bytes in the file, synced or not, SEAL included
        self.conf = 0  # end of confirmed record data: readers stop here
        self.count = 0
        self.first = -1
        self.last = -1
        self.sealed = False
        self.thinned = False
        self.scanned = False  # read frame by frame at open (no SEAL): may hold unsynced bytes


class Frames:
    """Reads whole frames of one file from `start` to `end` in chunks; next() -> (pos, kind, seq,
    payload) or None at the end or at the first invalid frame (then self.pos < end)."""

    def __init__(self, fs, path, start, end, chunk, verify=True):
        self.f = fs.open(path, "rb")
        self.f.seek(start)
        self.pos = start
        self.end = end
        self.chunk = chunk
        self.verify = verify
        self.buf = b""
        self.i = 0

    def _fill(self, want):
        while len(self.buf) - self.i < want:
            more = self.f.read(max(self.chunk, want))
            if not more:
                return False
            self.buf = self.buf[self.i :] + more
            self.i = 0
        return True

    def next(self):
        if self.pos + HEADER > self.end or not self._fill(HEADER):
            return None
        h = codec.parse_header(self.buf, self.i)
        if h is None:
            return None
        kind, n, seq, crc = h
        if self.pos + HEADER + n > self.end or not self._fill(HEADER + n):
            return None
        i = self.i
        if self.verify and not codec.check(self.buf, i, n, crc):
            return None
        pos = self.pos
        self.i = i + HEADER + n
        self.pos = pos + HEADER + n
        return pos, kind, seq, self.buf[i + HEADER : i + HEADER + n]

    def close(self):
        self.f.close()


class SegmentFiles:
    """The segments of both lanes, oldest first, and the open file of each lane's tail."""

    def __init__(self, medium, chunk, say):
        self.m = medium
        self.fs = medium.fs
        self.chunk = chunk
        self.say = say
        self.segs = {LANE_ALARM: [], LANE_ROUTINE: []}
        self.tail = {LANE_ALARM: None, LANE_ROUTINE: None}  # lane -> open file of the tail
        self.bytes = 0

    # --- opening -----------------------------------------------------------------------------
    def load(self, names, readonly):
        """Forget the lists in RAM and read the segments among `names` (directory entries)
        again; a leftover .tmp is removed unless readonly. Reads only (a full medium is fine):
        a torn end is cut in RAM, and every segment but each lane's last is closed."""
        self.tail = {LANE_ALARM: None, LANE_ROUTINE: None}
        self.segs = {LANE_ALARM: [], LANE_ROUTINE: []}
        self.bytes = 0
        for nm in sorted(names):
            if nm.endswith(".tmp") and not readonly:
                self._discard(self.m.p(nm))
            elif nm.endswith(".seg") and len(nm) == 25 and nm[0] in LANE_OF:
                lane = LANE_OF[nm[0]]
                seg = Segment(lane, int(nm[1:21]), self.m.p(nm))
                if self._open_seg(seg, readonly):
                    self.segs[lane].append(seg)
                    self.bytes += seg.size
        for segs in self.segs.values():
            for seg in segs[:-1]:
                seg.sealed = True  # closed by an I/O fault in an earlier run: never written again

    def _discard(self, path):
        """Remove a file that holds nothing of value; a medium that refuses is not an error."""
        try:
            self.fs.remove(path)
        except OSError:
            pass

    def _open_seg(self, seg, readonly):
        """Read a segment's SEAL or scan it. A torn end (a write cut short) is cut in RAM only:
        the segment is closed there and never appended to again, so opening needs no free space.
        False if it holds no record (then it is removed unless readonly)."""
        fs = self.fs
        size = fs.size(seg.path) or 0
        seg.size = size
        if size >= codec.SEAL_FRAME:
            f = fs.open(seg.path, "rb")
            try:
                f.seek(size - codec.SEAL_FRAME)
                info = codec.parse_seal(f.read(codec.SEAL_FRAME))
            finally:
                f.close()
            if info is not None:
                seg.count, seg.first, seg.last, flags = info
                seg.sealed = True
                seg.thinned = bool(flags & codec.FLAG_THINNED)
                seg.conf = size - codec.SEAL_FRAME
                return True
        seg.scanned = True
        r = Frames(fs, seg.path, 0, size, self.chunk)
        try:
            while True:
                fr = r.next()
                if fr is None:
                    break
                if fr[1] == codec.REC or fr[1] == codec.AGG:
                    if seg.first < 0:
                        seg.first = fr[2]
                    seg.last = fr[2]
                    seg.count += 1
            end = r.pos
        finally:
            r.close()
        seg.conf = end
        if seg.count == 0:
            if not readonly:
                self._discard(seg.path)
            return False
        if end < size:
            self.say("torn tail cut", file=seg.path, at=end, size=size)
            seg.sealed = True
        return True

    def sync_scanned(self):
        """Sync the segments read without a SEAL at open (each lane's tail, and any closed by a
        torn write): a killed writer may have left whole frames that were written but never
        synced. One sync per such file, once per open; nothing when the medium's flush is its
        sync (littlefs). A medium that refuses is left alone: the frames stay readable."""
        if self.m.sync is None:
            return
        for segs in self.segs.values():
            for seg in segs:
                if seg.scanned:
                    seg.scanned = False
                    try:
                        f = self.fs.open(seg.path, "rb")
                        try:
                            self.m.sync(f)
                            self.m.io["syncs"] += 1
                        finally:
                            f.close()
                    except OSError as e:
                        self.say("sync at open failed", file=seg.path, error=str(e))

    def recover_tail(self, lane):
        """After a failed write: read the lane's open tail again as its file holds it. Whole
        frames count (a write that failed may have landed in part); a torn end closes it there;
        the frames written since the last sync are synced now (their records are confirmed only
        once that works). A tail that holds no record is removed. Returns its last seq, or -1.
        The list in RAM is updated only when the file could be read."""
        self.close_tail(lane)
        seg = self.open_tail(lane)
        if seg is None:
            return -1
        fresh = Segment(lane, seg.name, seg.path)
        if self.fs.size(seg.path) is None or not self._open_seg(fresh, False):
            self.segs[lane].pop()  # created by the write that failed: nothing of ours in it
            self.bytes -= seg.size
            return -1
        self.segs[lane][-1] = fresh
        self.bytes += fresh.size - seg.size
        if fresh.conf > seg.conf:
            end = fresh.conf
            fresh.conf = seg.conf  # not confirmed until the sync below works
            f = self.fs.open(fresh.path, "ab")
            try:
                self.m.flush_sync(f)
            finally:
                f.close()
            fresh.conf = end
        return fresh.last

    def close_open_tail(self, lane):
        """Close the lane's open tail in RAM without writing (no SEAL frame): what is written
        after its confirmed end no longer counts, and it can be dropped like a sealed segment."""
        seg = self.open_tail(lane)
        if seg is None:
            return False
        self.close_tail(lane)
        seg.sealed = True
        return True

    # --- reading -----------------------------------------------------------------------------
    def each_record(self, seg, fn, after=-1):
        """fn(record) for every record of seg with seq > after, in file order."""
        r = Frames(self.fs, seg.path, 0, seg.conf, self.chunk)
        try:
            while True:
                fr = r.next()
                if fr is None:
                    return
                if fr[2] > after and (fr[1] == codec.REC or fr[1] == codec.AGG):
                    fn(codec.loads(fr[3]))
        finally:
            r.close()

    def count_after(self, seg, after):
        n = 0
        r = Frames(self.fs, seg.path, 0, seg.conf, self.chunk, verify=False)
        try:
            while True:
                fr = r.next()
                if fr is None:
                    return n
                if fr[2] > after and fr[1] != codec.SEAL:
                    n += 1
        finally:
            r.close()

    def read(self, lane, n, pos, after):
        """Up to n confirmed records of lane with seq > after, from reader position pos =
        (segment name, offset). Returns (records, new position, frames skipped as unreadable)."""
        segs = self.segs[lane]
        name, off = pos
        i = 0
        while i < len(segs) and segs[i].name < name:
            i += 1
        if i < len(segs) and segs[i].name != name:
            off = 0
        out = []
        skipped = 0
        while i < len(segs):
            s = segs[i]
            if off < s.conf:
                r = Frames(self.fs, s.path, off, s.conf, self.chunk)
                try:
                    while len(out) < n:
                        fr = r.next()
                        if fr is None:
                            break
                        if fr[2] > after and fr[1] != codec.SEAL:
                            out.append(codec.loads(fr[3]))
                    off = r.pos
                finally:
                    r.close()
                if len(out) < n and off < s.conf:
                    self.say("unreadable frame, skipping the rest", file=s.path, at=off)
                    skipped += 1
                    off = s.conf
            if len(out) >= n or i + 1 >= len(segs):
                break
            i += 1
            off = 0
        if i < len(segs):
            pos = (segs[i].name, off)
        return out, pos, skipped

    # --- writing -----------------------------------------------------------------------------
    def write(self, lane, pend):
        """Append the frames pend = [(seq, frame)] to the lane's tail, unsynced; a new segment
        named after the first seq when the lane has no open tail. Returns the bytes written."""
        segs = self.segs[lane]
        seg = segs[-1] if segs else None
        f = self.tail[lane]
        if seg is None or seg.sealed:
            name = pend[0][0]
            seg = Segment(lane, name, self.m.p("%s%020d.seg" % (PREFIX[lane], name)))
            f = self.fs.open(seg.path, "wb")
            self.tail[lane] = f
            segs.append(seg)
        elif f is None:
            f = self.fs.open(seg.path, "ab")
            self.tail[lane] = f
        n = 0
        for _, fr in pend:  # frame by frame: no buffer the size of a whole commit (board heap)
            f.write(fr)
            n += len(fr)
        if seg.first < 0:
            seg.first = pend[0][0]
        seg.last = pend[-1][0]
        seg.count += len(pend)
        seg.size += n
        self.bytes += n
        self.m.io["bytes"] += n
        return n

    def open_tail(self, lane):
        """The lane's last segment if it is still written to, else None."""
        segs = self.segs[lane]
        return segs[-1] if segs and not segs[-1].sealed else None

    def sync_tail(self, lane):
        """Flush and sync the lane's tail if it holds unconfirmed bytes; they are confirmed."""
        seg = self.open_tail(lane)
        f = self.tail[lane]
        if seg is not None and f is not None and seg.conf < seg.size:
            new = seg.conf == 0
            self.m.flush_sync(f)
            if new:
                self.m.dir_sync()
            seg.conf = seg.size

    def seal(self, seg):
        f = self.tail[seg.lane] or self.fs.open(seg.path, "ab")
        self.tail[seg.lane] = None
        try:
            f.write(codec.seal_frame(seg.count, seg.first, seg.last))
            self.m.flush_sync(f)
        finally:
            f.close()
        seg.size += codec.SEAL_FRAME
        self.bytes += codec.SEAL_FRAME
        self.m.io["bytes"] += codec.SEAL_FRAME
        seg.sealed = True

    def replace(self, seg, frames, first, last, flags):
        """Replace sealed segment seg whole by `frames` and a SEAL (write tmp, sync, rename)."""
        size = sum(len(f) for f in frames) + codec.SEAL_FRAME
        tmp = seg.path + ".tmp"
        try:
            f = self.fs.open(tmp, "wb")
            try:
                for fr in frames:
                    f.write(fr)
                f.write(codec.seal_frame(len(frames), first, last, flags))
                self.m.flush_sync(f)
            finally:
                f.close()
        except OSError:
            self._discard(tmp)  # a full medium: the half copy must not keep the space
            raise
        self.m.io["bytes"] += size
        self.fs.rename(tmp, seg.path)
        self.m.dir_sync()
        self.bytes += size - seg.size
        seg.size = size
        seg.conf = size - codec.SEAL_FRAME
        seg.count = len(frames)
        seg.first = first
        seg.last = last

    def remove(self, seg):
        self.fs.remove(seg.path)
        self.segs[seg.lane].remove(seg)
        self.bytes -= seg.size

    def close_tail(self, lane):
        f = self.tail[lane]
        self.tail[lane] = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass
