"""Put a built image (firmware/build.py: romfs.img, files/, manifest.json) on a board over its
REPL, check every file by hash, and never leave a half-written image that looks complete.

Order, and why:
1. check the board can run the image: chip, MicroPython version, .mpy version, room on its
   filesystem (before anything is written);
2. remove /image.json: boot.py runs code only when /image.json names the build found in /rom or
   /lib, so from here until step 6 the board runs nothing of ours, old or new;
3. the code: romfs.img into the ROMFS partition when the firmware has one (else the same .mpy
   files into /lib), skipped when the partition already holds it (its hash);
4. the other files (boot.py, main.py, board.json, site.json, secrets, certificates), each
   written as <path>.new and renamed, skipped when the board's copy has the right hash: a run
   after a dropped cable writes only what is missing;
5. files an earlier image left in /lib, /secrets and /certs are removed (never /data, the queue);
6. every file's hash is checked on the board, then /image.json is written and checked, last.
"""

import hashlib
import json
import os

from tools.flashing.errors import FlashError
from tools.flashing.firmware import chip_name

OURS = ("/lib/", "/secrets/", "/certs/")


def _version_tuple(text):
    out = []
    for part in text.split("."):
        digits = "".join(c for c in part if c.isdigit())
        out.append(int(digits) if digits else 0)
    return tuple(out + [0] * (3 - len(out)))


def check_board(manifest, info, port):
    """Refuse a board that cannot run the image, with what to do about it."""
    chip = chip_name(info["machine"].rsplit(" with ", 1)[-1])
    if chip != manifest["chip"]:
        raise FlashError(
            "the board on %s is an %s (%s); the image is for %s (%s)"
            % (port, chip, info["machine"], manifest["board"], manifest["chip"]),
            "plug in the right board, or build for this one with --board",
        )
    want = manifest["micropython"]
    mpy = info["mpy"]
    has = "%d.%d" % (mpy & 0xFF, (mpy >> 8) & 3)
    if has != want["mpy_version"] or _version_tuple(info["version"]) < _version_tuple(
        want["min"]
    ):
        raise FlashError(
            "the board runs MicroPython %s (.mpy v%s); the image needs MicroPython %s or later "
            "with .mpy v%s" % (info["version"], has, want["min"], want["mpy_version"]),
            "write new firmware first: --firmware %s-<date>-v%s.bin --erase (from "
            "micropython.org/download/%s)" % (manifest["firmware"], want["min"],
                                             manifest["firmware"]),  # fmt: skip
        )


class Plan:
    """What will be written where, from the manifest and what the board has."""

    def __init__(self, manifest, image_dir, info):
        self.manifest = manifest
        self.image_dir = image_dir
        rom = info.get("romfs")
        size = manifest["romfs"]["size"]
        self.use_romfs = rom is not None and size <= rom["size"]
        self.romfs_too_small = rom is not None and size > rom["size"]
        self.entries = [e for e in manifest["files"]
                        if not (self.use_romfs and e["kind"] == "code")]  # fmt: skip
        self.last = [e for e in self.entries if e["dest"] == "/image.json"]
        self.files = [e for e in self.entries if e["dest"] != "/image.json"]
        # Code first, then the rest: a drop leaves config that matches what is already there.
        self.files.sort(key=lambda e: (e["kind"] != "code", e["dest"]))

    def data(self, entry):
        with open(os.path.join(self.image_dir, entry["path"]), "rb") as f:
            data = f.read()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise FlashError("%s in the image does not match its manifest"
                             % entry["path"], "build the image again")  # fmt: skip
        return data

    def romfs_image(self):
        with open(os.path.join(self.image_dir, self.manifest["romfs"]["path"]), "rb") as f:
            return f.read()

    def stale(self, on_board):
        wanted = {e["dest"] for e in self.entries}
        return sorted(p for p in on_board if p.startswith(OURS) and p not in wanted
                      and not p.endswith(".new"))  # fmt: skip


def _blocks(n, bs):
    return max(1, -(-n // bs))


def check_space(plan, info, on_board, wipe_data, port):
    """Refuse before writing when the files cannot fit (littlefs counted in whole blocks)."""
    bs = info["fs_block"]
    free = info["fs_free_blocks"]
    write = [(e["dest"], e["size"]) for e in plan.entries]
    reclaim = sum(_blocks(on_board[p], bs) for p, _ in write if p in on_board)
    reclaim += sum(_blocks(on_board[p], bs) for p in plan.stale(on_board))
    reclaim += sum(_blocks(s, bs) for p, s in on_board.items() if p.endswith(".new"))
    data = sum(s for p, s in on_board.items() if p.startswith("/data/"))
    if wipe_data:
        reclaim += sum(_blocks(s, bs) for p, s in on_board.items() if p.startswith("/data/"))
    need = sum(_blocks(s, bs) for _, s in write) + max([_blocks(s, bs) for _, s in write] or [0])
    margin = 2
    if need > free + reclaim - margin:
        hint = "use a board with more flash"
        if data and not wipe_data:
            hint = ("/data holds %d KB of the queue (readings not sent yet): let the board send "
                    "them, or run again with --wipe-data to delete them" % (data // 1024))
        raise FlashError(
            "the board's filesystem on %s is too small for the image: %d KB free (%d KB more "
            "once old files go), the image needs %d KB" % (port, free * bs // 1024,
                                                          reclaim * bs // 1024,
                                                          need * bs // 1024), hint)  # fmt: skip


def deploy(link, plan, ui, wipe_data=False):
    """Steps 2-6 above. Returns {"written": n, "skipped": n, "romfs": "written"|"same"|None}."""
    out = {"written": 0, "skipped": 0, "romfs": None}
    link.remove(["/image.json"])
    if wipe_data:
        ui.step("delete /data (the queue) as asked")
        files = link.listdir_tree("/data")
        link.remove(sorted(files))
    if plan.use_romfs:
        image = plan.romfs_image()
        want = hashlib.sha256(image).hexdigest()
        if link.romfs_sha256(len(image)) == want:
            ui.info("ROMFS partition already holds this code")
            out["romfs"] = "same"
        else:
            ui.step("write the code to the ROMFS partition (%d KB)" % (len(image) // 1024))
            link.romfs_write(image, link.info_cache["romfs"],
                             lambda n: ui.progress("romfs.img", n, len(image)))  # fmt: skip
            if link.romfs_sha256(len(image)) != want:
                raise FlashError("the ROMFS partition does not read back as written",
                                 "run again; if it repeats, the flash may be worn: "
                                 "--firmware FILE --erase")  # fmt: skip
            out["romfs"] = "written"
    have = link.hashes([e["dest"] for e in plan.files])
    todo = [e for e in plan.files if have.get(e["dest"]) != e["sha256"]]
    out["skipped"] = len(plan.files) - len(todo)
    if out["skipped"]:
        ui.info("%d file(s) already on the board with the right hash" % out["skipped"])
    total = sum(e["size"] for e in todo)
    if todo:
        ui.step("write %d file(s), %d KB" % (len(todo), max(1, total // 1024)))
    done = 0
    for e in todo:
        data = plan.data(e)
        base = done
        link.write_file(e["dest"], data,
                        lambda n, b=base: ui.progress("files", b + n, total))  # fmt: skip
        done += len(data)
        out["written"] += 1
    on_board = link.listdir_tree("/")
    stale = plan.stale(on_board) + sorted(p for p in on_board if p.endswith(".new"))
    if stale:
        ui.info("remove %d file(s) an earlier image left" % len(stale))
        link.remove(stale)
    ui.step("check every file on the board by hash")
    have = link.hashes([e["dest"] for e in plan.files])
    bad = [e["dest"] for e in plan.files if have.get(e["dest"]) != e["sha256"]]
    if bad:
        raise FlashError("%d file(s) on the board do not match the image: %s"
                         % (len(bad), ", ".join(bad[:5])),
                         "run again; it rewrites what does not match")  # fmt: skip
    for e in plan.last:
        link.write_file(e["dest"], plan.data(e))
        if link.hashes([e["dest"]]).get(e["dest"]) != e["sha256"]:
            raise FlashError("%s did not read back as written" % e["dest"], "run again")
    return out


def site_summary(image_dir):
    """(broker, devices) from the image's compiled site config, for the last line."""
    try:
        with open(os.path.join(image_dir, "files", "site.json")) as f:
            site = json.load(f)
    except (OSError, ValueError):
        return "?", 0
    brokers = (site.get("uplink") or {}).get("brokers") or []
    broker = "none"
    if brokers:
        b = brokers[0]
        broker = "%s:%s" % (b.get("host"), b.get("port", 8883 if not b.get("insecure") else 1883))
    devices = [d for d in site.get("devices", []) if d.get("enabled", True)]
    return broker, len(devices)
