"""SNMP driver (host only: pysnmp 7, asyncio). Reads the OIDs a profile names and turns the
answers into samples with the portable engine in drivers/profiles/.

Config (device["snmp"]): host, port (161), version "1" | "2c" | "3", community, profile ("auto" or
a name from drivers.profiles), retries (1); v3: user, auth_protocol, auth_key, priv_protocol,
priv_key, security_level, context. device["timeout"]: seconds per try.

Requests: scalars by GET, many OIDs per request (split on tooBig, and on v1 the OID a v1 agent
names in noSuchName is dropped and the rest asked again); table columns by GETBULK, several
columns per request (GETNEXT on v1). Numeric OIDs only, no MIB compilation (lookupMib=False).
Unknown values (noSuch*, endOfMibView, -1) give no sample. No answer raises DeviceTimeout; other
failures DeviceError with the reason.
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
from drivers import profiles
from drivers.base import EXPERIMENTAL, Driver
from drivers.profiles import engine

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
# errorIndications that mean the credentials were refused (v3 USM reports)
AUTH_ERRORS = (
    errind.WrongDigest,
    errind.UnknownUserName,
    errind.UnknownSecurityName,
    errind.UnsupportedSecurityLevel,
    errind.DecryptionError,
    errind.NotInTimeWindow,
    errind.AuthenticationError,
    errind.AuthenticationFailure,
)
_NO_VALUE = (
    rfc1905.NoSuchObject,
    rfc1905.NoSuchInstance,
    rfc1905.EndOfMibView,
    rfc1905.UnSpecified,
)


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


class SnmpDriver(Driver):
    INFO = {
        "name": "snmp",
        "version": "0.2",
        "maturity": EXPERIMENTAL,
        "transport": "udp",
        "description": "SNMP v1/v2c/v3 with data-table profiles (UPS-MIB, router, APC, DC plants)",
    }

    def __init__(self, device):
        Driver.__init__(self, device)
        cfg = device.get("snmp")
        if not isinstance(cfg, dict) or not cfg.get("host"):
            raise ConfigError(f"devices[{self.id}].snmp.host: expected a host name, got nothing")
        self.cfg = cfg
        self.host = cfg["host"]
        self.port = int(cfg.get("port", 161))
        self.version = str(cfg.get("version", "2c"))
        self.retries = int(cfg.get("retries", 1))
        self.timeout = float(device.get("timeout", 2.0))
        self.profile_name = cfg.get("profile", "auto")
        if self.profile_name != "auto" and self.profile_name not in profiles.PROFILES:
            raise ConfigError(f"devices[{self.id}].snmp.profile: unknown {self.profile_name!r}")
        self.where = f"snmp {self.host}:{self.port}"
        self.profile = None
        self.state = {}  # the engine's memory between polls (counters, last uptime)
        self.snmp = None
        self.own_engine = False
        self.target = None
        self.auth = None
        self.context = None
        self.requests = 0  # SNMP requests sent, for bench/ and the console

    # --- Driver ------------------------------------------------------------------------------
    async def open(self):
        self.snmp, self.own_engine = _engine_for(self.version)
        cls = Udp6TransportTarget if ":" in self.host else UdpTransportTarget
        try:
            self.target = await cls.create(
                (self.host, self.port), timeout=self.timeout, retries=self.retries
            )
        except Exception as e:
            self._close_engine()
            raise DeviceError(f"{self.where}: cannot resolve host: {e}") from e
        self.auth = self._auth_data()
        self.context = ContextData(contextName=self.cfg.get("context", "") or "")

    async def read(self):
        if self.profile is None:
            name = self.profile_name
            if name == "auto":
                name = await self._detect()
            self.profile = profiles.lookup(name)
        gets, walks = engine.plan(self.profile)
        values = await self.get(gets)
        values.update(await self.walk(walks))
        self.raw = values
        return engine.evaluate(self.profile, values, self.state, monotonic())

    async def close(self):
        self._close_engine()

    def _close_engine(self):
        if self.snmp is not None and self.own_engine:
            try:
                self.snmp.close_dispatcher()
            except Exception:
                pass
        self.snmp = None

    # --- requests ----------------------------------------------------------------------------
    async def get(self, oids):
        """{oid: value} for the OIDs that have a value."""
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
            del pending[: len(batch)]
        return out

    async def walk(self, prefixes):
        """{oid: value} for every row of the columns `prefixes` (GETBULK, GETNEXT on v1)."""
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
                if rows[col] >= MAX_ROWS:
                    done.add(col)
            if not varbinds:
                done.update(active)
            for col in done:
                del cursors[col]
        return out

    async def _request(self, command, oids, reps=None):
        """(error status name or "", error index, varbinds); raises on transport/auth failure."""
        varbinds = [ObjectType(ObjectIdentity(o)) for o in oids]
        self.requests += 1
        try:
            if reps is None:
                res = await command(
                    self.snmp, self.auth, self.target, self.context, *varbinds, lookupMib=False
                )
            else:
                res = await command(
                    self.snmp,
                    self.auth,
                    self.target,
                    self.context,
                    0,
                    reps,
                    *varbinds,
                    lookupMib=False,
                )
        except DeviceError:
            raise
        except Exception as e:  # pysnmp raises PySnmpError for malformed answers and config
            raise DeviceError(f"{self.where}: {e.__class__.__name__}: {e}") from e
        indication, status, index, out = res
        if indication:
            if isinstance(indication, errind.RequestTimedOut):
                tries = self.retries + 1
                raise DeviceTimeout(
                    f"{self.where}: no response after {tries} {'try' if tries == 1 else 'tries'}"
                    + ("" if self.version == "3" else " (host down, or wrong port or community)")
                )
            if "Ciphering services not available" in str(indication):
                raise DeviceError(
                    f"{self.where}: SNMPv3 privacy needs the Python package 'cryptography'"
                )
            if isinstance(indication, AUTH_ERRORS):
                raise DeviceError(f"{self.where}: authorization error ({indication})")
            raise DeviceError(f"{self.where}: {indication}")
        status_name = status.prettyPrint() if status else ""
        if status_name == "authorizationError":
            raise DeviceError(f"{self.where}: authorization error")
        return status_name, int(index or 0), out

    async def _detect(self):
        answers = await self.get([oid for oid, _name in profiles.AUTO])
        name = profiles.choose(answers)
        if name is None:
            raise DeviceError(f"{self.where}: profile auto: the device answers none of the probes")
        return name

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
