"""The queue interface between the agent and the uplink, and a volatile in-memory version.

The durable store (agent/core/store/store.py) implements the same methods; the runner and the
uplink use only these:

    seq = q.append(lane, record)     # record: a dict (Reading.to_dict()); q sets record["seq"]
    q.commit()                       # group commit: everything appended so far is now stored
    q.confirmed_seq                  # highest seq covered by a commit (-1 when none)
    batch = q.next_batch(n)          # (batch_id, [record, ...]) of confirmed records, or None
    q.ack(batch_id)                  # the uplink got PUBACK for that batch: the records leave
    q.requeue()                      # link lost: in-flight batches will be read out again
    q.latest()                       # durable store only: latest stored record of every series
    q.stats()                        # {"depth": {lane: n}, "bytes": b, "oldest": t, ...}
    q.close()

Order of read-out: every alarm record first (lane ALARM, in order), then routine records oldest
first. Only committed records are read out, so nothing leaves before it is stored.
"""

LANE_ALARM = "alarm"
LANE_ROUTINE = "routine"
LANES = (LANE_ALARM, LANE_ROUTINE)


class MemoryQueue:
    """Volatile queue for tests, `site-agent poll` and boards without storage. Loses everything
    on restart; its sequence numbers restart at `first_seq`."""

    def __init__(self, first_seq=0):
        self._next_seq = first_seq
        self.confirmed_seq = first_seq - 1
        self._lanes = {LANE_ALARM: [], LANE_ROUTINE: []}
        self._inflight = {}  # batch_id -> [(lane, record)]
        self._next_batch = 1

    def append(self, lane, record):
        if lane not in self._lanes:
            raise ValueError("unknown lane %r" % (lane,))
        seq = self._next_seq
        self._next_seq += 1
        record["seq"] = seq
        self._lanes[lane].append(record)
        return seq

    def commit(self):
        self.confirmed_seq = self._next_seq - 1
        return self.confirmed_seq

    def next_batch(self, max_records):
        taken = []
        for lane in LANES:
            pending = self._lanes[lane]
            n = 0
            while n < len(pending) and len(taken) < max_records:
                if pending[n]["seq"] > self.confirmed_seq:
                    break
                taken.append((lane, pending[n]))
                n += 1
            del pending[:n]
            if len(taken) >= max_records:
                break
        if not taken:
            return None
        batch_id = self._next_batch
        self._next_batch += 1
        self._inflight[batch_id] = taken
        return batch_id, [rec for _, rec in taken]

    def ack(self, batch_id):
        return self._inflight.pop(batch_id, None) is not None

    def requeue(self):
        # Put in-flight records back at the head of their lanes, keeping seq order.
        back = {LANE_ALARM: [], LANE_ROUTINE: []}
        for batch_id in sorted(self._inflight):
            for lane, rec in self._inflight[batch_id]:
                back[lane].append(rec)
        self._inflight = {}
        for lane in LANES:
            self._lanes[lane] = back[lane] + self._lanes[lane]

    def depth(self):
        n = sum(len(v) for v in self._lanes.values())
        return n + sum(len(v) for v in self._inflight.values())

    def stats(self):
        depth = {}
        for lane in LANES:
            depth[lane] = len(self._lanes[lane])
        for batch in self._inflight.values():
            for lane, _ in batch:
                depth[lane] += 1
        return {
            "depth": depth,
            "inflight_batches": len(self._inflight),
            "confirmed_seq": self.confirmed_seq,
            "next_seq": self._next_seq,
            "durable": False,
        }

    def close(self):
        pass
