"""Modbus RTU driver (portable): function codes 3 and 4, several slave ids on one RS-485 bus,
the built-in EPEVER map or a register map from the site config.

    [devices.modbus]
    slave = 1
    map = "epever"            # or "custom" with [[devices.modbus.registers]]:
    # {address, function 3|4, type u16|s16|u32|s32|f32, scale, word_order big|little, unit, metric}

Bus sharing: with no injected transport the driver opens a BusPort (agent/host/serial_port.py),
which gives every device on the same port path one shared port and one lock. Each request and its
whole reply happen with that lock held, so two slaves' frames never interleave on the wire. A
board transport may offer `lock` the same way; without one the driver locks only itself.

Framing: the reply is read by length (modbus.reply_length from its first 3 bytes), not by
silence, so no 3.5-character timer is needed on a host that cannot keep one; gap_ms keeps quiet
time between exchanges. A timeout or a malformed reply is retried `options.retries` times (default
1) with the identical request; an exception reply is the slave's answer and is not retried: it
makes the poll stale with the exception code in the reason.

Custom maps: registers are read in as few requests as possible: same function, contiguous
addresses (no unmapped gap is ever read, since a slave may refuse it), at most 125 per request.
"""

import asyncio
import struct

from agent.core import registry
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError
from drivers.base import BETA
from drivers.proto import epever
from drivers.proto import modbus as proto
from drivers.serial_base import SerialDriver, bus_transport

_WIDTH = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}


def plan(registers):
    """Requests for a register list: [(function, start, count, [register entries])]."""
    regs = sorted(registers, key=lambda r: (r["function"], r["address"]))
    out = []
    for r in regs:
        end = r["address"] + _WIDTH[r["type"]]
        if out:
            fn, start, count, members = out[-1]
            if fn == r["function"] and start <= r["address"] <= start + count:
                new_count = max(count, end - start)
                if new_count <= proto.MAX_REGISTERS:
                    out[-1] = (fn, start, new_count, members + [r])
                    continue
        out.append((r["function"], r["address"], end - r["address"], [r]))
    return out


def decode_register(r, words):
    """The value of one custom-map register from its words (ints), or None when a float is not
    a number (NaN or infinite: the device does not know)."""
    kind = r["type"]
    if kind == "u16":
        raw = words[0]
    elif kind == "s16":
        raw = proto.signed16(words[0])
    else:
        hi, lo = (words[0], words[1]) if r["word_order"] == "big" else (words[1], words[0])
        if kind == "f32":
            raw = struct.unpack(">f", struct.pack(">HH", hi, lo))[0]
            if raw != raw or raw in (float("inf"), float("-inf")):
                return None
        else:
            raw = (hi << 16) | lo
            if kind == "s32" and raw & 0x80000000:
                raw -= 0x100000000
    value = raw * r["scale"]
    row = registry.lookup(r["metric"])
    typ = row[2] if row else ("int" if kind != "f32" and r["scale"] == 1 else "float")
    if typ == "int":
        return int(round(value))
    if typ == "bool":
        return value != 0
    if typ == "str":
        return str(value)
    return round(float(value), 6)


def _custom_registers(raw):
    out = []
    for i, r in enumerate(raw or ()):
        e = {
            "address": r.get("address"),
            "function": r.get("function", proto.READ_INPUT),
            "type": r.get("type", "u16"),
            "scale": r.get("scale", 1),
            "word_order": r.get("word_order", "big"),
            "metric": r.get("metric"),
        }
        if (
            not isinstance(e["address"], int)
            or not 0 <= e["address"] <= 0xFFFF - _WIDTH.get(e["type"], 1) + 1
            or e["function"] not in (proto.READ_HOLDING, proto.READ_INPUT)
            or e["type"] not in _WIDTH
            or e["word_order"] not in ("big", "little")
            or not isinstance(e["metric"], str)
        ):
            raise ConfigError("modbus.registers[%d]: invalid entry %r" % (i, r))
        e["unit"] = r.get("unit", registry.unit_of(e["metric"]))
        out.append(e)
    if not out:
        raise ConfigError('modbus: map = "custom" needs at least one register')
    return out


class ModbusDriver(SerialDriver):
    INFO = {
        "name": "modbus",
        "version": "0.1",
        "maturity": BETA,
        "transport": "serial",
        "description": "Modbus RTU (fc 3/4) on RS-485; EPEVER map built in, custom maps",
    }
    SERIAL_DEFAULTS = {
        "baud": 115200,
        "bytesize": 8,
        "parity": "N",
        "stopbits": 1,
        "read_timeout": 0.5,
        "gap_ms": 5,
    }

    def __init__(self, device, transport=None):
        SerialDriver.__init__(self, device, transport)
        m = device.get("modbus") or {}
        self.slave = m.get("slave", 1)
        self.map = m.get("map", "epever")
        self.retries = (device.get("options") or {}).get("retries", 1)
        if self.map == "epever":
            self.requests = [(proto.READ_INPUT, s, c, None) for s, c in epever.BLOCKS]
        elif self.map == "custom":
            self.requests = plan(_custom_registers(m.get("registers")))
        else:
            raise ConfigError("modbus.map: expected epever or custom, got %r" % (self.map,))
        self._lock = asyncio.Lock()  # used only when the transport has no bus lock
        self.exchanges = 0  # request frames sent, retries included (for the console, tests)

    async def open(self):
        transport = self._injected if self._injected is not None else bus_transport()
        await transport.open(self.serial_cfg)
        self.transport = transport

    async def read_registers(self, function, start, count):
        """`count` register values from `start`, retried on timeouts and malformed replies."""
        t = self.transport
        if t is None:
            raise DeviceError("serial port is not open")
        request = proto.read_request(self.slave, function, start, count)
        lock = getattr(t, "lock", None) or self._lock
        last = None
        for _ in range(1 + self.retries):
            async with lock:
                self.exchanges += 1
                await t.send(request)
                try:
                    head = await t.read_exact(3)
                    frame = head + await t.read_exact(proto.reply_length(head) - 3)
                except DeviceTimeout as e:
                    last = e
                    continue
            try:
                return proto.parse_read_reply(frame, self.slave, function, count)
            except proto.ModbusException as e:
                raise DeviceError("%s, reading 0x%04X x%d" % (e, start, count)) from e
            except ParseError as e:
                last = e
        raise last.__class__(
            "modbus slave %d fc %d 0x%04X x%d: %s" % (self.slave, function, start, count, last)
        )

    async def read(self):
        raw = {}
        self.raw = raw
        if self.map == "epever":
            regs = {}
            for function, start, count, _members in self.requests:
                values = await self.read_registers(function, start, count)
                regs.update(epever.registers_from(start, values))
            for k in regs:
                raw["0x%04X" % k] = regs[k]
            return epever.decode(regs)
        samples = []
        for function, start, count, members in self.requests:
            values = await self.read_registers(function, start, count)
            for r in members:
                off = r["address"] - start
                words = values[off : off + _WIDTH[r["type"]]]
                raw["%d:0x%04X" % (function, r["address"])] = words
                value = decode_register(r, words)
                if value is not None:
                    samples.append((r["metric"], value, r["unit"]))
        return samples
