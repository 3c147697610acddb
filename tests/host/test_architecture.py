"""The rooms keep their rules: docs/architecture.md's graph is the code's own imports, and a
portable module never imports host-only code (first-party or third-party), not even lazily inside
a function, unless the import sits in a try/except ImportError that falls back (a runtime switch).
The MicroPython job (test_micropython.py) proves what is imported at import time on the board;
this static check also covers imports that only run later, inside functions."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tools"))
import archgraph  # noqa: E402

PORTABLE = json.loads((REPO / "tests" / "mpy" / "portable.json").read_text())

# What the board's MicroPython offers (built-ins and micropython-lib parts a firmware carries);
# anything else a portable module imports must be guarded by try/except ImportError.
BOARD_STDLIB = {
    "array", "asyncio", "binascii", "collections", "cryptolib", "deflate", "errno", "esp",
    "esp32", "gc", "hashlib", "io", "json", "machine", "math", "micropython", "network", "ntptime",
    "os", "random", "re", "select", "socket", "ssl", "struct", "sys", "time", "vfs",
}  # fmt: skip


def portable_files():
    out = []
    for pat in PORTABLE["import"]:
        hits = sorted(REPO.glob(pat)) if "*" in pat else [REPO / pat]
        out += [p for p in hits if p.is_file()]
    return out


def module_of(path):
    name = path.relative_to(REPO).with_suffix("").as_posix().replace("/", ".")
    return name.removesuffix(".__init__")


PORTABLE_MODULES = {module_of(p) for p in portable_files()}
PORTABLE_PACKAGES = {m.rsplit(".", 1)[0] for m in PORTABLE_MODULES} | {"agent", "drivers"}


def allowed(mod):
    top = mod.split(".")[0]
    if top in archgraph.TOP:
        return mod in PORTABLE_MODULES or mod in PORTABLE_PACKAGES
    return top in BOARD_STDLIB


@pytest.mark.parametrize("path", portable_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_portable_module_imports_no_host_only_code(path):
    bad = []
    for mod, line, guarded in archgraph.imports(str(path)):
        if guarded or allowed(mod):
            continue
        # `from pkg import name` also yields pkg.name; a name that is not a module is fine
        parent = mod.rsplit(".", 1)[0]
        if mod not in archgraph.modules() and parent != mod and allowed(parent):
            continue
        bad.append("line %d: %s" % (line, mod))
    assert not bad, "%s imports host-only code: %s" % (path.relative_to(REPO), bad)


def test_the_check_itself_catches_a_lazy_host_import(tmp_path):
    f = tmp_path / "m.py"
    f.write_text(
        "def f():\n    from agent.host.udp import UdpTransport\n"
        "try:\n    import zlib\nexcept ImportError:\n    zlib = None\n"
        "import paho.mqtt.client\n"
    )
    found = {(m, g) for m, _, g in archgraph.imports(str(f))}
    assert ("agent.host.udp", False) in found and ("zlib", True) in found
    assert not allowed("agent.host.udp") and not allowed("paho.mqtt.client")
    assert allowed("agent.core.store.store") and allowed("struct")


def test_core_depends_on_no_runtime_room():
    graph = archgraph.graph()
    for src, dsts in graph.items():
        if src == "agent.core" or src.startswith("agent.core."):
            outside = [d for d in dsts if not (d == "agent" or d.startswith("agent.core"))]
            assert not outside, "%s imports %s: the core depends on no runtime" % (src, outside)


def test_docs_architecture_graph_is_current():
    r = subprocess.run([sys.executable, str(REPO / "tools" / "archgraph.py"), "--check"],
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
