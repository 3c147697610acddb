"""A scripted SNMP agent as a transport for drivers/proto/snmp_client.py (portable: runs under
pytest and the MicroPython runner; tests/host/test_ber_fuzz.py uses it too).

    peer = Peer(answer([(UPTIME, ber.TIMETICKS, 5)]), silence)   # one step per request sent
    client = SnmpClient(peer, ...)
    peer.sent                      # every datagram the client sent, in order

Each send() takes the next step (then `default`, silence unless given): a function
(request Message, request bytes) -> a list of what the agent does, each item a datagram (bytes)
to answer with or an OSError (an ICMP error on the transport, counted in `errors` and kept as
`last_error`, as agent/host/udp.py does). recv() hands the datagrams out and returns None at once
when none is left (a timeout, without waiting for it); with `flood` set it returns that datagram
on every call instead (a peer that never stops sending).
"""

import asyncio

from drivers.proto import ber, ber_agent
from drivers.proto.snmp_client import oid_key


def silence(m, d):
    return []


class Peer:
    def __init__(self, *steps, default=silence, flood=None):
        self.steps = list(steps)
        self.default = default
        self.flood = flood
        self.sent = []
        self.inbox = []
        self.errors = 0
        self.last_error = None

    async def send(self, data):
        self.sent.append(bytes(data))
        step = self.steps.pop(0) if self.steps else self.default
        for item in step(ber.decode_message(data), data):
            if isinstance(item, OSError):
                self.errors += 1
                self.last_error = item
            else:
                self.inbox.append(item)

    async def recv(self, timeout):
        if self.flood is not None:
            await asyncio.sleep(0)
            return self.flood
        return self.inbox.pop(0) if self.inbox else None

    def close(self):
        pass


def answer(varbinds, status=0, index=0, rid_delta=0, community=None, version=None):
    """A step answering with `varbinds` (oid, tag, value), optionally mismatched."""

    def step(m, _data):
        return [
            ber_agent.encode_response(
                m.version if version is None else version,
                m.community if community is None else community,
                m.request_id + rid_delta,
                varbinds,
                status,
                index,
            )
        ]

    return step


def table_agent(mib, version=1):
    """A step that serves GETNEXT and GETBULK from `mib` {oid: (tag, value)}, as an agent does
    (v1: noSuchName past the end; v2c: endOfMibView)."""
    keys = sorted(mib, key=oid_key)

    def following(oid):
        k = oid_key(oid)
        for o in keys:
            if oid_key(o) > k:
                return o
        return None

    def step(m, d):
        out = []
        if m.pdu == ber.GET_NEXT:
            for i, (oid, _t, _v) in enumerate(m.varbinds):
                nxt = following(oid)
                if nxt is None and version == 0:
                    return answer([], status=2, index=i + 1)(m, d)
                out.append((nxt, mib[nxt][0], mib[nxt][1]))
        else:
            assert m.pdu == ber.GET_BULK and m.status == 0
            cursors = [oid for oid, _t, _v in m.varbinds]
            for _rep in range(m.index):
                for i, oid in enumerate(cursors):
                    nxt = following(oid)
                    if nxt is None:
                        out.append((oid, ber.END_OF_MIB_VIEW_TAG, None))
                    else:
                        out.append((nxt, mib[nxt][0], mib[nxt][1]))
                        cursors[i] = nxt
        return answer(out)(m, d)

    return step


def drawn_values(draw_value, rid_delta=0, junk=None):
    """A step answering every OID asked with a value from draw_value() -> (tag, value): GET the
    OID itself, GETNEXT/GETBULK one row (.1) per column and then endOfMibView. Optionally a wrong
    request-id, and `junk` bytes sent first."""
    rows = {}

    def step(m, _data):
        vbs = []
        for oid, _t, _v in m.varbinds:
            if m.pdu != ber.GET and oid in rows:  # one row per column, then the end
                vbs.append((oid, ber.END_OF_MIB_VIEW_TAG, None))
                continue
            tag, value = draw_value()
            name = oid if m.pdu == ber.GET else oid + ".1"
            rows[name] = True
            vbs.append((name, tag, value))
        out = [junk] if junk is not None else []
        out.append(
            ber_agent.encode_response(m.version, m.community, m.request_id + rid_delta, vbs)
        )
        return out

    return step
