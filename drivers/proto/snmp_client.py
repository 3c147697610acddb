"""A small SNMP v1/v2c client (portable): GET, GETNEXT and GETBULK walks over a given transport.

    client = SnmpClient(transport, community="public", version="2c", timeout=2.0, retries=1)
    values = await client.get(["1.3.6.1.2.1.1.3.0", ...])       # {oid: value}
    values = await client.walk(["1.3.6.1.2.1.2.2.1.8", ...])     # every row of these columns
    types = {}; await client.get(oids, types)                    # also {oid: BER tag}

`timeout` is the wait per try. A driver with a poll budget gets it from try_timeout(budget,
retries) and sets `client.deadline` at the start of each poll: every try fits in the budget,
with a reserve left for the verdict.

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

No answer: DeviceTimeout with no_answer()'s reason. A transport may count ICMP errors (an
`errors` count and the `last_error` exception, as agent/host/udp.py does): a port unreachable
during the tries then reads "no SNMP agent listening" instead of the v1/v2c silence, which cannot
tell a wrong community from an agent that is down.

Matching: a request keeps its request-id through its retries (a late answer to an earlier try is
still good); a datagram with another id, another community or version, or that is not a Response,
is dropped and counted; a malformed one is dropped and remembered, so that a device that only ever
sends junk ends with ParseError naming the junk rather than a bare timeout. After MAX_JUNK dropped
datagrams a try ends early: a flooding peer cannot keep the client busy until its deadline.
"""

from agent.core.compat import monotonic
from agent.core.errors import DeviceError, DeviceTimeout, ParseError
from drivers.proto import ber, ber_request

MAX_GET = 32  # OIDs per GET; halved on tooBig
MAX_BULK_VARBINDS = 60  # columns x repetitions per GETBULK (snmpsim answers at most 64)
MAX_ROWS = 4096  # per column: a device that never ends a table must not hang the poll
MAX_JUNK = 16  # datagrams dropped per try before the try counts as failed (a flood ends it)
VERSIONS = {"1": ber.V1, "2c": ber.V2C}
try:
    from errno import ECONNREFUSED
except ImportError:  # a port without errno: Linux's number
    ECONNREFUSED = 111


def reserve(budget):
    """Seconds of a poll's budget kept for what follows the last try (the verdict, a cause
    probe): a tenth, at least 0.1 s, at most 0.5 s, never more than half."""
    return min(0.5, budget / 2, max(0.1, budget * 0.1))


def try_timeout(budget, retries):
    """Seconds each try may wait so that 1 + `retries` tries fit in the poll budget, less its
    reserve()."""
    return (budget - reserve(budget)) / (retries + 1)


def try_wait(try_s, deadline, tries_left):
    """How long this try may wait: `try_s`, but no more than an equal share of what is left
    until `deadline` (monotonic, or None) among the tries still to go, so that a slow start
    (an open, a first request) does not push the last try past the poll's budget."""
    if deadline is None:
        return try_s
    return min(try_s, (deadline - monotonic()) / tries_left)


def no_answer(where, version, tries, try_s, icmp=None):
    """The reason a request got no answer. `icmp`: the OSError an ICMP message raised on the
    transport during the tries, if any. SNMPv1/v2c agents drop a wrong community in silence, so
    silence cannot tell it from an agent that is down."""
    what = "%d %s of %.3gs" % (tries, "try" if tries == 1 else "tries", try_s)
    if icmp is not None:
        code = getattr(icmp, "errno", None) or (icmp.args[0] if icmp.args else None)
        if code == ECONNREFUSED:
            return "%s: no SNMP agent listening on that port (ICMP port unreachable, %s)" % (
                where,
                what,
            )
        return "%s: unreachable (ICMP: %s, %s)" % (where, icmp, what)
    if version == "3":
        return "%s: no answer to %s (agent down, or it drops this user, level or context)" % (
            where,
            what,
        )
    return "%s: no answer to %s (wrong community or agent down)" % (where, what)


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
        self.deadline = None  # monotonic end of the poll's budget for the tries, when set
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
        data = ber_request.encode_request(self.ver, self.community, pdu, rid, oids, a, b)
        self.requests += 1
        junk = None
        icmp_before = getattr(self.transport, "errors", 0)
        for n in range(self.retries + 1):
            wait = try_wait(self.timeout, self.deadline, self.retries + 1 - n)
            if wait <= 0:
                break
            await self.transport.send(data)
            self.sent += 1
            deadline = monotonic() + wait
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
        if junk is not None:
            raise ParseError(
                "%s: no valid response after %d %s; last reply: %s"
                % (self.where, tries, "try" if tries == 1 else "tries", junk)
            )
        icmp = None
        if getattr(self.transport, "errors", 0) > icmp_before:
            icmp = getattr(self.transport, "last_error", None)
        raise DeviceTimeout(no_answer(self.where, self.version, tries, self.timeout, icmp))

    async def get(self, oids, types=None):
        """{oid: value} for the OIDs that have a value; their BER tags into `types` if given."""
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
                    if types is not None:
                        types[oid] = tag
            del pending[: len(batch)]
        return out

    async def walk(self, prefixes, types=None):
        """{oid: value} for every row of the columns `prefixes` (GETBULK; GETNEXT on v1); their
        BER tags into `types` if given."""
        out = {}
        cursors = {}  # column -> last OID seen (insertion order kept by the list below)
        order = []
        for p in prefixes:
            if p not in cursors:
                cursors[p] = p
                order.append(p)
        rows = {p: 0 for p in order}
        dotted = {p: p + "." for p in order}
        # The sub-ids after the column of the last OID seen: OIDs of one column compare by
        # them alone (same prefix), and a row index is one or two sub-ids, not a dozen.
        last = {p: None for p in order}
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
                if value is ber.END_OF_MIB_VIEW or not oid.startswith(dotted[col]):
                    done.append(col)
                    continue
                key = oid_key(oid[len(col) + 1 :])
                if last[col] is not None and key <= last[col]:
                    raise ParseError("%s: OID not increasing in %s: %s" % (self.where, col, oid))
                last[col] = key
                cursors[col] = oid
                rows[col] += 1
                v = plain(tag, value)
                if v is not None:
                    out[oid] = v
                    if types is not None:
                        types[oid] = tag
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
