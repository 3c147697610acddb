"""The board program (MicroPython): /main.py calls start(), which never returns on a board.

Boot, in order:
 1. the board table (/board.json) and the boot record (/data/boot.json: boot count, the reset
    cause, boot-loop detection, agent/board/bootinfo.py); the first log line names both;
 2. the boot window (board "boot_window_s", 3 s): the LED blinks fast; Ctrl-C on the REPL UART
    now stops the program (the watchdog is not running yet), the safe-mode button held now
    asks for safe mode;
 3. the site config (/site.json), validated by the agent's own validator with its secrets read
    from /secrets; then the validator's modules are dropped from memory (boot only);
 4. safe mode (firmware/safe.py) instead of the agent when the button was held, the boot record
    shows a boot loop, or the config does not validate: the console and a status message
    upstream only, never a crash loop; the console says why;
 5. otherwise the agent (firmware/runner.py): network, store, drivers, alarms, uplink, console,
    watchdog, until power is lost.
A fatal error (anything that escapes the agent) is logged with its traceback and resets the
board (machine.reset(): reset cause "hard" on the ESP32), which the boot record counts.
"""

import gc
import sys

from agent import __version__
from agent.core.log import DEBUG, INFO, Log

BOARD_FILE = "/board.json"
SITE_FILE = "/site.json"
BOOT_FILE = "/data/boot.json"
# Imported to check /site.json, released after (firmware/build.py and fit.py count on this list).
BOOT_ONLY = ("agent.core.config.validate", "agent.core.config.devices",
             "agent.core.config.tables", "agent.core.config.checker")  # fmt: skip
DEFAULT_SAFE = {"resets": 5, "window_s": 600, "retry_s": 3600}


def _read_json(path):
    import json

    with open(path) as f:
        return json.load(f)


def _read_text(path):
    with open(path) as f:
        return f.read()


def load_config():
    """(SiteConfig, None) or (None, [error lines]) for /site.json; never raises."""
    try:
        from agent.core.config.validate import validate
        from agent.core.errors import ConfigError

        try:
            data = _read_json(SITE_FILE)
        except (OSError, ValueError) as e:
            return None, ["%s: cannot read: %r" % (SITE_FILE, e)]
        try:
            return validate(data, source=SITE_FILE, read_file=_read_text), None
        except ConfigError as e:
            return None, list(e.errors)
    finally:
        release(BOOT_ONLY)


def release(names):
    """Forget modules (boot only): out of sys.modules and off their package, so the GC can take
    their code and tables back."""
    for name in names:
        sys.modules.pop(name, None)
        pkg, _, attr = name.rpartition(".")
        parent = sys.modules.get(pkg)
        if parent is not None and attr in parent.__dict__:
            delattr(parent, attr)
    gc.collect()


def _say(line):
    print(line)


async def _boot(machine, network_mod, log):
    import asyncio

    from agent.board.bootinfo import BootRecord
    from agent.core.store.fsio import OsFs
    from firmware import hw

    try:
        board = _read_json(BOARD_FILE)
    except (OSError, ValueError) as e:
        board = {"name": "?", "uarts": {}, "network": {"kind": "wifi"}}
        board_error = "%s: %r" % (BOARD_FILE, e)
    else:
        board_error = None
    if board.get("log_level") == "debug":
        log.level = DEBUG
    cause = hw.reset_cause(machine)
    safe = dict(DEFAULT_SAFE)
    safe.update(board.get("safe_mode") or {})
    fs = OsFs()
    try:
        fs.mkdir("/data")
    except OSError:
        pass
    rec = BootRecord(BOOT_FILE, fs, safe["resets"], safe["window_s"])
    boot = rec.start(cause)
    log.info("agent", "boot", version=__version__, board=board.get("name"), reset=cause,
             boots=boot["count"], recent=",".join(boot["recent"]), code=sys.path[0])  # fmt: skip
    led = hw.Led(machine, board.get("led"))
    led_task = asyncio.create_task(led.run())
    window = float(board.get("boot_window_s", 3))
    if window > 0:
        _say("site-agent: starting in %gs (Ctrl-C: REPL; hold the button: safe mode)" % window)
    held = await hw.button_held(machine, board.get("button"), window, led)
    reasons = []
    if board_error:
        reasons.append("board table unreadable: " + board_error)
    if held:
        reasons.append("safe-mode button held at boot")
    if boot["loop"]:
        reasons.append("boot loop: %d resets within %d s of running (%s)"
                       % (safe["resets"], safe["window_s"], ",".join(boot["recent"])))  # fmt: skip
    cfg, errors = load_config()
    if errors:
        reasons.append("config does not validate: " + errors[0]
                       + (" (+%d more)" % (len(errors) - 1) if len(errors) > 1 else ""))
    if reasons:
        if boot["loop"]:
            rec.clear()
        from firmware import safe as safe_mode

        led.pattern = "safe"
        await safe_mode.run(reasons, cfg, errors or [], board, boot, log, machine, network_mod,
                            retry_s=safe["retry_s"] if boot["loop"] and not held else None)
        return
    from firmware.runner import run_agent

    led.task = led_task  # keeps blinking; run_agent switches the pattern
    await run_agent(cfg, board, boot, log, machine, network_mod, led, rec)


def start(machine=None, network_mod=None):
    """Run the agent (or safe mode) until the board loses power. Ctrl-C before the watchdog
    starts ends it (back to the REPL); any other escape resets the board."""
    import asyncio

    if machine is None:
        import machine
    if network_mod is None:
        try:
            import network as network_mod
        except ImportError:
            network_mod = None
    log = Log(write=_say, level=INFO)
    try:
        asyncio.run(_boot(machine, network_mod, log))
    except KeyboardInterrupt:
        _say("site-agent: stopped by Ctrl-C; if the watchdog is running the board resets soon")
        raise
    except BaseException as e:
        log.error("agent", "fatal error; resetting the board", error=repr(e))
        show = getattr(sys, "print_exception", None)  # MicroPython's traceback printer
        if show is not None:
            show(e)
    machine.reset()
