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


def _doc():
    with open(DOC) as f:
        return f.read()


def test_rule_keys_table_is_the_config_schema():
    """The "Rules" key table lists exactly the keys a [[alarms.rules]] entry takes (it once said
    clear_s, transition and when were "not yet accepted" long after the schema took them)."""
    import re

    from agent.core.config.tables import RULE

    text = _doc()
    section = text[text.index("## Rules") : text.index("Default rules (kinds")]
    keys = []
    for cell in re.findall(r"^\| (`[a-z_]+`(?: / `[a-z_]+`)*) \|", section, re.MULTILINE):
        keys += re.findall(r"`([a-z_]+)`", cell)
    assert sorted(keys) == sorted(k for k, _ in RULE)
    assert "not yet accepted" not in text and "proposed" not in text


def test_every_metric_the_page_names_is_in_the_registry():
    import re

    from agent.core import registry

    families = {row[0].split(".")[0] for row in registry.METRICS}
    unknown = []
    for token in re.findall(r"`([a-z_]+(?:\.[a-z_0-9<>]+)+)`", _doc()):
        if token.split(".")[0] in families and not registry.is_known(token):
            unknown.append(token)
    assert not unknown, "docs/alarms.md names metrics the registry lacks: %s" % unknown
