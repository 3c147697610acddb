"""The fleet as a terminal table (`site-agent fleet --once`), most urgent first. Laid out by
the CLI's one table formatter (agent/core/console/fmt.py), which prints only ASCII: names and
places lose their diacritics first ("Thuận Hòa" prints as "Thuan Hoa", not "Thu?n H?a")."""

import unicodedata

from agent.core.console import fmt
from agent.fleet.urgency import duration

HEADER = ["LEVEL", "SITE", "NAME", "PLACE", "POWER", "CHARGE", "RUNTIME", "BACKHAUL", "ALARMS",
          "HEARD", "STATUS"]  # fmt: skip


def place(row):
    return ", ".join(p for p in (row.get("commune"), row.get("province")) if p)


def alarms_cell(counts):
    """"2C 1M" style: critical, major, minor, warning counts that are not zero; "-" if none."""
    parts = ["%d%s" % (counts[k], k[0].upper() if k != "minor" else "m")
             for k in ("critical", "major", "minor", "warning") if counts.get(k)]
    return " ".join(parts) or "-"


def unknown(row, field):
    """Is the row's field unknown (v2 compact, joined mid-stream: until the integrity refresh)?"""
    return field in (row.get("unknown") or ())


def power_cell(row):
    if unknown(row, "power"):
        return "unknown"
    p = row.get("power") or "?"
    if p == "battery" and row.get("on_battery_s"):
        p = "battery %s" % duration(row["on_battery_s"])
    return "last: " + p if row.get("silent") and row.get("power") else p


def runtime_cell(row):
    if unknown(row, "runtime"):
        return "unknown"
    if row.get("runtime") is None:
        return "-"
    return duration(row["runtime"]) + (" est" if row.get("runtime_est") else "")


def heard_cell(row):
    if row.get("age") is None:
        return "never"
    return "%s ago%s" % (duration(row["age"]), " (est time)" if row.get("time_est") else "")


def status_cell(row):
    st = row.get("status") or "unknown"
    if st == "offline" and row.get("reason"):
        return "offline: %s" % row["reason"]
    if row.get("silent") and st == "online":
        return "online, silent"
    return st


def cells(row):
    charge = row.get("charge")
    charge = "-" if charge is None else "%g%%" % round(charge, 1)
    backhaul = row.get("backhaul") or "-"
    return [row["level"].upper(), row["id"], row.get("name") or "", place(row), power_cell(row),
            "unknown" if unknown(row, "charge") else charge, runtime_cell(row),
            "unknown" if unknown(row, "backhaul") else backhaul, alarms_cell(row["alarms"]),
            heard_cell(row), status_cell(row)]  # fmt: skip


def ascii_text(s):
    """s without diacritics (Vietnamese đ/Đ as d/D); what is left that is not ASCII is for
    fmt.clean to replace."""
    s = unicodedata.normalize("NFD", s.replace("đ", "d").replace("Đ", "D"))
    return "".join(c for c in s if not unicodedata.combining(c))


def table(rows):
    lines = fmt.table(HEADER, [[ascii_text(c) for c in cells(r)] for r in rows],
                      width=fmt.UNLIMITED)  # fmt: skip
    return "\n".join(lines) + "\n"
