# Scheduler under a fake clock: intervals, jitter bounds, backoff, budget overrun, hung devices.
from agent.core.poll.scheduler import HUNG_FACTOR, HUNG_GRACE, Scheduler


class Rand:
    """Deterministic stand-in for random.random: cycles through fixed values."""

    def __init__(self, values=(0.0,)):
        self.values = values
        self.i = 0

    def __call__(self):
        v = self.values[self.i % len(self.values)]
        self.i += 1
        return v


def run_ok(s, dev, now):
    s.started(dev, now)
    s.finished(dev, now + 0.2, True)


def test_polls_follow_the_interval_without_drift():
    s = Scheduler(Rand((0.0,)))
    s.add("ups", 30, 5, 0.0, 100.0)
    starts = []
    now = 100.0
    while now < 100.0 + 30 * 10:
        for d in s.due(now):
            starts.append(now)
            s.started(d, now)
            s.finished(d, now + 2.7, True)  # each poll takes 2.7 s; the grid must not drift
        now += 0.1
    assert len(starts) == 10
    for i, t in enumerate(starts):
        assert abs(t - (100.0 + 30 * i)) < 0.11, (i, t)


def test_jitter_stays_within_bounds():
    values = (0.0, 0.25, 0.5, 0.999, 0.7)
    s = Scheduler(Rand(values))
    st = s.add("r", 60, 5, 0.2, 0.0)
    assert 0.0 <= st.due <= 0.2 * 60
    nominal = st.nominal
    for _ in range(20):
        run_ok(s, "r", st.due)
        nominal += 60
        assert st.nominal == nominal
        assert nominal <= st.due <= nominal + 0.2 * 60, (st.due, nominal)


def test_devices_with_different_intervals_are_independent():
    s = Scheduler(Rand((0.0,)))
    s.add("fast", 10, 2, 0.0, 0.0)
    s.add("slow", 60, 5, 0.0, 0.0)
    counts = {"fast": 0, "slow": 0}
    now = 0.0
    while now < 120.0:
        for d in s.due(now):
            counts[d] += 1
            run_ok(s, d, now)
        now += 0.5
    assert counts == {"fast": 12, "slow": 2}


def test_failure_marks_stale_with_reason_and_backs_off():
    s = Scheduler(Rand((0.999,)), backoff_max=300)
    st = s.add("bms", 30, 5, 0.0, 0.0)
    now = 0.0
    delays = []
    for _ in range(7):
        s.started("bms", now)
        s.finished("bms", now + 5, False, "no answer within 5s")
        assert st.stale and st.reason == "no answer within 5s"
        delays.append(round(st.due - (now + 5)))
        now = st.due
    # Doubling from the interval up to the cap, times the jitter factor 0.5 + 0.5 * 0.999.
    bounds = [30, 60, 120, 240, 300, 300, 300]
    for d, b in zip(delays, bounds):
        assert b * 0.5 <= d <= b, (d, b)
    assert delays[-1] > delays[0]
    # One success clears stale and resets the backoff.
    s.started("bms", now)
    s.finished("bms", now + 1, True)
    assert not st.stale and st.reason is None and st.failures == 0
    assert st.errors == 7 and st.polls == 8


def test_backoff_jitter_lower_bound():
    s = Scheduler(Rand((0.0,)))
    st = s.add("x", 20, 5, 0.0, 0.0)
    s.started("x", 0.0)
    s.finished("x", 1.0, False, "refused")
    assert st.due == 1.0 + 20 * 0.5


def test_backoff_never_shorter_than_interval_when_interval_exceeds_cap():
    s = Scheduler(Rand((0.999,)), backoff_max=60)
    st = s.add("slow", 600, 10, 0.0, 0.0)
    for _ in range(3):
        s.started("slow", 0.0)
        s.finished("slow", 0.0, False, "x")
    assert s.backoff(st) == 600


def test_budget_overrun_skips_missed_slots():
    s = Scheduler(Rand((0.0,)))
    st = s.add("ups", 10, 5, 0.0, 0.0)
    s.started("ups", 0.0)
    s.finished("ups", 35.0, True)  # far over budget: slots 10, 20, 30 are gone
    assert st.due == 40.0
    assert st.last_duration == 35.0


def test_hung_poll_is_reported_after_budget_and_does_not_delay_others():
    s = Scheduler(Rand((0.0,)))
    s.add("hung", 10, 4, 0.0, 0.0)
    s.add("ok", 10, 4, 0.0, 0.0)
    limit = 4 * HUNG_FACTOR + HUNG_GRACE
    ok_starts = []
    hung_reported = None
    now = 0.0
    while now <= 60.0:
        for d in s.hung(now):
            assert d == "hung"
            if hung_reported is None:
                hung_reported = now
            s.finished(d, now, False, "poll hung")
        for d in s.due(now):
            s.started(d, now)  # "hung" starts and never finishes by itself
            if d == "ok":
                ok_starts.append(now)
                s.finished(d, now + 1, True)
        now = round(now + 0.5, 1)
    assert hung_reported is not None and abs(hung_reported - limit) <= 0.5
    assert s.state("hung").stale and s.state("hung").reason == "poll hung"
    # The healthy device kept its 10 s rhythm throughout.
    assert ok_starts == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0]


def test_running_device_is_not_due_twice():
    s = Scheduler(Rand((0.0,)))
    s.add("a", 5, 2, 0.0, 0.0)
    assert s.due(0.0) == ["a"]
    s.started("a", 0.0)
    assert s.due(100.0) == []


def test_next_wakeup():
    s = Scheduler(Rand((0.0,)))
    assert s.next_wakeup(0.0) is None
    s.add("a", 5, 2, 0.0, 0.0)
    s.add("b", 7, 2, 0.0, 0.0)
    run_ok(s, "a", 0.0)
    run_ok(s, "b", 0.0)
    assert s.next_wakeup(1.0) == 4.0
    s.started("a", 5.0)
    # a is running: it could be declared hung at 5 + 2 * 1.5 + 1 = 9; b is due at 7.
    assert s.next_wakeup(5.0) == 2.0
    assert s.next_wakeup(50.0) == 0.0


def test_poll_now_and_set_interval():
    s = Scheduler(Rand((0.0,)))
    st = s.add("a", 300, 5, 0.0, 0.0)
    run_ok(s, "a", 0.0)
    assert s.due(10.0) == []
    s.poll_now("a", 10.0)
    assert s.due(10.0) == ["a"]
    run_ok(s, "a", 10.0)
    s.set_interval("a", 15, 20.0)
    assert st.interval == 15.0 and st.due == 20.0
    run_ok(s, "a", 20.0)
    assert st.due == 35.0


def test_bad_parameters_are_refused():
    s = Scheduler(Rand())
    for interval, budget in ((0, 1), (-5, 1), (10, 0)):
        try:
            s.add("x", interval, budget, 0.0, 0.0)
        except ValueError:
            continue
        raise AssertionError("accepted interval=%r budget=%r" % (interval, budget))


def test_the_first_poll_is_due_at_once_unless_spread():
    # Issue 17: the first reading must not wait for a jittered start.
    s = Scheduler(Rand((0.9,)))
    st = s.add("ups", 5, 2, 0.1, 50.0)
    assert st.due == 50.0 and s.due(50.0) == ["ups"]
    run_ok(s, "ups", 50.0)
    assert 55.0 <= st.due <= 55.0 + 0.1 * 5 and st.due > 55.0  # later polls keep their jitter
    # The board's health device keeps a spread first poll (Wi-Fi and SNTP are not up yet).
    h = s.add("agent", 60, 10, 0.1, 50.0, spread_first=True)
    assert 50.0 < h.due <= 50.0 + 0.1 * 60
    assert s.due(50.0) == []
