"""A small MQTT 3.1.1 client on asyncio streams (portable: MicroPython and CPython).

    conn = await MqttConn.open(host, port, ssl=ctx, server_hostname=name, timeout=15)
    rc = await conn.connect(client_id, keepalive=60, will=(topic, payload, 1, True),
                            username=None, password=None, timeout=15)
    pid = conn.next_pid(); conn.put(publish_packet(topic, payload, 1, False, pid))
    await conn.flush()                         # or conn.send(packet): put + flush
    kind, flags, body = await conn.read()      # one packet; MqttError when the link is gone
    conn.close()

Why our own and not micropython-lib's umqtt.simple: umqtt is blocking (a socket read stalls the
whole board), sends one QoS 1 message and then spins waiting for its PUBACK (no window), has no
keepalive of its own and no asyncio. The agent needs several batches in flight tied to queue
acks, keepalive pings, a last will and a loop that keeps polling while the broker is slow; that
is this file, the packet codec plus a reader, about 200 lines. The uplink
(agent/board/uplink.py) owns sessions, the window, acks and reconnects.

Codec invariants: every packet is encoded whole before anything is written, so a half-written
packet can only come from a dying link; `read` never accepts a packet longer than `max_packet`
(a broker or an attacker cannot make us allocate more); remaining lengths over 4 bytes, unknown
packet types and a CONNACK of the wrong size are MqttError, never an assertion.
"""

import asyncio
import struct

from agent.core.compat import wait_for

CONNECT = 1
CONNACK = 2
PUBLISH = 3
PUBACK = 4
SUBSCRIBE = 8
SUBACK = 9
PINGREQ = 12
PINGRESP = 13
DISCONNECT = 14

PINGREQ_PACKET = b"\xc0\x00"
DISCONNECT_PACKET = b"\xe0\x00"
MAX_PACKET = 16384  # largest packet we accept from the broker (commands are at most 4 KB)

CONNACK_TEXT = {
    1: "unacceptable protocol version",
    2: "client id rejected",
    3: "server unavailable",
    4: "bad user name or password",
    5: "not authorised",
}


class MqttError(Exception):
    """The link or the broker broke the protocol, or the link is gone."""


def _varlen(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | 0x80 if n else b)
        if not n:
            return bytes(out)


def _str(s):
    b = s.encode() if isinstance(s, str) else bytes(s)
    return struct.pack("!H", len(b)) + b


def _packet(first, body):
    return bytes((first,)) + _varlen(len(body)) + body


def connect_packet(client_id, keepalive, will=None, username=None, password=None, clean=True):
    """CONNECT (MQTT 3.1.1). will: (topic, payload, qos, retain) or None."""
    flags = 0x02 if clean else 0
    payload = _str(client_id)
    if will is not None:
        topic, msg, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += _str(topic) + _str(msg)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
        if password is not None:
            flags |= 0x40
            payload += _str(password)
    body = _str("MQTT") + bytes((4, flags)) + struct.pack("!H", keepalive) + payload
    return _packet(CONNECT << 4, body)


def publish_head(topic, payload_len, qos=0, retain=False, pid=0, dup=False):
    """Everything of a PUBLISH before its payload: write it, then the payload itself, so a
    batch of several KB is never copied into a packet (the board's peak heap is in drains)."""
    first = (PUBLISH << 4) | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    var = _str(topic)
    if qos:
        var += struct.pack("!H", pid)
    return bytes((first,)) + _varlen(len(var) + payload_len) + var


def publish_packet(topic, payload, qos=0, retain=False, pid=0, dup=False):
    return publish_head(topic, len(payload), qos, retain, pid, dup) + bytes(payload)


def subscribe_packet(pid, topics):
    body = struct.pack("!H", pid)
    for topic, qos in topics:
        body += _str(topic) + bytes((qos,))
    return _packet((SUBSCRIBE << 4) | 0x02, body)


def puback_packet(pid):
    return bytes((PUBACK << 4, 2)) + struct.pack("!H", pid)


def parse_connack(body):
    """The return code of a CONNACK body (0 accepted)."""
    if len(body) != 2:
        raise MqttError("CONNACK of %d bytes (expected 2)" % len(body))
    return body[1]


def parse_publish(flags, body):
    """(topic, payload, qos, pid, retain) of a PUBLISH."""
    qos = (flags >> 1) & 3
    if qos == 3 or len(body) < 2:
        raise MqttError("malformed PUBLISH")
    n = struct.unpack_from("!H", body, 0)[0]
    if 2 + n + (2 if qos else 0) > len(body):
        raise MqttError("PUBLISH topic longer than the packet")
    try:
        topic = bytes(body[2 : 2 + n]).decode()
    except UnicodeError:
        raise MqttError("PUBLISH topic is not UTF-8") from None
    i = 2 + n
    pid = 0
    if qos:
        pid = struct.unpack_from("!H", body, i)[0]
        i += 2
    return topic, bytes(body[i:]), qos, pid, bool(flags & 1)


def parse_pid(body):
    if len(body) < 2:
        raise MqttError("packet without a packet id")
    return struct.unpack_from("!H", body, 0)[0]


class MqttConn:
    """One open connection: raw packets in and out. Not safe for two concurrent readers."""

    def __init__(self, reader, writer, max_packet=MAX_PACKET):
        self.r = reader
        self.w = writer
        self.max_packet = max_packet
        self._pid = 0
        self.sent_bytes = 0
        self.closed = False
        self.connect_sent = False  # CONNECT went out: TCP (and TLS) answered

    @classmethod
    async def open(cls, host, port, ssl=None, server_hostname=None, timeout=15.0):
        """Open TCP (and TLS when `ssl` is a context) within `timeout` seconds."""
        try:
            if ssl is not None:
                coro = asyncio.open_connection(host, port, ssl=ssl,
                                               server_hostname=server_hostname)  # fmt: skip
            else:
                coro = asyncio.open_connection(host, port)
            r, w = await wait_for(coro, timeout)
        except asyncio.TimeoutError:
            raise MqttError("no connection within %gs" % timeout) from None
        except OSError as e:
            raise MqttError("connect failed: %s" % (e,)) from None
        except ValueError as e:  # TLS refused (MicroPython raises ValueError/OSError)
            raise MqttError("TLS failed: %s" % (e,)) from None
        return cls(r, w)

    def next_pid(self):
        self._pid = self._pid % 65535 + 1
        return self._pid

    def put(self, data):
        """Queue one whole packet on the stream without waiting (write() never interleaves two
        packets: it takes the whole buffer at once); flush() writes it out."""
        if self.closed:
            raise MqttError("connection is closed")
        try:
            self.w.write(data)
        except (OSError, ValueError) as e:
            raise MqttError("send failed: %s" % (e,)) from None
        self.sent_bytes += len(data)

    async def flush(self):
        try:
            await self.w.drain()
        except (OSError, ValueError) as e:
            raise MqttError("send failed: %s" % (e,)) from None

    def put_publish(self, topic, payload, qos, retain, pid):
        """Queue a PUBLISH as its head and its payload, without joining them."""
        self.put(publish_head(topic, len(payload), qos, retain, pid))
        self.put(payload)

    async def send(self, data):
        self.put(data)
        await self.flush()

    async def _exactly(self, n):
        try:
            data = await self.r.readexactly(n)
        except (OSError, ValueError, EOFError) as e:
            raise MqttError("link closed: %s" % (e.__class__.__name__,)) from None
        except Exception as e:  # CPython's IncompleteReadError is an EOFError subclass
            raise MqttError("link closed: %s" % (e.__class__.__name__,)) from None
        if len(data) < n:
            raise MqttError("link closed by the broker")
        return data

    async def read(self):
        """(packet type, flags, body) of the next packet."""
        head = await self._exactly(1)
        n = 0
        shift = 0
        for _ in range(4):
            b = (await self._exactly(1))[0]
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        else:
            raise MqttError("remaining length longer than 4 bytes")
        if n > self.max_packet:
            raise MqttError("packet of %d bytes refused (limit %d)" % (n, self.max_packet))
        body = await self._exactly(n) if n else b""
        kind = head[0] >> 4
        if kind < CONNECT or kind > DISCONNECT:
            raise MqttError("unknown packet type %d" % kind)
        return kind, head[0] & 0x0F, body

    async def connect(self, client_id, keepalive, will=None, username=None, password=None,
                      timeout=15.0):  # fmt: skip
        """Send CONNECT and wait for CONNACK; returns its return code (0 accepted)."""
        await self.send(connect_packet(client_id, keepalive, will, username, password))
        self.connect_sent = True
        try:
            kind, _, body = await wait_for(self.read(), timeout)
        except asyncio.TimeoutError:
            raise MqttError("no CONNACK within %gs (broker not answering)" % timeout) from None
        if kind != CONNACK:
            raise MqttError("expected CONNACK, got packet type %d" % kind)
        return parse_connack(body)

    def close(self):
        if self.closed:
            return
        self.closed = True
        try:
            self.w.close()
        except Exception:  # already gone
            pass
