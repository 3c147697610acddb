"""EPEVER / EPsolar charge controller register map (portable data) and its decoding.

Modbus RTU 115200 8N1, slave 1 by default. Input registers (function 4), x0.01 unless noted. The
map is a table; decode() turns {register: raw value} into samples. Facts from PROTOCOLS.md (EPEVER
"Controller MODBUS protocol" and third-party libraries); the SOC register's scale is unverified
(sources disagree between 1 % and 0.01): we take 1 %, and reject values above 100 so a wrong guess
shows up as a ParseError rather than a silent 10000 %.
"""

from agent.core.errors import ParseError
from drivers.proto.modbus import s32_low_first, signed16, u32_low_first

# Register blocks a driver reads (start, count), each one request.
BLOCKS = (
    (0x3100, 6),  # PV V, PV A, PV W low/high, battery V, charge A
    (0x310C, 2),  # load V, load A
    (0x3110, 2),  # battery C, case C
    (0x311A, 1),  # SOC
    (0x3200, 2),  # battery status, charging status
    (0x331B, 2),  # net battery current, low/high
)

# (register, metric, unit, kind, scale). kind: u16, s16, u32 (low word first at register and
# register+1), s32 (likewise), or a decoder name below.
MAP = (
    (0x3100, "solar.voltage", "V", "u16", 0.01),
    (0x3101, "solar.current", "A", "u16", 0.01),
    (0x3102, "solar.power", "W", "u32", 0.01),
    (0x3104, "battery.voltage", "V", "u16", 0.01),
    (0x3105, "charger.current", "A", "u16", 0.01),
    (0x310C, "load.voltage", "V", "u16", 0.01),
    (0x310D, "load.current", "A", "u16", 0.01),
    (0x3110, "battery.temperature", "C", "s16", 0.01),
    (0x3111, "device.temperature", "C", "s16", 0.01),
    (0x311A, "battery.charge", "%", "soc", 1),
    (0x3200, "battery.status", "", "battery_status", 1),
    (0x3201, "charger.status", "", "charging_status", 1),
    (0x331B, "battery.current", "A", "s32", 0.01),
)

# 0x3200 bits 3-0 (D3-D0): under-voltage and low-voltage disconnect map onto the registry's
# "low" and "depleted"; over-voltage and fault have no registry word yet and keep their own.
BATTERY_STATUS = {0: "normal", 1: "over_voltage", 2: "low", 3: "depleted", 4: "fault"}
# 0x3201 bits 3-2 (D3-D2): charging state.
CHARGING_STATUS = {0: "off", 1: "float", 2: "boost", 3: "equalise"}


def decode(registers):
    """Samples from {register: raw u16}. Registers absent from the dict give no sample."""
    samples = []
    for reg, metric, unit, kind, scale in MAP:
        if reg not in registers:
            continue
        raw = registers[reg]
        if kind in ("u32", "s32"):
            if reg + 1 not in registers:
                continue
            high = registers[reg + 1]
            value = u32_low_first(raw, high) if kind == "u32" else s32_low_first(raw, high)
            samples.append((metric, round(value * scale, 2), unit))
        elif kind == "u16":
            samples.append((metric, round(raw * scale, 2), unit))
        elif kind == "s16":
            samples.append((metric, round(signed16(raw) * scale, 2), unit))
        elif kind == "soc":
            if raw > 100:
                raise ParseError("epever: SOC register holds %d, above 100 %%" % raw)
            samples.append((metric, float(raw), unit))
        elif kind == "battery_status":
            code = raw & 0x0F
            if code not in BATTERY_STATUS:
                raise ParseError("epever: battery status code %d unknown" % code)
            samples.append((metric, BATTERY_STATUS[code], unit))
        elif kind == "charging_status":
            samples.append((metric, CHARGING_STATUS[(raw >> 2) & 0x03], unit))
    return samples


def registers_from(start, values):
    """{register: value} for a block read from `start`."""
    out = {}
    for i in range(len(values)):
        out[start + i] = values[i]
    return out
