"""The durable store's small state files (portable): two slots per kind, newest valid one wins.

    meta.0, meta.1   cursors, sequence floor, counters   (Slots(medium, "meta", codec.META))
    snap.0, snap.1   latest record per (device, metric)  (CurrentValues)

Invariant: a write goes to the slot that does not hold the last durable state, so a crash in the
middle of a write (or an unsynced write lost in a crash) leaves the previous state readable.
"""

from agent.core.compat import monotonic
from agent.core.store import codec
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE

LEASE_S = 900  # a sequence lease covers about this many seconds of appends


class Slots:
    """One small dict kept as a single frame in `<name>.0` and `<name>.1`; its "g" key is the
    generation, and the newest valid generation is the state."""

    def __init__(self, medium, name, kind):
        self.m = medium
        self.name = name
        self.kind = kind
        self.gen = 0
        self.slot = 0  # slot of the last durable write (of the newest valid one after load)
        self.size = [0, 0]

    def bytes(self):
        return self.size[0] + self.size[1]

    def restat(self):
        """Read both files' sizes again (after a failed write)."""
        for k in (0, 1):
            self.size[k] = self.m.fs.size(self.m.p("%s.%d" % (self.name, k))) or 0

    def load(self):
        """The newest valid state (a dict), or None; notes both files' sizes."""
        best = None
        for slot in (0, 1):
            buf, size = self.m.read_small("%s.%d" % (self.name, slot))
            self.size[slot] = size
            obj = codec.read_one(buf, self.kind) if buf else None
            if obj is not None and (best is None or obj["g"] > best[1]["g"]):
                best = (slot, obj)
        if best is None:
            return None
        self.slot = best[0]
        self.gen = max(self.gen, best[1]["g"])
        return best[1]

    def write(self, state, durable):
        """Write state (a dict whose "g" is set here) to the slot not holding the last durable
        state; durable=True syncs it, and it becomes that slot."""
        slot = 1 - self.slot
        self.gen += 1
        state["g"] = self.gen
        data = codec.frame(self.kind, self.gen, codec.dumps(state))
        f = self.m.fs.open(self.m.p("%s.%d" % (self.name, slot)), "wb")
        try:
            f.write(data)
            if durable:
                self.m.flush_sync(f)
        finally:
            f.close()
        if self.size[slot] == 0:
            self.m.dir_sync()
        self.size[slot] = len(data)
        self.m.io["bytes"] += len(data)
        if durable:
            self.slot = slot


class Meta(Slots):
    """meta.0/meta.1: the delivered cursors, the counters and the sequence floor, which is also
    the lease: a durable write promises that no seq below `lease_end` was handed out, so the
    store hands out only seqs below it. A renewal leases about LEASE_S seconds of appends at
    the rate since the last one, between seq_lease and 64 x seq_lease numbers."""

    def __init__(self, medium, seq_lease, mono=monotonic):
        Slots.__init__(self, medium, "meta", codec.META)
        self.seq_lease = seq_lease
        self.lease = seq_lease  # numbers the next durable write leases
        self.lease_end = 0
        self.dirty = False  # a cursor moved since the last write
        self._mono = mono
        self._mark = None  # (next seq, monotonic time) at the last renewal

    def due(self, seq):
        """The lease is half used at seq: renew it."""
        return seq >= self.lease_end - self.lease // 2

    def renew(self, st):
        now = self._mono()
        mark = self._mark
        if mark is not None and now > mark[1]:
            rate = (st.next_seq - mark[0]) / (now - mark[1])
            self.lease = max(self.seq_lease, min(64 * self.seq_lease, int(rate * LEASE_S)))
        self.save(st, True)
        self._mark = (st.next_seq, now)

    def save(self, st, durable):
        """Write store st's cursors, counters and floor; durable=True syncs it and leases."""
        floor = self.lease_end
        if durable:
            floor = max(floor, st.next_seq + self.lease)
        D = st.out.D
        s = max(floor, st.next_seq)
        m = {"g": 0, "d": [D[LANE_ALARM], D[LANE_ROUTINE]], "s": s, "t": st.thinned,
             "x": st.dropped}  # fmt: skip
        self.write(m, durable)
        if durable:
            self.lease_end = s
        self.dirty = False


class CurrentValues:
    """The latest routine record of every (device, metric). A snapshot is written each time a
    routine segment is sealed, so opening the store parses only the segments after it."""

    def __init__(self, medium, files):
        self.files = files
        self.snaps = Slots(medium, "snap", codec.SNAP)
        self.table = {}  # (device, metric) -> latest stored record
        self.fresh = {}  # (device, metric) -> latest record appended since the last commit
        self.site = None  # the site of the records scanned at load

    def load(self):
        """Read the newest snapshot and the routine segments written after it. Records already
        in the table (kept in RAM across a reload) win over the snapshot's."""
        best = self.snaps.load()
        start = -1
        if best is not None:
            start = best["from"]
            for rec in best["l"]:
                self.table.setdefault((rec.get("device"), rec.get("metric")), rec)
        for s in self.files.segs[LANE_ROUTINE]:
            if s.name >= start:
                self.files.each_record(s, self._note)

    def _note(self, rec):
        key = (rec.get("device"), rec.get("metric"))
        old = self.table.get(key)
        if old is None or old["seq"] <= rec["seq"]:
            self.table[key] = rec
        if self.site is None:
            self.site = rec.get("site")

    def put(self, record):
        self.fresh[(record.get("device"), record.get("metric"))] = record

    def confirm(self):
        """Everything appended so far is stored: the fresh records become the latest."""
        if self.fresh:
            self.table.update(self.fresh)
            self.fresh = {}

    def forget(self, seq):
        """A record appended but never stored (shed while the medium failed)."""
        for key, rec in list(self.fresh.items()):
            if rec["seq"] == seq:
                del self.fresh[key]

    def snapshot(self, scan_from):
        """Persist the table; segments from `scan_from` on are scanned at the next load."""
        self.snaps.write({"g": 0, "from": scan_from, "l": list(self.table.values())}, True)

    def confirmed(self):
        """The latest stored record of every (device, metric), oldest seq first: while the
        medium fails, the last ones it took."""
        recs = list(self.table.values())
        recs.sort(key=lambda r: r["seq"])
        return recs
