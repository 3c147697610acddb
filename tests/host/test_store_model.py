"""Model-based test: hypothesis drives append, commit, read, ack, requeue, restart and crash on a
real Store in a temp directory and compares it with a simple in-memory model after every step."""

import shutil
import tempfile

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.store import LANE_CURRENT, Store
from agent.host.queue_cli import fsync_file

LANES = (LANE_ALARM, LANE_ROUTINE)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.path = self.dir + "/q"
        self.store = self._open()
        self.pending = {}  # seq -> (lane, record): appended, not committed
        self.must = {}  # seq -> (lane, record): confirmed and not acknowledged
        self.may = {}  # seq -> (lane, record): acknowledged or lost-in-crash candidates
        self.inflight = {}  # batch_id -> [seq]
        self.top = -1  # highest seq ever handed out
        self.n = 0

    def _open(self):
        # flush_bytes: nothing reaches a file before commit, so a "crash" (dropping the object)
        # loses exactly the uncommitted records and leaves no buffered data behind.
        return Store(
            self.path,
            1 << 30,
            sync=fsync_file,
            segment_bytes=2048,
            flush_bytes=1 << 30,
            thin_window=0,
        )

    def teardown(self):
        try:
            self.store.close()
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)

    @rule(lane=st.sampled_from(LANES), k=st.integers(1, 6))
    def append(self, lane, k):
        for _ in range(k):
            self.n += 1
            rec = {
                "site": "s",
                "device": "d%d" % (self.n % 3),
                "metric": "dc.voltage",
                "value": self.n * 0.5,
                "unit": "V",
                "time": 1000.0 + self.n,
                "quality": "good",
            }
            seq = self.store.append(lane, rec)
            assert seq > self.top, "seq %d reused (top %d)" % (seq, self.top)
            self.top = seq
            self.pending[seq] = (lane, dict(rec))

    @rule()
    def commit(self):
        conf = self.store.commit()
        for seq in sorted(self.pending):
            if seq <= conf:
                self.must[seq] = self.pending.pop(seq)
        assert not self.pending

    @rule(n=st.integers(1, 10))
    def read(self, n):
        b = self.store.next_batch(n)
        if b is None:
            return
        bid, recs = b
        assert 1 <= len(recs) <= n
        for r in recs:
            known = self.must.get(r["seq"]) or self.may.get(r["seq"])
            assert known is not None, "unknown record %r" % (r,)
            assert r == known[1], "%r != %r" % (r, known[1])
        self.inflight[bid] = [r["seq"] for r in recs]

    @precondition(lambda self: self.inflight)
    @rule(data=st.data())
    def ack(self, data):
        bid = data.draw(st.sampled_from(sorted(self.inflight)))
        assert self.store.ack(bid)
        for seq in self.inflight.pop(bid):
            if seq in self.must:
                self.may[seq] = self.must.pop(seq)

    @rule()
    def requeue(self):
        self.store.requeue()
        self.inflight = {}

    @rule()
    def restart(self):
        self.store.close()
        for seq, v in self.pending.items():
            self.must[seq] = v  # close() commits
        self.pending = {}
        self.store = self._open()
        self.inflight = {}

    @rule()
    def crash(self):
        for lane in LANES:
            self.store.files.close_tail(lane)  # the process dies: its descriptors close
        self.store = self._open()
        self.pending = {}  # never confirmed: lost (their seq may not come back: see append)
        self.inflight = {}

    @invariant()
    def backlog_matches_model(self):
        seen = {}
        for lane in LANES:
            last = -1
            for r in self.store.records(lane):
                seq = r["seq"]
                assert seq > last and seq not in seen
                last = seq
                want = self.must.get(seq) or self.may.get(seq)
                assert want is not None, "record %d should not be there" % seq
                assert want[0] == lane and want[1] == r
                seen[seq] = r
        missing = [s for s in self.must if s not in seen]
        assert not missing, "confirmed records missing: %r" % missing
        depth = self.store.stats()["depth"]
        assert sum(depth.values()) >= len(self.must) + len(self.pending) - sum(
            len(v) for v in self.inflight.values()
        )

    @invariant()
    def current_values_are_latest(self):
        for r in self.store.latest():
            assert r["seq"] <= self.store.confirmed_seq
        assert LANE_CURRENT not in LANES


StoreMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)
TestStoreModel = StoreMachine.TestCase
