"""Benchmark of the durable store (prints figures; not a test).

    .venv/bin/python bench/queue_bench.py [--mb 100]

Figures: appends per second with one commit (fsync) per poll cycle, syncs per reading, bytes
written to the medium per byte appended (delivered-position updates and thinning included),
time to open a store of --mb megabytes after a crash, the read-out rate when draining, and the
peak live MicroPython heap of the same workload scaled down (bench/mpy_queue_workload.py on the
WebAssembly port via bench/mpy_queue_heap.mjs; needs node and tests/mpy/install.sh; --no-mpy
leaves it out)."""

import argparse
import os
import shutil
import subprocess
import tempfile
import time

from agent.core.store.queue import LANE_ROUTINE
from agent.core.store.store import Store
from agent.host.queue_cli import fsync_dir, fsync_file

CYCLE = 1000  # readings per poll cycle (one commit each)


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


def open_store(path, budget, **kw):
    return Store(path, budget, sync=fsync_file, sync_dir=fsync_dir, **kw)


def bench_append(path, n):
    st = open_store(path, 1 << 34)
    t0 = time.perf_counter()
    for i in range(n):
        st.append(LANE_ROUTINE, reading(i))
        if i % CYCLE == CYCLE - 1:
            st.commit()
    st.commit()
    dt = time.perf_counter() - t0
    io = dict(st.io)
    st.close()
    print(
        "append: %d readings in %.2f s = %.0f readings/s (commit every %d)"
        % (n, dt, n / dt, CYCLE)
    )
    print(
        "append: syncs per reading %.5f; bytes written per byte appended %.4f"
        % (io["syncs"] / n, io["bytes"] / io["appended"])
    )


def bench_drain_and_wear(path, n):
    """Deliver everything in batches of 100 while appending, as a live link would."""
    st = open_store(path, 1 << 34)
    b0, a0 = st.io["bytes"], st.io["appended"]
    t0 = time.perf_counter()
    got = batches = 0
    while True:
        b = st.next_batch(100)
        if b is None:
            break
        got += len(b[1])
        batches += 1
        st.ack(b[0])
        if batches % 10 == 0:  # one commit (cursor write) per poll cycle of ~1000 records
            st.commit()
    st.commit()
    dt = time.perf_counter() - t0
    print(
        "drain: %d records in %.2f s = %.0f records/s (batches of 100, ack each)"
        % (got, dt, got / dt)
    )
    extra = st.io["bytes"] - b0
    print(
        "drain: bytes written for delivered-position updates: %d (%.4f per record)"
        % (extra, extra / max(got, 1))
    )
    st.close()
    del a0


def bench_budget(path):
    """A store at its budget: thinning and dropping included in bytes written per byte appended."""
    budget = 4 << 20
    st = open_store(path, budget, segment_bytes=64 << 10, thin_window=600)
    n = 200000
    for i in range(n):
        st.append(LANE_ROUTINE, reading(i))
        if i % CYCLE == CYCLE - 1:
            st.commit()
            b = st.next_batch(50)  # a slow link delivers a little
            if b:
                st.ack(b[0])
    st.commit()
    io = st.io
    s = st.stats()
    print(
        "budget 4 MB, %d readings: used %d bytes, thinned %d, dropped %d"
        % (n, s["bytes"], s["thinned"], s["dropped"])
    )
    print(
        "budget: bytes written per byte appended (thinning, cursor, seals included) %.4f"
        % (io["bytes"] / io["appended"])
    )
    st.close()


def bench_open(path, mb):
    st = open_store(path, 1 << 34)
    i = 0
    while st.stats()["bytes"] < mb << 20 if i % 100000 == 0 else True:
        st.append(LANE_ROUTINE, reading(i))
        i += 1
        if i % CYCLE == 0:
            st.commit()
            if i % 100000 == 0 and st.used() >= mb << 20:
                break
    st.commit()
    # crash: a torn half record at the tail, no close
    for lane in ("alarm", "routine"):
        st.files.close_tail(lane)
    tail = st.files.segs[LANE_ROUTINE][-1].path
    with open(tail, "ab") as f:
        f.write(b"\xa7\x01\x50\x00torn")
    t0 = time.perf_counter()
    st2 = open_store(path, 1 << 34)
    dt = time.perf_counter() - t0
    s = st2.stats()
    print(
        "open after crash: %d MB, %d records, %d segments: %.3f s"
        % (s["bytes"] >> 20, s["depth"]["routine"], s["segments"]["routine"], dt)
    )
    st2.close()


def bench_mpy_heap():
    node = shutil.which("node")
    if not node:
        raise SystemExit("node is not installed: needed for the MicroPython heap figure")
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run(
        [node, os.path.join(here, "mpy_queue_heap.mjs")],
        capture_output=True,
        text=True,
        check=False,
        cwd=os.path.dirname(here),
    )
    if r.returncode != 0:
        raise SystemExit("MicroPython heap run failed:\n" + r.stdout + r.stderr)
    for line in r.stdout.splitlines():
        print("micropython: " + line)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--n", type=int, default=200000)
    ap.add_argument("--no-mpy", action="store_true", help="skip the MicroPython heap run")
    args = ap.parse_args()
    root = tempfile.mkdtemp(prefix="queue-bench-", dir=os.environ.get("BENCH_DIR"))
    try:
        bench_append(root + "/a", args.n)
        bench_drain_and_wear(root + "/a", args.n)
        bench_budget(root + "/b")
        bench_open(root + "/c", args.mb)
        if not args.no_mpy:
            bench_mpy_heap()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
