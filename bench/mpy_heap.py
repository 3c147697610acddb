"""Print the MicroPython heap figures of the portable core as a table (WebAssembly port, 32-bit).

    .venv/bin/python bench/mpy_heap.py

Per module: "own" (what importing it adds once its dependencies are loaded; the figure the
budgets in tests/mpy/portable.json hold) and "total" (importing it alone, dependencies included).
Then everything portable imported at once, and the core loop after a poll cycle (heap_cycle.py).
Runs tests/mpy/run.mjs; needs node and the package tests/mpy/install.sh installs.
"""

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
HARNESS = REPO / "tests" / "mpy" / "run.mjs"
CONFIG = json.loads((REPO / "tests" / "mpy" / "portable.json").read_text())


def harness(*args):
    node = shutil.which("node")
    if not node:
        sys.exit("node is not installed")
    r = subprocess.run(
        [node, str(HARNESS), *args], check=False, cwd=REPO, capture_output=True, text=True
    )
    if r.returncode == 2:
        sys.exit(r.stderr)
    return r.stdout


def modules():
    out = []
    for pat in CONFIG["import"]:
        hits = sorted(REPO.glob(pat)) if "*" in pat else [REPO / pat]
        for p in hits:
            if p.is_file():
                name = p.relative_to(REPO).as_posix()[:-3].replace("/", ".")
                out.append(name.removesuffix(".__init__"))
    return list(dict.fromkeys(out))


def main():
    t0 = time.monotonic()
    out = harness("import")
    t_import = time.monotonic() - t0
    rows = re.findall(
        r"^HEAP import:(\S+) (\d+) budget=(\d+) (ok|OVER BUDGET) total=(\d+)", out, re.MULTILINE
    )
    failed = re.findall(r"^FAIL (.*)$", out, re.MULTILINE)
    print(f"{'module':34} {'own B':>8} {'total B':>8} {'budget B':>9}")
    for name, own, budget, verdict, total in sorted(rows, key=lambda r: -int(r[1])):
        flag = "" if verdict == "ok" else "  OVER"
        print(f"{name:34} {int(own):8d} {int(total):8d} {int(budget):9d}{flag}")
    for f in failed:
        print("FAIL", f)
    print(f"sum of own: {sum(int(r[1]) for r in rows)} B over {len(rows)} modules")

    with tempfile.TemporaryDirectory() as tmp:
        every = Path(tmp) / "every_portable_module.py"
        every.write_text("".join(f"import {m}\n" for m in modules()))
        all_out = harness("import", str(every))
    m = re.search(r"^HEAP import:every_portable_module \d+ .* total=(\d+)", all_out, re.MULTILINE)
    print("every portable module at once:", m.group(1) + " B" if m else all_out)

    t0 = time.monotonic()
    cyc = harness("heap")
    t_heap = time.monotonic() - t0
    for line in cyc.splitlines():
        if line.startswith(("HEAP", "BUDGET", "STEADY")):
            print(line)
    print(
        f"wall time: import pass {t_import:.1f} s ({len(rows)} modules x 2 interpreters), "
        f"heap cycle {t_heap:.2f} s"
    )


if __name__ == "__main__":
    main()
