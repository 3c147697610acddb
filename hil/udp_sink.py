"""UDP peers for SNMP tests on the loopback (host only): a silent sink that counts what it gets,
and a lossy proxy that drops the first try of every request on its way to a real agent.

    with UdpSink() as sink:                 # 127.0.0.1:sink.port, never answers
        ...; sink.requests                  # SNMP v1/v2c messages received
        sink.request_ids                    # their request-ids, in order (a retry repeats one)
        sink.other                          # datagrams that are not v1/v2c SNMP (an empty probe)
    with LossyProxy(("127.0.0.1", sim.port)) as proxy:
        ...                                 # poll 127.0.0.1:proxy.port; proxy.dropped

The proxy forwards replies to whoever sent the request. It drops the requests `lose(n)` picks,
n counting SNMP requests from 1: by default every odd one, so that each request loses its first
try and its retry gets through (one lost datagram per exchange on a lossy backhaul), whether a
driver retries with the same request-id or a new one. Datagrams that are not v1/v2c SNMP pass
through untouched.

Invariants: one thread and one or two sockets each, all gone after stop() (joined, closed);
stop() is safe to call twice.

    python -m hil.udp_sink [seconds]        # a sink on a free port, printing what arrives
"""

import socket
import sys
import threading
import time

from agent.core.errors import ParseError
from drivers.proto import ber

POLL_S = 0.05  # the threads' socket timeout: bounds how long stop() waits


def _request_id(data):
    try:
        return ber.decode_message(data).request_id
    except ParseError:
        return None


class _Peer:
    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(POLL_S)
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = None

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        for s in self._sockets():
            s.close()

    def _sockets(self):
        return (self.sock,)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class UdpSink(_Peer):
    """Receives and counts; never answers (a host that is up, with a firewall or an agent that
    drops the community)."""

    def __init__(self):
        _Peer.__init__(self)
        self.requests = 0
        self.request_ids = []
        self.other = 0
        self.times = []  # monotonic arrival time of each SNMP request

    def _run(self):
        while not self._stop.is_set():
            try:
                data, _addr = self.sock.recvfrom(65535)
            except OSError:
                continue
            rid = _request_id(data)
            with self.lock:
                if rid is None:
                    self.other += 1
                else:
                    self.requests += 1
                    self.request_ids.append(rid)
                    self.times.append(time.monotonic())


def odd(n):
    return n % 2 == 1


class LossyProxy(_Peer):
    def __init__(self, target, lose=odd):
        _Peer.__init__(self)
        self.target = target
        self.lose = lose
        self.up = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.up.connect(target)
        self.up.settimeout(POLL_S)
        self.requests = 0  # SNMP requests received
        self.dropped = 0
        self.forwarded = 0
        self.client = None

    def _sockets(self):
        return (self.sock, self.up)

    def _run(self):
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except OSError:
                data = None
            if data is not None:
                self.client = addr
                rid = _request_id(data)
                with self.lock:
                    drop = False
                    if rid is not None:
                        self.requests += 1
                        drop = self.lose(self.requests)
                    if drop:
                        self.dropped += 1
                    else:
                        self.forwarded += 1
                if not drop:
                    self.up.send(data)
            while True:
                try:
                    reply = self.up.recv(65535)
                except OSError:
                    break
                if self.client is not None:
                    self.sock.sendto(reply, self.client)


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3600.0
    with UdpSink() as sink:
        print("silent UDP sink on 127.0.0.1:%d for %gs" % (sink.port, seconds), flush=True)
        t0 = time.monotonic()
        shown = 0
        try:
            while time.monotonic() - t0 < seconds:
                time.sleep(0.05)
                with sink.lock:
                    new = [(sink.times[i], sink.request_ids[i])
                           for i in range(shown, sink.requests)]  # fmt: skip
                    other = sink.other
                for t, rid in new:
                    print("%7.3fs SNMP request id %d (total %d, other datagrams %d)"
                          % (t - t0, rid, shown + 1, other), flush=True)  # fmt: skip
                    shown += 1
        except KeyboardInterrupt:
            pass
        print("total: %d SNMP requests, %d other datagrams" % (sink.requests, sink.other))
