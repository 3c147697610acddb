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


class _Mono:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def test_budget_window_keeps_its_true_length_when_the_wall_clock_steps_forward():
    # The board drill: its SNTP server stepped +10 min 15 min into a spent hour; the window
    # followed the wall clock and the next hour's allowance opened 10 min early.
    mono = _Mono()
    bb = ByteBudget(1000, window_s=3600, mono=mono)
    now = 7200.0 + 900
    bb.spend(now, 1000)
    assert not bb.allows(now, 1)
    mono.t += 2100  # 35 min later by the site's monotonic clock; the wall clock stepped +10 min
    now += 2100 + 600  # the wall says 10 800: a new hour
    assert not bb.allows(now, 1) and bb.reopens_in(now) == 600
    mono.t += 600  # the hour's true end
    now += 600
    assert bb.allows(now, 1000) and bb.state(now)["used"] == 0
    assert bb.reopens_in(now) == 3000  # the next hour: the wall clock's again
    # Wall-only (no monotonic clock): the step ends the window early, as before.
    bw = ByteBudget(1000, window_s=3600)
    bw.spend(8100.0, 1000)
    assert bw.allows(8100.0 + 2700, 1000)


def test_budget_step_back_never_reopens_a_spent_window():
    for mono in (_Mono(), None):
        bb = ByteBudget(1000, window_s=3600, mono=mono)
        bb.spend(10800.0 + 60, 1000)  # the first minute of an hour
        if mono is not None:
            mono.t += 120
        assert not bb.allows(10800.0 - 300, 1)  # stepped back 7 min into the previous hour
        if mono is not None:
            mono.t += 3480  # the hour spent at 10 800 + 60 has truly passed
        assert not bb.allows(14400.0 - 1, 1)  # the wall clock's hour has not (mono: 1 s lag)
        assert bb.allows(14400.0 + 1, 1000)
    # A clock set back by days (wrong before its first sync): with the monotonic clock the window
    # ends after its true length; wall-only it ends at once (it would else hold for days).
    mono = _Mono()
    bb = ByteBudget(1000, window_s=3600, mono=mono)
    bb.spend(3600.0 * 300 + 60, 1000)
    assert not bb.allows(3600.0 * 20 + 60, 1)  # set back 280 hours
    mono.t += 3539
    assert not bb.allows(3600.0 * 20 + 3599, 1)
    mono.t += 1
    assert bb.allows(3600.0 * 20 + 3600, 1000)
    bw = ByteBudget(1000, window_s=3600)
    bw.spend(3600.0 * 300 + 60, 1000)
    assert bw.allows(3600.0 * 20 + 60, 1000)


def test_budget_bytes_acked_in_a_later_window_count_there():
    bb = ByteBudget(1000, window_s=3600)
    w = bb.spend(3590.0, 600)
    bb.acked(3595.0, w, 600)  # the same window: nothing more
    assert bb.state(3595.0)["used"] == 600
    bb.acked(3605.0, w, 600)  # acked in the next one: it crossed the meter there, maybe
    assert bb.state(3605.0)["used"] == 600 and not bb.allows(3605.0, 401)
    unlimited = ByteBudget(0)
    unlimited.acked(5.0, unlimited.spend(1.0, 10) - 1, 10)
    assert unlimited.used == 10  # counted, never limiting


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
