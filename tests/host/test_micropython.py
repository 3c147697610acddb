"""The portable core under real MicroPython: the official WebAssembly port run by Node.js.

Every tests/portable/test_*.py runs in a fresh MicroPython (tests/mpy/run.mjs) and every test in it
must PASS; every portable module must import, within its heap budget; the core loop's live heap
after a poll cycle must stay within the budget in tests/mpy/portable.json. Figures are printed in a
"MicroPython heap" section at the end of the pytest run. Needs node and the npm package that
tests/mpy/install.sh installs: without them these tests fail (they never skip).
"""

import ast
import json
import os
import re
import shutil
import subprocess
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARNESS = REPO / "tests" / "mpy" / "run.mjs"
CONFIG = json.loads((REPO / "tests" / "mpy" / "portable.json").read_text())
TIMEOUT_S = 120

FIGURES = []  # lines for the summary section


def expand(patterns):
    """Same globs as run.mjs: 'dir/*.py' or a plain path; files that exist, in name order."""
    out = []
    for pat in patterns:
        hits = sorted(REPO.glob(pat)) if "*" in pat else [REPO / pat]
        out += [p.relative_to(REPO).as_posix() for p in hits if p.is_file()]
    return list(dict.fromkeys(out))


def module_name(rel):
    name = rel[: -len(".py")].replace("/", ".")
    return name.removesuffix(".__init__")


TEST_FILES = expand([CONFIG["tests"]])
IMPORT_FILES = expand(CONFIG["import"])


class _Summary:
    def pytest_terminal_summary(self, terminalreporter):
        if FIGURES:
            terminalreporter.section("MicroPython heap (live bytes, WebAssembly port 32-bit)")
            for line in FIGURES:
                terminalreporter.write_line(line)


@pytest.fixture(scope="module", autouse=True)
def _report_figures(request):
    plugin = _Summary()
    request.config.pluginmanager.register(plugin, "micropython-heap-summary")
    yield


def harness(*args, env=None):
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the MicroPython tests need Node.js >= 18 on PATH")
    try:
        r = subprocess.run(
            [node, str(HARNESS), *args],
            check=False,
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
            env=dict(os.environ, **(env or {})),
        )
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        pytest.fail(f"MicroPython run timed out after {TIMEOUT_S}s: {args}\n{out}")
    if r.returncode == 2:
        pytest.fail(f"MicroPython harness could not start:\n{r.stdout}{r.stderr}")
    return r


def heap_lines(out):
    return [line for line in out.splitlines() if line.startswith(("HEAP ", "BUDGET ", "STEADY "))]


def test_test_modules_are_found():
    assert TEST_FILES, "no tests/portable/test_*.py found"
    assert "tests/portable/test_registry.py" in TEST_FILES


@pytest.mark.parametrize("rel", TEST_FILES)
def test_portable_tests_pass_under_micropython(rel):
    r = harness("test", rel)
    out = r.stdout + r.stderr
    name = Path(rel).stem
    FIGURES.extend(heap_lines(out))
    failed = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert not failed and r.returncode == 0, "MicroPython output:\n" + out
    # Every test function CPython sees must have run and passed under MicroPython.
    tree = ast.parse((REPO / rel).read_text())
    expected = {
        f"{name}.{n.name}"
        for n in tree.body
        if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef)) and n.name.startswith("test_")
    }
    passed = set(re.findall(r"^PASS (\S+)$", out, re.MULTILINE))
    assert passed == expected, "MicroPython output:\n" + out
    assert f"DONE {name} passed={len(expected)} failed=0" in out


@pytest.mark.parametrize("rel", IMPORT_FILES)
def test_portable_module_imports_within_budget(rel):
    r = harness("import", rel)
    out = r.stdout + r.stderr
    FIGURES.extend(heap_lines(out))
    name = module_name(rel)
    assert f"OK {name}" in out, "import failed under MicroPython:\n" + out
    m = re.search(
        rf"^HEAP import:{re.escape(name)} (\d+) budget=(\d+) (ok|OVER)", out, re.MULTILINE
    )
    assert m, "no heap figure:\n" + out
    budgets = CONFIG["budgets"]
    assert int(m.group(2)) == budgets["import_bytes"].get(name, budgets["import_default_bytes"])
    assert int(m.group(1)) <= int(m.group(2)) and r.returncode == 0, "over its budget:\n" + out


def test_core_loop_heap_after_a_poll_cycle_within_budget():
    r = harness("heap")
    out = r.stdout + r.stderr
    FIGURES.extend(heap_lines(out))
    m = re.search(
        r"^BUDGET core_loop cycle1=(\d+) budget=(\d+) (ok|OVER BUDGET)", out, re.MULTILINE
    )
    assert m, "no budget line; MicroPython output:\n" + out
    live, budget = int(m.group(1)), int(m.group(2))
    assert budget == CONFIG["budgets"]["core_loop_bytes"]
    assert live <= budget and r.returncode == 0, "core loop over budget:\n" + out
    # Steady state: with the queue drained after each cycle, nine more cycles must not grow the
    # heap (a leak in the loop, scheduler or driver base shows here first).
    m = re.search(r"^STEADY cycle2=(\d+) cycle10=(\d+)", out, re.MULTILINE)
    assert m, out
    assert int(m.group(2)) - int(m.group(1)) <= 256, "heap grows cycle after cycle:\n" + out


# --- the harness itself: it must be able to fail -----------------------------------------------

SELF_CHECK = """
import asyncio
from support import raises, run


def test_passes():
    assert 1 + 1 == 2


def test_fails():
    x = 3
    assert x == 4, "x was %d" % x


def test_raises_helper():
    e = raises(ZeroDivisionError, lambda: 1 // 0)
    assert isinstance(e, ZeroDivisionError)


def test_coroutine_with_timers_and_timeout():
    async def slow():
        await asyncio.sleep(1)

    async def main():
        await asyncio.sleep_ms(5)
        try:
            await asyncio.wait_for(slow(), 0.02)
        except asyncio.TimeoutError:
            return "timed out"
        return "no timeout"

    assert run(main()) == "timed out"


def test_coroutine_exception_reaches_the_test():
    async def boom():
        await asyncio.sleep(0)
        raise KeyError("k")

    raises(KeyError, run, boom())
"""


def test_harness_reports_failures_with_micropython_traceback(tmp_path):
    f = tmp_path / "test_selfcheck_mpy.py"
    f.write_text(textwrap.dedent(SELF_CHECK))
    r = harness("test", str(f))
    out = r.stdout
    assert r.returncode == 1, out
    assert "PASS test_selfcheck_mpy.test_passes" in out
    assert "PASS test_selfcheck_mpy.test_raises_helper" in out
    assert "PASS test_selfcheck_mpy.test_coroutine_with_timers_and_timeout" in out
    assert "PASS test_selfcheck_mpy.test_coroutine_exception_reaches_the_test" in out
    assert "FAIL test_selfcheck_mpy.test_fails: AssertionError: x was 3" in out
    assert 'test_selfcheck_mpy.py", line 12, in test_fails' in out  # MicroPython's traceback
    assert "DONE test_selfcheck_mpy passed=4 failed=1" in out


def test_import_failure_fails_with_micropython_traceback(tmp_path):
    f = tmp_path / "broken_mod.py"
    f.write_text("X = 1\nfrom agent.core.store.queue import NoSuchName\n")
    r = harness("import", str(f))
    assert r.returncode == 1, r.stdout
    assert "FAIL broken_mod: import failed: ImportError" in r.stdout
    assert 'broken_mod.py", line 2, in <module>' in r.stdout


@pytest.mark.parametrize("name", ["dataclasses", "typing", "abc", "pathlib", "logging"])
def test_modules_absent_on_the_board_fail_to_import(name):
    r = harness("import", name)
    assert r.returncode == 1 and "not in ESP32 firmware" in r.stdout, r.stdout


def test_board_time_has_no_strftime(tmp_path):
    # The port extends time with micropython-lib's strftime; ESP32 firmware does not have it.
    f = tmp_path / "uses_strftime.py"
    f.write_text("import time\nS = time.strftime\n")
    r = harness("import", str(f))
    assert r.returncode == 1 and "AttributeError" in r.stdout, r.stdout


def test_missing_port_fails_with_install_hint(tmp_path):
    node = shutil.which("node")
    assert node, "node is not installed"
    r = subprocess.run(
        [node, str(HARNESS), "heap"],
        check=False,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=dict(os.environ, SITE_AGENT_NODE_MODULES=str(tmp_path)),
    )
    assert r.returncode == 2
    assert f"not found in {tmp_path}" in r.stderr and "tests/mpy/install.sh" in r.stderr


# --- docs/micropython.md gives the figures the benchmark measures (issue 12, point 17) ---------

DOC = REPO / "docs" / "micropython.md"
DOC_TOLERANCE = 0.10  # a doc figure more than 10 % off a fresh measurement is stale
REWRITE = "run .venv/bin/python bench/mpy_heap.py --write-doc"


def doc_figures():
    """{row label: bytes} from the generated block of docs/micropython.md."""
    text = DOC.read_text()
    assert "<!-- mpy-heap:begin" in text, "docs/micropython.md lost its generated block"
    block = text[text.index("<!-- mpy-heap:begin") : text.index("<!-- mpy-heap:end -->")]
    rows = {}
    for label, number in re.findall(r"^\| (.+?) \| \**[\d.]+ KB \(([\d,]+) B\)", block, re.M):
        rows[label] = int(number.replace(",", ""))
    assert rows, "no figures in the generated block: " + REWRITE
    return rows


def close(doc, measured):
    return abs(doc - measured) <= DOC_TOLERANCE * measured


def test_docs_heap_figures_are_the_measured_ones(tmp_path):
    rows = doc_figures()
    stale = []
    every = tmp_path / "every_portable_module.py"
    every.write_text("".join("import %s\n" % module_name(rel) for rel in IMPORT_FILES))
    out = harness("import", str(every)).stdout
    m = re.search(r"^HEAP import:every_portable_module \d+ .* total=(\d+)", out, re.MULTILINE)
    assert m, out
    doc = rows["every portable module imported at once"]
    if not close(doc, int(m.group(1))):
        stale.append("every module at once: doc %d B, measured %s B" % (doc, m.group(1)))
    out = harness("heap").stdout
    m = re.search(r"^BUDGET core_loop cycle1=(\d+)", out, re.MULTILINE)
    doc = rows["core loop after one poll cycle (`heap_cycle.py`)"]
    if not close(doc, int(m.group(1))):
        stale.append("core loop: doc %d B, measured %s B" % (doc, m.group(1)))
    for label, doc in rows.items():
        if not label.startswith("own: `"):
            continue
        name = label[len("own: `") : -1]
        out = harness("import", name.replace(".", "/") + ".py").stdout
        m = re.search(r"^HEAP import:%s (\d+) " % re.escape(name), out, re.MULTILINE)
        assert m, "module %s of the doc no longer imports:\n%s" % (name, out)
        if not close(doc, int(m.group(1))):
            stale.append("%s own: doc %d B, measured %s B" % (name, doc, m.group(1)))
    assert not stale, "docs/micropython.md is stale (%s):\n" % REWRITE + "\n".join(stale)
