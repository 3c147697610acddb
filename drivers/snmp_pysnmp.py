"""SNMP over pysnmp 7 (host only): the `snmp` driver's engine for SNMPv3. drivers/snmp.py creates
a PysnmpDriver for a device whose version is "3"; v1/v2c devices go the portable BER client's way
and never import this module (nor pysnmp/pyasn1: about 25 MB of RSS and most of the CPU of a
poll). It still reads v1/v2c when created directly: the tests hold it and the BER client to the
same samples on every recording. Detection, identification and the poll's timing are
drivers/snmp_base.py's, shared with snmp-lite.

Config (device["snmp"]): host, port (161), version "1" | "2c" | "3", community, profile ("auto" or
a name from drivers.profiles), retries (1); v3: user, auth_protocol, auth_key, priv_protocol,
priv_key, security_level, context. device["timeout"]: the poll's budget, split over the tries.

Requests: scalars by GET, many OIDs per request (split on tooBig, and on v1 the OID a v1 agent
names in noSuchName is dropped and the rest asked again); table columns by GETBULK, several
columns per request (GETNEXT on v1). Numeric OIDs only, no MIB compilation (lookupMib=False).
Unknown values (noSuch*, endOfMibView, -1) give no sample. No answer raises DeviceTimeout with
snmp_client.no_answer()'s reason: pysnmp's socket is shared and not connected, so it never sees
an ICMP port unreachable; after the last try one byte goes to the device's port from a
connected socket, and the ICMP error it draws (if any) is the cause. An SNMPv3 report names what
the agent refused (unknown user or context, wrong digest, decryption error ...). Other failures
are DeviceError with the reason.
"""

import asyncio

from pyasn1.type import univ
from pysnmp.hlapi.v3arch.asyncio import (
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    bulk_cmd,
    get_cmd,
    next_cmd,
)
from pysnmp.hlapi.v3arch.asyncio import auth as _auth
from pysnmp.proto import errind, rfc1902, rfc1905

from agent.core.compat import monotonic
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout, ParseError
from drivers.base import EXPERIMENTAL
from drivers.proto.snmp_client import no_answer
from drivers.snmp import SnmpDriver
from drivers.snmp_base import SnmpBase

MAX_GET = 32  # OIDs per GET; halved on tooBig
MAX_BULK_VARBINDS = 60  # columns x repetitions per GETBULK (snmpsim answers at most 64)
MAX_ROWS = 4096  # per column: a device that never ends a table must not hang the poll

AUTH = {
    "MD5": _auth.USM_AUTH_HMAC96_MD5,
    "SHA": _auth.USM_AUTH_HMAC96_SHA,
    "SHA256": _auth.USM_AUTH_HMAC192_SHA256,
    "none": _auth.USM_AUTH_NONE,
}
PRIV = {
    "AES": _auth.USM_PRIV_CFB128_AES,
    "AES256": _auth.USM_PRIV_CFB256_AES,
    "DES": _auth.USM_PRIV_CBC56_DES,
    "none": _auth.USM_PRIV_NONE,
}
# What an SNMPv3 agent's report (or pysnmp's own check of an answer) means, by errorIndication.
V3_REFUSED = (
    (errind.UnknownUserName, "unknown user {user!r} (usmStatsUnknownUserNames)"),
    (errind.UnknownSecurityName, "unknown user {user!r}"),
    (errind.WrongDigest, "wrong authentication key or protocol (usmStatsWrongDigests)"),
    (errind.DecryptionError, "wrong privacy key or protocol (usmStatsDecryptionErrors)"),
    (
        errind.UnsupportedSecurityLevel,
        "security level {level} not allowed for user {user!r} (usmStatsUnsupportedSecLevels)",
    ),
    (errind.NotInTimeWindow, "not in the agent's time window (usmStatsNotInTimeWindows)"),
    (errind.UnknownEngineID, "unknown engine ID (usmStatsUnknownEngineIDs)"),
    (errind.AuthenticationError, "authentication failed"),
    (errind.AuthenticationFailure, "authentication failed"),
)
# Reports pysnmp does not name itself: the counter OID the agent sends back.
V3_REPORTS = {
    "1.3.6.1.6.3.12.1.4.0": "context {context!r} unavailable (snmpUnavailableContexts)",
    "1.3.6.1.6.3.12.1.5.0": "unknown context {context!r} (snmpUnknownContexts)",
}
ICMP_PROBE_S = 0.25  # at most, waiting for the ICMP error the probe datagram may draw
PROBE = b"\x00"  # not SNMP: an agent counts it in snmpInASNParseErrs and drops it
_NO_VALUE = (
    rfc1905.NoSuchObject,
    rfc1905.NoSuchInstance,
    rfc1905.EndOfMibView,
    rfc1905.UnSpecified,
)


def ber_tag(value):
    """The BER tag of a decoded pysnmp value (0x43 for TimeTicks), as drivers/proto/ber.py."""
    try:
        t = value.tagSet[-1]
        return t.tagClass | t.tagFormat | t.tagId
    except (AttributeError, IndexError, TypeError):
        return None


def plain(value):
    """A pysnmp value as the engine's value model; None for noSuch*/endOfMibView."""
    if isinstance(value, _NO_VALUE):
        return None
    # Decoded values are pyasn1 univ types as often as pysnmp's rfc1902 subclasses: test those.
    if isinstance(value, univ.ObjectIdentifier):
        return str(value)
    if isinstance(value, rfc1902.IpAddress):
        return ".".join(str(b) for b in bytes(value))
    if isinstance(value, univ.OctetString):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, univ.Integer):
        return int(value)
    try:
        return int(value)  # Counter32/64, Gauge32, TimeTicks, Unsigned32
    except (TypeError, ValueError):
        return None


def _oid_tuple(oid):
    return tuple(int(x) for x in oid.split("."))


# One engine per event loop for all v1/v2c devices: each SnmpEngine costs about 3 MB once used,
# and community-based requests share nothing but the dispatcher. v3 devices get their own engine,
# because their users and keys live in the engine's USM tables.
_shared_engines = {}


def _engine_for(version):
    """(engine, owned): owned engines are closed with their device, shared ones with their loop."""
    if version == "3":
        return SnmpEngine(), True
    loop = asyncio.get_running_loop()
    for old in [k for k in _shared_engines if k.is_closed()]:
        del _shared_engines[old]  # engines of finished event loops (one-shot polls, tests)
    engine = _shared_engines.get(loop)
    if engine is None:
        engine = _shared_engines[loop] = SnmpEngine()
    return engine, False


class PysnmpDriver(SnmpDriver):
    """The `snmp` driver for SNMPv3 devices (SnmpDriver(device) returns one); v1/v2c too when
    created directly."""

    INFO = {
        "name": "snmp",
        "version": "0.4",
        "maturity": EXPERIMENTAL,
        "transport": "udp",
        "description": "SNMP v1/v2c/v3 on pysnmp with data-table profiles (the v3 engine)",
    }
    VERSIONS = ("1", "2c", "3")
    engine = "pysnmp"

    def __init__(self, device):
        SnmpBase.__init__(self, device)
        self.snmp = None
        self.own_engine = False
        self.target = None
        self.auth = None
        self.context = None
        self.sent = 0  # tries sent, retries included
        self._sending = None  # set by the pysnmp observer when a request of ours is sent
        self._observing = None  # the engine our observer is registered with

    # --- Driver ------------------------------------------------------------------------------
    async def open(self):
        self.snmp, self.own_engine = _engine_for(self.version)
        cls = Udp6TransportTarget if ":" in self.host else UdpTransportTarget
        try:
            # one try per pysnmp request, timed by us from its send (see _request): pysnmp's own
            # timer must not end it first
            self.target = await cls.create(
                (self.host, self.port), timeout=self.timeout + 1.0, retries=0
            )
        except Exception as e:
            self._close_engine()
            raise DeviceError(f"{self.where}: cannot resolve host: {e}") from e
        self.auth = self._auth_data()
        self.context = ContextData(contextName=self.cfg.get("context", "") or "")
        self._sending = asyncio.Event()
        if self._observing is not self.snmp:
            # Once per engine: pysnmp's unregister_observer leaves the callback's context behind,
            # and registering it again is refused. A shared engine keeps calling it after close.
            self.snmp.observer.register_observer(self._on_send, "rfc3412.sendPdu")
            self._observing = self.snmp

    async def fetch(self, gets, walks, types):
        values = await self.get(gets, types)
        if walks:
            values.update(await self.walk(walks, types))
        return values

    async def close(self):
        self._close_engine()

    def _close_engine(self):
        if self.snmp is not None and self.own_engine:
            self._observing = None
            try:
                self.snmp.close_dispatcher()
            except Exception:
                pass
        self.snmp = None

    # --- requests ----------------------------------------------------------------------------
    async def get(self, oids, types=None):
        """{oid: value} for the OIDs that have a value; their BER tags into `types` if given."""
        out = {}
        pending = list(oids)
        size = MAX_GET
        while pending:
            batch = pending[:size]
            status, index, varbinds = await self._request(get_cmd, batch)
            if status == "tooBig" and size > 1:
                size = max(1, size // 2)
                continue
            if status == "noSuchName" and self.version == "1" and 0 < index <= len(batch):
                pending.remove(batch[index - 1])  # v1: one missing OID fails the whole PDU
                continue
            if status:
                raise DeviceError(f"{self.where}: {status} at {batch[index - 1]}")
            for oid, value in varbinds:
                v = plain(value)
                if v is not None:
                    out[str(oid)] = v
                    if types is not None:
                        types[str(oid)] = ber_tag(value)
            del pending[: len(batch)]
        return out

    async def walk(self, prefixes, types=None):
        """{oid: value} for every row of the columns `prefixes` (GETBULK, GETNEXT on v1); their
        BER tags into `types` if given."""
        out = {}
        cursors = {p: p for p in prefixes}  # column -> last OID seen
        rows = {p: 0 for p in prefixes}
        while cursors:
            active = list(cursors)[: MAX_BULK_VARBINDS // 2]
            reps = max(1, MAX_BULK_VARBINDS // len(active))
            start = [cursors[p] for p in active]
            if self.version == "1":
                status, index, varbinds = await self._request(next_cmd, start)
                if status == "noSuchName" and 0 < index <= len(active):
                    del cursors[active[index - 1]]  # v1: end of the MIB for that column
                    continue
            else:
                status, index, varbinds = await self._request(bulk_cmd, start, reps)
            if status:
                raise DeviceError(f"{self.where}: {status} while walking {start[0]}")
            done = set()
            for i, (oid, value) in enumerate(varbinds):
                col = active[i % len(active)]
                if col in done:
                    continue
                oid = str(oid)
                if isinstance(value, rfc1905.EndOfMibView) or not oid.startswith(col + "."):
                    done.add(col)
                    continue
                if _oid_tuple(oid) <= _oid_tuple(cursors[col]):
                    raise ParseError(f"{self.where}: OID not increasing in {col}: {oid}")
                cursors[col] = oid
                rows[col] += 1
                v = plain(value)
                if v is not None:
                    out[oid] = v
                    if types is not None:
                        types[oid] = ber_tag(value)
                if rows[col] >= MAX_ROWS:
                    done.add(col)
            if not varbinds:
                done.update(active)
            for col in done:
                del cursors[col]
        return out

    async def _request(self, command, oids, reps=None):
        """(error status name or "", error index, varbinds); raises on transport/auth failure.

        The tries are ours, not pysnmp's (its retries ran past the poll's budget). Each try is
        one pysnmp request, given its share of the budget from the moment pysnmp sends it: a
        new engine's first request spends up to a second in set-up before it sends, which must
        not eat the try. A late answer to an earlier try is dropped by pysnmp."""
        varbinds = [ObjectType(ObjectIdentity(o)) for o in oids]
        args = (self.snmp, self.auth, self.target, self.context)
        if reps is not None:
            args += (0, reps)
        self.requests += 1
        res = None
        for n in range(self.retries + 1):
            if self.deadline is not None and self.deadline <= monotonic():
                break
            self.sent += 1
            try:
                res = await self._try(command(*args, *varbinds, lookupMib=False), n)
            except DeviceError:
                raise
            except Exception as e:  # pysnmp raises PySnmpError for malformed answers and config
                raise DeviceError(f"{self.where}: {e.__class__.__name__}: {e}") from e
            if res is not None and not isinstance(res[0], errind.RequestTimedOut):
                break
            res = None
        if res is None:
            icmp = await self._icmp_probe()
            raise DeviceTimeout(
                no_answer(self.where, self.version, self.retries + 1, self.try_s, icmp)
            )
        indication, status, index, out = res
        if indication:
            raise DeviceError(f"{self.where}: {self._refused(indication)}")
        status_name = status.prettyPrint() if status else ""
        if status_name == "authorizationError":
            raise DeviceError(f"{self.where}: authorization error")
        return status_name, int(index or 0), out

    async def _try(self, call, n):
        """The result of one pysnmp request, or None when its share of the budget ran out."""
        task = asyncio.ensure_future(call)
        self._sending.clear()
        try:
            left = None if self.deadline is None else self.deadline - monotonic()
            sending = asyncio.ensure_future(self._sending.wait())
            done, _ = await asyncio.wait(
                {task, sending}, timeout=left, return_when=asyncio.FIRST_COMPLETED
            )
            sending.cancel()
            if task in done:
                return task.result()
            if not self._sending.is_set():
                return None  # set-up took the whole budget
            return await asyncio.wait_for(task, self.try_wait(self.retries + 1 - n))
        except asyncio.TimeoutError:
            return None
        finally:
            if not task.done():
                task.cancel()

    def _on_send(self, snmp, execpoint, variables, ctx):
        """pysnmp observer: a request of ours leaves for the device (starts the try's clock)."""
        addr = variables.get("transportAddress")
        try:
            ours = tuple(addr)[:2] == tuple(self.target.transport_address)[:2]
        except (TypeError, AttributeError):
            ours = False
        if ours:
            self._sending.set()

    def _refused(self, indication):
        """What an errorIndication says, in words an operator can act on."""
        names = {
            "user": self.cfg.get("user", ""),
            "level": self.cfg.get("security_level", "authPriv"),
            "context": self.cfg.get("context", "") or "",
        }
        for cls, text in V3_REFUSED:
            if isinstance(indication, cls):
                return "SNMPv3 authorization error: " + text.format(**names)
        if isinstance(indication, errind.ReportPduReceived):
            oid = str(indication).strip().lstrip(".")
            text = V3_REPORTS.get(oid)
            if text:
                return "SNMPv3 " + text.format(**names)
            return f"SNMPv3 report {oid} from the agent"
        if isinstance(indication, errind.EncryptionError):
            try:
                import cryptography  # noqa: F401
            except ImportError:
                return "SNMPv3 privacy needs the Python package 'cryptography'"
            return f"SNMPv3 cannot encrypt: {indication}"
        return str(indication)

    async def _icmp_probe(self):
        """The OSError (ICMP port unreachable, host unreachable) a one-byte datagram to the
        device's port draws, or None. An SNMP agent drops the byte as a parse error (asyncio
        sends no empty datagram). It waits at most ICMP_PROBE_S, and within the budget."""
        from agent.host.udp import UdpTransport

        wait = ICMP_PROBE_S
        if self.poll_end is not None:  # half of what is left of the poll's budget
            wait = min(wait, (self.poll_end - monotonic()) / 2)
        try:
            t = await UdpTransport.open(self.host, self.port)
        except DeviceError:
            return None
        try:
            await t.send(PROBE)
            waited = 0.0
            while waited < wait and not t.errors:
                await asyncio.sleep(0.01)
                waited += 0.01
            return t.last_error if t.errors else None
        finally:
            t.close()

    def _auth_data(self):
        cfg = self.cfg
        if self.version in ("1", "2c"):
            return CommunityData(
                cfg.get("community", "public"), mpModel=0 if self.version == "1" else 1
            )
        if self.version != "3":
            raise ConfigError(f"devices[{self.id}].snmp.version: expected 1, 2c or 3")
        level = cfg.get("security_level", "authPriv")
        kw = {}
        if level in ("authNoPriv", "authPriv"):
            kw["authKey"] = cfg.get("auth_key")
            kw["authProtocol"] = AUTH[cfg.get("auth_protocol", "SHA")]
        if level == "authPriv":
            kw["privKey"] = cfg.get("priv_key")
            kw["privProtocol"] = PRIV[cfg.get("priv_protocol", "AES")]
        return UsmUserData(cfg["user"], **kw)
