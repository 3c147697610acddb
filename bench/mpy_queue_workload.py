# The queue benchmark's workload, scaled down for a board, run inside MicroPython step by step.
#
# bench/mpy_queue_heap.mjs imports this module, calls step(i) for each of STEPS and returns to
# JavaScript after each so the WebAssembly port really collects (gc.collect() inside Python only
# flags a collection), then reads gc.mem_alloc(): the peak of those samples is the workload's peak
# live heap. The store runs over the port's own filesystem (os files under /tmp, held by
# JavaScript outside the GC heap, as littlefs data sits in flash), so the figure is the store's
# RAM, not its data. Same readings and phases as bench/queue_bench.py: append with one commit per
# poll cycle, drain in batches of 100 with an ack each, a store at its byte budget (thinning).

from agent.core.store.queue import LANE_ROUTINE
from agent.core.store.store import Store

CYCLE = 100  # readings per poll cycle (one commit each); the host bench uses 1000
CYCLES = 20  # 2,000 readings appended, then drained
BUDGET_CYCLES = 40  # 4,000 readings into a 64 KB store
_st = None
_i = 0


def reading(i):
    return {
        "site": "hanoi-bts-0042",
        "device": "dc",
        "metric": "dc.voltage" if i & 1 else "battery.current",
        "value": 53.5 + (i % 50) / 100,
        "unit": "V",
        "time": 1.7e9 + i,
        "quality": "good",
    }


def _open():
    global _st
    _st = Store("/tmp/qa", 1 << 30)


def _append():
    # A poll cycle's readings, not yet committed: sampled here, they are the pending buffer.
    global _i
    for _ in range(CYCLE):
        _st.append(LANE_ROUTINE, reading(_i))
        _i += 1


def _commit():
    _st.commit()


def _cycle():
    _append()
    _commit()


_batch = None


def _read():
    # A batch handed to the uplink and held until its PUBACK: sampled while it is held.
    global _batch
    _batch = _st.next_batch(100)


def _ack():
    global _batch
    if _batch is not None:
        _st.ack(_batch[0])
    _batch = None
    _st.commit()


def _open_budget():
    global _st, _i
    _st.close()
    _st = Store("/tmp/qb", 64 << 10, segment_bytes=8 << 10, thin_window=600)
    _i = 0


def _budget_cycle():
    _cycle()
    b = _st.next_batch(5)  # a slow link delivers a little
    if b:
        _st.ack(b[0])


def _close():
    s = _st.stats()
    print("STATS thinned=%d dropped=%d bytes=%d" % (s["thinned"], s["dropped"], s["bytes"]))
    _st.close()


STEPS = (
    [("open", _open)]
    + [("append", _append), ("commit", _commit)] * CYCLES
    + [("read", _read), ("ack", _ack)] * (CYCLES * CYCLE // 100 + 1)
    + [("budget_open", _open_budget)]
    + [("budget", _budget_cycle)] * BUDGET_CYCLES
    + [("close", _close)]
)


def step(i):
    STEPS[i][1]()
