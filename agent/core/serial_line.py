"""Serial line settings: the one table of defaults, and the line's timing (portable).

Read by the config (a device's [devices.serial] is filled from its driver's row, so `check`
shows what the agent will use), by the host transport (agent/host/serial_port.py) and the board
UART (agent/board/uart.py), which merge LINE under what they are given, and by each serial
driver, which starts from its row. docs/config.md shows the table; a test keeps them in step.
"""

# Every serial line, unless the driver's row or the device's config says otherwise.
LINE = {
    "baud": 2400,
    "bytesize": 8,
    "parity": "N",
    "stopbits": 1,
    "dtr": None,  # None: leave the line as the OS sets it
    "rts": None,
    "read_timeout": 1.0,  # seconds: the longest wait for a reply (line protocols: per command)
    "gap_ms": 0,  # quiet time kept between the end of one exchange and the next request
    "turnaround_ms": 100,  # the longest the device takes to start its reply, as first assumed
}

# Each serial driver's own line: what its devices use out of the box.
DRIVERS = {
    # NUT blazer_ser: 2400 8N1, cablepower "normal" = DTR on, RTS off.
    "megatec": {"baud": 2400, "dtr": True, "rts": False},
    "voltronic": {"baud": 2400},
    # The VE.Direct-USB interface powers its isolated side from DTR and RTS. read_timeout is the
    # longest quiet between bytes of the stream (a block comes about every second).
    "vedirect": {"baud": 19200, "dtr": True, "rts": True, "read_timeout": 2.0},
    # Modbus times each try from turnaround_ms and the frames' length (drivers/modbus.py);
    # read_timeout only caps a try.
    "modbus": {"baud": 115200, "read_timeout": 0.5, "gap_ms": 5},
    "pylontech": {"baud": 9600, "gap_ms": 5},
}

KEYS = tuple(sorted(LINE))


def driver_defaults(driver):
    """LINE with the driver's row over it (a new dict); LINE alone for a driver not listed."""
    out = dict(LINE)
    out.update(DRIVERS.get(driver) or {})
    return out


def char_s(settings):
    """Seconds one character takes on the line: start bit, data bits, parity bit, stop bits."""
    parity = 0 if settings.get("parity", "N") in ("N", None) else 1
    bits = 1 + settings.get("bytesize", 8) + parity + settings.get("stopbits", 1)
    return bits / settings.get("baud", LINE["baud"])
