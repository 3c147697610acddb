"""Print what the console costs on this host, and the PIN check under MicroPython (WebAssembly).

    .venv/bin/python bench/console_bench.py

- PBKDF2-HMAC-SHA256 at the default iterations: hashlib's C code (what CPython uses) and the
  portable pure-Python code (what MicroPython runs), and the longest stretch the async verify
  holds the loop between yields.
- The line discipline on line noise (MB/s): how much garbage a console can take.
- Exporting a backlog of 20,000 records from a real Store on disk (s).
- The pure-Python PBKDF2 under the MicroPython WebAssembly port (node), when node is installed:
  a rough stand-in for the board, whose speed differs (an ESP32 is slower still).
"""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from agent.core.console import auth
from agent.core.console.line import LineDiscipline

REPO = Path(__file__).resolve().parents[1]


def pbkdf2():
    n = auth.DEFAULT_ITERATIONS
    t = time.perf_counter()
    auth.pbkdf2_sha256(b"7341", b"0123456789abcdef", n)
    fast = time.perf_counter() - t
    t = time.perf_counter()
    auth.pbkdf2_sha256(b"7341", b"0123456789abcdef", n, pure=True)
    pure = time.perf_counter() - t
    print("PBKDF2-HMAC-SHA256, %d iterations: hashlib %.1f ms, pure Python %.0f ms" % (
        n, fast * 1000, pure * 1000))  # fmt: skip
    # Longest hold of the loop by the pure code between yields.
    worst = 0.0
    last = time.perf_counter()
    for _key in auth._steps(b"7341", b"0123456789abcdef", n, 32):
        now = time.perf_counter()
        worst = max(worst, now - last)
        last = now
    print("  pure Python holds the loop at most %.1f ms between yields (every %d rounds)" % (
        worst * 1000, auth.YIELD_EVERY))  # fmt: skip


def noise():
    data = bytes((i * 7919 + 13) % 256 for i in range(1 << 20))
    ld = LineDiscipline()
    t = time.perf_counter()
    i = 0
    while i < len(data):
        _, i = ld.step(data, i)
    dt = time.perf_counter() - t
    print("line discipline on 1 MB of noise: %.2f MB/s (a 115200 baud line carries 0.0115)" % (
        1 / dt))  # fmt: skip


def export():
    from agent.core.store.store import Store

    d = tempfile.mkdtemp()
    try:
        st = Store(os.path.join(d, "q"), 64 << 20)
        for i in range(20000):
            st.append("routine", {"site": "s", "device": "ups", "metric": "input.voltage",
                                  "value": 230.0 + i % 7, "unit": "V", "time": 1.7e9 + i,
                                  "quality": "good", "seq": None})  # fmt: skip
            if i % 500 == 499:
                st.commit()
        st.commit()
        t = time.perf_counter()
        n = st.export(os.path.join(d, "out.jsonl"))
        dt = time.perf_counter() - t
        size = os.path.getsize(os.path.join(d, "out.jsonl"))
        print("export of %d records (%d KB) from the store: %.2f s (runs on the loop)" % (
            n, size // 1024, dt))  # fmt: skip
        st.close()
    finally:
        shutil.rmtree(d)


MPY = (
    """
import time
from agent.core.console import auth
for n in (1000, %d):
    t = time.ticks_ms()
    auth.pbkdf2_sha256(b"7341", b"0123456789abcdef", n)
    ms = time.ticks_diff(time.ticks_ms(), t)
    print("MicroPython (wasm) pure PBKDF2, %%d iterations: %%d ms" %% (n, ms))
"""
    % auth.DEFAULT_ITERATIONS
)


def micropython():
    node = shutil.which("node")
    pkg = REPO / ".deps/node_modules/@micropython/micropython-webassembly-pyscript/micropython.mjs"
    if node is None or not pkg.exists():
        print("MicroPython figure skipped: node or the wasm package is missing (tests/mpy)")
        return
    script = (
        'import { loadMicroPython } from "%s";\n'
        'import fs from "node:fs";\n'
        "const mp = await loadMicroPython({stdout: (l) => console.log(l)});\n"
        'mp.FS.mkdirTree("/repo/agent/core");\n'
        'for (const f of ["agent/__init__.py", "agent/core/__init__.py",\n'
        '  "agent/core/console/__init__.py", "agent/core/console/auth.py",\n'
        '  "agent/core/compat.py", "agent/core/errors.py"])\n'
        '  mp.FS.writeFile("/repo/" + f, fs.readFileSync("%s/" + f));\n'
        'mp.runPython("import sys; sys.path.insert(0, \\"/repo\\")");\n'
        "mp.runPython(fs.readFileSync(process.argv[2], 'utf8'));\n"
    ) % (pkg, REPO)
    d = tempfile.mkdtemp()
    try:
        Path(d, "b.mjs").write_text(script)
        Path(d, "b.py").write_text(MPY)
        res = subprocess.run([node, str(Path(d, "b.mjs")), str(Path(d, "b.py"))],
                             capture_output=True, text=True, timeout=300)  # fmt: skip
        print((res.stdout + res.stderr).strip())
    finally:
        shutil.rmtree(d)


if __name__ == "__main__":
    pbkdf2()
    noise()
    export()
    micropython()
