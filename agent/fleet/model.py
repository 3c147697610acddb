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
"""

import collections
import threading
import unicodedata

from agent.fleet.history import History
from agent.fleet.seqset import SeqSet
from agent.fleet.urgency import SEVERITIES, urgency, urgency_key

TRACKED = frozenset(("site.power_source", "site.battery_charge", "site.runtime",
                     "site.runtime_estimated", "site.backhaul", "site.on_battery_s",
                     "agent.clock.trusted"))  # fmt: skip
VOLTAGE = "battery.voltage"
# The row's fields that a metric gives (agent/fleet/urgency.py and the page read them).
FIELDS = {"site.power_source": "power", "site.battery_charge": "charge",
          "site.runtime": "runtime", "site.runtime_estimated": "runtime_est",
          "site.backhaul": "backhaul", "site.on_battery_s": "on_battery_s",
          VOLTAGE: "voltage"}  # fmt: skip
DEFAULT_INTEGRITY_S = 600.0  # the agent's default uplink.integrity_period
BANK_SWITCH = 1.3
RECENT_EVENTS = 20
MAX_ALARM_IDS = 256
FUTURE_SLACK_S = 300.0  # a record time further ahead of our clock than this is not believed


def fold(text):
    """Lower case without diacritics, so "thuan hoa" finds "Thuận Hòa" (đ is not a combining
    mark in Unicode: it is mapped by hand)."""
    text = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return "".join(c for c in text if not unicodedata.combining(c))


def _num(v):
    """v if it is a finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in _INF:
        return None
    return v


def _clean(v):
    """A record's value as we keep it: a float that is not finite (JSON allows NaN through
    Python's parser, browsers do not) becomes None."""
    if isinstance(v, float) and (v != v or v in _INF):
        return None
    return v


_INF = (float("inf"), float("-inf"))


def _word(v):
    """An enum value as published (a short string), or None for anything else."""
    return v[:40] if isinstance(v, str) and v else None


def _seq(v):
    return v if isinstance(v, int) and not isinstance(v, bool) else None


class Site:
    __slots__ = ("id", "name", "kind", "location", "status", "reason", "status_time", "session",
                 "agent", "cur", "volt_device", "newest_time", "newest_est", "last_msg", "seen",
                 "alarms", "alarm_last", "events", "history", "records", "duplicates", "bad",
                 "search", "row", "source", "source_birth", "contract", "unknown",
                 "unknown_since", "dev_of", "integrity", "ctx", "elsewhere")  # fmt: skip

    def __init__(self, site_id, history_step, history_size):
        self.id = site_id
        self.name = None
        self.kind = None
        self.location = {}
        self.status = None  # "online", "offline" or None (no status seen)
        self.reason = None
        self.status_time = None
        self.session = None
        self.agent = None
        self.cur = {}  # metric -> [value, seq, time, est]
        self.volt_device = None  # the device whose battery.voltage is this site's
        self.newest_time = None  # newest record time believed
        self.newest_est = False  # ... and whether it was an estimate
        self.last_msg = None  # our clock when a live (not retained) message last came
        self.seen = SeqSet()
        self.alarms = {}  # alarm id -> active alarm (trimmed event)
        self.alarm_last = {}  # alarm id -> (seq, "raise"|"clear", time) of the newest event
        self.events = None  # deque of recent alarm events, made on the first
        self.history = History(history_step, history_size)
        self.records = 0
        self.duplicates = 0
        self.bad = 0
        self.search = fold(site_id)
        self.row = None  # the static part of its summary, until the next message (Fleet.summary)
        self.source = None  # the topic prefix whose status we show (the one it speaks under)
        self.source_birth = None  # ... and the time of its birth there, when known
        self.contract = None  # "v1 JSON", "v2 compact"...: the form of its last batch
        self.unknown = None  # {metric: seq of its newest unresolved reading} (v2 compact)
        self.unknown_since = None  # our clock when values first became unknown
        self.dev_of = None  # {tracked metric: device}, from records and the series table
        self.integrity = None  # the v2 compact stream's integrity period (series table)
        self.ctx = None  # the contract decoder's context for this site (v2 compact)
        self.elsewhere = None  # the partition whose instance reads this site's data, if not us

    def value(self, metric):
        c = self.cur.get(metric)
        return None if c is None else c[0]

    def last_heard(self):
        """Our best knowledge of when the site last spoke: a live message's arrival, its newest
        record's time, or its birth's time (it was connected then)."""
        best = None
        birth = self.status_time if self.status == "online" else None
        for t in (self.last_msg, self.newest_time, birth):
            if t is not None and (best is None or t > best):
                best = t
        return best


class Fleet:
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
                seq = _seq(rec.get("seq"))
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
        seq = _seq(rec.get("seq"))
        if seq is None or seq in s.seen:
            return  # no order to judge by, or its value is already known (a duplicate)
        t = _num(rec.get("time"))
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
        t = _num(rec.get("time"))
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
            if not _main_bank(s, rec.get("device"), _num(rec.get("value"))):
                return
        elif metric not in TRACKED:
            return
        if metric != VOLTAGE and isinstance(rec.get("device"), str):
            if s.dev_of is None:
                s.dev_of = {}
            s.dev_of[metric] = rec["device"]
        if rec.get("quality") == "stale":
            return  # a device that did not answer: its last value is not news
        value = _clean(rec.get("value"))
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

    # --- output -----------------------------------------------------------------------------
    def summary(self, s, now):
        """One site as the page's table row (plain JSON-able dict). What does not depend on the
        time is kept per site until its next message (Site.row); the rest is worked out here."""
        base = s.row
        if base is None:
            base = s.row = _static_row(s)
        row = dict(base)
        if s.elsewhere is not None:
            row["elsewhere"] = s.elsewhere
        source = row["power"]
        rt = s.cur.get("site.runtime")
        runtime = row["runtime_reported"]
        if runtime is not None and source == "battery" and rt[2] is not None:
            row["runtime"] = max(0.0, runtime - max(0.0, now - rt[2]))
        heard = row["last_heard"]
        row["age"] = None if heard is None else max(0.0, now - heard)
        # Silence by age is judged from when we began listening too: a site online since last
        # week has a week-old retained state, and is silent only if it stays quiet now.
        since = max(heard or 0.0, self.started or 0.0)
        silent = s.status == "offline" or (since > 0 and now - since > self.silent_after
                                           and s.elsewhere is None)  # fmt: skip
        # (A site whose data another instance reads is silent here by its status only: its
        # silence by age is that instance's to judge.)
        row["silent"] = silent
        on_batt = row["on_battery_s"]
        ob = s.cur.get("site.on_battery_s")
        if on_batt and source == "battery" and ob[2] is not None and not silent:
            row["on_battery_s"] = on_batt + max(0.0, now - ob[2])  # still on battery, we know
        row["rank"], row["level"], row["why"] = urgency(row)
        return row

    def rows(self, now, query=None, area=None):
        """Every site matching the filter, most urgent first. `query`: words that must all
        appear in the site's id, name or place (case and diacritics ignored); `area`: a commune
        or province, exactly."""
        words = fold(query).split() if query else ()
        with self.lock:
            out = []
            for s in self.sites.values():
                if words and not all(w in s.search for w in words):
                    continue
                if area and area not in (s.location.get("commune"), s.location.get("province")):
                    continue
                out.append(self.summary(s, now))
        out.sort(key=urgency_key)
        return out

    def areas(self):
        """{commune or province: number of sites}, for the page's filter list."""
        out = collections.Counter()
        with self.lock:
            for s in self.sites.values():
                for k in ("commune", "province"):
                    v = s.location.get(k)
                    if v:
                        out[v] += 1
        return dict(out)

    def detail(self, site_id, now):
        with self.lock:
            s = self.sites.get(site_id)
            if s is None:
                return None
            out = self.summary(s, now)
            out["location"] = dict(s.location)
            out["session"] = s.session
            out["agent"] = s.agent
            out["active_alarms"] = sorted(s.alarms.values(), key=_alarm_order)
            out["events"] = list(s.events or ())[::-1]
            out["history"] = s.history.series(now)
            out["counts"] = {"records": s.records, "duplicates": s.duplicates, "bad": s.bad}
            out["source"] = s.source
            out["current"] = {m: {"value": c[0], "seq": c[1], "time": c[2], "est": c[3]}
                              for m, c in s.cur.items()}  # fmt: skip
            for m, seq in (s.unknown or {}).items():  # a newer reading whose value is unknown
                out["current"][m] = {"value": None, "unknown": True, "seq": seq}
        return out


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
    cur = _num(s.value(VOLTAGE))
    if cur is not None and abs(volts) > BANK_SWITCH * abs(cur):
        s.volt_device = dev
        s.cur.pop(VOLTAGE, None)
        return True
    return False


def _static_row(s):
    """The parts of a site's row that change only when a message from it arrives."""
    cur = s.cur

    def value(metric):
        c = cur.get(metric)
        return None if c is None else c[0]

    counts = {k: 0 for k in SEVERITIES}
    for a in s.alarms.values():
        sev = a.get("severity")
        if sev in counts:
            counts[sev] += 1
    loc = s.location
    rt = cur.get("site.runtime")
    runtime = _num(value("site.runtime"))
    row = {
        "id": s.id, "name": s.name, "kind": s.kind,
        "commune": loc.get("commune"), "province": loc.get("province"),
        "address": loc.get("address"), "lat": loc.get("lat"), "lon": loc.get("lon"),
        "status": s.status or "unknown", "reason": s.reason, "status_time": s.status_time,
        "silent": False, "power": _word(value("site.power_source")),
        "on_battery_s": _num(value("site.on_battery_s")),
        "charge": _num(value("site.battery_charge")),
        "voltage": _num(value(VOLTAGE)), "voltage_device": s.volt_device,
        "runtime": runtime, "runtime_reported": runtime,
        "runtime_at": None if rt is None else rt[2],
        "runtime_est": value("site.runtime_estimated") is True,
        "backhaul": _word(value("site.backhaul")), "alarms": counts,
        "last_heard": s.last_heard(), "age": None, "time_est": bool(s.newest_est),
        "contract": s.contract, "unknown": None, "known_by": None,
    }  # fmt: skip
    if s.unknown:
        # Newer readings than these values exist, whose values this consumer cannot rebuild
        # yet (v2 compact, joined mid-stream): unknown, never the older value, until the
        # stream's integrity refresh carries every series again.
        fields = sorted({FIELDS[m] for m in s.unknown if m in FIELDS})
        for f in fields:
            row[f] = None
        if "runtime" in fields:
            row["runtime_reported"] = row["runtime_at"] = None
        if fields:
            row["unknown"] = fields
            row["known_by"] = s.unknown_since + (s.integrity or DEFAULT_INTEGRITY_S)
    return row


def _later(seq, t, cur, state):
    """Does a record (seq, t) replace the current value cur = [value, seq, time, est]?"""
    if seq is not None and cur[1] is not None:
        return seq > cur[1]
    if t is not None and cur[2] is not None:
        return t > cur[2] if state else t >= cur[2]
    return not state  # nothing to compare: a live record is news, a retained copy is not


def _newer(last, ev, set_time):
    """Is our event `last` = (seq, kind, time) newer than the set's member ev?"""
    seq = _seq(ev.get("seq"))
    if last[0] is not None and seq is not None:
        return last[0] > seq
    return set_time is not None and last[2] is not None and last[2] > set_time


_ALARM_KEYS = ("alarm", "event", "rule", "severity", "device", "metric", "value", "condition",
               "first_seen", "last_seen", "time", "quality", "seq", "reason")  # fmt: skip


def _trim(ev):
    return {k: _clean(ev[k]) for k in _ALARM_KEYS if k in ev}


def _alarm_order(a):
    sev = a.get("severity")
    return (SEVERITIES.index(sev) if sev in SEVERITIES else 9, str(a.get("alarm")))
