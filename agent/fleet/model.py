"""The fleet's current picture, built from the contract's messages (CPython, operations centre).

    fleet = Fleet(silent_after=300)
    fleet.apply(site_id, kind, decoded, retained=False, now=time.time())
    fleet.rows(now, query="thuan hoa")   # sites, most urgent first
    fleet.detail(site_id, now)           # one site with its day of history

The contract's rules, as this model keeps them:
- duplicates: a data or alarm record whose (site, seq) was seen is dropped and counted (SeqSet).
  The retained state batch repeats records already sent, so it is not counted against them.
- newer wins: a current value is replaced only by a record with a higher seq (seq only increases
  per site, across restarts); for records without a seq (the retained state of older agents) the
  later time wins. A backlog arriving after an outage therefore never overwrites a value sent
  after it; it goes to the history (whose buckets take the worst value, in any order).
- estimated time: a record with quality "est" (or "est": true) marks the site's time as
  estimated until a record with a trusted time is newer.
- silence: a site is silent when its retained status is offline (last will "connection lost",
  or a goodbye) or when nothing was heard from it for `silent_after` seconds.
- the topic names the site (a broker ACL lets an agent write only under its own id): a record
  whose "site" differs from its topic's is rejected and counted, never filed under either site.
- contract versions side by side: a site is filed by its id whatever prefix it speaks under
  (seqs go on across a move from v1 to v2, so the rules above hold across it). Its status and
  active-alarm set are those of the prefix it last came online under (`source`): the v1 retained
  goodbye a site leaves behind when it moves to v2 does not mark it offline.
- unknown values (contract v2 compact): a reading the stream left out that this consumer cannot
  rebuild (it joined the stream mid-way, or missed a message) is "unresolved". When one is newer
  than the value held for a shown metric, that metric is unknown (never the older value) until a
  newer resolved reading comes: at the latest the stream's integrity refresh.
Bounded memory per site: a few current values, the active alarms, up to 32 seq ranges, the last
RECENT_EVENTS alarm events and a History (about 2.2 KB). Sites beyond `max_sites` are ignored
and counted. Nothing here raises on odd input: values of the wrong type are ignored.
This module is the write side; a Site and the checks its values go through are in
agent/fleet/site.py, the rows read out of it (Fleet.summary, rows, areas, detail) in
agent/fleet/views.py.
"""

import collections
import threading

from agent.fleet.site import TRACKED, VOLTAGE, Site, clean, fold, number, seq_int
from agent.fleet.views import FleetViews

BANK_SWITCH = 1.3
RECENT_EVENTS = 20
MAX_ALARM_IDS = 256
FUTURE_SLACK_S = 300.0  # a record time further ahead of our clock than this is not believed


class Fleet(FleetViews):
    def __init__(self, silent_after=300.0, history_step=300.0, history_size=288,
                 max_sites=100000, log=None):  # fmt: skip
        self.silent_after = float(silent_after)
        self.history_step = history_step
        self.history_size = history_size
        self.max_sites = max_sites
        self.log = log
        self.sites = {}
        self.lock = threading.RLock()
        self.counts = collections.Counter()  # messages, records, duplicates, bad, ...
        self.started = None  # our clock when the subscription began (set by the subscriber)
        # (site, prefix) -> the partition that reads the site's data when it is not this
        # instance (--partition; set by the subscriber), else None.
        self.owner_of = None

    # --- input ------------------------------------------------------------------------------
    def site(self, site_id):
        s = self.sites.get(site_id)
        if s is None:
            if len(self.sites) >= self.max_sites:
                self.counts["sites_refused"] += 1
                return None
            s = self.sites[site_id] = Site(site_id, self.history_step, self.history_size)
        return s

    def context(self, site_id):
        """The site's decoding context for the contract's decoder (a dict kept per site), or
        None for a site past max_sites."""
        with self.lock:
            s = self.site(site_id)
            if s is None:
                return None
            if s.ctx is None:
                s.ctx = {}
            return s.ctx

    def apply(self, site_id, kind, body, retained=False, now=0.0, prefix=None):
        """One decoded message (agent/fleet/decode.py) from topic <prefix>/<site_id>/<kind>."""
        with self.lock:
            s = self.site(site_id)
            if s is None:
                return
            self.counts["messages"] += 1
            s.row = None
            # A live message is the site speaking, except an offline status: the broker sends
            # the last will when the site stopped speaking.
            if not retained and not (kind == "status" and body["state"] == "offline"):
                s.last_msg = now
            if kind == "status":
                if self._source(s, prefix, body, retained):
                    self._status(s, body, retained, now)
            elif kind == "alarms":
                if prefix is None or s.source in (None, prefix):
                    self._alarm_set(s, body)
            elif kind == "series":
                self._series(s, body)
            else:
                self._batch(s, body, now, prefix)

    def elsewhere(self, site_id, partition, now):
        """A live data message of a site that another instance's partition reads, dropped
        undecoded (it came anyway): the site is speaking."""
        with self.lock:
            s = self.sites.get(site_id)
            if s is None:
                return
            self.counts["messages_elsewhere"] += 1
            s.last_msg = now
            if s.elsewhere != partition:
                s.elsewhere = partition
                s.row = None

    def _source(self, s, prefix, body, retained):
        """Is this status, under `prefix`, the one to show? A site speaks under one prefix at a
        time; what it left under another (a v1 goodbye after its move to v2) stays retained
        there. The status shown is that of the prefix of its newest birth: a live birth is the
        site speaking now; of retained ones, the newer (an online beats one with no birth)."""
        if prefix is None or s.source in (None, prefix):
            s.source = prefix
            if body["state"] == "online":
                s.source_birth = body.get("time")
        elif body["state"] != "online":
            return False  # an old prefix's goodbye or will: not where the site speaks now
        else:
            t = body.get("time")
            if retained and s.source_birth is not None and (t is None or t <= s.source_birth):
                return False
            s.source = prefix
            s.source_birth = t
        if self.owner_of is not None and prefix is not None:
            s.elsewhere = self.owner_of(s.id, prefix)
        return True

    def bad_message(self, site_id, kind, why):
        with self.lock:
            self.counts["bad_messages"] += 1
            s = self.sites.get(site_id)
            if s is not None:
                s.bad += 1

    def _status(self, s, body, retained, now):
        s.status = body["state"]
        s.reason = body.get("reason")
        # A birth carries its time; a last will has none: it was sent when the link died,
        # which is now if it arrives live, unknown if it was waiting retained.
        s.status_time = body.get("time") or (None if retained else now)
        if body.get("session"):
            s.session = body["session"]
        if body.get("agent"):
            s.agent = body["agent"]
        if body.get("name"):
            s.name = body["name"]
        if body.get("site_kind"):
            s.kind = body["site_kind"]
        if body.get("location") is not None:
            s.location = body["location"]
        parts = [s.id, s.name or ""] + [str(v) for k, v in sorted(s.location.items())
                                         if k in ("commune", "province", "address")]
        s.search = fold(" ".join(parts))

    def _alarm_set(self, s, body):
        """The retained set of active alarms replaces ours, except where an event we hold is
        newer than the set (a clear after it, or a raise after it)."""
        set_time = body.get("time")
        new = {}
        for ev in body["alarms"]:
            aid = ev["alarm"]
            last = s.alarm_last.get(aid)
            if last is not None and last[1] == "clear" and _newer(last, ev, set_time):
                continue
            new[aid] = _trim(ev)
        for aid, last in s.alarm_last.items():
            if last[1] == "raise" and aid not in new and aid in s.alarms:
                if set_time is not None and last[2] is not None and last[2] > set_time:
                    new[aid] = s.alarms[aid]
        s.alarms = new

    def _series(self, s, body):
        """A v2 compact stream's series table: its integrity period, and which device gives
        each shown metric (so that a whole poll this consumer cannot read yet is known to hold
        them)."""
        if body.get("integrity"):
            s.integrity = body["integrity"]
        for entry in body["series"]:
            if entry[1] in TRACKED and isinstance(entry[0], str):
                if s.dev_of is None:
                    s.dev_of = {}
                s.dev_of[entry[1]] = entry[0]

    def _batch(self, s, body, now, prefix=None):
        kind = body["kind"]
        state = kind == "state"
        taken = dups = bad = 0
        if body.get("v") is not None and (kind == "data" or kind == "state" and prefix in (
                None, s.source)):  # what it speaks: its data, or its current prefix's state
            form = body.get("form")
            s.contract = "v%s %s" % (body["v"], "compact" if form == "stream" else form)
        if body.get("duplicate"):
            self.counts["duplicate_messages"] += 1
        try:
            for rec in body["readings"]:
                if rec.get("site", s.id) != s.id:
                    bad += 1
                    continue
                seq = seq_int(rec.get("seq"))
                if seq is not None and not state and not s.seen.add(seq):
                    dups += 1
                    continue
                taken += 1
                self._record(s, rec, seq, state, now)
            for rec in body.get("unresolved") or ():
                self._unresolved(s, rec, now)
        finally:
            s.records += taken
            s.duplicates += dups
            s.bad += bad
            self.counts["records"] += taken
            self.counts["records_" + kind] += taken
            self.counts["duplicates"] += dups
            self.counts["records_rejected"] += bad

    def _unresolved(self, s, rec, now):
        """A reading whose value this consumer cannot rebuild (v2 compact, joined mid-stream):
        a shown metric it is newer than is unknown until a newer resolved reading comes."""
        n = rec.get("count")
        n = n if isinstance(n, int) and not isinstance(n, bool) and n > 0 else 1
        self.counts["records_unresolved"] += n
        if rec.get("site", s.id) != s.id:
            return
        seq = seq_int(rec.get("seq"))
        if seq is None or seq in s.seen:
            return  # no order to judge by, or its value is already known (a duplicate)
        t = number(rec.get("time"))
        if t is not None and t <= now + FUTURE_SLACK_S and (
                s.newest_time is None or t > s.newest_time):  # fmt: skip
            s.newest_time = t
            s.newest_est = rec.get("quality") == "est"
        metric, device = rec.get("metric"), rec.get("device")
        main_bank = device is not None and device == s.volt_device
        if metric is None:  # a whole poll of the device: every shown metric it gives
            names = [m for m, d in (s.dev_of or {}).items() if d == device]
            if main_bank:
                names.append(VOLTAGE)
        elif metric in TRACKED or (metric == VOLTAGE and main_bank):
            names = (metric,)
        else:
            return  # not a metric the page shows
        last = seq + n - 1
        for m in names:
            cur = s.cur.get(m)
            if cur is not None and cur[1] is not None and cur[1] >= seq:
                continue  # what we hold is newer
            if s.unknown is None:
                s.unknown = {}
                s.unknown_since = now
            if s.unknown.get(m, -1) < last:
                s.unknown[m] = last

    def _record(self, s, rec, seq, state, now):
        """One record that is not a duplicate: the site's clock, then its current value (newer
        wins) and its history (any order)."""
        t = number(rec.get("time"))
        if t is not None and t > now + FUTURE_SLACK_S:
            t = None  # a clock far ahead: keep the value, not its time
        est = rec.get("quality") == "est" or rec.get("est") is True
        if t is not None and (s.newest_time is None or t > s.newest_time):
            s.newest_time = t
            s.newest_est = est
        if "alarm" in rec and "event" in rec:
            self._alarm_event(s, rec, seq, t)
            return
        metric = rec.get("metric")
        if metric == VOLTAGE:
            if not _main_bank(s, rec.get("device"), number(rec.get("value"))):
                return
        elif metric not in TRACKED:
            return
        if metric != VOLTAGE and isinstance(rec.get("device"), str):
            if s.dev_of is None:
                s.dev_of = {}
            s.dev_of[metric] = rec["device"]
        if rec.get("quality") == "stale":
            return  # a device that did not answer: its last value is not news
        value = clean(rec.get("value"))
        cur = s.cur.get(metric)
        if cur is None or _later(seq, t, cur, state):
            s.cur[metric] = [value, seq, t, est]
            if s.unknown and metric in s.unknown and seq is not None and seq > s.unknown[metric]:
                del s.unknown[metric]
                if not s.unknown:
                    s.unknown = s.unknown_since = None
        if t is not None:
            s.history.add(t, metric, value)

    def _alarm_event(self, s, ev, seq, t):
        aid = ev.get("alarm")
        kind = ev.get("event")
        if not isinstance(aid, str) or kind not in ("raise", "clear"):
            return
        if s.events is None:
            s.events = collections.deque(maxlen=RECENT_EVENTS)
        s.events.append(_trim(ev))
        last = s.alarm_last.get(aid)
        if last is not None and seq is not None and last[0] is not None and last[0] > seq:
            return  # an older event arriving late (backlog): the newer one stands
        s.alarm_last[aid] = (seq, kind, t)
        if len(s.alarm_last) > MAX_ALARM_IDS:
            for old in [k for k, v in s.alarm_last.items() if v[1] == "clear"][:64]:
                del s.alarm_last[old]
        if kind == "raise":
            s.alarms[aid] = _trim(ev)
        else:
            s.alarms.pop(aid, None)


def _main_bank(s, dev, volts):
    """Is `dev` the site's main battery bank (the one whose voltage we keep)? The first device
    to report a voltage, until one reports more than BANK_SWITCH times as much (a -48 V plant
    over a 24 V UPS); sticky otherwise, so that a plot does not jump between banks."""
    if volts is None:
        return dev == s.volt_device
    if s.volt_device is None:
        s.volt_device = dev
        return True
    if dev == s.volt_device:
        return True
    cur = number(s.value(VOLTAGE))
    if cur is not None and abs(volts) > BANK_SWITCH * abs(cur):
        s.volt_device = dev
        s.cur.pop(VOLTAGE, None)
        return True
    return False


def _later(seq, t, cur, state):
    """Does a record (seq, t) replace the current value cur = [value, seq, time, est]?"""
    if seq is not None and cur[1] is not None:
        return seq > cur[1]
    if t is not None and cur[2] is not None:
        return t > cur[2] if state else t >= cur[2]
    return not state  # nothing to compare: a live record is news, a retained copy is not


def _newer(last, ev, set_time):
    """Is our event `last` = (seq, kind, time) newer than the set's member ev?"""
    seq = seq_int(ev.get("seq"))
    if last[0] is not None and seq is not None:
        return last[0] > seq
    return set_time is not None and last[2] is not None and last[2] > set_time


_ALARM_KEYS = ("alarm", "event", "rule", "severity", "device", "metric", "value", "condition",
               "first_seen", "last_seen", "time", "quality", "seq", "reason")  # fmt: skip


def _trim(ev):
    return {k: clean(ev[k]) for k in _ALARM_KEYS if k in ev}
