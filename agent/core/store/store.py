"""Durable store-and-forward queue: segment files with checksummed frames (portable).

Same interface as agent.core.store.queue.MemoryQueue (append, commit, confirmed_seq, next_batch,
ack, requeue, stats, close) plus begin_drain, export, latest and counters. docs/queue.md is the
prose.

Layout of the data directory (only open/read/write/seek/flush/close, rename, remove, stat):
    a<first seq, 20 digits>.seg   alarm lane segments      (frames: agent.core.store.codec)
    r<first seq, 20 digits>.seg   routine lane segments
    meta.0, meta.1                cursors, seq floor, counters: ping-pong, newest valid gen wins
    snap.0, snap.1                latest record per (device, metric): ping-pong
Invariants:
  * A segment is appended to only while it is its lane's tail; a full tail gets a SEAL frame and
    is never written again, except that thinning replaces a sealed routine segment whole
    (write tmp, sync, rename). So old data is not rewritten except during thinning.
  * confirmed_seq covers a record only after the sync of the file holding it.
  * Unsynced meta writes go to the slot that is not the last synced one, so one valid meta always
    survives. A segment is removed only after a synced meta records that it was delivered.
  * Sequence numbers are leased: before handing out seq n, a synced meta holds a floor > n
    (one extra sync per seq_lease appends), and open() starts at or above that floor. So no
    number is handed out twice, even one whose record was lost unconfirmed in a crash; the cost is
    a gap of up to seq_lease numbers after each restart.
  * Delivered cursor per lane: every record of the lane with seq <= D was acknowledged. Acks may
    arrive out of order; D moves over the acknowledged prefix of the batches handed out.
"""

from agent.core.compat import wall_time
from agent.core.errors import QueueError
from agent.core.store import codec
from agent.core.store.codec import HEADER
from agent.core.store.fsio import OsFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, LANES

LANE_CURRENT = "current"  # pseudo-lane of the read-out: latest value of every metric
_PREFIX = {LANE_ALARM: "a", LANE_ROUTINE: "r"}
_LANE_OF = {"a": LANE_ALARM, "r": LANE_ROUTINE}
_NUM = (int, float)


class _Seg:
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


class _Frames:
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


class Store:
    """Durable queue in directory `path`, never larger than `budget_bytes`.

    sync(f): makes a flushed file durable (host: os.fsync(f.fileno()); littlefs: None, flush is
    the sync). sync_dir(path): makes new or renamed directory entries durable (host only).
    segment_bytes: size at which a tail segment is sealed (default budget/16 within 1 KB..4 MB).
    thin_window: seconds per aggregate when thinning (0 disables thinning: drop only).
    flush_bytes: pending bytes written (unsynced) to the tail before commit.
    max_pending: while the medium fails, records buffered in RAM beyond this are dropped.
    readonly: inspect a stopped agent's directory without repairing or writing anything.
    wall: the wall clock for the time of the counter records (site time under a drill).
    """

    def __init__(
        self,
        path,
        budget_bytes,
        sync=None,
        fs=None,
        sync_dir=None,
        segment_bytes=None,
        thin_window=900,
        flush_bytes=65536,
        max_pending=262144,
        read_chunk=16384,
        counter_device="agent",
        seq_lease=1024,
        readonly=False,
        log=None,
        wall=wall_time,
    ):
        self.path = path.rstrip("/") or "/"
        self.wall = wall  # the time on the counter records it makes (the site's wall clock)
        self.budget = budget_bytes
        self._sync = sync
        self._sync_dir = sync_dir
        self.fs = fs if fs is not None else OsFs()
        seg = segment_bytes or max(1024, min(4 << 20, budget_bytes // 16))
        self.segment_bytes = seg
        self._headroom = seg // 2  # room for a thinned segment's tmp copy
        self.thin_window = thin_window
        self.flush_bytes = flush_bytes
        self.max_pending = max_pending
        self.chunk = read_chunk
        self.counter_device = counter_device
        self.seq_lease = seq_lease
        self._lease_end = 0  # a synced meta promises no seq below this was ever handed out
        self.readonly = readonly
        self._log = log
        self.thinned = 0  # routine readings folded into aggregates
        self.dropped = 0  # records dropped to stay within the budget (or unreadable)
        self.io = {"bytes": 0, "syncs": 0, "appended": 0}  # for the benchmark and stats
        self.site = None
        self._next_seq = 0
        self._pending = {LANE_ALARM: [], LANE_ROUTINE: []}  # [(seq, frame)]
        # Written to the tail but not yet synced: a failed sync (a full disk) may have torn them,
        # so they go back to _pending on a fault and are written again unless whole in the file.
        self._unsynced = {LANE_ALARM: [], LANE_ROUTINE: []}
        self._latest = {}
        self._newest = {LANE_ALARM: None, LANE_ROUTINE: None}
        self._fault = False
        self._meta_gen = 0
        self._meta_slot = 0  # slot of the last synced meta
        self._meta_size = [0, 0]
        self._snap_gen = 0
        self._snap_size = [0, 0]
        self._next_batch = 1
        self._D = {LANE_ALARM: -1, LANE_ROUTINE: -1}
        self._emitted = (0, 0)
        self._undeliv = {LANE_ALARM: 0, LANE_ROUTINE: 0}
        self._meta_dirty = False
        self._issued = {LANE_ALARM: [], LANE_ROUTINE: []}  # [batch_id, hi seq, n, acked, pos]
        self._inflight = {}  # batch_id -> lane
        self._rd = {}  # lane -> reader position (segment name, offset)
        self._dpos = {}  # lane -> reader position just after the delivered cursor
        try:
            self._load(True)
        except OSError as e:
            raise QueueError("cannot open store %s: %s" % (self.path, e)) from e

    # --- opening and recovery ------------------------------------------------------------
    def _p(self, name):
        return self.path + "/" + name

    def _say(self, msg):
        if self._log:
            self._log("store: " + msg)

    def _read_small(self, name):
        size = self.fs.size(self._p(name))
        if not size:
            return b"", 0
        f = self.fs.open(self._p(name), "rb")
        try:
            return f.read(), size
        finally:
            f.close()

    def _load(self, first):
        """Build the state from the files. first=False: re-load after an I/O fault, keeping
        pending records, counters, cursors known in RAM and the sequence high-water mark."""
        fs = self.fs
        if not self.readonly:
            fs.mkdir(self.path)
        self._tail = {LANE_ALARM: None, LANE_ROUTINE: None}  # lane -> open file of the tail
        self._segs = {LANE_ALARM: [], LANE_ROUTINE: []}
        self._used = 0
        names = fs.listdir(self.path)
        best = None
        for slot in (0, 1):
            buf, size = self._read_small("meta.%d" % slot)
            self._meta_size[slot] = size
            self._used += size
            m = codec.read_one(buf, codec.META) if buf else None
            if m is not None and (best is None or m["g"] > best[1]["g"]):
                best = (slot, m)
        floor = 0
        if best is not None:
            slot, m = best
            self._meta_slot = slot
            self._meta_gen = max(self._meta_gen, m["g"])
            floor = m["s"]
            if first:
                self._D[LANE_ALARM], self._D[LANE_ROUTINE] = m["d"]
                self.thinned, self.dropped = m["t"], m["x"]
            else:
                for k, lane in enumerate(LANES):
                    self._D[lane] = max(self._D[lane], m["d"][k])
        for nm in sorted(names):
            if nm.endswith(".tmp") and not self.readonly:
                fs.remove(self._p(nm))
            elif nm.endswith(".seg") and len(nm) == 25 and nm[0] in _LANE_OF:
                lane = _LANE_OF[nm[0]]
                seg = _Seg(lane, int(nm[1:21]), self._p(nm))
                if self._open_seg(seg):
                    self._segs[lane].append(seg)
        top = floor
        for lane in LANES:
            segs = self._segs[lane]
            for s in segs:
                self._used += s.size
                top = max(top, s.last + 1)
            pend = self._pending[lane]
            while pend and pend[0][0] <= (segs[-1].last if segs else -1):
                pend.pop(0)  # written whole before the fault: already in the file
            for _, fr in pend:
                self._used += len(fr)
            self._undeliv_init(lane)
        self._next_seq = max(self._next_seq, top)
        self.confirmed_seq = self._next_seq - 1
        for lane in LANES:
            if self._pending[lane]:
                self.confirmed_seq = min(self.confirmed_seq, self._pending[lane][0][0] - 1)
        self._load_latest(names)
        self._cancel(LANES)
        self._cur = None
        self._cur_armed = True
        if not self.readonly:
            # Make the meta we trust durable now: an unsynced write we just read may not be.
            self._write_meta(True)
            self._remove_delivered()

    def _open_seg(self, seg):
        """Read a segment's SEAL or scan it; cut a torn tail. False if it holds no record."""
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
        r = _Frames(fs, seg.path, 0, size, self.chunk)
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
        if end < size:
            self._say("%s: torn tail cut at %d of %d bytes" % (seg.path, end, size))
            if not self.readonly:
                self._copy_prefix(seg.path, end)
                seg.size = end
        if seg.count == 0:
            if not self.readonly:
                fs.remove(seg.path)
            return False
        return True

    def _copy_prefix(self, path, end):
        tmp = path + ".tmp"
        src = self.fs.open(path, "rb")
        dst = self.fs.open(tmp, "wb")
        try:
            left = end
            while left > 0:
                b = src.read(min(self.chunk, left))
                if not b:
                    break
                dst.write(b)
                left -= len(b)
            self._flush_sync(dst)
        finally:
            src.close()
            dst.close()
        self.fs.rename(tmp, path)
        self._dir_sync()

    def _undeliv_init(self, lane):
        D = self._D[lane]
        n = 0
        for s in self._segs[lane]:
            if s.first > D:
                n += s.count
            elif s.last > D:
                n += self._count_after(s, D)
        self._undeliv[lane] = n + len(self._pending[lane])

    def _count_after(self, seg, D):
        n = 0
        r = _Frames(self.fs, seg.path, 0, seg.conf, self.chunk, verify=False)
        try:
            while True:
                fr = r.next()
                if fr is None:
                    return n
                if fr[2] > D and fr[1] != codec.SEAL:
                    n += 1
        finally:
            r.close()

    def _load_latest(self, names):
        best = None
        for slot in (0, 1):
            buf, size = self._read_small("snap.%d" % slot)
            self._snap_size[slot] = size
            self._used += size
            s = codec.read_one(buf, codec.SNAP) if buf else None
            if s is not None and (best is None or s["g"] > best["g"]):
                best = s
        start = -1
        if best is not None:
            self._snap_gen = max(self._snap_gen, best["g"])
            start = best["from"]
            for rec in best["l"]:
                self._latest.setdefault((rec.get("device"), rec.get("metric")), rec)
        for s in self._segs[LANE_ROUTINE]:
            if s.name >= start:
                self._each_record(s, self._note_latest)

    def _note_latest(self, rec):
        key = (rec.get("device"), rec.get("metric"))
        old = self._latest.get(key)
        if old is None or old["seq"] <= rec["seq"]:
            self._latest[key] = rec
        if self.site is None:
            self.site = rec.get("site")

    def _each_record(self, seg, fn, after=-1):
        r = _Frames(self.fs, seg.path, 0, seg.conf, self.chunk)
        try:
            while True:
                fr = r.next()
                if fr is None:
                    return
                if fr[2] > after and (fr[1] == codec.REC or fr[1] == codec.AGG):
                    fn(codec.loads(fr[3]))
        finally:
            r.close()

    def _recover(self):
        for lane in LANES:
            self._close_tail(lane)
        try:
            self._load(False)
        except OSError as e:
            raise QueueError("store %s still failing: %s" % (self.path, e)) from e
        self._fault = False
        self._say("recovered after I/O fault")

    # --- writing ------------------------------------------------------------------------
    def _flush_sync(self, f):
        f.flush()
        if self._sync is not None:
            self._sync(f)
        self.io["syncs"] += 1

    def _dir_sync(self):
        if self._sync_dir is not None:
            self._sync_dir(self.path)

    def _close_tail(self, lane):
        f = self._tail[lane]
        self._tail[lane] = None
        if f is not None:
            try:
                f.close()
            except OSError:
                pass

    def append(self, lane, record):
        """Queue a record dict; sets and returns record["seq"]. Not stored until commit().
        I/O errors are not raised here: they surface from commit()."""
        if lane not in _PREFIX:
            raise ValueError("unknown lane %r" % (lane,))
        if self.readonly:
            raise QueueError("store opened read-only")
        seq = self._next_seq
        if seq >= self._lease_end and not self._fault:
            try:
                self._write_meta(True)  # lease the next seq_lease numbers: one sync per lease
            except OSError as e:
                self._set_fault(e)
        record["seq"] = seq
        fr = codec.encode_record(record)
        self._next_seq = seq + 1
        n = len(fr)
        if self._used + n + self._headroom > self.budget and not self._fault:
            try:
                self._make_room(n)
            except OSError as e:
                self._set_fault(e)
        self._pending[lane].append((seq, fr))
        self._used += n
        self._undeliv[lane] += 1
        self.io["appended"] += n
        self._newest[lane] = record
        if lane == LANE_ROUTINE:
            self._latest[(record.get("device"), record.get("metric"))] = record
        if self.site is None:
            self.site = record.get("site")
        if self._fault:
            self._shed()
        elif len(self._pending[lane]) * n >= self.flush_bytes:  # estimate: no O(n) sum here
            try:
                self._write_pending(lane)
            except OSError as e:
                self._set_fault(e)
        return seq

    def _set_fault(self, e):
        self._say("I/O error: %s" % (e,))
        self._fault = True
        for lane in LANES:
            self._close_tail(lane)
            self._pending[lane] = self._unsynced[lane] + self._pending[lane]
            self._unsynced[lane] = []

    def _shed(self):
        # The medium is failing: keep at most max_pending bytes in RAM, routine data goes first.
        total = sum(len(f) for lane in LANES for _, f in self._pending[lane])
        while total > self.max_pending:
            lane = LANE_ROUTINE if self._pending[LANE_ROUTINE] else LANE_ALARM
            _, fr = self._pending[lane].pop(0)
            total -= len(fr)
            self._used -= len(fr)
            self._undeliv[lane] -= 1
            self.dropped += 1

    def _write_pending(self, lane):
        pend = self._pending[lane]
        if not pend:
            return
        seg = self._segs[lane][-1] if self._segs[lane] else None
        f = self._tail[lane]
        if seg is None or seg.sealed:
            name = pend[0][0]
            seg = _Seg(lane, name, self._p("%s%020d.seg" % (_PREFIX[lane], name)))
            f = self.fs.open(seg.path, "wb")
            self._tail[lane] = f
            self._segs[lane].append(seg)
        elif f is None:
            f = self.fs.open(seg.path, "ab")
            self._tail[lane] = f
        n = 0
        for _, fr in pend:  # frame by frame: no buffer the size of a whole commit (board heap)
            f.write(fr)
            n += len(fr)
        if seg.first < 0:
            seg.first = pend[0][0]
        seg.last = pend[-1][0]
        seg.count += len(pend)
        seg.size += n
        self.io["bytes"] += n
        self._unsynced[lane].extend(pend)
        self._pending[lane] = []

    def _commit_files(self, seal_lane=None):
        """Write and sync every pending record; seal full tails (or seal_lane's tail)."""
        conf = self._next_seq - 1
        for lane in LANES:
            self._write_pending(lane)
            segs = self._segs[lane]
            if not segs or segs[-1].sealed:
                continue
            seg = segs[-1]
            f = self._tail[lane]
            if f is not None and seg.conf < seg.size:
                new = seg.conf == 0
                self._flush_sync(f)
                if new:
                    self._dir_sync()
                seg.conf = seg.size
            self._unsynced[lane] = []  # synced: whole on the medium
        self.confirmed_seq = conf
        for lane in LANES:
            segs = self._segs[lane]
            if (
                segs
                and not segs[-1].sealed
                and (segs[-1].size >= self.segment_bytes or lane == seal_lane)
            ):
                self._seal(segs[-1])

    def _seal(self, seg):
        f = self._tail[seg.lane] or self.fs.open(seg.path, "ab")
        self._tail[seg.lane] = None
        try:
            f.write(codec.seal_frame(seg.count, seg.first, seg.last))
            self._flush_sync(f)
        finally:
            f.close()
        seg.size += codec.SEAL_FRAME
        self._used += codec.SEAL_FRAME
        self.io["bytes"] += codec.SEAL_FRAME
        seg.sealed = True
        if seg.lane == LANE_ROUTINE:
            self._write_snap(seg.last + 1)

    def commit(self):
        """Group commit: write and sync everything appended so far. Returns confirmed_seq. Raises
        QueueError if the medium fails; the records stay in RAM and the next commit() retries
        (re-opening the files) once the medium works again."""
        if self.readonly:
            raise QueueError("store opened read-only")
        try:
            if self._fault:
                self._recover()
            self._commit_files()
            self._housekeep()
            if (self.thinned, self.dropped) != self._emitted and self.site is not None:
                self._emit_counters()
                self._commit_files()
        except OSError as e:
            self._set_fault(e)
            raise QueueError("store %s: commit failed: %s" % (self.path, e)) from e
        return self.confirmed_seq

    def _emit_counters(self):
        self._emitted = (self.thinned, self.dropped)
        now = self.wall()
        for metric, value in (
            ("agent.queue.thinned", self.thinned),
            ("agent.queue.dropped", self.dropped),
        ):
            self.append(
                LANE_ROUTINE,
                {
                    "site": self.site,
                    "device": self.counter_device,
                    "metric": metric,
                    "value": value,
                    "unit": "",
                    "time": now,
                    "quality": "good",
                    "seq": None,
                },
            )

    def _write_meta(self, durable):
        slot = 1 - self._meta_slot
        self._meta_gen += 1
        floor = self._lease_end
        if durable:
            floor = max(floor, self._next_seq + self.seq_lease)
        m = {
            "g": self._meta_gen,
            "d": [self._D[LANE_ALARM], self._D[LANE_ROUTINE]],
            "s": max(floor, self._next_seq),
            "t": self.thinned,
            "x": self.dropped,
        }
        data = codec.frame(codec.META, self._meta_gen, codec.dumps(m))
        f = self.fs.open(self._p("meta.%d" % slot), "wb")
        try:
            f.write(data)
            if durable:
                self._flush_sync(f)
        finally:
            f.close()
        if self._meta_size[slot] == 0:
            self._dir_sync()
        self._used += len(data) - self._meta_size[slot]
        self._meta_size[slot] = len(data)
        self.io["bytes"] += len(data)
        if durable:
            self._meta_slot = slot
            self._lease_end = m["s"]
        self._meta_dirty = False

    def _write_snap(self, scan_from):
        slot = self._snap_gen & 1
        self._snap_gen += 1
        s = {"g": self._snap_gen, "from": scan_from, "l": list(self._latest.values())}
        data = codec.frame(codec.SNAP, self._snap_gen, codec.dumps(s))
        f = self.fs.open(self._p("snap.%d" % slot), "wb")
        try:
            f.write(data)
            self._flush_sync(f)
        finally:
            f.close()
        self._used += len(data) - self._snap_size[slot]
        self._snap_size[slot] = len(data)
        self.io["bytes"] += len(data)

    def _delivered_segs(self):
        out = []
        for lane in LANES:
            for s in self._segs[lane]:
                if s.sealed and s.last <= self._D[lane]:
                    out.append(s)
        return out

    def _remove_delivered(self):
        for s in self._delivered_segs():
            self._remove_seg(s)

    def _remove_seg(self, seg):
        self.fs.remove(seg.path)
        self._segs[seg.lane].remove(seg)
        self._used -= seg.size

    def _housekeep(self):
        gone = self._delivered_segs()
        if gone:
            self._write_meta(True)  # durable D and seq floor before any file goes
            for s in gone:
                self._remove_seg(s)
        elif self._meta_dirty:
            self._write_meta(False)

    # --- the byte budget --------------------------------------------------------------------
    def _make_room(self, need):
        while self._used + need + self._headroom > self.budget:
            r = [s for s in self._segs[LANE_ROUTINE] if s.sealed]
            fresh = [s for s in r if not s.thinned]
            if fresh and self.thin_window and self._thin(fresh[0]):
                continue
            if r:
                self._drop(r[0])
                continue
            if self._pending[LANE_ROUTINE] or (
                self._segs[LANE_ROUTINE] and not self._segs[LANE_ROUTINE][-1].sealed
            ):
                self._commit_files(LANE_ROUTINE)
                continue
            a = [s for s in self._segs[LANE_ALARM] if s.sealed]
            if a:
                self._drop(a[0])
                continue
            if self._pending[LANE_ALARM] or (
                self._segs[LANE_ALARM] and not self._segs[LANE_ALARM][-1].sealed
            ):
                self._commit_files(LANE_ALARM)
                continue
            raise QueueError(
                "budget of %d bytes too small for a %d-byte record" % (self.budget, need)
            )

    def _drop(self, seg):
        n = (
            self._count_after(seg, self._D[seg.lane])
            if seg.first <= self._D[seg.lane]
            else (seg.count)
        )
        self.dropped += n
        self._undeliv[seg.lane] -= n
        self._cancel((seg.lane,))
        self._say("dropped %d records of %s" % (n, seg.path))
        self._write_meta(True)
        self._remove_seg(seg)

    def _thin(self, seg):
        """Replace a sealed routine segment by per-window aggregates. False if not worth it."""
        W = self.thin_window
        D = self._D[LANE_ROUTINE]
        groups = {}
        out = []
        n_in = [0]

        def fold(rec):
            n_in[0] += 1
            t = rec.get("time")
            v = rec.get("value")
            if t is None or "count" in rec:
                out.append(rec)
                return
            key = (rec.get("device"), rec.get("metric"), int(t // W))
            g = groups.get(key)
            if g is None:
                g = dict(rec)
                g["count"] = 1
                g["agg"] = W
                g["time_end"] = t
                if isinstance(v, _NUM) and not isinstance(v, bool):
                    g["min"] = g["max"] = g["sum"] = v
                groups[key] = g
                out.append(g)
                return
            g["count"] += 1
            g["time_end"] = t
            g["seq"] = rec["seq"]
            if "sum" in g and isinstance(v, _NUM) and not isinstance(v, bool):
                g["sum"] += v
                g["min"] = min(g["min"], v)
                g["max"] = max(g["max"], v)
            else:
                g["value"] = v  # text or flag values: the window keeps its last value

        self._each_record(seg, fold, after=D)
        folded = 0
        frames = []
        out.sort(key=lambda r: r["seq"])
        for rec in out:
            if "sum" in rec:
                rec["value"] = rec["sum"] / rec["count"]
                del rec["sum"]
            if rec.get("count", 1) > 1 and "agg" in rec:
                folded += rec["count"]
            frames.append(codec.encode_record(rec, codec.AGG if "agg" in rec else codec.REC))
        size = sum(len(f) for f in frames) + codec.SEAL_FRAME
        if not out or size > self._headroom or size * 4 > seg.size * 3:
            seg.thinned = True  # not worth it: the next pressure drops it instead
            return False
        tmp = seg.path + ".tmp"
        f = self.fs.open(tmp, "wb")
        try:
            for fr in frames:
                f.write(fr)
            f.write(codec.seal_frame(len(out), out[0]["seq"], out[-1]["seq"], codec.FLAG_THINNED))
            self._flush_sync(f)
        finally:
            f.close()
        self.io["bytes"] += size
        self.fs.rename(tmp, seg.path)
        self._dir_sync()
        self.thinned += folded
        self._undeliv[LANE_ROUTINE] -= n_in[0] - len(out)
        self._used += size - seg.size
        seg.size = size
        seg.conf = size - codec.SEAL_FRAME
        seg.count = len(out)
        seg.first = out[0]["seq"]
        seg.last = out[-1]["seq"]
        seg.thinned = True
        self._cancel((LANE_ROUTINE,))
        self._say("thinned %s: %d records into %d" % (seg.path, n_in[0], len(out)))
        self._write_meta(True)
        return True

    # --- reading out ------------------------------------------------------------------------
    def _cancel(self, lanes):
        """Forget in-flight batches of these lanes: they will be read out again."""
        for lane in lanes:
            self._issued[lane] = []
            self._rd[lane] = self._dpos[lane] = (-1, 0)
        for bid in list(self._inflight):
            if self._inflight[bid] in lanes:
                del self._inflight[bid]

    def _read(self, lane, n, pos):
        """Up to n confirmed, undelivered records of lane from reader position pos = (segment
        name, offset). Returns (records, new position)."""
        segs = self._segs[lane]
        D = self._D[lane]
        name, off = pos
        i = 0
        while i < len(segs) and segs[i].name < name:
            i += 1
        if i < len(segs) and segs[i].name != name:
            off = 0
        out = []
        while i < len(segs):
            s = segs[i]
            if off < s.conf:
                r = _Frames(self.fs, s.path, off, s.conf, self.chunk)
                try:
                    while len(out) < n:
                        fr = r.next()
                        if fr is None:
                            break
                        if fr[2] > D and fr[1] != codec.SEAL:
                            out.append(codec.loads(fr[3]))
                    off = r.pos
                finally:
                    r.close()
                if len(out) < n and off < s.conf:
                    self._say("%s: unreadable frame at %d, skipping the rest" % (s.path, off))
                    self.dropped += 1
                    off = s.conf
            if len(out) >= n or i + 1 >= len(segs):
                break
            i += 1
            off = 0
        if i < len(segs):
            pos = (segs[i].name, off)
        return out, pos

    def begin_drain(self):
        """Arm the 'current values' read-out: after the alarm lane, the latest record of every
        (device, metric) not yet delivered is read out once, before the routine backlog. The
        store arms it at open and on requeue(); the uplink may call it on each (re)connect."""
        self._cur = None
        self._cur_armed = True

    def latest(self):
        """The latest confirmed routine record of every (device, metric), oldest seq first."""
        recs = [
            r
            for r in self._latest.values()
            if r.get("seq") is not None and r["seq"] <= self.confirmed_seq
        ]
        recs.sort(key=lambda r: r["seq"])
        return recs

    def next_batch(self, max_records):
        """(batch_id, records) of confirmed records in read-out order, or None."""
        if max_records <= 0:
            return None
        try:
            recs, pos = self._read(LANE_ALARM, max_records, self._rd[LANE_ALARM])
            if recs:
                return self._issue(LANE_ALARM, recs, pos)
            if self._cur_armed:
                self._cur_armed = False
                D = self._D[LANE_ROUTINE]
                self._cur = [r for r in self.latest() if r["seq"] > D]
            if self._cur:
                recs = self._cur[:max_records]
                self._cur = self._cur[max_records:]
                bid = self._next_batch
                self._next_batch += 1
                self._inflight[bid] = LANE_CURRENT
                return bid, recs
            recs, pos = self._read(LANE_ROUTINE, max_records, self._rd[LANE_ROUTINE])
            if recs:
                return self._issue(LANE_ROUTINE, recs, pos)
        except OSError as e:
            raise QueueError("store %s: read failed: %s" % (self.path, e)) from e
        return None

    def _issue(self, lane, recs, pos):
        bid = self._next_batch
        self._next_batch += 1
        self._inflight[bid] = lane
        self._issued[lane].append([bid, recs[-1]["seq"], len(recs), False, pos])
        self._rd[lane] = pos
        return bid, recs

    def ack(self, batch_id):
        """The uplink got PUBACK for batch_id. True if it was in flight. Persisted lazily (the
        next commit writes the cursor without a sync): a crash re-sends, never skips."""
        lane = self._inflight.pop(batch_id, None)
        if lane is None:
            return False
        if lane == LANE_CURRENT:
            return True
        issued = self._issued[lane]
        for b in issued:
            if b[0] == batch_id:
                b[3] = True
        while issued and issued[0][3]:
            b = issued.pop(0)
            self._D[lane] = b[1]
            self._undeliv[lane] -= b[2]
            self._dpos[lane] = b[4]
            self._meta_dirty = True
        return True

    def requeue(self):
        """Link lost: every unacknowledged batch is read out again (batches acknowledged out of
        order beyond the first unacknowledged one are re-sent too: duplicates, never gaps)."""
        self._inflight = {}
        for lane in LANES:
            self._issued[lane] = []
            self._rd[lane] = self._dpos[lane]
        self.begin_drain()

    # --- inspection -------------------------------------------------------------------------
    def depth(self):
        return sum(self._depth(lane) for lane in LANES)

    def _depth(self, lane):
        return self._undeliv[lane] - sum(b[2] for b in self._issued[lane] if b[3])

    def _first_undelivered(self, lane):
        recs, _ = self._read(lane, 1, self._dpos[lane])
        return recs[0] if recs else None

    def _last_record(self, lane):
        if self._newest[lane] is not None:
            return self._newest[lane]
        last = [None]

        def keep(rec):
            last[0] = rec

        for s in reversed(self._segs[lane]):
            self._each_record(s, keep, after=self._D[lane])
            if last[0] is not None:
                break
        return last[0]

    def stats(self):
        depth = {}
        oldest = {}
        newest = {}
        lo = None
        for lane in LANES:
            depth[lane] = self._depth(lane)
            o = self._first_undelivered(lane) if depth[lane] else None
            w = self._last_record(lane) if depth[lane] else None
            oldest[lane] = {"seq": o["seq"], "time": o.get("time")} if o else None
            newest[lane] = {"seq": w["seq"], "time": w.get("time")} if w else None
            if o is not None and (lo is None or o["seq"] < lo):
                lo = o["seq"]
        return {
            "depth": depth,
            "bytes": self._used,
            "budget": self.budget,
            "segments": {lane: len(self._segs[lane]) for lane in LANES},
            "oldest": oldest,
            "newest": newest,
            "seq_range": [lo, self.confirmed_seq] if lo is not None else None,
            "confirmed_seq": self.confirmed_seq,
            "next_seq": self._next_seq,
            "delivered": dict(self._D),
            "inflight_batches": len(self._inflight),
            "latest": len(self._latest),
            "thinned": self.thinned,
            "dropped": self.dropped,
            "fault": self._fault,
            "io": dict(self.io),
            "durable": True,
        }

    def counters(self):
        """Readings-ready counters: {"agent.queue.depth": n, ...} for the agent's health driver."""
        return {
            "agent.queue.depth": self.depth(),
            "agent.queue.bytes": self._used,
            "agent.queue.thinned": self.thinned,
            "agent.queue.dropped": self.dropped,
        }

    def records(self, lane):
        """Every confirmed, undelivered record of lane, oldest first (a generator; reads files)."""
        pos = self._dpos[lane]
        while True:
            recs, pos = self._read(lane, 256, pos)
            if not recs:
                return
            for r in recs:
                yield r

    def export(self, out_path, fs=None):
        """Write the backlog (alarm lane, then routine) as JSON lines with a "lane" key to
        out_path. Returns the number of records written."""
        out = (fs or self.fs).open(out_path, "wb")
        n = 0
        try:
            for lane in LANES:
                for rec in self.records(lane):
                    rec["lane"] = lane
                    out.write(codec.dumps(rec) + b"\n")
                    n += 1
        finally:
            out.close()
        return n

    def close(self):
        """Commit what is pending, make the cursor durable and close the files."""
        try:
            if not self.readonly and not self._fault:
                try:
                    self._commit_files()
                    self._housekeep()
                    self._write_meta(True)
                except OSError as e:
                    raise QueueError("store %s: close failed: %s" % (self.path, e)) from e
        finally:
            for lane in LANES:
                self._close_tail(lane)
