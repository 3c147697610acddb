"""`tools/flash.py esp32`: a site config to a running ESP32 board.

Steps: build the image for the site and board (firmware/build.py: validates the config with
the agent's validator, refuses what the board cannot run, compiles the modules with mpy-cross);
check a --firmware file and write it with esptool (checking the chip); find the port; reset the
board and stop it in its boot window; check its MicroPython and .mpy version, chip and free space;
deploy (tools/flashing/deploy.py) and check every file by hash; reset; watch the serial output
until the agent says it started and, if the network allows, that its first batch was
acknowledged. The last line says what runs where.
"""

import json
import os
import tempfile
import time

from tools.flashing import deploy, firmware, ports, watch
from tools.flashing.errors import EXIT_USAGE, FlashError
from tools.flashing.link import BoardLink

# The agent needs PSRAM (docs/board.md, "RAM"): the default is the ESP32-S3 board with 8 MB of it.
DEFAULT_BOARD = "esp32-s3-devkitc-n8r8"


def _board_table(name):
    """A board table by name (firmware/boards/<name>.json) or by path to such a file."""
    try:
        from firmware import board_table
    except ImportError:
        board_table = None
    if name.endswith(".json") or os.sep in name:
        try:
            with open(name) as f:
                table = json.load(f)
        except (OSError, ValueError) as e:
            raise FlashError("cannot read the board table %s: %s" % (name, e), None,
                             EXIT_USAGE) from None  # fmt: skip
        errors = board_table.check(table, name) if board_table is not None else [
            "%s: %s: missing" % (name, k) for k in ("name", "title", "chip", "firmware",
                                                     "flash_mb") if k not in table]  # fmt: skip
        if errors:
            raise FlashError("bad board table:\n  " + "\n  ".join(errors), None, EXIT_USAGE)
        return table
    if board_table is None:
        raise FlashError("this checkout has no firmware/ (the board image builder)",
                         "update the checkout (git pull) and run ./run setup")
    try:
        return board_table.load(name)
    except board_table.BoardError as e:
        raise FlashError("unknown or broken board table %r: %s" % (name, "; ".join(e.errors)),
                         "boards: " + ", ".join(board_table.names()), EXIT_USAGE) from None


def build(args, table, ui, out_dir):
    """The image: built from the config (validated there), or a prebuilt --image folder."""
    if args.image:
        path = os.path.join(args.image, "manifest.json")
        try:
            with open(path) as f:
                manifest = json.load(f)
        except (OSError, ValueError) as e:
            raise FlashError("cannot read the image's %s: %s" % (path, e),
                             "give the folder `python -m firmware.build --out` made",
                             EXIT_USAGE) from None  # fmt: skip
        if manifest.get("board") != table["name"]:
            raise FlashError("the image in %s is for board %s, not %s" % (
                args.image, manifest.get("board"), table["name"]),
                "give --board %s, or build the image for this board" % manifest.get("board"),
                EXIT_USAGE)  # fmt: skip
        return manifest, args.image
    from agent.core.errors import ConfigError
    from firmware.build import build_image

    ui.step("check the config %s for board %s and build the image" % (args.config, table["name"]))
    try:
        manifest = build_image(args.config, table["name"], out_dir, secrets_dir=args.secrets)
    except ConfigError as e:
        raise FlashError("config error:\n  " + "\n  ".join(e.errors),
                         "fix the config and run the same command again; nothing was written "
                         "to any board", EXIT_USAGE) from None  # fmt: skip
    for w in manifest.get("warnings", []):
        ui.warn(w)
    code = [f for f in manifest["files"] if f["kind"] == "code"]
    ui.info("image %s: %d modules, romfs.img %d KB, MicroPython %s+ (.mpy v%s)" % (
        manifest["build"], len(code), manifest["romfs"]["size"] // 1024,
        manifest["micropython"]["min"], manifest["micropython"]["mpy_version"]))  # fmt: skip
    return manifest, out_dir


def _describe(info):
    rom = info.get("romfs")
    return "MicroPython %s (.mpy %d.%d) on %s; ROMFS %s; %d KB free" % (
        info["version"], info["mpy"] & 0xFF, (info["mpy"] >> 8) & 3, info["machine"],
        "%d KB" % (rom["size"] // 1024) if rom else "none",
        info["fs_free_blocks"] * info["fs_block"] // 1024)  # fmt: skip


def flash_one(args, table, manifest, image_dir, fw_info, port, ui):
    t0 = time.monotonic()
    if args.firmware:
        firmware.write(port, args.firmware, table, fw_info, args.erase, ui,
                       attempts=args.esptool_attempts)  # fmt: skip
    broker, devices = deploy.site_summary(image_dir)
    if ui.dry:
        ui.step("connect to %s, reset the board and stop it while it boots" % port)
        ui.step("check the chip is %s, MicroPython %s or later with .mpy v%s, and free space"
                % (manifest["chip"], manifest["micropython"]["min"],
                   manifest["micropython"]["mpy_version"]))  # fmt: skip
        code = [e for e in manifest["files"] if e["kind"] == "code"]
        rest = [e for e in manifest["files"] if e["kind"] != "code"]
        ui.step("write romfs.img (%d KB) to the ROMFS partition if the firmware has one, else "
                "its %d code files to /lib" % (manifest["romfs"]["size"] // 1024, len(code)))
        for e in rest:
            ui.step("write %s (%d bytes, %s)" % (e["dest"], e["size"], e["kind"]))
        ui.step("check every file by sha256 on the board; write /image.json last")
        ui.step("reset the board; watch its output for the agent starting (broker %s, %d "
                "devices)" % (broker, devices))  # fmt: skip
        return {"port": port, "ok": True, "note": "dry run"}
    link = BoardLink(port, ui, baud=args.baud, answer_s=args.answer_timeout)
    ui.step("connect to the board on %s" % port)
    link.open()
    try:
        link.stop_program()
        info = link.info()
        ui.info(_describe(info))
        deploy.check_board(manifest, info, port)
        plan = deploy.Plan(manifest, image_dir, info)
        if plan.romfs_too_small:
            ui.warn("the ROMFS partition is smaller than romfs.img: the code goes to /lib")
        on_board = link.listdir_tree("/")
        deploy.check_space(plan, info, on_board, args.wipe_data, port)
        result = deploy.deploy(link, plan, ui, wipe_data=args.wipe_data)
        ui.info("every file checked: %d written, %d already there%s" % (
            result["written"], result["skipped"],
            {"written": "; ROMFS written", "same": "; ROMFS unchanged", None: ""}[
                result["romfs"]]))  # fmt: skip
        if args.no_watch:
            link.reset()
            return {"port": port, "ok": True, "seconds": time.monotonic() - t0,
                    "note": "deployed; not watched", "info": info}  # fmt: skip
        ui.step("reset the board and watch it start")
        link.reset()
        w = watch.watch(link.read_available, lambda line: ui.info("board| " + line),
                        args.start_timeout, args.ack_timeout)  # fmt: skip
    finally:
        link.close()
    if w.problem is not None:
        raise FlashError("the board's files are all in place, but the agent did not start: "
                         + w.problem, "read the board's lines above (board| ...); for a config "
                         "problem fix the config and run again")  # fmt: skip
    if w.started is None:
        raise FlashError("the board's files are all in place, but it did not say the agent "
                         "started within %d s" % args.start_timeout,
                         "watch it with `picocom -b 115200 %s`; run again with a longer "
                         "--start-timeout if it is only slow" % port)  # fmt: skip
    note = "first batch acknowledged" if w.acked is not None else (
        "no acknowledgement within %d s: the network may be down here; the board keeps its "
        "readings until it can send them" % args.ack_timeout)  # fmt: skip
    line = ("done: %s: site %s runs site-agent %s (image %s) on %s with MicroPython %s; "
            "broker %s; %d devices; %s" % (port, manifest["site"], manifest["agent_version"],
                                          manifest["build"], manifest["board"], info["version"],
                                          broker, devices, note))  # fmt: skip
    ui.result(line)
    return {"port": port, "ok": True, "seconds": time.monotonic() - t0, "note": note,
            "info": info, "acked": w.acked is not None}  # fmt: skip


def _next_board(previous, ui, list_ports, n, total, poll_s=0.5):
    """Wait until the last board is unplugged and a board is plugged in."""
    ui.result("board %d of %d done: unplug it and plug in the next one (Ctrl-C to stop)"
              % (n, total))  # fmt: skip
    while any(dev == previous for dev, _ in ports.boards(list_ports)):
        time.sleep(poll_s)
    while True:
        found = ports.boards(list_ports)
        if found:
            return found[0][0]
        time.sleep(poll_s)


def _summary(results, ui):
    ok = [r for r in results if r["ok"]]
    ui.result("summary: %d board(s): %d done, %d failed" % (len(results), len(ok),
                                                            len(results) - len(ok)))
    for r in results:
        ui.result("  %-14s %-6s %s" % (r["port"], "done" if r["ok"] else "FAILED",
                                       ("%.0f s, " % r["seconds"] if "seconds" in r else "")
                                       + r["note"]))  # fmt: skip


def run(args, ui, list_ports=None, ask=ports._ask):
    if not args.config and not args.image:
        raise FlashError("give --config site.toml (or a prebuilt --image DIR)", None, EXIT_USAGE)
    table = _board_table(args.board)
    with tempfile.TemporaryDirectory(prefix="site-agent-image-") as tmp:
        out_dir = args.out or tmp
        manifest, image_dir = build(args, table, ui, out_dir)
        fw_info = None
        if args.firmware:
            ui.step("check the firmware file %s for %s" % (args.firmware, table["name"]))
            fw_info = firmware.check_image(args.firmware, table)
            ui.info("%s firmware, %d KB at 0x%x; partitions: %s" % (
                fw_info["chip"], fw_info["size"] // 1024, fw_info["offset"],
                ", ".join(fw_info["partitions"])))  # fmt: skip
        elif args.erase:
            raise FlashError("--erase needs --firmware FILE (erasing removes MicroPython)", None,
                             EXIT_USAGE)  # fmt: skip
        targets = list(args.port or [None])
        total = max(args.repeat or 1, len(targets))
        results = []
        port = None
        for i in range(total):
            try:
                if i < len(targets) and (i == 0 or targets[i] is not None):
                    try:
                        port = ports.choose(targets[i], list_ports, ask)
                    except FlashError:
                        if not ui.dry:
                            raise
                        port = "<the board's port>"  # a dry run needs no board plugged in
                else:
                    port = _next_board(port, ui, list_ports, i, total)
            except KeyboardInterrupt:
                break
            try:
                results.append(flash_one(args, table, manifest, image_dir, fw_info, port, ui))
            except FlashError as e:
                if total == 1:
                    raise
                ui.result(e.render())
                results.append({"port": port, "ok": False, "note": e.message.split("\n")[0]})
        if total > 1:
            _summary(results, ui)
    failed = [r for r in results if not r["ok"]]
    return 1 if failed or len(results) < total else 0


def add_parser(sub):
    p = sub.add_parser("esp32", help="build the image for a site and deploy it to an ESP32",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    p.add_argument("--config", help="the site config (TOML)")
    p.add_argument("--board", default=DEFAULT_BOARD,
                   help="board table in firmware/boards/ (default %s)" % DEFAULT_BOARD)
    p.add_argument("--port", action="append",
                   help="serial port; give several to write them all (default: the one board "
                   "found on USB)")  # fmt: skip
    p.add_argument("--repeat", type=int, metavar="N",
                   help="write N boards one after another (unplug one, plug in the next)")
    p.add_argument("--firmware", metavar="FILE",
                   help="write this MicroPython firmware (.bin) first, with esptool")
    p.add_argument("--erase", action="store_true",
                   help="with --firmware: erase the whole flash first (files and data too)")
    p.add_argument("--secrets", metavar="DIR", help="folder with the config's secret files")
    p.add_argument("--image", metavar="DIR", help="deploy this prebuilt image instead of "
                   "building one (python -m firmware.build --out DIR)")  # fmt: skip
    p.add_argument("--out", metavar="DIR", help="keep the built image here")
    p.add_argument("--wipe-data", action="store_true",
                   help="delete /data on the board (the queue of unsent readings)")
    p.add_argument("--no-watch", action="store_true",
                   help="reset after the deploy but do not wait for the agent")
    p.add_argument("--start-timeout", type=float, default=90.0,
                   help="seconds to wait for the agent to start (default 90)")
    p.add_argument("--ack-timeout", type=float, default=120.0,
                   help="seconds to wait for the first acknowledged batch (default 120)")
    p.add_argument("--answer-timeout", type=float, default=10.0,
                   help="seconds to wait for the REPL to answer (default 10)")
    p.add_argument("--baud", type=int, default=115200, help="REPL speed (default 115200)")
    p.add_argument("--esptool-attempts", type=int, default=7,
                   help="esptool connection attempts (default 7)")
    return p
