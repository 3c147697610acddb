"""Pylontech lithium BMS driver (portable): analog values and alarms of one pack over RS-485.

    [devices.options]
    address = 2      # the pack's ADR (DIP switches); 2 is the first pack of a US2000/US3000 stack

One device is one pack: a stack of packs is one [[devices]] per pack, each with its own address,
all on the same port (there is no pack_addresses list; `check` refuses one).

Each poll asks analog values (CID2 0x42: cell voltages, temperatures, current, voltage,
capacity, cycles) and alarms (0x44). Several packs on one RS-485 pair are several devices with
the same port: like Modbus, they share one port and one lock (BusPort), so requests never overlap.
A non-zero return code is the BMS refusing (stale, with the code in the reason). 9600 8N1.
"""

from agent.core.config.checker import field
from agent.core.errors import ParseError
from agent.core.serial_line import driver_defaults
from drivers.base import BETA
from drivers.proto import pylontech as proto
from drivers.serial_base import SerialDriver, bus_transport


class PylontechDriver(SerialDriver):
    INFO = {
        "name": "pylontech",
        "version": "0.1",
        "maturity": BETA,
        "transport": "serial",
        "description": "Pylontech lithium BMS (US2000/US3000 family), RS-485 protocol 3.x",
    }
    SERIAL_DEFAULTS = driver_defaults("pylontech")

    OPTIONS = (("address", field("int", default=2, min=0, max=255, public=True)),)

    def __init__(self, device, transport=None):
        SerialDriver.__init__(self, device, transport)
        adr = self.options["address"]  # checked against OPTIONS by `check`
        self.address = adr
        self.cmd_analog = proto.request(adr, proto.GET_ANALOG)
        self.cmd_alarms = proto.request(adr, proto.GET_ALARMS)

    async def open(self):
        transport = self._injected if self._injected is not None else bus_transport()
        await transport.open(self.serial_cfg)
        self.transport = transport

    async def _info(self, name, command):
        line = await self.ask(command, b"\r", proto.MAX_FRAME + 1)
        self.raw[name] = repr(bytes(line))[2:-1]
        if bytes(line) == command:  # our own frame back: a loopback, or an echoing adapter
            raise ParseError("pylontech: the line echoed the request (is a BMS connected?)")
        return proto.reply(line, self.address)

    async def read(self):
        self.raw = {}
        samples = proto.parse_analog(await self._info("analog", self.cmd_analog))
        return samples + proto.parse_alarms(await self._info("alarms", self.cmd_alarms))
