"""An accelerated day on the simulated board: the reference site (tests/host/board_rig.py: the real
image under the MicroPython unix port, mosquitto with mutual TLS, snmpsim, the Megatec and EPEVER
emulators, SNTP) polled every `--interval` seconds for `--cycles` poll cycles, with the agent's
own health every 5 s. Prints the live heap the board reports (agent.heap_free after a collection,
64-bit unix port) over the run, and whether every confirmed record arrived.

    .venv/bin/python bench/board_soak.py [--cycles 1000] [--interval 1]

A day of 30 s polls is 2,880 cycles; 1,000 cycles at 1 s (the shortest interval a config takes)
are 8 hours of a 30 s site in 17 minutes. Heap figures for a 32-bit board come from
bench/board_heap.py; this run is about behaviour: the heap must not grow, nothing confirmed may
go missing.
"""

import argparse
import os
import shutil
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.host.board_rig import ReferenceSite  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    work = tempfile.mkdtemp(prefix="board-soak-")
    heap = []  # (uptime s, live bytes)
    try:
        with ReferenceSite(work, interval=args.interval, overrides={"health_s": 5}) as site:
            site.boot()
            site.sim.wait_for("agent: started", 60)
            total = None
            started = time.monotonic()
            duration = args.cycles * args.interval
            seen = set()
            while time.monotonic() - started < duration:
                time.sleep(1)
                rec = site.up.snapshot()[0].get(("agent", "agent.heap_free"))
                up = site.up.snapshot()[0].get(("agent", "agent.uptime"))
                if rec and up and rec[0]["seq"] not in seen:
                    seen.add(rec[0]["seq"])
                    if total is None:
                        total = 2 * 1024 * 1024  # the VM's -X heapsize (hil/board_sim.py)
                    heap.append((up[0]["value"], total - rec[0]["value"]))
            polls = site.megatec.requests
            end = time.monotonic() + 60
            while site.missing() and time.monotonic() < end:
                time.sleep(1)
            missing = site.missing()
            confirmed = len(site.confirmed())
            resets = len(site.sim.boots) - 1
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("simulated board, reference site, %d cycles every %gs (Megatec saw %d requests)"
          % (args.cycles, args.interval, polls))  # fmt: skip
    print("live heap (2 MB VM heap minus agent.heap_free), 64-bit unix port:")
    step = max(1, len(heap) // 12)
    for t, b in heap[::step] + heap[-1:]:
        print("  uptime %5ds  %7.1f KB" % (t, b / 1024.0))
    tenth = max(1, len(heap) // 10)
    early = sorted(b for _, b in heap[tenth: 2 * tenth])
    late = sorted(b for _, b in heap[-tenth:])
    if early and late:
        e, l_ = early[len(early) // 2], late[len(late) // 2]
        print("median live heap, 2nd tenth of the run: %.1f KB; last tenth: %.1f KB (%+d B)"
              % (e / 1024.0, l_ / 1024.0, l_ - e))  # fmt: skip
    print("confirmed records: %d, missing at the subscriber: %d, resets: %d"
          % (confirmed, len(missing), resets))  # fmt: skip


if __name__ == "__main__":
    main()
