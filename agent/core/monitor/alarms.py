"""Alarm rules: readings in, raise and clear events out (portable).

    engine = AlarmEngine(site_id, rules_for("bts", cfg.alarms), clock)
    events = engine.feed(readings)          # after every poll (and for derived readings)
    events += engine.poll(dev_id, ok)       # once per poll result: reachability rules
    engine.active()                         # the active set, for the retained topic / console
    snap = engine.snapshot(); engine.restore(snap)   # across restarts (JsonFile persists it)

Rule kinds (a rule is a dict; the defaults below are data, a site config overrides them by id):
- threshold: "above" or "below" a level, raised once the condition has held for `for_s`, cleared
  only when the value is back past `clear` (hysteresis; `clear` defaults to the level itself).
- state: "equals" a value (bools compare as "true"/"false") or "contains" a token of a
  space-separated string (ups.status contains "OB"). Cleared once false for `clear_s`.
- reachability: "stale" N consecutive failed polls of a device (DEVICE_UNREACHABLE); cleared by
  the first good poll.
A rule with "when": [metric, value] holds only while that metric of the same device has that
value (RUNTIME_LOW only on battery); when the guard stops holding, its alarms clear.
A rule's metric may use the registry's `<x>` form (if.<name>.oper) to match one dotted part, and
its device may be "*". A rule with "transition": true only raises for a series that has first been
seen in its normal state (an interface going down, not every unused port that was always down).

Invariants:
- One alarm per (rule, device, metric): its id is "RULE/device/metric", the same after a restart.
- Events are emitted only on a change of state: raise once, clear once. A value that flaps inside
  the hysteresis band, or a condition shorter than for_s, produces no event at all.
- Readings with no value (None) or of STALE quality never change a threshold or state alarm.
- The active set is restorable: after restore(), an alarm still true is not raised again; one no
  longer true is cleared on the first reading that shows it (or at once if its rule is gone).
- Debounce uses the clock's monotonic time; event times are wall time when the clock is trusted,
  else None with (boot, mono) stamps that agent.core.clock resolves before the event leaves.
"""


from agent.core import readings as rd
from agent.core.errors import ConfigError
from agent.core.log import INFO
from agent.core.registry import unit_of

SEVERITIES = ("critical", "major", "minor", "warning")
STALE_METRIC = "agent.device.stale"
MAX_VALUES = 8  # triggering values kept per alarm (the newest; bounded RAM on the board)
MEMO_MAX = 512  # metric names whose matching rules an engine remembers
_UNSEEN = object()  # no value of a guard metric yet


def _rule(rule_id, metric, severity, **kw):
    r = {"id": rule_id, "metric": metric, "device": "*", "severity": severity}
    r.update(kw)
    return r


# Rules every site gets: reachability and the agent's own health.
COMMON_RULES = (
    _rule("DEVICE_UNREACHABLE", STALE_METRIC, "major", stale=3),
    _rule("AGENT_STORE_NEAR_BUDGET", "agent.queue.used", "major", above=90, clear=80),
    _rule("AGENT_DISK_FULL", "agent.disk_used", "major", above=90, clear=85, for_s=60),
    _rule("AGENT_CLOCK_UNTRUSTED", "agent.clock.trusted", "warning",
          equals="false", for_s=900),
    _rule("AGENT_HOT", "agent.temperature", "minor", above=80, clear=70, for_s=60),
)  # fmt: skip

# Power and backhaul rules both kinds share (a small AC UPS, a battery with a charge reading).
POWER_RULES = (
    _rule("UPS_ON_BATTERY", "ups.status", "major", contains="OB", for_s=10, clear_s=60),
    _rule("UPS_BATTERY_LOW", "ups.status", "critical", contains="LB"),
    _rule("BATTERY_LOW", "battery.charge", "major", below=30, clear=40, for_s=60),
    _rule(
        "RUNTIME_LOW",
        "site.runtime",
        "critical",
        below=900,
        clear=1800,
        for_s=60,
        when=["site.power_source", "battery"],
    ),
    _rule("BACKHAUL_DOWN", "site.backhaul", "critical", equals="down", for_s=30, clear_s=30),
)

# Hardened BTS: a -48 V DC plant, a router with a backhaul interface.
BTS_RULES = COMMON_RULES + POWER_RULES + (
    _rule("MAINS_LOST", "plant.alarm.mains_lost", "major", equals="true", for_s=10, clear_s=60),
    _rule("RECTIFIER_FAIL", "plant.alarm.rectifier_major", "major", equals="true", for_s=30),
    _rule("LVD_OPEN", "battery.lvd", "critical", equals="disconnected"),
    _rule("BATTERY_DEPLETED", "battery.status", "critical", equals="depleted"),
    _rule("LINK_DOWN", "if.<name>.oper", "major", equals="down", transition=True),
)  # fmt: skip

# Community-house Wi-Fi point: a small UPS, a router checked by probes.
WIFI_RULES = (
    COMMON_RULES
    + POWER_RULES
    + (_rule("LINK_DOWN", "if.<name>.oper", "minor", equals="down", transition=True),)
)

DEFAULT_RULES = {"bts": BTS_RULES, "wifi": WIFI_RULES}


def rules_for(kind, alarms_cfg=None):
    """The rule list for a site: the kind's defaults (unless alarms.defaults is false), with each
    [[alarms.rules]] entry replacing the default of the same id or adding a new rule."""
    alarms_cfg = alarms_cfg or {}
    if kind not in DEFAULT_RULES:
        raise ConfigError(
            "site.kind: expected one of %s, got %r" % (", ".join(DEFAULT_RULES), kind)
        )
    out = [dict(r) for r in DEFAULT_RULES[kind]] if alarms_cfg.get("defaults", True) else []
    for r in alarms_cfg.get("rules", ()):
        r = dict(r)
        for i, old in enumerate(out):
            if old["id"] == r["id"]:
                out[i] = r
                break
        else:
            out.append(r)
    for r in out:
        check_rule(r)
    return out


def check_rule(r):
    """Raise ConfigError unless `r` is a usable rule (config.py checks the file; this checks what
    reaches the engine, defaults included)."""
    kinds = [k for k in ("above", "below", "equals", "contains", "stale") if k in r]
    if len(kinds) != 1:
        raise ConfigError("alarm rule %s: expected one condition, got %s" % (r.get("id"), kinds))
    if r.get("severity", "major") not in SEVERITIES:
        raise ConfigError("alarm rule %s: severity %r" % (r.get("id"), r.get("severity")))
    if not r.get("id") or not r.get("metric"):
        raise ConfigError("alarm rule without id or metric: %r" % (r,))


def _matches(pattern, name):
    if pattern == name:
        return True
    if "<" not in pattern:
        return False
    want = pattern.split(".")
    got = name.split(".")
    if len(want) != len(got):
        return False
    for w, g in zip(want, got):
        if not g or (w[0] != "<" and w != g):
            return False
    return True


def _text(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    return str(v)


def _condition(r):
    """Human form of a rule's condition, carried in events ("below 30 for 60s, clear above 40")."""
    for k in ("above", "below"):
        if k in r:
            s = "%s %s" % (k, _text(r[k]))
            if r.get("for_s"):
                s += " for %ss" % _text(r["for_s"])
            if "clear" in r:
                s += ", clear %s %s" % ("below" if k == "above" else "above", _text(r["clear"]))
            return s
    if "stale" in r:
        return "no answer for %d polls" % r["stale"]
    k = "equals" if "equals" in r else "contains"
    s = "%s %s" % (k, r[k])
    if r.get("for_s"):
        s += " for %ss" % _text(r["for_s"])
    return s


class _Series:
    """State of one (rule, device, metric). `since` is when the current raise (or clear)
    condition started to hold, in monotonic seconds, or None."""

    __slots__ = ("since", "since_at", "since_wall", "active", "armed", "values", "alarm")

    def __init__(self):
        self.since = None
        self.since_at = None
        self.since_wall = None
        self.active = False
        self.armed = False  # seen in its normal state (for transition rules)
        self.values = []
        self.alarm = None  # the active alarm's dict while active


class AlarmEngine:
    def __init__(self, site_id, rules, clock, log=None):
        for r in rules:
            check_rule(r)
        self.site_id = site_id
        self.rules = list(rules)
        self.clock = clock  # agent.core.clock.Clock (or a stand-in with mono() and stamp())
        self.log = log
        self.changed = False  # the active set changed since the caller last cleared this
        self._series = {}  # alarm id -> _Series
        self._failures = {}  # device -> consecutive failed polls
        # Guards ("when": [metric, value]): a rule only holds while that metric of the same
        # device has that value; its latest value per device is kept here.
        self._guards = [r["when"][0] for r in self.rules if r.get("when")]
        self._latest = {}
        # metric name -> the value rules whose pattern it matches, in rule order: the rules are
        # fixed for the engine's life and a site reports the same names every poll. Bounded
        # (names come from devices); past MEMO_MAX names the rules are matched every time.
        self._by_metric = {}

    # --- input ----------------------------------------------------------------------------
    def feed(self, readings):
        """Evaluate every value rule against `readings` (Reading objects or their dicts);
        return the events, in order."""
        events = []
        for r in readings:
            if not isinstance(r, rd.Reading):
                r = rd.Reading.from_dict(r)
            if r.value is None or r.quality == rd.STALE:
                continue
            if r.metric in self._guards:
                key = (r.device, r.metric)
                old = self._latest.get(key, _UNSEEN)
                self._latest[key] = r.value
                # Only a new guard value can end what it guards: with the same value nothing
                # under it can have been raised since (a guard that does not hold steps its
                # series with bad=False). Unchanged, this was a sort of every alarm series per
                # poll, growing with the devices.
                if old is _UNSEEN or old != r.value:
                    events.extend(self._guard_changed(r.device, r.metric))
            for rule in self._value_rules(r.metric):
                if rule.get("device", "*") not in ("*", r.device):
                    continue
                ev = self._evaluate(rule, r.device, r.metric, r.value)
                if ev is not None:
                    events.append(ev)
        return events

    def _value_rules(self, metric):
        rules = self._by_metric.get(metric)
        if rules is None:
            rules = tuple(r for r in self.rules
                          if "stale" not in r and _matches(r["metric"], metric))  # fmt: skip
            if len(self._by_metric) < MEMO_MAX:
                self._by_metric[metric] = rules
        return rules

    def poll(self, device, ok):
        """Count a poll result of `device` for the reachability rules; return the events."""
        n = 0 if ok else self._failures.get(device, 0) + 1
        self._failures[device] = n
        events = []
        for rule in self.rules:
            if "stale" not in rule or rule.get("device", "*") not in ("*", device):
                continue
            ev = self._step(rule, device, STALE_METRIC, n, n >= rule["stale"], ok)
            if ev is not None:
                events.append(ev)
        return events

    def _guard_ok(self, rule, device):
        w = rule.get("when")
        if not w:
            return True
        return _text(self._latest.get((device, w[0]))).lower() == _text(w[1]).lower()

    def _guard_changed(self, device, metric):
        """A guard metric changed: alarms of rules it guards clear when it no longer holds (the
        guarded metric may not be reported at all then, e.g. no runtime estimate on mains)."""
        events = []
        for rule in self.rules:
            w = rule.get("when")
            if not w or w[0] != metric or self._guard_ok(rule, device):
                continue
            pre = "%s/%s/" % (rule["id"], device)
            for aid in sorted(self._series):
                s = self._series[aid]
                if aid.startswith(pre) and (s.active or s.since is not None):
                    value = s.alarm["value"] if s.active else None
                    ev = self._step(rule, device, aid[len(pre) :], value, False, True)
                    if ev is not None:
                        events.append(ev)
        return events

    def _evaluate(self, rule, device, metric, value):
        if not self._guard_ok(rule, device):
            return self._step(rule, device, metric, value, False, True)
        if "above" in rule or "below" in rule:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None  # a threshold rule on a non-number: nothing to decide
            if "above" in rule:
                bad = value > rule["above"]
                good = value <= rule.get("clear", rule["above"])
            else:
                bad = value < rule["below"]
                good = value >= rule.get("clear", rule["below"])
        elif "equals" in rule:
            bad = _text(value).lower() == _text(rule["equals"]).lower()
            good = not bad
        else:
            bad = rule["contains"] in _text(value).split()
            good = not bad
        return self._step(rule, device, metric, value, bad, good)

    def _step(self, rule, device, metric, value, bad, good):
        """Advance one series' state machine; return an event dict or None."""
        aid = "%s/%s/%s" % (rule["id"], device, metric)
        s = self._series.get(aid)
        if s is None:
            s = self._series[aid] = _Series()
        now = self.clock.mono()
        wall, at = self.clock.stamp()
        if not s.active:
            if not bad:
                s.since = None
                s.values = []
                if good:
                    s.armed = True
                return None
            if rule.get("transition") and not s.armed:
                return None
            if s.since is None:
                s.since, s.since_at, s.since_wall = now, at, wall
            s.values.append(value)
            del s.values[:-MAX_VALUES]
            if now - s.since < rule.get("for_s", 0):
                return None
            s.active = True
            s.since = None
            s.alarm = {
                "alarm": aid,
                "rule": rule["id"],
                "severity": rule.get("severity", "major"),
                "site": self.site_id,
                "device": device,
                "metric": metric,
                "unit": unit_of(metric),  # events are records too (docs/mqtt.md)
                "condition": _condition(rule),
                "value": value,
                "values": list(s.values),
                "first_seen": s.since_wall,
                "first_at": s.since_at,
                "last_seen": wall,
                "last_at": at,
            }
            s.values = []
            return self._event("raise", s.alarm, wall, at)
        # Active: refresh last seen while it is still bad; clear once good for clear_s.
        a = s.alarm
        a.pop("restored", None)
        if bad:
            a["value"] = value
            a["last_seen"], a["last_at"] = wall, at
            s.since = None
            return None
        if not good:
            s.since = None  # inside the hysteresis band: neither raise nor clear
            return None
        if s.since is None:
            s.since = now
        if now - s.since < rule.get("clear_s", 0):
            return None
        s.active = False
        s.since = None
        s.armed = True
        s.alarm = None
        a = dict(a)
        a["value"] = value
        return self._event("clear", a, wall, at)

    def _event(self, kind, alarm, wall, at):
        ev = dict(alarm)
        ev["event"] = kind
        ev["time"] = wall
        ev["quality"] = rd.GOOD if wall is not None else rd.EST_TIME
        ev["boot"], ev["mono"] = at[0], at[1]
        self.changed = True
        if self.log is not None:  # an alarm that flaps with its device: summarised lines
            self.log.repeating(("alarm", alarm["alarm"]), INFO, "alarm", kind, burst=2,
                               alarm=alarm["alarm"], severity=alarm["severity"])  # fmt: skip
        return ev

    # --- output and persistence -----------------------------------------------------------
    def active(self):
        """The active alarms (dicts, sorted by id): what the retained topic publishes."""
        out = []
        for aid in sorted(self._series):
            s = self._series[aid]
            if s.active:
                out.append(dict(s.alarm))
        return out

    def snapshot(self):
        """JSON-able state to persist whenever events were emitted (not on every reading: flash
        wear). Holds the active alarms and which transition series are armed."""
        armed = [aid for aid in sorted(self._series) if self._series[aid].armed]
        return {"v": 1, "active": self.active(), "armed": armed}

    def restore(self, snap):
        """Load a snapshot before the first feed. Returns clear events for alarms whose rule no
        longer exists (removed from the config), so nothing stays active forever upstream."""
        events = []
        ids = [r["id"] for r in self.rules]
        if not snap or snap.get("v") != 1:
            return events
        for a in snap.get("active", ()):
            if a.get("rule") not in ids:
                wall, at = self.clock.stamp()
                a = dict(a)
                a["reason"] = "rule removed"
                events.append(self._event("clear", a, wall, at))
                continue
            s = self._series.get(a["alarm"]) or _Series()
            s.active = True
            s.armed = True
            s.alarm = dict(a)
            s.alarm["restored"] = True
            self._series[a["alarm"]] = s
        for aid in snap.get("armed", ()):
            s = self._series.get(aid) or _Series()
            s.armed = True
            self._series[aid] = s
        return events
