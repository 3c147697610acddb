"""docs/alarms.md's table of default rules is the data in agent/core/monitor/alarms.py, row for
row."""

import os

from agent.core.monitor.alarms import BTS_RULES, WIFI_RULES, _condition

DOC = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "alarms.md")


def rule_rows():
    seen = {}
    order = []
    for kind, rules in (("bts", BTS_RULES), ("wifi", WIFI_RULES)):
        for r in rules:
            extra = []
            if r.get("clear_s"):
                extra.append("clear after %ss" % r["clear_s"])
            if r.get("when"):
                extra.append("only while %s = %s" % tuple(r["when"]))
            if r.get("transition"):
                extra.append("only after seen normal")
            key = (r["id"], r["metric"], _condition(r), r["severity"], "; ".join(extra) or "-")
            if key not in seen:
                seen[key] = []
                order.append(key)
            seen[key].append(kind)
    return [
        "| `%s` | `%s` | %s | %s | %s | %s |" % (k[0], k[1], k[2], k[3], " ".join(seen[k]), k[4])
        for k in order
    ]


def test_default_rules_table_matches_the_data():
    with open(DOC) as f:
        doc = [line.rstrip("\n") for line in f if line.startswith("| `")]
    rules = [line for line in doc if line.split("|")[1].strip().strip("`").isupper()]
    assert rules == rule_rows()
