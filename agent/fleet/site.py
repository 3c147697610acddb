"""One site as the fleet model keeps it, and the checks every value goes through (CPython,
operations centre). agent/fleet/model.py files messages into a Site; agent/fleet/views.py reads
rows out of it.

Bounded memory per site: a few current values, the active alarms, up to 32 seq ranges, the last
RECENT_EVENTS alarm events (model.py) and a History (about 2.2 KB). Nothing here raises on odd
input: a value of the wrong type becomes None.
"""

import unicodedata

from agent.fleet.history import History
from agent.fleet.seqset import SeqSet

TRACKED = frozenset(("site.power_source", "site.battery_charge", "site.runtime",
                     "site.runtime_estimated", "site.backhaul", "site.on_battery_s",
                     "agent.clock.trusted"))  # fmt: skip
VOLTAGE = "battery.voltage"


def fold(text):
    """Lower case without diacritics, so "thuan hoa" finds "Thuận Hòa" (đ is not a combining
    mark in Unicode: it is mapped by hand)."""
    text = unicodedata.normalize("NFD", text.lower().replace("đ", "d"))
    return "".join(c for c in text if not unicodedata.combining(c))


def number(v):
    """v if it is a finite number (not a bool), else None."""
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in _INF:
        return None
    return v


def clean(v):
    """A record's value as we keep it: a float that is not finite (JSON allows NaN through
    Python's parser, browsers do not) becomes None."""
    if isinstance(v, float) and (v != v or v in _INF):
        return None
    return v


_INF = (float("inf"), float("-inf"))


def word(v):
    """An enum value as published (a short string), or None for anything else."""
    return v[:40] if isinstance(v, str) and v else None


def seq_int(v):
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
