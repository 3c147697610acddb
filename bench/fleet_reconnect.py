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

from agent.core.uplink.backoff import Backoff, ConnectLimiter, LinkWatch  # noqa: E402


class FixedRetry:
    def __init__(self, every):
        self.every = every
        self.failures = 0

    def next_delay(self):
        self.failures += 1
        return self.every

    def reset(self):
        self.failures = 0


def simulate(n, outage, capacity, make_backoff, per_min, seed=1, watch=None):
    """watch: a function rnd -> LinkWatch for the probe + spread policy, None for the others."""
    rnd = random.Random(seed)
    agents = [(make_backoff(rnd), ConnectLimiter(per_min)) for _ in range(n)]
    watches = [watch(rnd) for _ in range(n)] if watch else None
    heap = []
    probes = 0
    probes_answered = 0
    for i, (bo, _) in enumerate(agents):
        if watches:
            heapq.heappush(heap, (0.0, i, "probe"))  # each notices the loss at t=0 and probes
        else:
            heapq.heappush(heap, (bo.next_delay(), i, "connect"))
    attempts = {}  # 1 s bin -> attempts
    accepted = {}  # 1 s bin -> accepted connections
    back_times = []
    max_attempts_per_agent_min = 0
    while heap:
        t, i, what = heapq.heappop(heap)
        bo, lim = agents[i]
        if what == "probe":
            probes += 1
            if t < outage:  # nothing answers: probe again later
                heapq.heappush(heap, (t + watches[i].probe_delay(), i, "probe"))
            else:  # answered (one accept and close): connect after the spread
                probes_answered += 1
                bo.reset()
                heapq.heappush(heap, (t + watches[i].arrival_delay(), i, "connect"))
            continue
        w = lim.wait_time(t)
        if w > 0:
            heapq.heappush(heap, (t + w, i, "connect"))
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
        if watches and t < outage:
            # Nothing answered this connect: back to probing.
            heapq.heappush(heap, (t + watches[i].probe_delay(), i, "probe"))
        else:
            heapq.heappush(heap, (t + bo.next_delay(), i, "connect"))
    back_times.sort()
    after = [v for k, v in attempts.items() if k >= outage]
    return {
        "probes": probes,
        "probes_answered": probes_answered,
        "t50": back_times[int(0.50 * n) - 1],
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
    ap.add_argument("--every", type=float, default=4.0, help="probe_interval (s)")
    ap.add_argument("--spread", type=float, action="append",
                    help="reconnect_spread (s); repeat to compare (default 8, 20)")
    a = ap.parse_args()
    runs = []
    for spread in a.spread or [8.0, 20.0]:
        runs.append((
            "probe every %gs x [0.5, 1.5), spread %gs; refused: full jitter, <=%d/min"
            % (a.every, spread, a.per_min),
            lambda r: Backoff(r.random, a.base, a.cap), a.per_min,
            lambda r, s=spread: LinkWatch(r.random, a.every, s)))
    runs += [
        ("full jitter alone, base %gs cap %gs, <=%d/min" % (a.base, a.cap, a.per_min),
         lambda r: Backoff(r.random, a.base, a.cap), a.per_min, None),
        ("fixed 5 s retry, no jitter (lockstep)", lambda r: FixedRetry(5.0), 60, None),
    ]  # fmt: skip
    print("%d agents, nothing reachable for %gs, then the broker accepts %d connects/s"
          % (a.agents, a.outage, a.capacity))  # fmt: skip
    for name, make, per_min, watch in runs:
        r = simulate(a.agents, a.outage, a.capacity, make, per_min, watch=watch)
        print("\n" + name)
        print("  peak attempts/s (whole run)         %8d" % r["peak_attempts_per_s"])
        print("  peak attempts/s after the return    %8d" % r["peak_attempts_per_s_after_return"])
        print("  peak accepted connects/s            %8d" % r["peak_accepted_per_s"])
        print("  50%% back after the return          %8.1f s" % r["t50"])
        print("  95%% back after the return          %8.1f s" % r["t95"])
        print("  100%% back after the return         %8.1f s" % r["t100"])
        print("  attempts in total                   %8d" % r["attempts_total"])
        print("  max attempts by one agent in 60 s   %8d" % r["max_attempts_per_agent_per_min"])
        if watch:
            print("  probes (SYNs) in total              %8d" % r["probes"])
            print("  probes answered (accept + close)    %8d" % r["probes_answered"])


if __name__ == "__main__":
    main()
