"""Reading the durable store out (portable): batches in read-out order, acknowledgements and
requeue, over the store's segment files.

Read-out order: the alarm lane in order; then, once per open, requeue() or begin_drain(), the
latest confirmed record of every (device, metric) not yet delivered (pseudo-lane LANE_CURRENT:
copies of backlog records, same seq); then the routine backlog, oldest first.
Invariants:
  * Delivered cursor per lane, D: every record of the lane with seq <= D was acknowledged. Acks
    may arrive out of order; D moves over the acknowledged prefix of the batches handed out.
  * Only confirmed records are read out (readers stop at each segment's confirmed end), with
    one exception: while the medium fails, alarms held in RAM are read out after the alarm
    lane's stored records (from memory), if a durable lease covers their seq (so it is never
    handed out again after a restart). They are acknowledged like any alarm batch (D moves over
    them) and written when the medium works again; a record is never read out twice while in
    flight, because a lane is read only past its last batch handed out.
  * The budget never thins or drops a segment holding records in flight (in_flight()), so
    batches handed out stay valid until their acknowledgement or requeue(); a segment thinned
    or dropped beyond them only moves the reader to the start of what replaced it or to the
    next segment (rewritten(); read() filters by seq), and no record is handed out twice in
    one session (the drill found the read-out cancelled by each thinning: the same batch was
    read out again and again, and its acknowledgements were ignored).
"""

from agent.core.errors import QueueError
from agent.core.store import codec
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, LANES

LANE_CURRENT = "current"  # pseudo-lane of the read-out: latest value of every metric


class ReadOut:
    """Cursors and batches of Store `st` (its files, latest(), dropped counter and path)."""

    def __init__(self, st):
        self.st = st
        self.D = {LANE_ALARM: -1, LANE_ROUTINE: -1}
        self.undeliv = {LANE_ALARM: 0, LANE_ROUTINE: 0}  # records not yet acknowledged
        self.issued = {LANE_ALARM: [], LANE_ROUTINE: []}  # [batch_id, hi seq, n, acked, pos]
        self.inflight = {}  # batch_id -> lane
        self.rd = {}  # lane -> reader position (segment name, offset)
        self.dpos = {}  # lane -> reader position just after the delivered cursor
        self.next_id = 1
        self.cur = None
        self.cur_armed = True

    def count_undelivered(self, lane, pending):
        """Recount the lane's undelivered records from its files (plus `pending` in RAM)."""
        files = self.st.files
        D = self.D[lane]
        n = 0
        for s in files.segs[lane]:
            if s.first > D:
                n += s.count
            elif s.last > D:
                n += files.count_after(s, D)
        self.undeliv[lane] = n + pending

    def cancel(self, lanes):
        """Forget in-flight batches of these lanes: they will be read out again."""
        for lane in lanes:
            self.issued[lane] = []
            self.rd[lane] = self.dpos[lane] = (-1, 0)
        for bid in list(self.inflight):
            if self.inflight[bid] in lanes:
                del self.inflight[bid]

    def in_flight(self, seg):
        """True if seg holds records handed out and not yet acknowledged (seq in (D, past])."""
        D = self.D[seg.lane]
        past = self._past(seg.lane)
        return past > D and seg.last > D and seg.first <= past

    def rewritten(self, seg):
        """seg's file was replaced whole (thinned): reader positions inside it start again at
        its beginning; read() skips by seq what was already handed out or delivered."""
        for pos in (self.rd, self.dpos):
            p = pos.get(seg.lane)
            if p is not None and p[0] == seg.name:
                pos[seg.lane] = (seg.name, 0)

    def read(self, lane, n, pos, after=None):
        """Up to n confirmed records of lane with seq > after (default: the delivered cursor)
        from reader position pos = (segment name, offset). Returns (records, new position)."""
        if after is None:
            after = self.D[lane]
        recs, pos, skipped = self.st.files.read(lane, n, pos, after)
        self.st.dropped += skipped
        return recs, pos

    def _past(self, lane):
        """Seq past which the lane is read: its last batch handed out, else its cursor."""
        issued = self.issued[lane]
        return issued[-1][1] if issued else self.D[lane]

    def begin_drain(self):
        self.cur = None
        self.cur_armed = True

    def next_batch(self, max_records):
        if max_records <= 0:
            return None
        try:
            past = self._past(LANE_ALARM)
            recs, pos = self.read(LANE_ALARM, max_records, self.rd[LANE_ALARM], past)
            if not recs and self.st.fault:
                recs = self._held_alarms(past, max_records)
            if recs:
                return self._issue(LANE_ALARM, recs, pos)
            if self.cur_armed:
                self.cur_armed = False
                D = self.D[LANE_ROUTINE]
                self.cur = [r for r in self.st.latest() if r["seq"] > D]
            if self.cur:
                recs = self.cur[:max_records]
                self.cur = self.cur[max_records:]
                bid = self.next_id
                self.next_id += 1
                self.inflight[bid] = LANE_CURRENT
                return bid, recs
            past = self._past(LANE_ROUTINE)
            recs, pos = self.read(LANE_ROUTINE, max_records, self.rd[LANE_ROUTINE], past)
            if recs:
                return self._issue(LANE_ROUTINE, recs, pos)
        except OSError as e:
            raise QueueError("store %s: read failed: %s" % (self.st.path, e)) from e
        return None

    def _held_alarms(self, after, n):
        """Up to n alarms held in RAM with seq > after, below the durable lease."""
        out = []
        for seq, fr in self.st.pending[LANE_ALARM]:
            if len(out) >= n or seq >= self.st.meta.lease_end:
                break
            if seq > after:
                out.append(codec.loads(fr[codec.HEADER :]))
        return out

    def _issue(self, lane, recs, pos):
        bid = self.next_id
        self.next_id += 1
        self.inflight[bid] = lane
        self.issued[lane].append([bid, recs[-1]["seq"], len(recs), False, pos])
        self.rd[lane] = pos
        return bid, recs

    def ack(self, batch_id):
        """True if batch_id was in flight. D moves over the acknowledged prefix of the lane's
        batches; the store persists it lazily (meta.dirty)."""
        lane = self.inflight.pop(batch_id, None)
        if lane is None:
            return False
        if lane == LANE_CURRENT:
            return True
        issued = self.issued[lane]
        for b in issued:
            if b[0] == batch_id:
                b[3] = True
        while issued and issued[0][3]:
            b = issued.pop(0)
            self.D[lane] = b[1]
            self.undeliv[lane] -= b[2]
            self.dpos[lane] = b[4]
            self.st.meta.dirty = True
        return True

    def requeue(self):
        self.inflight = {}
        for lane in LANES:
            self.issued[lane] = []
            self.rd[lane] = self.dpos[lane]
        self.begin_drain()

    def lane_depth(self, lane):
        return self.undeliv[lane] - sum(b[2] for b in self.issued[lane] if b[3])

    def first_undelivered(self, lane):
        recs, _ = self.read(lane, 1, self.dpos[lane])
        return recs[0] if recs else None
