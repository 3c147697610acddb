"""10,000 agents through a broker outage and its return, on a virtual clock, using the real
reconnect code (agent.core.uplink.backoff: full-jitter Backoff and ConnectLimiter).

    .venv/bin/python bench/fleet_reconnect.py [--agents 10000] [--outage 600] [--capacity 500]

Model: every agent is connected at t=0 when the broker goes away for `outage` seconds. An agent
waits Backoff.next_delay() (and whatever the ConnectLimiter asks) before each attempt. While the
broker is down every attempt fails; once it is back it accepts at most `capacity` new connections
per second and refuses the rest (a refusal is a failed attempt). An accepted agent counts as back
(its backoff resets after the first acknowledged publish). For comparison the same fleet is run
with a fixed 5 s retry and no jitter, the lockstep that flattens brokers.
Prints the peak attempt rate (per 1 s bin) and the time from the broker's return until 95% and
100% of the fleet is back.
"""

import argparse
import heapq
import os
import random
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from agent.core.uplink.backoff import Backoff, ConnectLimiter  # noqa: E402


class FixedRetry:
    def __init__(self, every):
        self.every = every
        self.failures = 0

    def next_delay(self):
        self.failures += 1
        return self.every

    def reset(self):
        self.failures = 0


def simulate(n, outage, capacity, make_backoff, per_min, seed=1):
    rnd = random.Random(seed)
    agents = [(make_backoff(rnd), ConnectLimiter(per_min)) for _ in range(n)]
    heap = []
    for i, (bo, _) in enumerate(agents):
        heapq.heappush(heap, (bo.next_delay(), i))  # each notices the loss at t=0
    attempts = {}  # 1 s bin -> attempts
    accepted = {}  # 1 s bin -> accepted connections
    back_times = []
    max_attempts_per_agent_min = 0
    while heap:
        t, i = heapq.heappop(heap)
        bo, lim = agents[i]
        w = lim.wait_time(t)
        if w > 0:
            heapq.heappush(heap, (t + w, i))
            continue
        lim.record(t)
        max_attempts_per_agent_min = max(max_attempts_per_agent_min, len(lim.attempts))
        b = int(t)
        attempts[b] = attempts.get(b, 0) + 1
        if t >= outage and accepted.get(b, 0) < capacity:
            accepted[b] = accepted.get(b, 0) + 1
            bo.reset()
            back_times.append(t - outage)
            continue
        heapq.heappush(heap, (t + bo.next_delay(), i))
    back_times.sort()
    after = [v for k, v in attempts.items() if k >= outage]
    return {
        "peak_attempts_per_s": max(attempts.values()),
        "peak_attempts_per_s_after_return": max(after) if after else 0,
        "peak_accepted_per_s": max(accepted.values()),
        "t95": back_times[int(0.95 * n) - 1],
        "t100": back_times[-1],
        "attempts_total": sum(attempts.values()),
        "max_attempts_per_agent_per_min": max_attempts_per_agent_min,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--agents", type=int, default=10000)
    ap.add_argument("--outage", type=float, default=600.0, help="seconds (default 600)")
    ap.add_argument("--capacity", type=int, default=500, help="connects/s the broker takes")
    ap.add_argument("--base", type=float, default=2.0)
    ap.add_argument("--cap", type=float, default=300.0)
    ap.add_argument("--per-min", type=int, default=6, help="max_connects_per_min")
    a = ap.parse_args()
    runs = [
        ("full jitter base %gs cap %gs, <=%d/min" % (a.base, a.cap, a.per_min),
         lambda r: Backoff(r.random, a.base, a.cap), a.per_min),
        ("fixed 5 s retry, no jitter (lockstep)", lambda r: FixedRetry(5.0), 60),
    ]  # fmt: skip
    print("%d agents, broker down %gs, then accepts %d connects/s"
          % (a.agents, a.outage, a.capacity))  # fmt: skip
    for name, make, per_min in runs:
        r = simulate(a.agents, a.outage, a.capacity, make, per_min)
        print("\n" + name)
        print("  peak attempts/s (whole run)         %8d" % r["peak_attempts_per_s"])
        print("  peak attempts/s after the return    %8d" % r["peak_attempts_per_s_after_return"])
        print("  peak accepted connects/s            %8d" % r["peak_accepted_per_s"])
        print("  95%% back after the return          %8.1f s" % r["t95"])
        print("  100%% back after the return         %8.1f s" % r["t100"])
        print("  attempts in total                   %8d" % r["attempts_total"])
        print("  max attempts by one agent in 60 s   %8d" % r["max_attempts_per_agent_per_min"])


if __name__ == "__main__":
    main()
