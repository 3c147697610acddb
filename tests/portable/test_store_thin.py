"""The durable store at its budget while the backlog drains (portable: pytest and MicroPython).

Found by the HIL drill (docs/drill.md): a queue that filled during a long outage kept thinning and
dropping segments while the backlog drained over the satellite link, and every thinning or drop
forgot the routine batches in flight: their acknowledgements were ignored, the delivered cursor
stood still and the same records were handed out again and again in one session, under new batch
ids (eight times in the drill), breaking the metered link's byte budget. What must hold: within
one session no record is handed out twice (after a reconnect, re-sending what was not
acknowledged is the contract), every acknowledgement of a batch in flight counts, and nothing
confirmed is lost (each seq delivered, or covered by the declared thinned and dropped counts)."""

from agent.core.store.fsio import MemFs
from agent.core.store.queue import LANE_ALARM, LANE_ROUTINE
from agent.core.store.readout import LANE_CURRENT
from agent.core.store.store import Store

METRICS = ("battery.voltage", "battery.current", "load.current")


class Site:
    """Appends one poll cycle per call (site time in 15 s steps) and remembers what the store
    confirmed."""

    def __init__(self, st):
        self.st = st
        self.t = 1000.0
        self.n = 0
        self.confirmed = []

    def cycle(self, alarm=False):
        seqs = []
        for i, metric in enumerate(METRICS):
            rec = {"site": "s1", "device": "plant", "metric": metric, "unit": "V",
                   "value": 48.0 + (self.n % 7) * 0.1 + i, "time": self.t,
                   "quality": "good"}  # fmt: skip
            seqs.append(self.st.append(LANE_ROUTINE, rec))
        if alarm:
            rec = {"site": "s1", "device": "plant", "metric": "mains", "value": 0,
                   "alarm": "MAINS/plant", "event": "raise", "time": self.t}  # fmt: skip
            seqs.append(self.st.append(LANE_ALARM, rec))
        self.st.commit()
        self.confirmed.extend(s for s in seqs if s <= self.st.confirmed_seq)
        self.t += 15.0
        self.n += 1


class Link:
    """The uplink's view: up to `window` batches in flight, acknowledged oldest first; a session
    ends with requeue(). Checks what each batch hands out."""

    def __init__(self, st, window=4, batch=4):
        self.st = st
        self.window = window
        self.batch = batch
        self.inflight = []  # [(batch id, records)]
        self.delivered = set()
        self.sessions = 0
        self.ignored_acks = 0
        self.repeats = []  # (session, seq) handed out twice in one session from the lanes
        self.begin()

    def begin(self):
        self.sessions += 1
        self.seen = set()

    def fill(self):
        while len(self.inflight) < self.window:
            b = self.st.next_batch(self.batch)
            if b is None:
                return
            bid, recs = b
            if self.st.out.inflight.get(bid) != LANE_CURRENT:  # copies: the backlog has them
                for r in recs:
                    if r["seq"] in self.seen:
                        self.repeats.append((self.sessions, r["seq"]))
                    self.seen.add(r["seq"])
            self.inflight.append(b)

    def ack_oldest(self):
        if self.inflight:
            bid, recs = self.inflight.pop(0)
            if not self.st.ack(bid):
                self.ignored_acks += 1
            for r in recs:
                self.delivered.add(r["seq"])

    def reconnect(self):
        self.inflight = []
        self.st.requeue()
        self.begin()

    def busy(self):
        return bool(self.inflight) or self.st.depth() > 0


def fill_during_outage(cycles=400):
    st = Store("/q", 16 * 1024, fs=MemFs(), segment_bytes=4096, thin_window=3600)
    site = Site(st)
    for i in range(cycles):
        site.cycle(alarm=i % 97 == 50)
    assert st.thinned > 0 and st.dropped > 0, (st.thinned, st.dropped)
    return st, site


def drain_while_polling(st, site, link, steps=400, reconnect_at=()):
    """Batches in flight while polls go on at the budget (two poll cycles of 3 records per batch
    of 4 acknowledged, as over a slow metered link: the queue stays full), so thinning and
    dropping happen between a batch's read-out and its acknowledgement; then the polls stop and
    the rest drains. Returns how often the budget thinned or dropped with batches in flight."""
    pressure = 0
    for step in range(steps):
        link.fill()
        before = (st.thinned, st.dropped)
        site.cycle(alarm=step % 61 == 30)
        site.cycle()
        if link.inflight and (st.thinned, st.dropped) != before:
            pressure += 1
        link.ack_oldest()
        if step in reconnect_at:
            link.reconnect()
    for _ in range(3000):  # the polls stop: what is left drains
        link.fill()
        if not link.busy():
            break
        link.ack_oldest()
    assert not link.busy()
    return pressure


def check_nothing_lost(st, site, link):
    missing = [s for s in site.confirmed if s not in link.delivered]
    assert len(missing) <= st.thinned + st.dropped, (len(missing), st.thinned, st.dropped)


def test_thinning_while_draining_hands_out_each_record_once_per_session():
    st, site = fill_during_outage()
    link = Link(st)
    st.begin_drain()  # the connect
    pressure = drain_while_polling(st, site, link)
    assert pressure > 10, pressure  # the store thinned and dropped with batches in flight
    assert link.repeats == [], link.repeats[:10]
    assert link.ignored_acks == 0
    check_nothing_lost(st, site, link)


def test_reconnects_while_thinning_resend_only_what_was_not_acknowledged():
    st, site = fill_during_outage()
    link = Link(st)
    st.begin_drain()
    pressure = drain_while_polling(st, site, link, reconnect_at=(40, 41, 90, 150))
    assert pressure > 10, pressure
    assert link.sessions == 5
    assert link.repeats == [], link.repeats[:10]
    assert link.ignored_acks == 0
    check_nothing_lost(st, site, link)
