"""The fleet model's read side: one site as the page's row, the filtered and ranked table, the
filter list and one site's detail (CPython, operations centre). A mixin of Fleet
(agent/fleet/model.py), which holds the sites, the lock, `started` and `silent_after`; the rows
are worked out at read time from what the write side keeps.
"""

import collections

from agent.fleet.site import VOLTAGE, fold, number, word
from agent.fleet.urgency import SEVERITIES, urgency, urgency_key

# The row's fields that a metric gives (agent/fleet/urgency.py and the page read them).
FIELDS = {"site.power_source": "power", "site.battery_charge": "charge",
          "site.runtime": "runtime", "site.runtime_estimated": "runtime_est",
          "site.backhaul": "backhaul", "site.on_battery_s": "on_battery_s",
          VOLTAGE: "voltage"}  # fmt: skip
DEFAULT_INTEGRITY_S = 600.0  # the agent's default uplink.integrity_period


class FleetViews:
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
    runtime = number(value("site.runtime"))
    row = {
        "id": s.id, "name": s.name, "kind": s.kind,
        "commune": loc.get("commune"), "province": loc.get("province"),
        "address": loc.get("address"), "lat": loc.get("lat"), "lon": loc.get("lon"),
        "status": s.status or "unknown", "reason": s.reason, "status_time": s.status_time,
        "silent": False, "power": word(value("site.power_source")),
        "on_battery_s": number(value("site.on_battery_s")),
        "charge": number(value("site.battery_charge")),
        "voltage": number(value(VOLTAGE)), "voltage_device": s.volt_device,
        "runtime": runtime, "runtime_reported": runtime,
        "runtime_at": None if rt is None else rt[2],
        "runtime_est": value("site.runtime_estimated") is True,
        "backhaul": word(value("site.backhaul")), "alarms": counts,
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


def _alarm_order(a):
    sev = a.get("severity")
    return (SEVERITIES.index(sev) if sev in SEVERITIES else 9, str(a.get("alarm")))
