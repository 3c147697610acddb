"""The documents that are contracts stay identical to the code they describe."""

import os

from agent.core.registry import METRICS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _table_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            if line.startswith("| `"):
                cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
                rows.append(
                    (cells[0].strip("`"), cells[1], cells[2], cells[3].replace("\\|", "|"))
                )
    return rows


def test_metric_registry_doc_matches_code():
    doc = _table_rows(os.path.join(ROOT, "docs", "metrics.md"))
    assert doc == [tuple(r) for r in METRICS]


def test_registry_names_are_well_formed():
    seen = set()
    for name, _unit, typ, desc in METRICS:
        assert name not in seen, "duplicate metric %s" % name
        seen.add(name)
        assert name == name.strip() and " " not in name
        assert typ in ("float", "int", "str", "bool"), name
        assert desc, name
