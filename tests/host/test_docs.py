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


# --- docs that describe the code's numbers and files (issue 12, point 17) ---------------------

DOCS = os.path.join(ROOT, "docs")
# Named in a doc ahead of its landing (issue 14's flash tool).
PLANNED = {"tools/flash.py"}


def _read(name):
    with open(os.path.join(DOCS, name)) as f:
        return f.read()


def test_docs_name_only_files_that_exist():
    import glob
    import re

    missing = []
    for doc in sorted(glob.glob(os.path.join(DOCS, "*.md"))) + [os.path.join(ROOT, "README.md")]:
        with open(doc) as f:
            text = f.read()
        pattern = r"(?<![\w/.-])((?:agent|drivers|tests|bench|hil|tools|config)/[\w./-]+)(.?)"
        for token, after in set(re.findall(pattern, text)):
            if after in "*<":
                continue  # a pattern (tests/portable/test_*.py), not a file
            path = token.rstrip(".,:;)")
            if path not in PLANNED and not os.path.exists(os.path.join(ROOT, path)):
                missing.append("%s: %s" % (os.path.basename(doc), path))
    assert not missing, "docs name files that do not exist: %s" % sorted(missing)


def test_console_doc_gives_the_lockout_the_guard_applies():
    import re

    from agent.core.console.auth import Guard

    class Clock:
        t = 0.0

        def __call__(self):
            return self.t

    guard = Guard(clock=Clock())
    delays = [guard.failed() for _ in range(12)]
    free = delays.index(next(d for d in delays if d))
    text = " ".join(_read("console.md").split())
    m = re.search(r"(\w+) wrong PINs are free; the third locks logins for (\d+) s, the fourth "
                  r"for (\d+) s, then (\d+) s, (\d+) s \.\.\. up to (\d+) minutes", text)
    assert m, "docs/console.md no longer states the lockout in the tested form"
    words = {"One": 1, "Two": 2, "Three": 3, "Four": 4}
    assert words[m.group(1)] == free
    assert [int(m.group(i)) for i in range(2, 6)] == [int(d) for d in delays[free : free + 4]]
    assert int(m.group(6)) * 60 == guard.cap == max(delays)


def test_console_and_config_docs_give_the_default_idle_timeout():
    from agent.core.config.tables import IDLE_TIMEOUT_S

    assert "idle_timeout = %d " % IDLE_TIMEOUT_S in _read("console.md")
    row = [x for x in _read("config.md").splitlines() if x.startswith("| `idle_timeout` |")][0]
    assert row.split(" | ")[2] == str(IDLE_TIMEOUT_S)
