"""Which modules a board image carries: the import closure of its entry modules (host side).

The board runs only what its site uses, so the image holds only that: the firmware's entry
modules, the drivers the site names (drivers/__init__.py loads them by name at run time, so they
are added explicitly) and everything those import, found by reading every `import` statement in
the source (top level and inside functions, so lazy imports are shipped too). Host-only code
(agent.host, hil, tests, the builder itself) is never shipped: an import of it on the board
fails loudly, which is what a host-only code path deserves there.
"""

import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGES = ("agent", "drivers", "firmware")
NEVER = (
    "agent.host", "agent.fleet", "hil", "tests", "firmware.build", "firmware.fit",
    "firmware.modules", "firmware.board_table", "firmware.costs",
)  # fmt: skip


def shipped(name):
    """True when module `name` may go on a board."""
    if name.split(".")[0] not in PACKAGES:
        return False
    return not any(name == n or name.startswith(n + ".") for n in NEVER)


def path_of(name):
    """The source file of a repository module, or None when there is none."""
    base = os.path.join(REPO, *name.split("."))
    if os.path.isfile(base + ".py"):
        return base + ".py"
    init = os.path.join(base, "__init__.py")
    return init if os.path.isfile(init) else None


def _is_package(name):
    return os.path.isfile(os.path.join(REPO, *name.split("."), "__init__.py"))


def imports_of(name):
    """Repository modules that module `name` imports anywhere in its source."""
    path = path_of(name)
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    pkg = name if _is_package(name) else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                out.add(a.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = pkg.split(".")
                up = parts[: len(parts) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            out.add(base)
            for a in node.names:  # `from pkg import mod` names a module when mod.py exists
                if path_of(base + "." + a.name) is not None:
                    out.add(base + "." + a.name)
    return {m for m in out if m and path_of(m) is not None}


def closure(entries):
    """Every shipped module reachable from `entries` (module names), parents included, sorted.
    Raises ValueError for an entry that is not a shipped repository module."""
    todo = list(entries)
    seen = set()
    for e in entries:
        if not shipped(e) or path_of(e) is None:
            raise ValueError("%s: not a module the board can carry" % e)
    while todo:
        name = todo.pop()
        if name in seen or not shipped(name):
            continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts)):
            todo.append(".".join(parts[:i]))
        todo.extend(imports_of(name))
    return sorted(seen)


def rel_source(name):
    """'agent/core/loop.py' for 'agent.core.loop' (what tracebacks on the board show)."""
    return os.path.relpath(path_of(name), REPO).replace(os.sep, "/")
