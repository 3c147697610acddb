"""Voltronic / Axpert hybrid inverter driver (portable): QPIGS once per poll.

Frames are CRC-16/XMODEM with the escaped-byte rule (drivers/proto/voltronic.py). The inverter
answers a command it does not know with "(NAK" + CRC, which is a ParseError naming the refusal.
2400 8N1 as the inverters' RS-232 port runs; DTR/RTS left as the OS sets them (the USB-serial
cables shipped with them need neither).
"""

from agent.core.serial_line import driver_defaults
from drivers.base import BETA
from drivers.proto import voltronic as proto
from drivers.serial_base import SerialDriver

QPIGS = proto.command(b"QPIGS")


class VoltronicDriver(SerialDriver):
    INFO = {
        "name": "voltronic",
        "version": "0.1",
        "maturity": BETA,
        "transport": "serial",
        "description": "Voltronic/Axpert hybrid inverter, QPIGS (NUT nutdrv_qx voltronic)",
    }
    SERIAL_DEFAULTS = driver_defaults("voltronic")

    async def read(self):
        line = await self.ask(QPIGS, proto.TERMINATOR, proto.MAX_REPLY + 1)
        self.raw = {"QPIGS": repr(bytes(line))[2:-1]}
        return proto.parse_qpigs(line)
