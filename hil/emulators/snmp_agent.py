"""A small SNMP v1/v2c agent on a UDP socket on the loopback, serving a table computed per request
(host only).

    agent = SnmpAgent(table_fn, community="public")   # table_fn() -> {oid: (tag, value)}
    with agent:                                        # binds 127.0.0.1 port 0; agent.port
        ...

`table_fn` is called once per request, under the agent's lock, so every value in one answer comes
from one instant of the caller's model (a dynamic device, not a recording). OIDs are dotted
strings without a leading dot; tags and values are drivers/proto/ber.py's (ber.INTEGER, 5352).

Served: GET (noSuchObject when no OID of the table starts with the asked one plus a dot,
noSuchInstance otherwise), GETNEXT, GETBULK (non-repeaters, max-repetitions, endOfMibView past
the end). v1 has no exceptions: a missing OID answers noSuchName (status 2) with its index and
GETBULK is ignored, as a v1 agent does. A wrong community gets no answer (what real agents do;
the manager times out). Anything that does not decode is dropped.

Faults (set_fault or .fault), applied per request, as the pty emulators' are:
    None        answer normally
    "silence"   read requests, answer nothing
    "garbage"   random bytes of about the answer's length
    "truncated" the first half of the answer
    "slow"      answer after slow_s (set it above the manager's timeout x tries)

Invariants: one thread, one socket, both gone after stop() (joined, closed); the answer is at
most MAX_ANSWER bytes (GETBULK repetitions are cut to fit, as RFC 3416 allows).
"""

import bisect
import random
import socket
import threading
import time

from agent.core.errors import ParseError
from drivers.proto import ber, ber_agent

FAULTS = ("silence", "garbage", "truncated", "slow")
MAX_ANSWER = 1472  # one Ethernet frame's UDP payload: an agent's usual limit
NO_SUCH_NAME = 2


def oid_key(oid):
    return tuple(int(x) for x in oid.split("."))


class SnmpAgent:
    def __init__(self, table_fn, community="public", host="127.0.0.1", slow_s=3.0, seed=1):
        if host not in ("127.0.0.1", "::1"):
            raise ValueError("loopback only: %r" % host)
        self.table_fn = table_fn
        self.community = community.encode() if isinstance(community, str) else community
        self.host = host
        self.port = None
        self.slow_s = slow_s
        self.fault = None
        self.requests = 0  # datagrams received
        self.answers = 0  # answers sent (whole or faulted)
        self.lock = threading.RLock()  # held while table_fn runs: the model's lock too
        self._rng = random.Random(seed)
        self._sock = None
        self._thread = None
        self._stop = False

    # --- lifecycle ------------------------------------------------------------------------
    def start(self):
        if self._thread is not None:
            return self.port
        fam = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        self._sock = socket.socket(fam, socket.SOCK_DGRAM)
        self._sock.bind((self.host, 0))
        self._sock.settimeout(0.1)  # the stop flag is seen within 0.1 s
        self.port = self._sock.getsockname()[1]
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="snmp agent", daemon=True)
        self._thread.start()
        return self.port

    def stop(self):
        """Join the thread and close the socket. Safe to call twice."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stop = True
            thread.join(5.0 + self.slow_s)
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_fault(self, name):
        if name is not None and name not in FAULTS:
            raise ValueError("unknown fault %r; known: %s" % (name, ", ".join(FAULTS)))
        self.fault = name

    # --- the thread -------------------------------------------------------------------------
    def _run(self):
        while not self._stop:
            try:
                data, peer = self._sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.requests += 1
            fault = self.fault
            if fault == "silence":
                continue
            answer = self.answer(data)
            if answer is None:
                continue
            if fault == "garbage":
                answer = bytes(self._rng.randrange(256) for _ in range(len(answer)))
            elif fault == "truncated":
                answer = answer[: len(answer) // 2]
            elif fault == "slow":
                end = time.monotonic() + self.slow_s
                while not self._stop and time.monotonic() < end:
                    time.sleep(0.02)
            try:
                self._sock.sendto(answer, peer)
                self.answers += 1
            except OSError:
                pass

    # --- the protocol -------------------------------------------------------------------------
    def answer(self, data):
        """The encoded answer to one datagram, or None (undecodable, wrong community, v1 bulk)."""
        try:
            msg = ber.decode_message(data)
        except ParseError:
            return None
        if msg.community != self.community or msg.version not in (0, 1):
            return None
        if msg.pdu not in (ber.GET, ber.GET_NEXT, ber.GET_BULK):
            return None  # SET and the rest: read-only agent, no answer
        if msg.pdu == ber.GET_BULK and msg.version == 0:
            return None
        with self.lock:
            table = self.table_fn()
        keys = sorted(table, key=oid_key)
        tuples = [oid_key(k) for k in keys]
        oids = [vb[0] for vb in msg.varbinds]
        if msg.pdu == ber.GET:
            out = [self._get(table, tuples, oid) for oid in oids]
        elif msg.pdu == ber.GET_NEXT:
            out = [self._next(table, keys, tuples, oid) for oid in oids]
        else:
            out = self._bulk(table, keys, tuples, oids, msg.status, msg.index)
        if msg.version == 0:
            for i, (_oid, tag, _v) in enumerate(out):
                if tag in (ber.NO_SUCH_OBJECT_TAG, ber.NO_SUCH_INSTANCE_TAG,
                           ber.END_OF_MIB_VIEW_TAG):  # fmt: skip
                    vbs = [(o, ber.NULL, None) for o in oids]
                    return ber_agent.encode_response(0, msg.community, msg.request_id, vbs,
                                                     NO_SUCH_NAME, i + 1)  # fmt: skip
        return self._fit(msg, out)

    def _fit(self, msg, out):
        """Encode; drop trailing varbinds of a GETBULK answer until it fits MAX_ANSWER."""
        while True:
            enc = ber_agent.encode_response(msg.version, msg.community, msg.request_id, out)
            if len(enc) <= MAX_ANSWER or msg.pdu != ber.GET_BULK or len(out) <= 1:
                return enc
            out = out[: max(1, len(out) * MAX_ANSWER // len(enc) - 1)]

    @staticmethod
    def _get(table, tuples, oid):
        if oid in table:
            tag, value = table[oid]
            return (oid, tag, value)
        key = oid_key(oid)
        i = bisect.bisect_left(tuples, key)
        # An OID inside a known object (a row or .0 of something served) is a missing
        # instance; anything else is an object the agent does not implement.
        parent, n = key[:-1], len(key) - 1
        for j in (i - 1, i):
            if n > 6 and 0 <= j < len(tuples) and tuples[j][:n] == parent:
                return (oid, ber.NO_SUCH_INSTANCE_TAG, None)
        return (oid, ber.NO_SUCH_OBJECT_TAG, None)

    @staticmethod
    def _next(table, keys, tuples, oid):
        i = bisect.bisect_right(tuples, oid_key(oid))
        if i >= len(keys):
            return (oid, ber.END_OF_MIB_VIEW_TAG, None)
        tag, value = table[keys[i]]
        return (keys[i], tag, value)

    def _bulk(self, table, keys, tuples, oids, non_rep, max_rep):
        non_rep = max(0, min(non_rep, len(oids)))
        max_rep = max(0, max_rep)
        out = [self._next(table, keys, tuples, o) for o in oids[:non_rep]]
        cursors = list(oids[non_rep:])
        for _r in range(max_rep):
            if not cursors:
                break
            row = [self._next(table, keys, tuples, o) for o in cursors]
            out.extend(row)
            cursors = [vb[0] for vb in row]
            if all(vb[1] == ber.END_OF_MIB_VIEW_TAG for vb in row):
                break
        return out


class SnmpDevice:
    """What every emulated SNMP device shares: its SnmpAgent in self.agent (the subclass makes
    it with its own table), the port it answers on, start/stop, a context manager, faults."""

    agent = None

    @property
    def port(self):
        return self.agent.port

    def start(self):
        return self.agent.start()

    def stop(self):
        self.agent.stop()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()
        return False

    def set_fault(self, name):
        self.agent.set_fault(name)
