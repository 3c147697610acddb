"""Where a site ranks in the command room's table, and why (agent/fleet/model.py's rows).

Most urgent first: on battery (least runtime left first), then silent or offline (those that
were on battery first), backhaul down or degraded, critical then major alarms, on generator or
solar, minor alarms, power not known yet (contract v2 compact, until the stream's integrity
refresh), the rest. The level (the row's colour) is critical, major, minor, ok,
offline or unknown; `why` is the reason in words ("on battery, 12 min left (estimated)").
"""

SEVERITIES = ("critical", "major", "minor", "warning")
RUNTIME_CRITICAL_S = 1800.0  # on battery with less than this left: critical

# Ranks, most urgent first (the sort key's first element).
RANK_BATTERY = 0
RANK_SILENT = 1
RANK_BACKHAUL = 2
RANK_CRITICAL = 3
RANK_MAJOR = 4
RANK_OTHER_SOURCE = 5
RANK_MINOR = 6
RANK_VALUES_UNKNOWN = 7  # power unknown until the stream's integrity refresh (v2 compact)
RANK_OK = 8
RANK_UNKNOWN = 9


def urgency(row):
    """(rank, level, why) of a summary row. Level: critical, major, minor, ok, offline, unknown."""
    al = row["alarms"]
    level = "ok"
    if al["critical"]:
        level = "critical"
    elif al["major"]:
        level = "major"
    elif al["minor"] or al["warning"]:
        level = "minor"
    if row["status"] == "unknown" and row["last_heard"] is None:
        return RANK_UNKNOWN, "unknown", "nothing heard yet"
    if row["silent"]:
        if row["status"] == "offline":
            why = "offline: %s" % (row["reason"] or "no reason given")
        elif row["age"] is None:
            why = "silent: nothing heard"
        else:
            why = "silent: nothing heard for %s" % duration(row["age"])
        if row["power"] == "battery":
            why += " (was on battery)"
        return RANK_SILENT, "offline", why
    if row["power"] == "battery":
        left = row["runtime"]
        if left is None:
            return RANK_BATTERY, "critical" if level == "critical" else "major", \
                "on battery, runtime unknown"
        lvl = "critical" if left < RUNTIME_CRITICAL_S or level == "critical" else "major"
        return RANK_BATTERY, lvl, "on battery, %s left%s" % (
            duration(left), " (estimated)" if row["runtime_est"] else "")
    if row["backhaul"] == "down":
        return RANK_BACKHAUL, "critical", "backhaul down"
    if row["backhaul"] == "degraded":
        return RANK_BACKHAUL, "major" if level != "critical" else level, "backhaul degraded"
    if level == "critical":
        return RANK_CRITICAL, level, "%d critical alarm(s)" % al["critical"]
    if level == "major":
        return RANK_MAJOR, level, "%d major alarm(s)" % al["major"]
    if row["power"] in ("generator", "solar"):
        return RANK_OTHER_SOURCE, "minor", "on %s" % row["power"]
    if level == "minor":
        return RANK_MINOR, level, "%d minor alarm(s)" % (al["minor"] + al["warning"])
    if row.get("unknown") and "power" in row["unknown"]:
        return RANK_VALUES_UNKNOWN, "unknown", "power unknown until the site's integrity " \
            "refresh (this view joined its stream mid-way)"
    return RANK_OK, "ok", "on %s" % (row["power"] or "unknown power")


def urgency_key(row):
    rank = row["rank"]
    if rank == RANK_BATTERY:
        left = row["runtime"]
        charge = row["charge"]
        return (rank, left is None, left or 0, 101 if charge is None else charge, row["id"])
    if rank == RANK_SILENT:
        return (rank, row["power"] != "battery", -(row["last_heard"] or 0), 0, row["id"])
    al = row["alarms"]
    return (rank, -al["critical"], -al["major"], -(al["minor"] + al["warning"]), row["id"])


def duration(s):
    """Seconds as a short human duration: 45 s, 12 min, 3 h 05 min, 2 d 4 h."""
    if s is None:
        return "?"
    s = int(s)
    if s < 90:
        return "%d s" % s
    m = s // 60
    if m < 60:
        return "%d min" % m
    h, m = divmod(m, 60)
    if h < 48:
        return "%d h %02d min" % (h, m)
    d, h = divmod(h, 24)
    return "%d d %d h" % (d, h)


