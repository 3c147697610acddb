"""Modbus RTU framing (portable): read requests for function codes 3 and 4, their replies, CRC.

Frame: [slave][function][data...][crc lo][crc hi], CRC-16/MODBUS (reflected poly 0xA001, init
0xFFFF), low byte first. A slave that refuses a request answers [slave][function | 0x80][code]
[crc]: that is a ModbusException (a DeviceError: the device answered, and said no), not a
ParseError. Everything malformed (bad CRC, wrong slave or function, a byte count that does not
match) is a ParseError that says what was wrong.

Checked: the request 01 04 31 04 00 01 carries CRC 7E F7, the reply 01 04 02 0A 55 carries 7F AF
(PROTOCOLS.md's EPEVER example; 0x0A55 = 2645 -> 26.45 V at x0.01).
"""

from agent.core.errors import DeviceError, ParseError

READ_HOLDING = 3
READ_INPUT = 4
MAX_REGISTERS = 125  # the most one read may ask for (the reply's byte count is one byte)

EXCEPTIONS = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "slave device failure",
    5: "acknowledge (busy with a long command)",
    6: "slave device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target failed to respond",
}


class ModbusException(DeviceError):
    """The slave answered with an exception code (it understood the frame and refused)."""

    def __init__(self, slave, function, code):
        self.slave = slave
        self.function = function
        self.code = code
        # super(), not DeviceError.__init__: MicroPython's exception classes have no __init__.
        super().__init__(
            "modbus slave %d refused function %d: exception %d (%s)"
            % (slave, function, code, EXCEPTIONS.get(code, "unknown")),
        )


def crc16(data):
    """CRC-16/MODBUS of `data` (int; send low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0xA001
            else:
                crc >>= 1
    return crc


def with_crc(body):
    crc = crc16(body)
    return bytes(body) + bytes((crc & 0xFF, crc >> 8))


def read_request(slave, function, address, count):
    """The request frame reading `count` registers from `address` (function 3 or 4)."""
    if function not in (READ_HOLDING, READ_INPUT):
        raise ValueError("function must be 3 or 4")
    if not 1 <= slave <= 247 or not 1 <= count <= MAX_REGISTERS or not 0 <= address <= 0xFFFF:
        raise ValueError("slave 1-247, count 1-125, address 0-65535")
    return with_crc(
        bytes((slave, function, address >> 8, address & 0xFF, count >> 8, count & 0xFF))
    )


def reply_length(head):
    """Total length of a reply from its first 3 bytes (slave, function, byte count or code),
    so a transport can read exactly one frame: 5 for an exception, 5 + byte count otherwise."""
    if len(head) < 3:
        raise ParseError("modbus: need 3 bytes to size a reply, got %d" % len(head))
    if head[1] & 0x80:
        return 5
    return 5 + head[2]


def parse_read_reply(frame, slave, function, count):
    """The `count` register values (ints 0-65535) of a reply to read_request(slave, function,
    _, count). Raises ModbusException for an exception reply, ParseError when malformed."""
    frame = bytes(frame)
    if len(frame) < 5:
        raise ParseError("modbus: reply of %d bytes is too short" % len(frame))
    got = frame[-2] | (frame[-1] << 8)
    want = crc16(frame[:-2])
    if got != want:
        raise ParseError("modbus: bad CRC %04x, computed %04x" % (got, want))
    if frame[0] != slave:
        raise ParseError("modbus: reply from slave %d, asked %d" % (frame[0], slave))
    if frame[1] == function | 0x80:
        if len(frame) != 5:
            raise ParseError("modbus: exception reply of %d bytes, expected 5" % len(frame))
        raise ModbusException(slave, function, frame[2])
    if frame[1] != function:
        raise ParseError("modbus: reply to function %d, asked %d" % (frame[1], function))
    if frame[2] != 2 * count:
        raise ParseError("modbus: byte count %d, expected %d" % (frame[2], 2 * count))
    if len(frame) != 5 + 2 * count:
        raise ParseError("modbus: frame of %d bytes, expected %d" % (len(frame), 5 + 2 * count))
    return [(frame[3 + 2 * i] << 8) | frame[4 + 2 * i] for i in range(count)]


def signed16(value):
    return value - 0x10000 if value & 0x8000 else value


def u32_low_first(low, high):
    """Two registers holding a 32-bit value, low word first (EPEVER's order)."""
    return (high << 16) | low


def s32_low_first(low, high):
    v = u32_low_first(low, high)
    return v - 0x100000000 if v & 0x80000000 else v
