"""The durable store's byte budget (portable): what is thinned or dropped to make room.

Before a record would take the files past `budget - headroom` (headroom: half a segment, room
for a thinned segment's temp copy):
  1. the oldest sealed routine segment not yet thinned is thinned into per-window aggregates
     (kept only if that saves 25%);
  2. otherwise the oldest sealed routine segment is dropped;
  3. alarm segments are dropped only when no routine data is left.
Every thinned or dropped record is counted (store.thinned, store.dropped, persisted in meta).
"""

from agent.core.errors import QueueError
from agent.core.store import codec
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE

_NUM = (int, float)


def make_room(st, need):
    """Thin, drop or seal in store st until `need` more bytes fit within its budget."""
    files = st.files
    while st.used() + need + st.headroom > st.budget:
        r = [s for s in files.segs[LANE_ROUTINE] if s.sealed]
        fresh = [s for s in r if not s.thinned]
        if fresh and st.thin_window and thin(st, fresh[0]):
            continue
        if r:
            drop(st, r[0])
            continue
        if st.pending[LANE_ROUTINE] or files.open_tail(LANE_ROUTINE) is not None:
            st.commit_files(LANE_ROUTINE)
            continue
        a = [s for s in files.segs[LANE_ALARM] if s.sealed]
        if a:
            drop(st, a[0])
            continue
        if st.pending[LANE_ALARM] or files.open_tail(LANE_ALARM) is not None:
            st.commit_files(LANE_ALARM)
            continue
        raise QueueError("budget of %d bytes too small for a %d-byte record" % (st.budget, need))


def drop(st, seg):
    out = st.out
    D = out.D[seg.lane]
    n = st.files.count_after(seg, D) if seg.first <= D else seg.count
    st.dropped += n
    out.undeliv[seg.lane] -= n
    out.cancel((seg.lane,))
    st.say("dropped %d records of %s" % (n, seg.path))
    st.write_meta(True)
    st.files.remove(seg)


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
    """Replace a sealed routine segment by per-window aggregates. False if not worth it."""
    D = st.out.D[LANE_ROUTINE]
    out, n_in = aggregate(lambda fn: st.files.each_record(seg, fn, after=D), st.thin_window)
    folded = 0
    frames = []
    for rec in out:
        if rec.get("count", 1) > 1 and "agg" in rec:
            folded += rec["count"]
        frames.append(codec.encode_record(rec, codec.AGG if "agg" in rec else codec.REC))
    size = sum(len(f) for f in frames) + codec.SEAL_FRAME
    if not out or size > st.headroom or size * 4 > seg.size * 3:
        seg.thinned = True  # not worth it: the next pressure drops it instead
        return False
    st.files.replace(seg, frames, out[0]["seq"], out[-1]["seq"], codec.FLAG_THINNED)
    st.thinned += folded
    st.out.undeliv[LANE_ROUTINE] -= n_in - len(out)
    seg.thinned = True
    st.out.cancel((LANE_ROUTINE,))
    st.say("thinned %s: %d records into %d" % (seg.path, n_in, len(out)))
    st.write_meta(True)
    return True
