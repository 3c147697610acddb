"""Durable store-and-forward queue: segment files with checksummed frames (portable).

Same interface as agent.core.store.queue.MemoryQueue (append, commit, confirmed_seq, next_batch,
ack, requeue, stats, close) plus begin_drain, export, latest and counters. docs/queue.md is the
prose.

Layout of the data directory (only open/read/write/seek/flush/close, rename, remove, stat):
    a<first seq, 20 digits>.seg   alarm lane segments      (frames: agent.core.store.codec)
    r<first seq, 20 digits>.seg   routine lane segments
    meta.0, meta.1                cursors, seq floor, counters: ping-pong, newest valid gen wins
    snap.0, snap.1                latest record per (device, metric): ping-pong
The parts, one seam each: segments.py (segment files, frame reading, the tails), meta.py (meta
and snapshots), readout.py (cursors and batches), budget.py (thinning and dropping), report.py
(stats and export). This module owns opening, appending, committing and the I/O-fault state.
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
  * Delivered cursor per lane: every record of the lane with seq <= D was acknowledged
    (readout.py).
"""

from agent.core.compat import wall_time
from agent.core.errors import QueueError
from agent.core.store import codec, report
from agent.core.store.budget import make_room
from agent.core.store.fsio import Medium, OsFs
from agent.core.store.meta import CurrentValues, Slots
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, LANES
from agent.core.store.readout import LANE_CURRENT, ReadOut  # noqa: F401 (LANE_CURRENT re-exported)
from agent.core.store.segments import PREFIX, SegmentFiles


class Store:
    """Durable queue in directory `path`, never larger than `budget_bytes`.

    sync(f): makes a flushed file durable (host: os.fsync(f.fileno()); littlefs: None, flush is
    the sync). sync_dir(path): makes new or renamed directory entries durable (host only).
    segment_bytes: size at which a tail segment is sealed (default budget/16 within 1 KB..4 MB).
    thin_window: seconds per aggregate when thinning (0 disables thinning: drop only).
    flush_bytes: pending bytes written (unsynced) to the tail before commit.
    max_pending: while the medium fails, records buffered in RAM beyond this are dropped.
    readonly: inspect a stopped agent's directory without repairing or writing anything.
    Attributes without a leading underscore are shared with the store's other modules; the
    queue interface is the public API.
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
    ):
        self.path = path.rstrip("/") or "/"
        self.budget = budget_bytes
        self.fs = fs if fs is not None else OsFs()
        self.medium = Medium(self.fs, self.path, sync, sync_dir)
        self.io = self.medium.io  # bytes written, syncs, bytes appended: for the benchmark
        seg = segment_bytes or max(1024, min(4 << 20, budget_bytes // 16))
        self.segment_bytes = seg
        self.headroom = seg // 2  # room for a thinned segment's tmp copy
        self.thin_window = thin_window
        self.flush_bytes = flush_bytes
        self.max_pending = max_pending
        self.counter_device = counter_device
        self.seq_lease = seq_lease
        self._lease_end = 0  # a synced meta promises no seq below this was ever handed out
        self.readonly = readonly
        self._log = log
        self.thinned = 0  # routine readings folded into aggregates
        self.dropped = 0  # records dropped to stay within the budget (or unreadable)
        self.site = None
        self.next_seq = 0
        self.pending = {LANE_ALARM: [], LANE_ROUTINE: []}  # [(seq, frame)] not yet written
        self._pending_bytes = 0
        self.newest = {LANE_ALARM: None, LANE_ROUTINE: None}
        self.fault = False
        self.meta_dirty = False
        self._emitted = (0, 0)
        self.files = SegmentFiles(self.medium, read_chunk, self.say)
        self.meta = Slots(self.medium, "meta", codec.META)
        self.current = CurrentValues(self.medium, self.files)
        self.out = ReadOut(self)
        try:
            self._load(True)
        except OSError as e:
            raise QueueError("cannot open store %s: %s" % (self.path, e)) from e

    def say(self, msg):
        if self._log:
            self._log("store: " + msg)

    def used(self):
        """Bytes of every file of the store plus the records waiting in RAM."""
        return (
            self.files.bytes + self.meta.bytes() + self.current.snaps.bytes() + self._pending_bytes
        )

    # --- opening and recovery ------------------------------------------------------------
    def _load(self, first):
        """Build the state from the files. first=False: re-load after an I/O fault, keeping
        pending records, counters, cursors known in RAM and the sequence high-water mark."""
        if not self.readonly:
            self.fs.mkdir(self.path)
        names = self.fs.listdir(self.path)
        D = self.out.D
        floor = 0
        m = self.meta.load()
        if m is not None:
            floor = m["s"]
            if first:
                D[LANE_ALARM], D[LANE_ROUTINE] = m["d"]
                self.thinned, self.dropped = m["t"], m["x"]
            else:
                for k, lane in enumerate(LANES):
                    D[lane] = max(D[lane], m["d"][k])
        self.files.load(names, self.readonly)
        top = floor
        self._pending_bytes = 0
        for lane in LANES:
            segs = self.files.segs[lane]
            for s in segs:
                top = max(top, s.last + 1)
            pend = self.pending[lane]
            while pend and pend[0][0] <= (segs[-1].last if segs else -1):
                pend.pop(0)  # written whole before the fault: already in the file
            for _, fr in pend:
                self._pending_bytes += len(fr)
            self.out.count_undelivered(lane, len(pend))
        self.next_seq = max(self.next_seq, top)
        self.confirmed_seq = self.next_seq - 1
        for lane in LANES:
            if self.pending[lane]:
                self.confirmed_seq = min(self.confirmed_seq, self.pending[lane][0][0] - 1)
        self.current.load()
        if self.site is None:
            self.site = self.current.site
        self.out.cancel(LANES)
        self.out.begin_drain()
        if not self.readonly:
            # Make the meta we trust durable now: an unsynced write we just read may not be.
            self.write_meta(True)
            self._remove_delivered()

    def _recover(self):
        for lane in LANES:
            self.files.close_tail(lane)
        try:
            self._load(False)
        except OSError as e:
            raise QueueError("store %s still failing: %s" % (self.path, e)) from e
        self.fault = False
        self.say("recovered after I/O fault")

    # --- writing ------------------------------------------------------------------------
    def append(self, lane, record):
        """Queue a record dict; sets and returns record["seq"]. Not stored until commit().
        I/O errors are not raised here: they surface from commit()."""
        if lane not in PREFIX:
            raise ValueError("unknown lane %r" % (lane,))
        if self.readonly:
            raise QueueError("store opened read-only")
        seq = self.next_seq
        if seq >= self._lease_end and not self.fault:
            try:
                self.write_meta(True)  # lease the next seq_lease numbers: one sync per lease
            except OSError as e:
                self._set_fault(e)
        record["seq"] = seq
        fr = codec.encode_record(record)
        self.next_seq = seq + 1
        n = len(fr)
        if self.used() + n + self.headroom > self.budget and not self.fault:
            try:
                make_room(self, n)
            except OSError as e:
                self._set_fault(e)
        self.pending[lane].append((seq, fr))
        self._pending_bytes += n
        self.out.undeliv[lane] += 1
        self.io["appended"] += n
        self.newest[lane] = record
        if lane == LANE_ROUTINE:
            self.current.put(record)
        if self.site is None:
            self.site = record.get("site")
        if self.fault:
            self._shed()
        elif len(self.pending[lane]) * n >= self.flush_bytes:  # estimate: no O(n) sum here
            try:
                self._write_pending(lane)
            except OSError as e:
                self._set_fault(e)
        return seq

    def _set_fault(self, e):
        self.say("I/O error: %s" % (e,))
        self.fault = True
        for lane in LANES:
            self.files.close_tail(lane)

    def _shed(self):
        # The medium is failing: keep at most max_pending bytes in RAM, routine data goes first.
        while self._pending_bytes > self.max_pending:
            lane = LANE_ROUTINE if self.pending[LANE_ROUTINE] else LANE_ALARM
            _, fr = self.pending[lane].pop(0)
            self._pending_bytes -= len(fr)
            self.out.undeliv[lane] -= 1
            self.dropped += 1

    def _write_pending(self, lane):
        pend = self.pending[lane]
        if pend:
            self._pending_bytes -= self.files.write(lane, pend)
            self.pending[lane] = []

    def commit_files(self, seal_lane=None):
        """Write and sync every pending record; seal full tails (or seal_lane's tail)."""
        conf = self.next_seq - 1
        for lane in LANES:
            self._write_pending(lane)
            self.files.sync_tail(lane)
        self.confirmed_seq = conf
        for lane in LANES:
            seg = self.files.open_tail(lane)
            if seg is not None and (seg.size >= self.segment_bytes or lane == seal_lane):
                self.files.seal(seg)
                if lane == LANE_ROUTINE:
                    self.current.snapshot(seg.last + 1)

    def commit(self):
        """Group commit: write and sync everything appended so far. Returns confirmed_seq. Raises
        QueueError if the medium fails; the records stay in RAM and the next commit() retries
        (re-opening the files) once the medium works again."""
        if self.readonly:
            raise QueueError("store opened read-only")
        try:
            if self.fault:
                self._recover()
            self.commit_files()
            self._housekeep()
            if (self.thinned, self.dropped) != self._emitted and self.site is not None:
                self._emit_counters()
                self.commit_files()
        except OSError as e:
            self._set_fault(e)
            raise QueueError("store %s: commit failed: %s" % (self.path, e)) from e
        return self.confirmed_seq

    def _emit_counters(self):
        self._emitted = (self.thinned, self.dropped)
        now = wall_time()
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

    def write_meta(self, durable):
        """Write the cursors, counters and sequence floor; durable=True also leases the next
        seq_lease sequence numbers."""
        floor = self._lease_end
        if durable:
            floor = max(floor, self.next_seq + self.seq_lease)
        D = self.out.D
        s = max(floor, self.next_seq)
        m = {"g": 0, "d": [D[LANE_ALARM], D[LANE_ROUTINE]], "s": s, "t": self.thinned,
             "x": self.dropped}  # fmt: skip
        self.meta.write(m, durable)
        if durable:
            self._lease_end = s
        self.meta_dirty = False

    def _delivered_segs(self):
        out = []
        for lane in LANES:
            for s in self.files.segs[lane]:
                if s.sealed and s.last <= self.out.D[lane]:
                    out.append(s)
        return out

    def _remove_delivered(self):
        for s in self._delivered_segs():
            self.files.remove(s)

    def _housekeep(self):
        gone = self._delivered_segs()
        if gone:
            self.write_meta(True)  # durable D and seq floor before any file goes
            for s in gone:
                self.files.remove(s)
        elif self.meta_dirty:
            self.write_meta(False)

    # --- reading out (readout.py) and inspection (report.py) --------------------------------
    def begin_drain(self):
        """Arm the 'current values' read-out: after the alarm lane, the latest record of every
        (device, metric) not yet delivered is read out once, before the routine backlog. The
        store arms it at open and on requeue(); the uplink may call it on each (re)connect."""
        self.out.begin_drain()

    def latest(self):
        """The latest confirmed routine record of every (device, metric), oldest seq first."""
        return self.current.confirmed(self.confirmed_seq)

    def next_batch(self, max_records):
        """(batch_id, records) of confirmed records in read-out order, or None."""
        return self.out.next_batch(max_records)

    def ack(self, batch_id):
        """The uplink got PUBACK for batch_id. True if it was in flight. Persisted lazily (the
        next commit writes the cursor without a sync): a crash re-sends, never skips."""
        return self.out.ack(batch_id)

    def requeue(self):
        """Link lost: every unacknowledged batch is read out again (batches acknowledged out of
        order beyond the first unacknowledged one are re-sent too: duplicates, never gaps)."""
        self.out.requeue()

    def depth(self):
        return sum(self.out.lane_depth(lane) for lane in LANES)

    def stats(self):
        return report.stats(self)

    def counters(self):
        """Readings-ready counters: {"agent.queue.depth": n, ...} for the agent's health driver."""
        return report.counters(self)

    def records(self, lane):
        """Every confirmed, undelivered record of lane, oldest first (a generator; reads files)."""
        return report.records(self, lane)

    def export(self, out_path, fs=None):
        """Write the backlog (alarm lane, then routine) as JSON lines with a "lane" key to
        out_path. Returns the number of records written."""
        return report.export(self, out_path, fs)

    def close(self):
        """Commit what is pending, make the cursor durable and close the files."""
        try:
            if not self.readonly and not self.fault:
                try:
                    self.commit_files()
                    self._housekeep()
                    self.write_meta(True)
                except OSError as e:
                    raise QueueError("store %s: close failed: %s" % (self.path, e)) from e
        finally:
            for lane in LANES:
                self.files.close_tail(lane)
