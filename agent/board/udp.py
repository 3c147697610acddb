"""A connected UDP datagram transport for the board (MicroPython sockets + asyncio), for the
portable SNMP client (drivers/proto/snmp_client.py) and SNTP. Same contract as the host's
agent/host/udp.py:

    t = await UdpTransport.open("192.0.2.1", 161)
    await t.send(data)
    reply = await t.recv(timeout)        # bytes, or None when nothing came within timeout
    t.close()

The socket is non-blocking and connected, so the stack drops datagrams from other peers; a
receive waits on asyncio's I/O queue (no polling) and takes one datagram of at most MAX_BYTES
(a longer one is cut, and the client then rejects it as malformed). Name resolution
(getaddrinfo) blocks the interpreter on MicroPython; give devices IP addresses.
"""

import asyncio

from agent.core.errors import DeviceError

MAX_BYTES = 8192


def _readable(sock):
    # A generator the MicroPython scheduler understands: park this task until sock is readable.
    yield asyncio.core._io_queue.queue_read(sock)


class UdpTransport:
    def __init__(self, sock, where):
        self.sock = sock
        self.where = where
        self.errors = 0

    @classmethod
    async def open(cls, host, port):
        import socket

        where = "udp %s:%d" % (host, port)
        try:
            ai = socket.getaddrinfo(host, port, 0, socket.SOCK_DGRAM)[0]
            sock = socket.socket(ai[0], socket.SOCK_DGRAM)
        except OSError as e:
            raise DeviceError("%s: %s" % (where, e)) from None
        try:
            sock.connect(ai[-1])
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            raise DeviceError("%s: %s" % (where, e)) from None
        return cls(sock, where)

    async def send(self, data):
        if self.sock is None:
            raise DeviceError("%s: transport is closed" % self.where)
        try:
            self.sock.send(data)
        except OSError as e:  # EAGAIN: the stack's buffer is full; the client's retry decides
            self.errors += 1
            raise DeviceError("%s: send failed: %s" % (self.where, e)) from None

    async def _recv(self):
        while True:
            await _readable(self.sock)
            try:
                return self.sock.recv(MAX_BYTES)
            except OSError as e:  # ICMP unreachable reads as silence, like a lost datagram
                self.errors += 1
                if e.args and e.args[0] == 11:  # EAGAIN: woken without data
                    continue
                await asyncio.sleep_ms(50)

    async def recv(self, timeout):
        if self.sock is None:
            return None
        try:
            return await asyncio.wait_for(self._recv(), timeout)
        except asyncio.TimeoutError:
            return None

    def close(self):
        s, self.sock = self.sock, None
        if s is not None:
            try:
                s.close()
            except OSError:
                pass


async def open_udp(host, port):
    """The transport factory for SnmpLiteDriver.TRANSPORT and the SNTP keeper."""
    return await UdpTransport.open(host, port)
