"""A small SNMP v1/v2c client (portable): GET, GETNEXT and GETBULK walks over a given transport.

    client = SnmpClient(transport, community="public", version="2c", timeout=2.0, retries=1)
    values = await client.get(["1.3.6.1.2.1.1.3.0", ...])       # {oid: value}
    values = await client.walk(["1.3.6.1.2.1.2.2.1.8", ...])     # every row of these columns

The transport is any object with `async send(data)` and `async recv(timeout)`, the latter returning
the next datagram (bytes) or None when nothing came within `timeout` seconds. The host uses
agent/host/udp.py; a board's firmware passes a socket-based one. This module does no I/O itself.

Values follow drivers/profiles/engine.py's model, the same as the pysnmp driver gives: ints,
OCTET STRING and Opaque as str (UTF-8, bad bytes as U+FFFD), OIDs and IpAddress as dotted str;
OIDs answered noSuchObject/noSuchInstance/endOfMibView (or NULL) are left out.

Requests mirror drivers/snmp.py so that both drivers read a device the same way: up to MAX_GET
OIDs per GET (halved on tooBig; on v1 the OID named by noSuchName is dropped and the rest asked
again); columns walked together with GETBULK (GETNEXT on v1), at most MAX_BULK_VARBINDS varbinds
per request, each column ending at the first OID outside it, at endOfMibView, or after MAX_ROWS.

Matching: a request keeps its request-id through its retries (a late answer to an earlier try is
still good); a datagram with another id, another community or version, or that is not a Response,
is dropped and counted; a malformed one is dropped and remembered, so that a device that only ever
sends junk ends with ParseError naming the junk rather than a bare timeout. After MAX_JUNK dropped
datagrams a try ends early: a flooding peer cannot keep the client busy until its deadline.
"""

from agent.core.compat import monotonic
from agent.core.errors import DeviceError, DeviceTimeout, ParseError
from drivers.proto import ber

MAX_GET = 32  # OIDs per GET; halved on tooBig
MAX_BULK_VARBINDS = 60  # columns x repetitions per GETBULK (snmpsim answers at most 64)
MAX_ROWS = 4096  # per column: a device that never ends a table must not hang the poll
MAX_JUNK = 16  # datagrams dropped per try before the try counts as failed (a flood ends it)
VERSIONS = {"1": ber.V1, "2c": ber.V2C}


def plain(tag, value):
    """A decoded varbind value in the engine's model; None for 'no value'."""
    if value is None or isinstance(value, ber._Exception):
        return None
    if tag == ber.OCTET_STRING or tag == ber.OPAQUE:
        return ber.text(value)
    return value


def oid_key(oid):
    """Sort/compare key of a dotted OID."""
    return [int(x) for x in oid.split(".")]


def _first_id():
    try:
        import random

        return random.getrandbits(30) + 1
    except Exception:  # noqa: BLE001 - a port without random: start from the clock
        return int(monotonic() * 1000) & 0x3FFFFFFF or 1


class SnmpClient:
    def __init__(
        self,
        transport,
        community="public",
        version="2c",
        timeout=2.0,
        retries=1,
        max_size=ber.MAX_MESSAGE,
        where="snmp",
        request_id=None,
    ):
        if version not in VERSIONS:
            raise DeviceError(
                "%s: SNMP version %r is not supported here (1 or 2c)" % (where, version)
            )
        self.transport = transport
        self.community = community.encode() if isinstance(community, str) else community
        self.version = version
        self.ver = VERSIONS[version]
        self.timeout = timeout
        self.retries = retries
        self.max_size = max_size
        self.where = where
        self._rid = request_id if request_id is not None else _first_id()
        self.requests = 0  # distinct requests (retries not counted)
        self.sent = 0  # datagrams sent, retries included
        self.dropped = 0  # datagrams dropped: wrong request-id, community, version or PDU
        self.malformed = 0  # datagrams that did not decode

    def _next_id(self):
        rid = self._rid
        self._rid = rid % 0x7FFFFFFF + 1  # request-id stays a positive Integer32
        return rid

    async def request(self, pdu, oids, a=0, b=0):
        """Send one request and return its Response (ber.Message). Raises DeviceTimeout when
        nothing matching came, ParseError when only malformed replies came."""
        rid = self._next_id()
        data = ber.encode_request(self.ver, self.community, pdu, rid, oids, a, b)
        self.requests += 1
        junk = None
        for _try in range(self.retries + 1):
            await self.transport.send(data)
            self.sent += 1
            deadline = monotonic() + self.timeout
            bad = 0
            while bad < MAX_JUNK:
                left = deadline - monotonic()
                if left <= 0:
                    break
                reply = await self.transport.recv(left)
                if reply is None:
                    break
                try:
                    msg = ber.decode_message(reply, self.max_size)
                except ParseError as e:
                    self.malformed += 1
                    bad += 1
                    junk = e
                    continue
                if (
                    msg.request_id != rid
                    or msg.pdu != ber.RESPONSE
                    or msg.version != self.ver
                    or msg.community != self.community
                ):
                    self.dropped += 1
                    bad += 1
                    continue
                return msg
        tries = self.retries + 1
        what = "%d %s" % (tries, "try" if tries == 1 else "tries")
        if junk is not None:
            raise ParseError(
                "%s: no valid response after %s; last reply: %s" % (self.where, what, junk)
            )
        raise DeviceTimeout(
            "%s: no response after %s (host down, or wrong port or community)" % (self.where, what)
        )

    async def get(self, oids):
        """{oid: value} for the OIDs that have a value."""
        out = {}
        pending = list(oids)
        size = MAX_GET
        while pending:
            batch = pending[:size]
            msg = await self.request(ber.GET, batch)
            status, index = msg.status, msg.index
            if status == 1 and size > 1:  # tooBig
                size = max(1, size // 2)
                continue
            if status == 2 and self.ver == ber.V1 and 0 < index <= len(batch):
                pending.remove(batch[index - 1])  # v1: one missing OID fails the whole PDU
                continue
            if status:
                self._status_error(status, index, batch)
            for oid, tag, value in msg.varbinds:
                v = plain(tag, value)
                if v is not None and oid in batch:
                    out[oid] = v
            del pending[: len(batch)]
        return out

    async def walk(self, prefixes):
        """{oid: value} for every row of the columns `prefixes` (GETBULK; GETNEXT on v1)."""
        out = {}
        cursors = {}  # column -> last OID seen (insertion order kept by the list below)
        order = []
        for p in prefixes:
            if p not in cursors:
                cursors[p] = p
                order.append(p)
        rows = {p: 0 for p in order}
        budget = MAX_BULK_VARBINDS
        while order:
            active = order[: max(1, budget // 2)]
            reps = max(1, budget // len(active))
            start = [cursors[p] for p in active]
            if self.ver == ber.V1:
                msg = await self.request(ber.GET_NEXT, start)
                if msg.status == 2 and 0 < msg.index <= len(active):
                    order.remove(active[msg.index - 1])  # v1: end of the MIB for that column
                    continue
            else:
                msg = await self.request(ber.GET_BULK, start, 0, reps)
            if msg.status == 1 and budget > 1:  # tooBig: ask for fewer varbinds
                budget //= 2
                continue
            if msg.status:
                self._status_error(msg.status, msg.index, start, "while walking ")
            done = []
            for i, (oid, tag, value) in enumerate(msg.varbinds):
                col = active[i % len(active)]
                if col in done:
                    continue
                if value is ber.END_OF_MIB_VIEW or not oid.startswith(col + "."):
                    done.append(col)
                    continue
                if oid_key(oid) <= oid_key(cursors[col]):
                    raise ParseError("%s: OID not increasing in %s: %s" % (self.where, col, oid))
                cursors[col] = oid
                rows[col] += 1
                v = plain(tag, value)
                if v is not None:
                    out[oid] = v
                if rows[col] >= MAX_ROWS:
                    done.append(col)
            if not msg.varbinds:
                done.extend(active)
            for col in done:
                if col in order:
                    order.remove(col)
        return out

    def _status_error(self, status, index, oids, doing=""):
        name = ber.error_name(status)
        if name == "authorizationError":
            raise DeviceError("%s: authorization error" % self.where)
        at = oids[index - 1] if 0 < index <= len(oids) else oids[0]
        raise DeviceError("%s: %s %sat %s" % (self.where, name, doing, at))
