"""What running the board's code from ROMFS saves, measured on the MicroPython unix port: the heap
that importing every module of the reference image takes when its .mpy files are (a) in a ROMFS
image mounted with vfs.VfsRom (executed in place: bytecode and constants stay in the image, as in
flash on a board whose firmware has ROMFS) and (b) on littlefs (loaded into RAM: what a stock
ESP32 firmware does, it has no ROMFS). The unix port is 64-bit, so the bytes are larger than a
board's; the ratio (b - a) / b is what carries over to the 32-bit figures of bench/board_heap.py.

    .venv/bin/python bench/board_romfs.py
"""

import json
import os
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from bench.board_heap import TOML, topo  # noqa: E402
from firmware.build import build_image  # noqa: E402
from hil.board_sim import micropython_exe  # noqa: E402

VM = r'''
import gc, sys, vfs, os, json
plan = json.load(open(sys.argv[1]))
gc.collect()
if plan["mode"] == "romfs":
    with open(plan["romfs"], "rb") as f:
        img = f.read()
    gc.collect()
    base = gc.mem_alloc()
    vfs.mount(vfs.VfsRom(img), "/rom")
    sys.path[:] = ["/rom", ".frozen"]
else:
    base = None
    sys.path[:] = [plan["lib"], ".frozen"]
gc.collect()
start = gc.mem_alloc()
for m in plan["modules"]:
    try:
        __import__(m)
    except ImportError as e:
        print("SKIP", m, e)
gc.collect()
print("ALLOC", gc.mem_alloc() - start)
'''


def measure():
    """(bytes from ROMFS, bytes from littlefs, module count) on the unix port."""
    with tempfile.TemporaryDirectory(prefix="board-romfs-") as tmp:
        with open(os.path.join(tmp, "site.toml"), "w") as f:
            f.write(TOML)
        man = build_image(os.path.join(tmp, "site.toml"), "esp32-s3-devkitc-n8r8",
                          os.path.join(tmp, "image"))  # fmt: skip
        mods = [m for m in topo(man["modules"]) if not m.startswith("firmware")]
        vm = os.path.join(tmp, "vm.py")
        with open(vm, "w") as f:
            f.write(VM)
        out = {}
        for mode in ("romfs", "lib"):
            plan = os.path.join(tmp, mode + ".json")
            with open(plan, "w") as f:
                json.dump({"mode": mode, "romfs": os.path.join(tmp, "image", "romfs.img"),
                           "lib": os.path.join(tmp, "image", "files", "lib"),
                           "modules": mods}, f)  # fmt: skip
            r = subprocess.run([micropython_exe(), "-X", "heapsize=4M", vm, plan],
                               capture_output=True, text=True, timeout=120)  # fmt: skip
            alloc = [int(line.split()[1]) for line in r.stdout.splitlines()
                     if line.startswith("ALLOC")]  # fmt: skip
            if not alloc:
                raise SystemExit(r.stdout + r.stderr)
            out[mode] = alloc[0]
        return out["romfs"], out["lib"], len(mods)


def main():
    a, b, n = measure()
    if True:
        print("MicroPython unix port (64-bit), importing %d modules of the reference image:"
              % n)  # fmt: skip
        print("  .mpy from ROMFS (in place):   %.1f KB" % (a / 1024.0))
        print("  .mpy from littlefs (in RAM):  %.1f KB" % (b / 1024.0))
        print("  ROMFS saves %.0f%% of the code's heap" % (100.0 * (b - a) / b))


if __name__ == "__main__":
    main()
