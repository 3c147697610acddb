"""Writing MicroPython itself to a board (`--firmware FILE [--erase]`), with esptool.

Before anything is written, the file is checked as the image esptool would write:
- `esptool image-info` must read it and name the board table's chip ("Detected image type");
- it must be a merged image, as micropython.org publishes them (`esptool merge-bin`): the
  bootloader at the start (the chip's flash offset: 0x1000 on the ESP32, 0x0 on the S2, S3, C3
  and later; a board table may say otherwise with "flash_offset"), the partition table at flash
  0x8000 (entries 0xAA 0x50 ..., MD5 entry 0xEB 0xEB), and the application image (magic 0xE9)
  where the table's app partition starts;
- it must fit the board's flash (flash_mb in the board table).
Then the chip on the port is asked who it is (esptool's chip detection), and must be the table's.
No chip answers in CI: the file checks run there on images made with esptool's own image classes
and merge-bin; the chip dialogue (detect, erase, write) is only exercised for its errors (no
board in its bootloader on the port). docs/flash.md says so.
"""

import os
import re
import subprocess
import sys

from tools.flashing.errors import FlashError

FLASH_OFFSET = {"esp32": 0x1000, "esp32s2": 0x1000}  # every later chip: 0x0
PARTITION_TABLE = 0x8000
IMAGE_MAGIC = 0xE9
_CHIP = re.compile(r"(?:Chip type:|Chip is|Detected image type:)\s*(ESP32(?:-?[A-Z]\d+)?)", re.I)
_PROGRESS = re.compile(r"Writing at 0x[0-9a-f]+.*?(\d+(?:\.\d+)?)\s*%", re.I)


def chip_name(text):
    """'ESP32-S3' / 'ESP32-D0WD-V3' / 'esp32s3' -> 'esp32s3' / 'esp32' / 'esp32s3'."""
    m = re.match(r"esp32(?:-?(s2|s3|c2|c3|c5|c6|c61|h2|p4))?(?![a-z0-9])", text.strip().lower())
    if m is None:
        m = re.match(r"esp32", text.strip().lower())
        return "esp32" if m else text.strip().lower()
    return "esp32" + (m.group(1) or "")


def esptool(*args):
    return subprocess.run([sys.executable, "-m", "esptool", *args], capture_output=True,
                          text=True, check=False)  # fmt: skip


def _partitions(data, base):
    """[(label, type, subtype, offset, size)] from the partition table in a merged image."""
    start = PARTITION_TABLE - base
    out = []
    for off in range(start, start + 0xC00, 32):
        entry = data[off : off + 32]
        if len(entry) < 32 or entry[:2] != b"\xaa\x50":
            break
        label = entry[12:28].split(b"\0", 1)[0].decode("ascii", "replace")
        out.append((label, entry[2], entry[3], int.from_bytes(entry[4:8], "little"),
                    int.from_bytes(entry[8:12], "little")))  # fmt: skip
    return out


def check_image(path, table):
    """Check a firmware file against the board table; return what was found (a dict)."""
    chip = table["chip"]
    base = table.get("flash_offset", FLASH_OFFSET.get(chip, 0))
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise FlashError("cannot read the firmware file %s: %s" % (path, e.strerror or e),
                         "give the path of the .bin from micropython.org/download") from None
    r = esptool("image-info", path)
    m = _CHIP.search(r.stdout)
    if r.returncode != 0 or m is None:
        reason = (r.stderr.strip() or r.stdout.strip()).splitlines()[-1:] or ["?"]
        raise FlashError("%s is not an ESP32 firmware image (esptool image-info: %s)"
                         % (path, reason[0]),
                         "download the .bin for %s from micropython.org/download/%s"
                         % (table["title"], table["firmware"]))  # fmt: skip
    found = chip_name(m.group(1))
    if found != chip:
        raise FlashError("%s is firmware for an %s; the board %s is an %s"
                         % (path, found, table["name"], chip),
                         "download %s (micropython.org/download/%s)"
                         % (table["firmware"], table["firmware"]))  # fmt: skip
    parts = _partitions(data, base)
    apps = [p for p in parts if p[1] == 0]
    if data[:1] != bytes([IMAGE_MAGIC]) or not apps:
        raise FlashError("%s is not a complete firmware image (no bootloader and partition "
                         "table at flash 0x%x and 0x%x)" % (path, base, PARTITION_TABLE),
                         "use the merged .bin micropython.org publishes, not an app-only "
                         "image")  # fmt: skip
    app_at = apps[0][3] - base
    if data[app_at : app_at + 1] != bytes([IMAGE_MAGIC]):
        raise FlashError("%s: the partition table puts the application at 0x%x, and there is "
                         "no image there" % (path, apps[0][3]), "download the firmware again")
    flash = table["flash_mb"] * 1024 * 1024
    if base + len(data) > flash:
        raise FlashError("%s is %d KB; the board has %d MB of flash" % (path, len(data) // 1024,
                         table["flash_mb"]), "use the firmware for this board")  # fmt: skip
    return {"chip": found, "offset": base, "size": len(data),
            "partitions": [p[0] for p in parts],
            "romfs": any(p[0] == "romfs" for p in parts)}  # fmt: skip


def _esptool_live(args, ui, label):
    """Run esptool against the chip, turning its "Writing at ... (n %)" into our progress."""
    cmd = [sys.executable, "-m", "esptool", *args]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = []
    for line in p.stdout:
        out.append(line)
        m = _PROGRESS.search(line)
        if m:
            ui.progress(label, float(m.group(1)), 100)
    p.wait()
    return p.returncode, "".join(out)


def _not_in_bootloader(port, text):
    last = [ln for ln in text.strip().splitlines() if ln.strip()][-3:]
    return FlashError(
        "no ESP32 bootloader answered on %s (%s)" % (port, " / ".join(s.strip() for s in last)),
        "hold the board's BOOT button, press and release EN (RST), release BOOT, and run "
        "again; check the cable is a data cable",
    )


def detect_chip(port, attempts=7):
    code, text = 0, ""
    r = esptool("--port", port, "--connect-attempts", str(attempts), "read-mac")
    code, text = r.returncode, r.stdout + r.stderr
    m = _CHIP.search(text)
    if code != 0 or m is None:
        raise _not_in_bootloader(port, text)
    return chip_name(m.group(1)), m.group(1)


def write(port, path, table, info, erase, ui, attempts=7):
    """Check the chip, optionally erase, write the firmware. `info` is check_image's result."""
    chip = table["chip"]
    ui.step("ask the chip on %s what it is (esptool)" % port)
    if not ui.dry:
        found, described = detect_chip(port, attempts)
        if found != chip:
            raise FlashError("the board on %s is an %s (%s); the board table %s says %s"
                             % (port, found, described, table["name"], chip),
                             "plug in the right board, or give the right --board")
    if erase:
        ui.step("erase the whole flash (the board's files and data go too)")
        if not ui.dry:
            code, text = _esptool_live(["--chip", chip, "--port", port, "erase-flash"], ui,
                                       "erase")  # fmt: skip
            if code != 0:
                raise _not_in_bootloader(port, text)
    ui.step("write %s (%d KB, %s) at 0x%x" % (os.path.basename(path), info["size"] // 1024,
                                                chip, info["offset"]))  # fmt: skip
    if ui.dry:
        return
    code, text = _esptool_live(["--chip", chip, "--port", port, "--baud", "460800",
                                "write-flash", hex(info["offset"]), path], ui,
                               "firmware")  # fmt: skip
    if code != 0:
        if "Failed to connect" in text or "No serial data" in text:
            raise _not_in_bootloader(port, text)
        raise FlashError("writing the firmware failed:\n" + text.strip()[-600:],
                         "run again with --erase; if it fails again, try another cable or a "
                         "lower speed")  # fmt: skip
