"""Which serial port is the board: found by USB vendor and product id.

The USB bridges ESP32 boards carry, and the S3's own USB (ids from pyserial's list_ports,
checked against esptool's and the chips' sources):

    10c4:ea60  Silicon Labs CP210x        (ESP32-DevKitC, most WROOM boards)
    1a86:7523  WCH CH340                  (cheap DevKit clones, WT32-ETH01 programmers)
    1a86:55d4  WCH CH9102                 (newer DevKitC and S3 boards; esptool names it)
    0403:6001  FTDI FT232R                (USB-serial cables, Olimex programmers)
    0403:6015  FTDI FT231X / FT-X
    0403:6010  FTDI FT2232                (ESP-Prog, ESP-WROVER-KIT)
    303a:1001  Espressif USB Serial/JTAG  (ESP32-S3/C3 built-in USB; esptool's
                                           ESPRESSIF_VID / USB_JTAG_SERIAL_PID)
    303a:4001  Espressif TinyUSB CDC      (MicroPython on the S3's native USB: 0x4000 | CDC)

`list_ports` is a seam: tests give a function returning fake port records (objects with
.device, .vid, .pid, .description, .serial_number).
"""

import os
import re
import sys

from tools.flashing.errors import FlashError

BRIDGES = {
    (0x10C4, 0xEA60): "CP210x",
    (0x1A86, 0x7523): "CH340",
    (0x1A86, 0x55D4): "CH9102",
    (0x0403, 0x6001): "FT232R",
    (0x0403, 0x6015): "FT231X",
    (0x0403, 0x6010): "FT2232",
    (0x303A, 0x1001): "ESP32 USB Serial/JTAG",
    (0x303A, 0x4001): "ESP32-S3 native USB",
}


def _comports():
    from serial.tools import list_ports

    return list_ports.comports()


def boards(list_ports=None):
    """[(device, label)] of the serial ports whose USB ids are an ESP32's, sorted by device."""
    found = []
    for p in (list_ports or _comports)():
        kind = BRIDGES.get((getattr(p, "vid", None), getattr(p, "pid", None)))
        if kind is not None:
            serial = getattr(p, "serial_number", None)
            found.append((p.device, kind + (" serial " + serial if serial else "")))
    return sorted(found)


def _ask(choices):
    """Ask at the terminal which board to use; None when nobody can be asked."""
    if not sys.stdin.isatty():
        return None
    print("Several boards are plugged in:")
    for i, (dev, label) in enumerate(choices, 1):
        print("  %d) %s  (%s)" % (i, dev, label))
    while True:
        try:
            answer = input("Which one? [1-%d] " % len(choices)).strip()
        except EOFError:
            return None
        if answer.isdigit() and 1 <= int(answer) <= len(choices):
            return choices[int(answer) - 1][0]


def choose(port=None, list_ports=None, ask=_ask):
    """The port to use: `port` when given (it must exist), else the one board found, else ask."""
    if port:
        if "://" in port or os.path.exists(port) or re.fullmatch(r"COM\d+", port):
            return port  # (Windows ports are names, not paths)
        seen = boards(list_ports)
        raise FlashError(
            "no serial port %s" % port,
            "plug the board in (a data cable, not a charge-only one) and check the name"
            + (": boards found now: " + ", ".join(d for d, _ in seen) if seen else ""),
        )
    found = boards(list_ports)
    if not found:
        others = [p.device for p in (list_ports or _comports)()]
        raise FlashError(
            "no ESP32 board found on USB (looked for CP210x, CH340/CH9102, FTDI and the "
            "ESP32-S3's own USB)"
            + ("; other serial ports: " + ", ".join(others) if others else ""),
            "plug the board in with a data cable; if it still does not show, install the "
            "bridge's driver, or give the port with --port",
        )
    if len(found) == 1:
        return found[0][0]
    picked = ask(found)
    if picked is None:
        raise FlashError("%d boards are plugged in: %s" % (len(found), ", ".join(
            "%s (%s)" % f for f in found)), "say which one with --port, or list several ports "
            "with --port A --port B to write them all")  # fmt: skip
    return picked
