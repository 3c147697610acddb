"""A connected UDP datagram transport on asyncio (host only), for drivers/proto/snmp_client.py.

    t = await UdpTransport.open("127.0.0.1", 161)
    await t.send(data)
    reply = await t.recv(timeout)        # bytes, or None when nothing came within timeout
    t.close()

The socket is connected to the peer, so the kernel drops datagrams from any other address. At
most MAX_QUEUED datagrams wait unread; more are dropped (a flooding peer cannot grow memory).
An ICMP error (port unreachable) is counted in `errors` and otherwise reads as silence: the
client's timeout and retries decide, as with a lost datagram.
"""

import asyncio
import socket
from collections import deque

from agent.core.errors import DeviceError

MAX_QUEUED = 64


def _expire(waiter):
    if not waiter.done():
        waiter.set_result(None)  # nothing came within the timeout


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner):
        self.owner = owner

    def datagram_received(self, data, addr):
        owner = self.owner
        w = owner.waiter
        if w is not None and not w.done():
            owner.waiter = None
            w.set_result(data)  # a recv() is waiting: hand the datagram over directly
        elif len(owner.queue) < MAX_QUEUED:
            owner.queue.append(data)
        else:
            owner.overflow += 1

    def error_received(self, exc):
        self.owner.errors += 1
        self.owner.last_error = exc


class UdpTransport:
    def __init__(self):
        self.queue = deque()  # datagrams nobody waited for, oldest first
        self.waiter = None  # the future a recv() waits on, if one does
        self.transport = None
        self.errors = 0
        self.overflow = 0
        self.last_error = None

    @classmethod
    async def open(cls, host, port):
        self = cls()
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self.transport, _ = await loop.create_datagram_endpoint(
                lambda: _Protocol(self), remote_addr=(host, port), family=family
            )
        except OSError as e:
            raise DeviceError("udp %s:%d: %s" % (host, port, e)) from e
        return self

    async def send(self, data):
        if self.transport is None:
            raise DeviceError("udp: transport is closed")
        self.transport.sendto(data)

    async def recv(self, timeout):
        # One future and one timer per wait (asyncio.wait_for on a Queue costs a task too: this
        # is on the path of every SNMP request).
        if self.queue:
            return self.queue.popleft()
        if timeout <= 0:
            return None
        loop = asyncio.get_running_loop()
        w = self.waiter = loop.create_future()
        timer = loop.call_later(timeout, _expire, w)
        try:
            return await w
        finally:
            timer.cancel()
            if self.waiter is w:
                self.waiter = None

    def close(self):
        if self.transport is not None:
            self.transport.close()
            self.transport = None
