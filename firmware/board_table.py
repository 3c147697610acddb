"""Board tables: one JSON file per board in firmware/boards/ (host side, CPython).

A board is data, not code: adding one is a new file here. Each table holds

    name, title, chip, firmware     what it is and which MicroPython firmware it runs
    flash_mb, psram, heap_kb, fs_kb  what it has: heap_kb is the Python heap free after the
                                     network starts; fs_kb the littlefs partition
    network                          {"kind": "wifi"} or {"kind": "ethernet", "phy", "phy_addr",
                                     "mdc", "mdio", "power", "ref_clk", "ref_clk_mode": "in"|"out"}
    repl_uart                        the UART that carries MicroPython's REPL (USB serial)
    uarts                            {"uart<n>": {"tx", "rx", "de"?, "de_active"?}}: RS-232 through
                                     a MAX3232 or RS-485 through a MAX485 ("de" drives DE and /RE)
    led, button                      {"pin", "active": 0|1, "pull": "up"|"down"|null} or null
    sources, notes                   where the pins were checked, and what a technician must know

`load(name)` returns the checked table or raises BoardError naming the file and the key.
The image builder copies the table to the board as /board.json; the firmware reads it at boot.
"""

import json
import os

from agent.core.errors import ConfigError

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "boards")
_REQUIRED = ("name", "title", "chip", "firmware", "flash_mb", "psram", "heap_kb", "fs_kb",
             "network", "repl_uart", "uarts", "led", "button", "sources")  # fmt: skip
_PIN_KEYS = ("tx", "rx", "de", "de_active", "dtr_pin", "rts_pin")
_ETH_KEYS = ("phy", "phy_addr", "mdc", "mdio", "power", "ref_clk", "ref_clk_mode")
PHYS = ("LAN8720", "LAN8710", "IP101", "RTL8201", "DP83848", "KSZ8041", "KSZ8081")


class BoardError(ConfigError):
    """A board name or table that cannot be used."""


def names():
    return sorted(f[:-5] for f in os.listdir(HERE) if f.endswith(".json"))


def _is_pin(v):
    return isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 48


def check(table, where):
    """Every problem of one table, as 'where: key: what' lines."""
    errs = []

    def bad(key, what):
        errs.append("%s: %s: %s" % (where, key, what))

    for key in _REQUIRED:
        if key not in table:
            bad(key, "missing")
    if errs:
        return errs
    for key in ("flash_mb", "heap_kb", "fs_kb"):
        if not isinstance(table[key], int) or table[key] <= 0:
            bad(key, "expected a positive integer")
    net = table["network"]
    kind = net.get("kind") if isinstance(net, dict) else None
    if kind == "ethernet":
        for key in _ETH_KEYS:
            if key not in net:
                bad("network." + key, "missing for an Ethernet board")
        if net.get("phy") not in PHYS:
            bad("network.phy", "expected one of " + ", ".join(PHYS))
        if net.get("ref_clk_mode") not in ("in", "out"):
            bad("network.ref_clk_mode", 'expected "in" or "out"')
        for key in ("mdc", "mdio", "ref_clk"):
            if not _is_pin(net.get(key)):
                bad("network." + key, "expected a GPIO number")
    elif kind != "wifi":
        bad("network.kind", 'expected "wifi" or "ethernet"')
    uarts = table["uarts"]
    if not isinstance(uarts, dict) or not uarts:
        bad("uarts", "expected a table of uart<n> -> pins")
        uarts = {}
    for port, pins in uarts.items():
        if not (port.startswith("uart") and port[4:].isdigit()):
            bad("uarts." + port, 'expected a name "uart<n>"')
        for key, v in (pins or {}).items():
            if key not in _PIN_KEYS:
                bad("uarts.%s.%s" % (port, key), "unknown pin option")
            elif key != "de_active" and not _is_pin(v):
                bad("uarts.%s.%s" % (port, key), "expected a GPIO number")
        for key in ("tx", "rx"):
            if not _is_pin((pins or {}).get(key)):
                bad("uarts.%s.%s" % (port, key), "missing GPIO number")
    if table["repl_uart"] not in uarts:
        bad("repl_uart", "expected one of the board's uarts")
    for key in ("led", "button"):
        v = table[key]
        if v is not None and not (isinstance(v, dict) and _is_pin(v.get("pin"))
                                  and v.get("active") in (0, 1)):  # fmt: skip
            bad(key, 'expected null or {"pin": <gpio>, "active": 0|1}')
    if not table["sources"]:
        bad("sources", "say where the pins were checked")
    return errs


def load(name):
    """The checked table of board `name`; BoardError for an unknown name or a bad table."""
    path = os.path.join(HERE, name + ".json")
    if not os.path.isfile(path):
        raise BoardError("board %r: no such board table (have: %s)" % (name, ", ".join(names())))
    try:
        with open(path) as f:
            table = json.load(f)
    except ValueError as e:
        raise BoardError("%s: not valid JSON: %s" % (path, e)) from None
    errs = check(table, path)
    if table.get("name") != name:
        errs.append("%s: name: expected %r (the file name)" % (path, name))
    if errs:
        raise BoardError(errs)
    return table
