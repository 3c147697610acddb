"""Durable store-and-forward queue: segment files with checksummed frames (portable).

Same interface as agent.core.store.queue.MemoryQueue (append, commit, confirmed_seq, next_batch,
ack, requeue, stats, close) plus begin_drain, export, latest and counters. docs/queue.md is the
prose. This module owns opening, appending, committing and the I/O-fault state; one part per
seam: segments.py (segment files, the tails), meta.py (meta and snapshots), readout.py (cursors
and batches), budget.py (the budget: thinning, dropping), report.py (stats and export).

Layout of the data directory (only open/read/write/seek/flush/close, rename, remove, stat):
    a<first seq, 20 digits>.seg   alarm lane segments      (frames: agent.core.store.codec)
    r<first seq, 20 digits>.seg   routine lane segments
    meta.0, meta.1                cursors, seq floor, counters: ping-pong, newest valid gen wins
    snap.0, snap.1                latest record per (device, metric): ping-pong
Invariants:
  * A segment is appended to only while it is its lane's tail; a full tail gets a SEAL frame
    (a torn or failed one is closed in RAM without) and is never written again, except that
    thinning replaces a closed routine segment whole (write tmp, sync, rename).
  * confirmed_seq covers a record only after the sync of the file holding it.
  * Unsynced meta writes go to the slot that is not the last synced one, so one valid meta always
    survives. A segment is removed only after a synced meta records that it was delivered, or
    dropped, unless the medium refuses that meta: then the file goes first (it frees space;
    delivered or dropped records may go, and a crash then costs only duplicates or a count).
  * Sequence numbers are leased (meta.Meta): before handing out seq n, a synced meta holds a
    floor > n, and open() starts at or above that floor. So no number is handed out twice, even
    one whose record was lost unconfirmed in a crash; a lease covers about 15 minutes of
    appends, so alarms read out from memory while the medium fails stay under it that long.
    The cost is a gap of up to one lease after each restart.
  * A full or failing medium never stops the store: opening writes nothing it needs; a failed
    write leaves the records in RAM (at most max_pending bytes, routine data shed first) and
    the next commit() reads the tails again and retries; the budget shrinks to what the medium
    holds; delivered files go even when a commit fails; the read-out goes on from the files,
    with the alarms held in RAM (readout.py).
"""

from agent.core.compat import monotonic, wall_time
from agent.core.errors import QueueError, os_reason
from agent.core.log import INFO
from agent.core.store import codec, report
from agent.core.store.budget import fit, make_room, over_budget, relieved, segment_size
from agent.core.store.fsio import Medium, OsFs
from agent.core.store.meta import CurrentValues, Meta
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, LANES
from agent.core.store.readout import LANE_CURRENT, ReadOut  # noqa: F401 (LANE_CURRENT re-exported)
from agent.core.store.segments import PREFIX, SegmentFiles

REFIT_S = 30  # while the medium holds less than the configured budget: look again this often


class Store:
    """Durable queue in directory `path`, never larger than `budget_bytes`.

    sync(f): makes a flushed file durable (host: os.fsync(f.fileno()); littlefs: None, flush is
    the sync). sync_dir(path): makes new or renamed directory entries durable (host only).
    segment_bytes: size at which a tail segment is sealed (default budget/16 within 1 KB..4 MB);
    both shrink to what the medium can hold (budget.py).
    thin_window: seconds per aggregate when thinning (0 disables thinning: drop only).
    flush_bytes: pending bytes written (unsynced) to the tail before commit.
    write_through: write each record to its tail file at append (unsynced; the fs adapter's
    files must not buffer it, agent.host.queue_cli.HostFs), so that a killed process loses
    nothing; syncs stay one per commit. Off on the board: a littlefs write reaches the flash
    only at the flush (the sync), so it would cost writes and buy nothing.
    max_pending: while the medium fails, records buffered in RAM beyond this are dropped.
    readonly: inspect a stopped agent's directory without repairing or writing anything.
    log: an agent.core.log.Log (conditions go through Log.repeating: a line, then summaries).
    wall: the wall clock for the time of the counter records (site time under a drill).
    Attributes without a leading underscore are shared with the store's parts.
    """

    def __init__(self, path, budget_bytes, sync=None, fs=None, sync_dir=None, segment_bytes=None,
                 thin_window=900, flush_bytes=65536, max_pending=262144, read_chunk=16384,
                 counter_device="agent", seq_lease=1024, readonly=False, log=None,
                 wall=wall_time, mono=monotonic, write_through=False):  # fmt: skip
        self.path = path.rstrip("/") or "/"
        self.wall = wall  # the time on the counter records it makes (the site's wall clock)
        self.configured = budget_bytes
        self.budget = budget_bytes  # effective: fit() lowers it to what the medium holds
        self.mono = mono
        self.fit_at = mono()  # last fit(); while the medium limits the budget, one per REFIT_S
        self.fs = fs if fs is not None else OsFs()
        self.medium = Medium(self.fs, self.path, sync, sync_dir)
        self.io = self.medium.io  # bytes written, syncs, bytes appended: for the benchmark
        self.seg_cfg = segment_bytes
        self.segment_bytes = segment_size(budget_bytes, segment_bytes)
        self.headroom = self.segment_bytes // 2  # room for a thinned segment's tmp copy
        self.thin_window = thin_window
        self.flush_bytes = flush_bytes
        self.write_through = write_through
        self.max_pending = max_pending
        self.counter_device = counter_device
        self.readonly = readonly
        self.log = log  # agent.core.log.Log, or None
        self.thinned = 0  # routine readings folded into aggregates
        self.dropped = 0  # records dropped to stay within the budget (or unreadable)
        self.site = None
        self.next_seq = 0
        self.pending = {LANE_ALARM: [], LANE_ROUTINE: []}  # [(seq, frame)] not yet written
        self.unsynced = {LANE_ALARM: [], LANE_ROUTINE: []}  # written, not yet synced
        self.held_bytes = 0  # of the records in pending
        self.newest = {LANE_ALARM: None, LANE_ROUTINE: None}
        self.fault = None  # the OSError of the last failed write while the medium fails
        self._emitted = (0, 0)
        self._conds = {}  # conditions logged as holding (state/clear)
        self.files = SegmentFiles(self.medium, read_chunk, self.say)
        self.meta = Meta(self.medium, seq_lease, mono)
        self.current = CurrentValues(self.medium, self.files)
        self.out = ReadOut(self)
        try:
            self._load()
        except OSError as e:
            raise QueueError("cannot open store %s: %s" % (self.path, os_reason(e))) from e
        if not readonly:
            self._settle()

    def say(self, message, **fields):
        if self.log is not None:
            self.log.info("queue", message, **fields)

    def state(self, key, level, message, **fields):
        """A condition holds (again): Log.repeating, one line then a summary per window."""
        self._conds[key] = True
        if self.log is not None:
            self.log.repeating(("queue", key), level, "queue", message, **fields)

    def clear(self, key, message, **fields):
        """The condition is over: one line if it held."""
        if self._conds.pop(key, None) and self.log is not None:
            self.log.repeating(("queue", key, "over"), INFO, "queue", message, **fields)

    def used(self):
        """Bytes of every file of the store plus the records waiting in RAM."""
        return self.files.bytes + self.meta.bytes() + self.current.snaps.bytes() + self.held_bytes

    # --- opening and recovery ------------------------------------------------------------
    def _load(self):
        """Build the state from the files. Reads only: a full medium can be opened."""
        if not self.readonly:
            try:
                self.fs.mkdir(self.path)
            except OSError as e:
                self.fault = e  # no room even for the folder: open empty, commit() retries
        try:
            names = self.fs.listdir(self.path)
        except OSError:
            if self.fault is None:
                raise
            names = []
        D = self.out.D
        floor = 0
        m = self.meta.load()
        if m is not None:
            floor = m["s"]
            D[LANE_ALARM], D[LANE_ROUTINE] = m["d"]
            self.thinned, self.dropped = m["t"], m["x"]
        self.files.load(names, self.readonly)
        top = floor
        for lane in LANES:
            for s in self.files.segs[lane]:
                top = max(top, s.last + 1)
            self.out.count_undelivered(lane, 0)
        self.next_seq = top
        self.confirmed_seq = top - 1
        self.current.load()
        self.site = self.current.site
        self.out.cancel(LANES)
        self.out.begin_drain()

    def _settle(self):
        """The writes of an open. A medium that refuses them leaves the store open and faulted
        (commit() retries); delivered segments go and the budget is fitted to the medium."""
        # Records of a killed process are whole in the page cache but maybe not on the medium:
        # sync them before they count as stored (confirmed, read out).
        self.files.sync_scanned()
        try:
            # Make the meta we trust durable now (an unsynced write we just read may not be)
            # and lease the first sequence numbers.
            self.write_meta(True)
        except OSError as e:
            self.set_fault(e)
        self._housekeep()
        self._refit()

    def _recover(self):
        """Bring RAM in line with the files after a failed write, then lease and write the
        cursor (raises OSError while the medium still fails; nothing in RAM is lost then)."""
        self.fs.mkdir(self.path)  # a store opened on a medium too full for its folder
        for lane in LANES:
            last = self.files.recover_tail(lane)
            pend = self.pending[lane]
            while pend and pend[0][0] <= last:
                self.held_bytes -= len(pend.pop(0)[1])  # whole in the file already
        self.meta.restat()
        self.current.snaps.restat()
        for lane in LANES:
            self.out.count_undelivered(lane, len(self.pending[lane]))
        self.write_meta(True)
        self.fault = None

    def _refit(self):
        """Fit the budget to the medium and make room within it. True if files were freed."""
        before = self.used()
        try:
            fit(self)
            if self.used() + self.headroom > self.budget:
                lane = LANE_ALARM if self.pending[LANE_ALARM] else LANE_ROUTINE
                if not make_room(self, 0, lane):
                    over_budget(self, None)
        except OSError as e:
            self.set_fault(e)
        return self.used() < before

    # --- writing ------------------------------------------------------------------------
    def append(self, lane, record):
        """Queue a record dict; sets and returns record["seq"]. Not stored until commit()
        (with write_through it is in the file at once, but confirmed only by the commit's sync).
        Never raises for I/O or space: a failing medium surfaces from commit(); a record the
        budget cannot hold is dropped and counted if routine, kept if an alarm."""
        if lane not in PREFIX:
            raise ValueError("unknown lane %r" % (lane,))
        if self.readonly:
            raise QueueError("store opened read-only")
        seq = self.next_seq
        if self.meta.due(seq) and not self.fault:
            try:
                self.meta.renew(self)  # at half use: one sync per half lease
            except OSError as e:
                self.set_fault(e)
        record["seq"] = seq
        fr = codec.encode_record(record)
        self.next_seq = seq + 1
        n = len(fr)
        if self.used() + n + self.headroom > self.budget:
            try:
                fits = make_room(self, n, lane)
            except OSError as e:
                self.set_fault(e)
                fits = False
            if not fits and lane == LANE_ROUTINE:
                self.dropped += 1
                over_budget(self, n)
                return seq
        self.pending[lane].append((seq, fr))
        self.held_bytes += n
        self.out.undeliv[lane] += 1
        self.io["appended"] += n
        self.newest[lane] = record
        if lane == LANE_ROUTINE:
            self.current.put(record)
        if self.site is None:
            self.site = record.get("site")
        if self.fault:
            self._shed()
        elif self.write_through or len(self.pending[lane]) * n >= self.flush_bytes:
            # (the flush_bytes test is an estimate: no O(n) sum here)
            try:
                self._write_pending(lane)
            except OSError as e:
                self.set_fault(e)
        return seq

    def set_fault(self, e):
        """The medium failed a write: records stay in RAM until commit() succeeds again, those
        written but not yet synced too (a buffered write fails only at the flush)."""
        self.fault = e
        for lane in LANES:
            self.files.close_tail(lane)
            back = self.unsynced[lane]
            if back:
                self.pending[lane] = back + self.pending[lane]
                self.held_bytes += sum(len(fr) for _, fr in back)
                self.unsynced[lane] = []

    def _shed(self):
        # The medium is failing: keep at most max_pending bytes in RAM, routine data goes first.
        D = self.out.D[LANE_ALARM]
        while self.held_bytes > self.max_pending:
            lane = LANE_ROUTINE if self.pending[LANE_ROUTINE] else LANE_ALARM
            seq, fr = self.pending[lane].pop(0)
            self.held_bytes -= len(fr)
            if lane == LANE_ROUTINE:
                self.current.forget(seq)
            if lane == LANE_ROUTINE or seq > D:  # an alarm acked from memory is not lost
                self.out.undeliv[lane] -= 1
                self.dropped += 1

    def _write_pending(self, lane):
        pend = self.pending[lane]
        if pend:
            self.held_bytes -= self.files.write(lane, pend)
            self.unsynced[lane].extend(pend)  # kept until the sync: see set_fault
            self.pending[lane] = []

    def commit_files(self, seal_lane=None):
        """Write and sync every pending record; seal full tails (or seal_lane's tail)."""
        conf = self.next_seq - 1
        for lane in LANES:
            self._write_pending(lane)
            self.files.sync_tail(lane)
            self.unsynced[lane] = []
        self.confirmed_seq = conf
        self.current.confirm()
        for lane in LANES:
            seg = self.files.open_tail(lane)
            if seg is not None and (seg.size >= self.segment_bytes or lane == seal_lane):
                self.files.seal(seg)
                if lane == LANE_ROUTINE:
                    self.current.snapshot(seg.last + 1)
                fit(self)  # one statvfs per seal: follows a medium that others fill

    def commit(self):
        """Group commit: write and sync everything appended so far. Returns confirmed_seq. Raises
        QueueError if the medium fails; the records stay in RAM and the next commit() retries
        (reading the tails again) once the medium works again. A full medium first shrinks the
        budget to what it holds and makes room by the budget policy, then one retry."""
        if self.readonly:
            raise QueueError("store opened read-only")
        err = self._commit()
        if err is not None:
            raise QueueError("store %s: commit failed, %d records held in RAM: %s"
                             % (self.path, self.held(), os_reason(err))) from err  # fmt: skip
        if (self.thinned, self.dropped) != self._emitted and self.site is not None:
            self._emitted = (self.thinned, self.dropped)
            for rec in report.counter_records(self):
                self.append(LANE_ROUTINE, rec)
            self._commit()  # a failure leaves the counters in RAM: the readings are stored
        return self.confirmed_seq

    def _commit(self):
        """Write and sync what is pending (after a fault, recover first; after a failure, fit
        the budget to the medium and retry once if that freed room). Delivered files go in any
        case. Returns None, or the OSError that left records in RAM."""
        err = None
        for attempt in (1, 2):
            try:
                if self.fault is not None:
                    self._recover()
                self.commit_files()
                err = None
                break
            except OSError as e:
                err = e
                self.set_fault(e)
                if attempt == 2 or not self._refit():
                    break
        self._housekeep()  # even when the commit failed: removing delivered files frees space
        if self.budget < self.configured and self.mono() - self.fit_at >= REFIT_S:
            # Others may have freed the medium. A store that writes nothing (every record
            # dropped at a budget of 0) never seals, so the seal's fit() would never see it.
            try:
                fit(self)
            except OSError as e:
                self.set_fault(e)
        relieved(self)
        return err

    def held(self):
        """Records waiting in RAM (appended, not yet written)."""
        return len(self.pending[LANE_ALARM]) + len(self.pending[LANE_ROUTINE])

    def write_meta(self, durable):
        self.meta.save(self, durable)

    def _housekeep(self):
        """Remove delivered segments, after a durable meta records the cursor if the medium
        takes it (else first: delivered records may go), and write a cursor that moved."""
        try:
            D = self.out.D
            gone = [s for lane in LANES for s in self.files.segs[lane]
                    if s.sealed and s.last <= D[lane]]  # fmt: skip
            if gone or self.meta.dirty:
                try:
                    self.write_meta(bool(gone))
                except OSError as e:
                    self.set_fault(e)
                    self.meta.dirty = True
            for s in gone:
                self.files.remove(s)
        except OSError as e:
            self.set_fault(e)

    # --- reading out (readout.py) and inspection (report.py) --------------------------------
    def begin_drain(self):
        """Arm the 'current values' read-out: after the alarm lane, the latest record of every
        (device, metric) not yet delivered is read out once, before the routine backlog. The
        store arms it at open and on requeue(); the uplink may call it on each (re)connect."""
        self.out.begin_drain()

    def latest(self):
        """The latest confirmed routine record of every (device, metric), oldest seq first."""
        return self.current.confirmed()

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
        """Commit what is pending (recovering the medium if it can), make the cursor durable
        and close the files. Raises QueueError naming what could not be stored."""
        try:
            if not self.readonly:
                err = self._commit()
                if err is not None:
                    raise QueueError("store %s: closed with %d records (%d alarms) not stored: %s"
                                     % (self.path, self.held(), len(self.pending[LANE_ALARM]),
                                        os_reason(err))) from err  # fmt: skip
                try:
                    self.write_meta(True)
                except OSError as e:
                    self.say("cursor not written at close", error=os_reason(e))
        finally:
            for lane in LANES:
                self.files.close_tail(lane)
