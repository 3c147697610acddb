"""Inspecting the durable store (portable): depth, bytes, oldest and newest record, counters, the
backlog as records, and its export as JSON lines. Reads files; never writes the store's own."""

from agent.core.errors import QueueError, os_reason
from agent.core.store import codec
from agent.core.store.queue import LANES


def last_record(st, lane):
    """The newest undelivered record of lane: appended in this run, else read from the files."""
    if st.newest[lane] is not None:
        return st.newest[lane]
    last = [None]

    def keep(rec):
        last[0] = rec

    for s in reversed(st.files.segs[lane]):
        st.files.each_record(s, keep, after=st.out.D[lane])
        if last[0] is not None:
            break
    return last[0]


def stats(st):
    out = st.out
    depth = {}
    oldest = {}
    newest = {}
    lo = None
    for lane in LANES:
        depth[lane] = out.lane_depth(lane)
        o = out.first_undelivered(lane) if depth[lane] else None
        w = last_record(st, lane) if depth[lane] else None
        oldest[lane] = {"seq": o["seq"], "time": o.get("time")} if o else None
        newest[lane] = {"seq": w["seq"], "time": w.get("time")} if w else None
        if o is not None and (lo is None or o["seq"] < lo):
            lo = o["seq"]
    return {
        "depth": depth,
        "bytes": st.used(),
        "budget": st.budget,
        "segments": {lane: len(st.files.segs[lane]) for lane in LANES},
        "oldest": oldest,
        "newest": newest,
        "seq_range": [lo, st.confirmed_seq] if lo is not None else None,
        "confirmed_seq": st.confirmed_seq,
        "next_seq": st.next_seq,
        "delivered": dict(out.D),
        "inflight_batches": len(out.inflight),
        "latest": len(st.current.table),
        "thinned": st.thinned,
        "dropped": st.dropped,
        "fault": st.fault is not None,
        "held": st.held(),
        "configured_budget": st.configured,
        "io": dict(st.io),
        "durable": True,
    }


def counters(st):
    return {
        "agent.queue.depth": st.depth(),
        "agent.queue.bytes": st.used(),
        "agent.queue.thinned": st.thinned,
        "agent.queue.dropped": st.dropped,
    }


def counter_records(st):
    """The thinned and dropped counters as routine readings of device st.counter_device, so
    the operations centre learns what the budget cost."""
    now = st.wall()
    out = []
    for metric, value in (
        ("agent.queue.thinned", st.thinned),
        ("agent.queue.dropped", st.dropped),
    ):
        rec = {"site": st.site, "device": st.counter_device, "metric": metric, "value": value}
        rec.update({"unit": "", "time": now, "quality": "good", "seq": None})
        out.append(rec)
    return out


def records(st, lane):
    pos = st.out.dpos[lane]
    while True:
        recs, pos = st.out.read(lane, 256, pos)
        if not recs:
            return
        for r in recs:
            yield r


def export(st, out_path, fs=None):
    out = (fs or st.fs).open(out_path, "wb")
    n = 0
    try:
        for lane in LANES:
            for rec in records(st, lane):
                rec["lane"] = lane
                out.write(codec.dumps(rec) + b"\n")
                n += 1
    finally:
        out.close()
    return n


# errno -> what a technician can do about a failed export
_EXPORT_HINTS = {
    2: "the folder does not exist: is the USB stick mounted (see `ls /media`)?",
    5: "the stick or card may be failing: try another one",
    13: "the agent may not write there: choose a folder it can write, or fix the permissions",
    1: "the agent may not write there: choose a folder it can write, or fix the permissions",
    20: "a part of the path is a file, not a folder: check the path",
    21: "that is a folder: give a file name, e.g. <folder>/backlog.jsonl",
    28: "the stick is full: free some space or use another stick",
    30: "the stick is mounted read-only: remount it read-write or use another stick",
}


def export_failed(path, e):
    """A QueueError saying why writing `path` failed and what to do, without errno text."""
    code = getattr(e, "errno", None)
    if code is None and e.args and isinstance(e.args[0], int):
        code = e.args[0]
    hint = _EXPORT_HINTS.get(code, "check the path and the medium, then try again")
    return QueueError("cannot write %s (%s): %s; nothing was left behind" % (path, os_reason(e),
                      hint))  # fmt: skip
