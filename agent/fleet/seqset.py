"""The sequence numbers of one site seen so far, as a short sorted list of closed ranges.

The contract's key for removing duplicates is (site, seq). A site's records mostly arrive in
runs of consecutive numbers (live batches; the backlog after an outage, oldest first), with
alarm events arriving first and filling in their gaps later, so a few ranges describe everything
seen. Bounded: past `max_ranges` the two ranges with the smallest gap between them are joined,
which counts the numbers in that gap as seen. The trade-off: a record from that gap arriving
later is taken for a duplicate (it is old: it could only add a point to the history, never change
a current value). With shared subscriptions an instance sees a share of each site's batches, so
its gaps are never filled; the bound is what keeps its memory flat.
"""

import bisect

MAX_RANGES = 32


class SeqSet:
    __slots__ = ("lo", "hi", "max_ranges", "joined")

    def __init__(self, max_ranges=MAX_RANGES):
        self.lo = []  # range starts, ascending
        self.hi = []  # range ends (inclusive); lo[i] <= hi[i] < lo[i + 1] - 1
        self.max_ranges = max_ranges
        self.joined = 0  # numbers counted as seen by joining ranges (never received)

    def add(self, seq):
        """Record seq; True if it is new, False if it was seen (a duplicate)."""
        lo, hi = self.lo, self.hi
        if hi and seq == hi[-1] + 1:  # the common case: the next number of the live stream
            hi[-1] = seq
            return True
        i = bisect.bisect_right(lo, seq) - 1  # the range starting at or before seq
        if i >= 0 and seq <= hi[i]:
            return False
        join_left = i >= 0 and hi[i] == seq - 1
        join_right = i + 1 < len(lo) and lo[i + 1] == seq + 1
        if join_left and join_right:
            hi[i] = hi[i + 1]
            del lo[i + 1]
            del hi[i + 1]
        elif join_left:
            hi[i] = seq
        elif join_right:
            lo[i + 1] = seq
        else:
            lo.insert(i + 1, seq)
            hi.insert(i + 1, seq)
            if len(lo) > self.max_ranges:
                self._join_closest()
        return True

    def __contains__(self, seq):
        i = bisect.bisect_right(self.lo, seq) - 1
        return i >= 0 and seq <= self.hi[i]

    def _join_closest(self):
        lo, hi = self.lo, self.hi
        best = 0
        gap = lo[1] - hi[0]
        for k in range(1, len(lo) - 1):
            g = lo[k + 1] - hi[k]
            if g < gap:
                best, gap = k, g
        self.joined += gap - 1
        hi[best] = hi[best + 1]
        del lo[best + 1]
        del hi[best + 1]

    def __len__(self):
        return len(self.lo)
