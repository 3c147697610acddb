"""Modbus RTU driver (portable): function codes 3 and 4, several slave ids on one RS-485 bus,
the built-in EPEVER map or a register map from the site config.

    [devices.modbus]
    slave = 1
    map = "epever"            # or "custom" with [[devices.modbus.registers]]:
    # {address, function 3|4, type u16|s16|u32|s32|f32, scale, word_order big|little, unit, metric}

Bus sharing: with no injected transport the driver opens a BusPort (agent/host/serial_bus.py),
which gives every device on the same port path one shared port and one lock. Each request and its
whole reply happen with that lock held, so two slaves' frames never interleave on the wire. A
board transport may offer `lock` the same way; without one the driver locks only itself.

Framing: the reply is read by length (modbus.reply_length from its first 3 bytes), not by
silence, so no 3.5-character timer is needed on a host that cannot keep one; gap_ms keeps quiet
time between exchanges.

Timing (one lost frame costs one retry, not the poll): a try waits for its reply `turn + the
frames' time on the wire x 1.5 + 10 ms`, where turn is the larger of serial.turnaround_ms and twice
the slowest reply latency seen lately from this slave (learned: a slow slave is waited for; a
lost frame is not), capped by read_timeout. A reply that starts within one more `turn` after the
try ran out is a late reply to the same request and is used. Otherwise the request is sent again,
up to `options.retries` times per block (default 1). A retry goes out only if the poll budget
still holds it and one try of every block after it, so early losses cannot starve later blocks.
After a block that needed a retry the line must stay quiet for one try's time before the next
request: a slow slave's answer to the first try would otherwise be taken as the next block's.

Exceptions: an exception reply is the slave's answer and is not retried (busy, 6, excepted).
Exception 2 (illegal data address) or 1 (illegal function) means the device lacks that block:
the poll keeps every other block and stays good, the block is skipped on later polls and asked
again every REPROBE_S (a firmware update or another controller on the same id may bring it
back), and the metrics it would give are published in `device.unsupported`. Other exceptions
(4 slave failure, 10/11 gateway) make the poll stale with the code in the reason.

Custom maps: registers are read in as few requests as possible: same function, contiguous
addresses (no unmapped gap is ever read, since a slave may refuse it), at most 125 per request.
"""

import asyncio
import struct

from agent.core import registry
from agent.core.compat import monotonic
from agent.core.config.checker import field
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError
from agent.core.serial_line import char_s, driver_defaults
from drivers.base import BETA, Driver
from drivers.proto import epever
from drivers.proto import modbus as proto
from drivers.serial_base import SerialDriver, bus_transport

_WIDTH = {"u16": 1, "s16": 1, "u32": 2, "s32": 2, "f32": 2}
READ_SHARE = 0.9  # of the poll budget, for reading; the rest is left for closing on failure
LATENCY_DECAY = 0.95  # per exchange: a latency spike is forgotten over about a hundred replies
ABSENT_CODES = (1, 2)  # illegal function / data address: the device does not have the block
RETRY_CODES = (6,)  # slave device busy: asked again like a lost reply
REPROBE_S = 900  # a block the device refused is asked again after this long


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
        "version": "0.2",
        "maturity": BETA,
        "transport": "serial",
        "description": "Modbus RTU (fc 3/4) on RS-485; EPEVER map built in, custom maps",
    }
    SERIAL_DEFAULTS = driver_defaults("modbus")

    # Tries after the first for a frame lost to a timeout or a bad reply (see the module doc).
    OPTIONS = (("retries", field("int", default=1, min=0, max=5, public=True)),)

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
        cfg = self.serial_cfg
        self.char_s = char_s(cfg)
        self.turnaround_s = cfg.get("turnaround_ms", 100) / 1000.0
        self.slowest = 0.0  # longest reply latency seen lately (s), decaying per exchange
        self.absent = {}  # (function, start, count) -> [exception code, monotonic() to ask again]
        self.told_absent = None  # device.unsupported as last published (None: not yet)
        self._lock = asyncio.Lock()  # used only when the transport has no bus lock
        self._deadline = None  # when this poll's reading must be done (monotonic)
        self.exchanges = 0  # request frames sent, retries included (for the console, tests)
        self.late = 0  # replies that came after their try ran out (used, or discarded)

    async def open(self):
        transport = self._injected if self._injected is not None else bus_transport()
        await transport.open(self.serial_cfg)
        self.transport = transport

    async def poll(self, budget_s):
        self._deadline = monotonic() + budget_s * READ_SHARE
        try:
            return await Driver.poll(self, budget_s)
        finally:
            self._deadline = None

    # --- timing ---------------------------------------------------------------------------
    def try_s(self, count):
        """How long the first try of reading `count` registers waits for its reply."""
        wire = (8 + 5 + 2 * count) * self.char_s
        turn = max(self.turnaround_s, 2 * self.slowest)
        return min(self.cap_s(), turn + 1.5 * wire + 0.01)

    def cap_s(self):
        return self.serial_cfg.get("read_timeout", 0.5)

    def _learn(self, latency):
        self.slowest = max(latency, self.slowest * LATENCY_DECAY)

    def _affordable(self, wait, later):
        """Whether a retry waiting `wait` s fits the poll budget together with one try of each
        block still to read (`later`: their register counts)."""
        if self._deadline is None:
            return True
        need = wait + sum(self.try_s(c) for c in later)
        return monotonic() + need <= self._deadline

    async def _quiet(self, t, window):
        """Listen for `window` s and drop what comes (a reply to a request already answered);
        returns the number of bytes dropped."""
        dropped = 0
        end = monotonic() + window
        while True:
            left = end - monotonic()
            if left <= 0:
                return dropped
            try:
                dropped += len(await t.read_some(256, left))
            except DeviceTimeout:
                return dropped

    async def _reply(self, t, request, wait):
        """Send `request` and read one reply frame, its first bytes within `wait` s (the
        transport's DeviceTimeout says whether nothing or part of a frame came)."""
        self.exchanges += 1
        await t.send(request)
        sent = monotonic()
        head = await t.read_exact(3, round(wait, 3))
        self._learn(max(0.0, monotonic() - sent - (len(request) + 3) * self.char_s))
        rest = proto.reply_length(head) - 3
        return head + await t.read_exact(rest, round(1.5 * rest * self.char_s + wait, 3))

    # --- reading ---------------------------------------------------------------------------
    async def read_registers(self, function, start, count, later=()):
        """`count` register values from `start`, retried on lost and malformed replies within
        the budget. Raises ModbusException when the slave refuses, DeviceError otherwise."""
        t = self.transport
        if t is None:
            raise DeviceError("serial port is not open")
        request = proto.read_request(self.slave, function, start, count)
        lock = getattr(t, "lock", None) or self._lock
        what = "modbus slave %d fc %d 0x%04X x%d" % (self.slave, function, start, count)
        last = None
        lost = False  # a try of this block ran out
        timed_out = False  # the last try ran out (rather than being answered badly)
        wait = self.try_s(count)
        async with lock:
            first_sent = monotonic()
            for attempt in range(1 + self.retries):
                if attempt:
                    if timed_out:
                        if await self._quiet(t, 0.001):  # the try that ran out was answered
                            self.late += 1
                            self._learn(wait)
                        # Each retry after a timeout waits twice as long (up to read_timeout): a
                        # lost frame costs one short try, a slow slave is still heard this poll.
                        wait = max(self.try_s(count), min(self.cap_s(), 2 * wait))
                    if not self._affordable(wait, later):
                        raise _again(last, "%s: %s (no time left in the poll budget for a "
                                     "retry)" % (what, last))  # fmt: skip
                try:
                    frame = await self._reply(t, request, wait)
                except DeviceTimeout as e:  # lost: no reply, or one that stopped short
                    last, lost, timed_out = e, True, True
                    continue
                timed_out = False
                try:
                    values = proto.parse_read_reply(frame, self.slave, function, count)
                except proto.ModbusException as e:
                    if e.code not in RETRY_CODES:
                        raise
                    last = e
                    continue
                except ParseError as e:
                    last = e
                    continue
                if lost:
                    # This reply may answer a try we had given up on; then the slave's answer to
                    # the retry is still to come, at most about as long after as this one took.
                    # Heard out and dropped here, it cannot pass for the next block's reply.
                    took = monotonic() - first_sent
                    if await self._quiet(t, 1.5 * took + 0.01):
                        self.late += 1
                        self._learn(took)
                return values
            if timed_out and await self._quiet(t, wait):
                # Answered after every try ran out: a slave slower than we thought. Next poll's
                # tries wait for it; this one is lost.
                self.late += 1
                self._learn(wait)
        raise _again(last, "%s: %s" % (what, last))

    async def read(self):
        raw = {}
        self.raw = raw
        now = monotonic()
        got = []  # (function, start, values, members)
        refused = []  # (function, start, count, members)
        # Blocks the device lacks are skipped until due again; when it lacks them all, all are
        # asked (a device that gives nothing must not be left alone for REPROBE_S).
        todo = [r for r in self.requests if now >= self.absent.get(r[:3], (0, 0))[1]]
        if not todo:
            todo = list(self.requests)
        for i in range(len(todo)):
            function, start, count, members = todo[i]
            later = [r[2] for r in todo[i + 1 :]]
            key = (function, start, count)
            try:
                values = await self.read_registers(function, start, count, later)
            except proto.ModbusException as e:
                if e.code not in ABSENT_CODES:
                    raise DeviceError("%s, reading 0x%04X x%d" % (e, start, count)) from None
                self.absent[key] = [e.code, monotonic() + REPROBE_S]
                continue
            self.absent.pop(key, None)
            got.append((function, start, values, members))
        for request in self.requests:
            if request[:3] in self.absent:
                refused.append(request)
        if not got:
            raise DeviceError(
                "modbus slave %d refused every block: %s" % (self.slave, _absent_words(self))
            )
        samples = self._decode(got, raw)
        if refused:
            raw["absent"] = _absent_words(self)
        missing = " ".join(self._metrics_of(refused))
        if missing or self.told_absent not in (None, ""):
            samples.append(("device.unsupported", missing, ""))
        elif self.told_absent is None:
            samples.append(("device.unsupported", "", ""))
        self.told_absent = missing
        return samples

    def _decode(self, got, raw):
        if self.map == "epever":
            regs = {}
            for _function, start, values, _members in got:
                regs.update(epever.registers_from(start, values))
            for k in regs:
                raw["0x%04X" % k] = regs[k]
            return epever.decode(regs)
        samples = []
        for function, start, values, members in got:
            for r in members:
                off = r["address"] - start
                words = values[off : off + _WIDTH[r["type"]]]
                raw["%d:0x%04X" % (function, r["address"])] = words
                value = decode_register(r, words)
                if value is not None:
                    samples.append((r["metric"], value, r["unit"]))
        return samples

    def _metrics_of(self, refused):
        """The metric names the refused requests would have given, in map order."""
        out = []
        for _function, start, count, members in refused:
            if members is None:
                names = [row[1] for row in epever.MAP if start <= row[0] < start + count]
            else:
                names = [r["metric"] for r in members]
            for name in names:
                if name not in out:
                    out.append(name)
        return out


def _again(last, text):
    """`last` (the error of the last try) retold as `text`, of a class that takes a message."""
    if isinstance(last, proto.ModbusException):
        return DeviceError(text)
    return last.__class__(text)


def _absent_words(driver):
    now = monotonic()
    parts = []
    for (function, start, count), (code, again) in sorted(driver.absent.items()):
        parts.append("fc %d 0x%04X x%d: exception %d (%s), asked again in %ds" % (
            function, start, count, code, proto.EXCEPTIONS.get(code, "unknown"),
            max(0, int(again - now))))  # fmt: skip
    return "; ".join(parts)
