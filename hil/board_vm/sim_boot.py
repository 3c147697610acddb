# The simulated board's power-on (runs INSIDE the MicroPython unix port): what the ESP32's
# firmware does before the program, then the program. hil/board_sim.py starts it with
# SIM_CONFIG naming a JSON file: the flash file, the stand-ins' directory, UARTs, reset cause...
#   1. install the stand-in `machine` and `network` (hil/board_vm/*.py);
#   2. mount littlefs from the flash partition at / (formatting it when it holds none, as the
#      ESP32 firmware does on first boot) and the host's filesystem at /host (ptys, the image);
#   3. mount the ROMFS partition at /rom when the sim has one, and set sys.path as the firmware
#      does ("", ".frozen", "/rom", "/rom/lib", "/lib");
#   4. provision mode: copy an image's files/ onto the flash and stop (what a flasher does);
#      copy-out mode: copy a directory of the flash to the host and stop (a drill's export);
#      otherwise run /boot.py, then /main.py, in one namespace, as the firmware does.
import json
import os
import sys

import vfs

with open(os.getenv("SIM_CONFIG")) as f:
    CFG = json.load(f)
sys.path.insert(0, CFG["vm_dir"])
import machine  # noqa: E402  (the stand-in: first on the path)
import network  # noqa: E402, F401

if machine.__file__.find("board_vm") < 0:
    raise SystemExit("sim_boot: the stand-in machine module was not picked up")
bd = machine.FlashBlockDevice(CFG["flash"], CFG["block_size"], CFG["blocks"],
                              CFG.get("cut_after"))  # fmt: skip
try:
    if CFG.get("provision"):
        raise OSError(19)
    lfs = vfs.VfsLfs2(bd)
except OSError:
    vfs.VfsLfs2.mkfs(bd)
    lfs = vfs.VfsLfs2(bd)
rom = None
if CFG.get("romfs"):
    with open(CFG["romfs"], "rb") as f:
        rom = vfs.VfsRom(f.read())
host = vfs.VfsPosix("/")
vfs.umount("/")
vfs.mount(lfs, "/")
vfs.mount(host, "/host")
sys.path[:] = ["", ".frozen"]
if rom is not None:
    vfs.mount(rom, "/rom")
    sys.path.extend(["/rom", "/rom/lib"])
sys.path.append("/lib")
os.chdir("/")


def _copy(src, dst):
    for name in os.listdir(src):
        s = src + "/" + name
        d = dst.rstrip("/") + "/" + name
        if os.stat(s)[0] & 0x4000:
            try:
                os.mkdir(d)
            except OSError:
                pass
            _copy(s, d)
        else:
            with open(s, "rb") as fi, open(d, "wb") as fo:
                while True:
                    chunk = fi.read(4096)
                    if not chunk:
                        break
                    fo.write(chunk)


if CFG.get("copy_out") is not None:  # read mode: copy a directory of the flash to the host
    _src, _dst = CFG["copy_out"]
    try:
        os.stat(_src)
    except OSError:
        print("SIM copied nothing: no", _src)
        sys.exit(0)
    _copy(_src, "/host" + _dst)
    print("SIM copied", _src)
    sys.exit(0)
if CFG.get("remove") is not None:  # edit mode: delete files from the flash, keep the rest
    for name in CFG["remove"]:
        os.remove("/" + name)
    print("SIM edited", CFG["remove"])
    sys.exit(0)
if CFG.get("provision"):
    _copy("/host" + CFG["provision"], "/")
    if CFG.get("board_overrides"):
        with open("/board.json") as f:
            board = json.load(f)
        board.update(CFG["board_overrides"])
        with open("/board.json", "w") as f:
            json.dump(board, f)
    print("SIM provisioned", os.listdir("/"))
    sys.exit(0)

_main = {"__name__": "__main__"}
for _file in ("/boot.py", "/main.py"):
    try:
        with open(_file) as f:
            _code = f.read()
    except OSError:
        continue
    exec(_code, _main)
print("SIM program ended: the board is at the REPL")
