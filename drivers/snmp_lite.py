"""SNMP v1/v2c driver on the portable client (drivers/proto/snmp_client.py): the board's SNMP.

Same config and profile tables as drivers/snmp.py (device["snmp"]: host, port (161), version "1"
or "2c", community, profile ("auto" or a name from drivers.profiles), retries (1);
device["timeout"]: seconds per try) and the same engine, so both drivers give the same samples
for the same device. No v3 (no crypto on the board).

Transport: `SnmpLiteDriver(device, transport=factory)` where `await factory(host, port)` returns an
object with async send/recv(timeout) and close() (see snmp_client). Without one the host's asyncio
UDP transport (agent/host/udp.py) is used; a board's firmware injects a socket-based factory,
either per driver or once for all as `SnmpLiteDriver.TRANSPORT = factory`.
"""

from agent.core.compat import monotonic
from agent.core.errors import ConfigError, DeviceError
from drivers import profiles
from drivers.base import EXPERIMENTAL, Driver
from drivers.profiles import engine
from drivers.proto.snmp_client import SnmpClient

MAX_MESSAGE = 8192  # bytes per reply we accept: a 60-varbind GETBULK of ifTable fits in 4 KB


async def _host_udp(host, port):
    try:
        from agent.host.udp import UdpTransport  # CPython only; a board injects its own
    except ImportError:
        raise DeviceError("no UDP transport here: set SnmpLiteDriver.TRANSPORT") from None
    return await UdpTransport.open(host, port)


class SnmpLiteDriver(Driver):
    INFO = {
        "name": "snmp-lite",
        "version": "0.1",
        "maturity": EXPERIMENTAL,
        "transport": "udp",
        "description": "SNMP v1/v2c on the portable BER client, same profiles as 'snmp'",
    }
    TRANSPORT = None  # default transport factory; None means agent/host/udp.py

    def __init__(self, device, transport=None):
        Driver.__init__(self, device)
        cfg = device.get("snmp")
        if not isinstance(cfg, dict) or not cfg.get("host"):
            raise ConfigError("devices[%s].snmp.host: expected a host name, got nothing" % self.id)
        self.cfg = cfg
        self.host = cfg["host"]
        self.port = int(cfg.get("port", 161))
        self.version = str(cfg.get("version", "2c"))
        if self.version not in ("1", "2c"):
            raise ConfigError(
                "devices[%s].snmp.version: expected 1 or 2c for snmp-lite, got %r"
                % (self.id, self.version)
            )
        self.community = cfg.get("community", "public")
        self.retries = int(cfg.get("retries", 1))
        self.timeout = float(device.get("timeout", 2.0))
        self.profile_name = cfg.get("profile", "auto")
        if self.profile_name != "auto" and self.profile_name not in profiles.PROFILES:
            raise ConfigError(
                "devices[%s].snmp.profile: unknown %r" % (self.id, self.profile_name)
            )
        self.where = "snmp %s:%d" % (self.host, self.port)
        self.factory = transport or self.TRANSPORT or _host_udp
        self.profile = None
        self.state = {}  # the engine's memory between polls (counters, last uptime)
        self.transport = None
        self.client = None
        self.requests = 0  # SNMP requests sent over this driver's life, for bench/ and console

    async def open(self):
        self.transport = await self.factory(self.host, self.port)
        self.client = SnmpClient(
            self.transport,
            self.community,
            self.version,
            self.timeout,
            self.retries,
            MAX_MESSAGE,
            self.where,
        )

    async def read(self):
        client = self.client
        before = client.requests
        try:
            if self.profile is None:
                name = self.profile_name
                if name == "auto":
                    name = await self._detect()
                self.profile = profiles.lookup(name)
            gets, walks = engine.plan(self.profile)
            values = await client.get(gets)
            values.update(await client.walk(walks))
        finally:
            self.requests += client.requests - before
        self.raw = values
        return engine.evaluate(self.profile, values, self.state, monotonic())

    async def close(self):
        t, self.transport = self.transport, None
        self.client = None
        if t is not None:
            try:
                t.close()
            except Exception:  # noqa: BLE001 - close must not raise
                pass

    async def _detect(self):
        answers = await self.client.get([oid for oid, _name in profiles.AUTO])
        name = profiles.choose(answers)
        if name is None:
            raise DeviceError(
                "%s: profile auto: the device answers none of the probes" % self.where
            )
        return name
