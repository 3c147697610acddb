"""Backoff, connect limiter, token bucket and byte budget (portable)."""

from agent.core.uplink.backoff import Backoff, ByteBudget, ConnectLimiter, TokenBucket

from support import raises


class _Lcg:
    """A small deterministic random source in [0, 1) (the same on both runtimes)."""

    def __init__(self, seed=12345):
        self.x = seed

    def __call__(self):
        self.x = (1103515245 * self.x + 12345) % 2147483648
        return self.x / 2147483648


def test_delays_within_full_jitter_bounds():
    b = Backoff(_Lcg(), base=2, cap=60)
    for n in range(40):
        hi = min(60.0, 2.0 * 2**n)
        assert b.ceiling() == hi
        d = b.next_delay()
        assert 0.0 <= d <= hi, (n, d, hi)


def test_extremes_of_rand_hit_both_bounds():
    b = Backoff(lambda: 0.0, base=1, cap=8)
    assert [b.next_delay() for _ in range(3)] == [0.0, 0.0, 0.0]
    b = Backoff(lambda: 0.999999, base=1, cap=8)
    got = [round(b.next_delay(), 3) for _ in range(6)]
    assert got == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0], got


def test_reset_starts_over():
    b = Backoff(lambda: 0.999999, base=1, cap=100)
    for _ in range(5):
        b.next_delay()
    assert b.ceiling() == 32
    b.reset()
    assert b.ceiling() == 1
    assert b.next_delay() < 1.0


def test_ceiling_after_a_very_long_outage_is_the_cap():
    b = Backoff(_Lcg(), base=2, cap=300)
    b.failures = 100000
    assert b.ceiling() == 300
    assert b.next_delay() <= 300


def test_bad_parameters_raise():
    raises(ValueError, Backoff, _Lcg(), 0, 10)
    raises(ValueError, Backoff, _Lcg(), 10, 5)
    raises(ValueError, ConnectLimiter, 0)


def test_limiter_caps_attempts_per_minute():
    lim = ConnectLimiter(per_min=6)
    now = 0.0
    times = []
    while now < 600:
        w = lim.wait_time(now)
        if w == 0:
            lim.record(now)
            times.append(now)
            now += 0.5
        else:
            assert w > 0
            now += w
    # No 60 s window holds more than 6 attempts.
    for i in range(len(times)):
        j = i
        while j < len(times) and times[j] - times[i] < 60:
            j += 1
        assert j - i <= 6, (times[i], j - i)
    assert len(times) >= 60  # and it does allow 6 a minute, not fewer


def test_limiter_holds_under_float_rounding():
    lim = ConnectLimiter(per_min=6)
    rnd = _Lcg(3)
    t = 0.0
    most = 0
    for _ in range(20000):
        w = lim.wait_time(t)
        if w > 0:
            t += w
            continue
        lim.record(t)
        most = max(most, len(lim.attempts))
        t += rnd() * 3
    assert most == 6, most


def test_token_bucket_paces_messages():
    tb = TokenBucket(rate=2, burst=2, now=0.0)
    t = 0.0
    sent = 0
    while t <= 10.0:
        if tb.wait_time(t) == 0:
            tb.take(t)
            sent += 1
        t += 0.01
    assert 20 <= sent <= 23, sent


def test_token_bucket_lets_one_oversized_item_through_when_full():
    tb = TokenBucket(rate=100, burst=100, now=0.0)
    assert tb.wait_time(0.0, 5000) == 0
    tb.take(0.0, 5000)
    w = tb.wait_time(0.0, 10)
    assert 49 < w < 50.2, w  # repays the debt first


def test_unlimited_bucket_never_waits():
    tb = TokenBucket(rate=0)
    tb.take(0.0, 10**9)
    assert tb.wait_time(0.0, 10**9) == 0


def test_budget_holds_routine_not_alarms_and_reopens():
    bb = ByteBudget(1000, window_s=3600)
    now = 7200.0 + 10
    assert bb.allows(now, 600)
    bb.spend(now, 600)
    assert not bb.allows(now, 600)
    assert bb.allows(now, 600, urgent=True)
    bb.spend(now, 600)
    assert bb.state(now)["used"] == 1200
    assert bb.reopens_in(now) == 3590
    later = now + 3590
    assert bb.allows(later, 600)
    assert bb.state(later)["used"] == 0


def test_zero_budget_is_unlimited():
    bb = ByteBudget(0)
    assert bb.allows(5.0, 10**12)


def test_link_watch_probes_jittered_and_spreads_the_arrival():
    from agent.core.uplink.backoff import LinkWatch

    w = LinkWatch(_Lcg(7), every=4.0, spread=8.0)
    probes = [w.probe_delay() for _ in range(500)]
    assert min(probes) >= 2.0 and max(probes) < 6.0
    assert max(probes) - min(probes) > 3.5  # spread over the whole range, not in step
    arrivals = [w.arrival_delay() for _ in range(500)]
    assert min(arrivals) >= 0.0 and max(arrivals) <= 8.0
    assert sum(arrivals) / len(arrivals) > 3.0  # about uniform: mean near 4
    raises(ValueError, LinkWatch, _Lcg(), 0.0, 1.0)
    raises(ValueError, LinkWatch, _Lcg(), 1.0, -1.0)
