"""The durable store's byte budget (portable): how big the store may be, and what is thinned or
dropped to stay within it.

The effective budget is the smaller of the configured budget and what the medium can hold for
the store: its own files plus the free space, less RESERVE_BLOCKS blocks (metadata, copy-on-write,
the agent's other small files) and one block per file for rounding. fit() sets it at open, at
every seal and whenever a write fails; the segment size follows it (budget/16 within 1 KB..4 MB,
or the configured size if smaller than budget/4), so a tail is sealed at a size the medium holds.

Before a record would take the files past `budget - headroom` (half a segment: room for a
thinned segment's temp copy):
  1. the oldest closed routine segment not yet thinned is thinned into per-window aggregates
     (kept only if that saves 25%; skipped when the medium cannot take the copy);
  2. otherwise the oldest closed routine segment is dropped (an open tail is sealed first);
  in both, a segment holding records in flight (handed out, not yet acknowledged) is passed
  over: it goes once delivered, and the read-out is never set back (readout.py);
  3. for an alarm, when no routine data is left, alarm segments already delivered are dropped.
A routine record that still does not fit is dropped itself: alarms are never dropped to make
room for routine data, and an undelivered alarm is never dropped to store another one. An
alarm that does not fit stays in RAM (read out from memory, bounded by max_pending) and is
written as soon as the medium takes it, over the budget if it must. Every thinned or dropped
record is counted (store.thinned, store.dropped, persisted in meta). While the medium fails,
making room writes nothing: it only removes files.
"""

from agent.core.errors import os_reason
from agent.core.log import WARNING
from agent.core.store import codec
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE

RESERVE_BLOCKS = 8
MIN_SEGMENT = 1024
MAX_SEGMENT = 4 << 20
_NUM = (int, float)


def segment_size(budget, configured=None):
    if configured:
        return min(configured, max(MIN_SEGMENT, budget // 4))
    return max(MIN_SEGMENT, min(MAX_SEGMENT, budget // 16))


def fit(st):
    """Set st.budget to the smaller of st.configured and what the medium can hold, and the
    segment size to match. True if the budget changed."""
    eff = st.configured
    st.fit_at = st.mono()
    sp = st.medium.space()
    if sp is not None:
        free, block = sp[1], sp[2]
        files = len(st.files.segs[LANE_ALARM]) + len(st.files.segs[LANE_ROUTINE]) + 7
        cap = st.used() - st.held_bytes + free - block * (files + RESERVE_BLOCKS)
        if cap < eff:
            eff = max(0, cap)
            st.state("store.medium", WARNING, "the medium holds less than the configured "
                     "budget; keeping within what it holds", budget=eff,
                     configured=st.configured, free=free)  # fmt: skip
        else:
            st.clear("store.medium", "the medium holds the configured budget again", budget=eff)
    changed = eff != st.budget
    st.budget = eff
    st.segment_bytes = segment_size(eff, st.seg_cfg)
    st.headroom = st.segment_bytes // 2
    return changed


def over_budget(st, need):
    st.state("store.budget", WARNING, "the budget cannot hold more records; new routine "
             "readings are dropped, alarms kept", budget=st.budget, configured=st.configured,
             used=st.used(), record_bytes=need)  # fmt: skip


def make_room(st, need, lane=LANE_ALARM):
    """Thin, drop or seal in store st until `need` more bytes fit within its budget. False if
    they cannot: the caller then drops a routine record, or keeps an alarm."""
    files = st.files
    while st.used() + need + st.headroom > st.budget:
        # Segments being read out wait for their acknowledgement: their records are on the
        # wire, and thinning or dropping them would pull records from under batches in flight.
        r = [s for s in files.segs[LANE_ROUTINE] if s.sealed and not st.out.in_flight(s)]
        fresh = [s for s in r if not s.thinned]
        if fresh and st.thin_window and thin(st, fresh[0]):
            continue
        if r:
            drop(st, r[0])
            continue
        if _close(st, LANE_ROUTINE):
            continue
        if lane != LANE_ALARM:
            return False
        D = st.out.D[LANE_ALARM]
        a = [s for s in files.segs[LANE_ALARM] if s.sealed and s.last <= D]
        if a:
            drop(st, a[0])  # delivered alarms only: they cost nothing upstream
            continue
        return False
    return True


def _close(st, lane):
    """Seal the lane's tail (writing what is pending) so that it can be dropped next; while the
    medium fails, close it in RAM instead. False if there is nothing to close."""
    if st.fault:
        return st.files.close_open_tail(lane)
    if not st.pending[lane] and st.files.open_tail(lane) is None:
        return False
    try:
        st.commit_files(lane)
    except OSError as e:
        st.set_fault(e)
        st.files.close_open_tail(lane)
    return True


def drop(st, seg):
    out = st.out
    D = out.D[seg.lane]
    n = st.files.count_after(seg, D) if seg.first <= D else seg.count
    st.dropped += n
    try:
        st.write_meta(True)  # the count durable before the file goes
    except OSError as e:
        st.set_fault(e)  # a full medium: the file goes first; the count is written later
    try:
        st.files.remove(seg)
    except OSError:
        st.dropped -= n
        raise
    out.undeliv[seg.lane] -= n  # none in flight (make_room): the read-out goes on past it
    pressure(st, seg)


def pressure(st, seg):
    """One line when the budget starts to cost data, a summary while it does (Log.repeating)."""
    st.state("store.pressure", WARNING, "thinning and dropping the oldest records to stay "
             "within the budget", thinned=st.thinned, dropped=st.dropped, budget=st.budget,
             lane=seg.lane)  # fmt: skip


def relieved(st):
    """Called after a commit. Pressure is over once the backlog is delivered (a store at its
    budget does not log a line per segment); a budget too small, once it holds a segment more
    than the store uses (a medium others filled does not flap between the two lines)."""
    if st.held() == 0 and st.depth() == 0:
        st.clear("store.pressure", "backlog delivered: no more thinning or dropping")
    if st.used() + st.headroom + st.segment_bytes <= st.budget:
        st.clear("store.budget", "the budget holds new records again", budget=st.budget)


def aggregate(each, window):
    """Fold routine records into one aggregate per (device, metric, window): value = mean, min,
    max, count, time .. time_end, agg = window; text and flag values keep the window's last
    value; records without a time, and aggregates, are kept as they are. each(fn) calls
    fn(record) for every record (streamed: only the aggregates are held). Returns (the new
    records in seq order, the number of records folded in)."""
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
        key = (rec.get("device"), rec.get("metric"), int(t // window))
        g = groups.get(key)
        if g is None:
            g = dict(rec)
            g["count"] = 1
            g["agg"] = window
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

    each(fold)
    out.sort(key=lambda r: r["seq"])
    for rec in out:
        if "sum" in rec:
            rec["value"] = rec["sum"] / rec["count"]
            del rec["sum"]
    return out, n_in[0]


def thin(st, seg):
    """Replace a closed routine segment by per-window aggregates. False if not worth it or if
    the medium cannot take the copy (the segment is then dropped when room is needed)."""
    D = st.out.D[LANE_ROUTINE]
    out, n_in = aggregate(lambda fn: st.files.each_record(seg, fn, after=D), st.thin_window)
    folded = 0
    frames = []
    for rec in out:
        if rec.get("count", 1) > 1 and "agg" in rec:
            folded += rec["count"]
        frames.append(codec.encode_record(rec, codec.AGG if "agg" in rec else codec.REC))
    size = sum(len(f) for f in frames) + codec.SEAL_FRAME
    seg.thinned = True  # tried once: if it does not pay or fails, the next pressure drops it
    if not out or size > st.headroom or size * 4 > seg.size * 3:
        return False
    try:
        st.files.replace(seg, frames, out[0]["seq"], out[-1]["seq"], codec.FLAG_THINNED)
    except OSError as e:
        st.say("thinning skipped: the medium refused the copy", file=seg.path, error=os_reason(e))
        return False
    st.thinned += folded
    st.out.undeliv[LANE_ROUTINE] -= n_in - len(out)
    st.out.rewritten(seg)  # none of it in flight (make_room): batches handed out stay valid
    pressure(st, seg)
    try:
        st.write_meta(True)
    except OSError as e:
        st.set_fault(e)
    return True
