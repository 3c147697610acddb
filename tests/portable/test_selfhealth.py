# The agent's own health, the portable part: queue depth and budget use, uplink, clock, board.
from agent.core import registry
from agent.core.clock import Clock
from agent.core.compat import MICROPYTHON
from agent.core.selfhealth import agent_samples, board_samples
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE, MemoryQueue

from faketime import trusted_clock


class Uplink:
    def __init__(self, connected):
        self.connected = connected

    def state(self):
        return {"connected": self.connected}


class SizedQueue(MemoryQueue):
    def stats(self):
        st = MemoryQueue.stats(self)
        st["bytes"] = 900
        st["budget"] = 2000
        return st

    def counters(self):
        return {"agent.queue.thinned": 5, "agent.queue.dropped": 2}


def test_queue_depth_budget_uplink_and_clock_as_samples():
    q = SizedQueue()
    q.append(LANE_ROUTINE, {"v": 1})
    q.append(LANE_ALARM, {"v": 2})
    _, c = trusted_clock()
    got = {m: (v, u) for m, v, u in agent_samples(q, Uplink(False), c, 1000, started=0.0)}
    assert got["agent.queue.depth"] == (2, "")
    assert got["agent.queue.bytes"] == (900, "B")
    assert got["agent.queue.used"] == (90.0, "%")
    assert got["agent.queue.dropped"] == (2, "") and got["agent.queue.thinned"] == (5, "")
    assert got["agent.uplink.connected"] == (False, "")
    assert got["agent.clock.trusted"] == (True, "")
    assert got["agent.uptime"][0] >= 0
    for m in got:
        assert registry.is_known(m), m
    got = {m: v for m, v, _u in agent_samples(q)}  # budget from the store's own stats
    assert got["agent.queue.used"] == 45.0


def test_untrusted_clock_and_missing_parts_are_left_out_not_zeroed():
    class Broken:
        def stats(self):
            raise OSError(5, "EIO")

    got = dict((m, v) for m, v, _u in agent_samples(Broken(), None, Clock("b", mono=lambda: 1.0)))
    assert got["agent.clock.trusted"] is False
    assert "agent.queue.depth" not in got and "agent.uplink.connected" not in got


def test_board_samples_where_the_runtime_has_them():
    got = dict((m, v) for m, v, _u in board_samples())
    if MICROPYTHON:
        assert got["agent.heap_free"] > 0
    else:
        assert "agent.heap_free" not in got  # CPython has no gc.mem_free: left out
    for m in got:
        assert registry.is_known(m), m
