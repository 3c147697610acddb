"""SNMP v1/v2c driver on the portable client (drivers/proto/snmp_client.py): the board's SNMP,
and the host's for v1/v2c (drivers/snmp.py's `snmp` driver is this class with pysnmp for v3).

Same config, profile tables, detection and messages as the pysnmp engine (drivers/snmp_pysnmp.py;
both are drivers/snmp_base.py), so both give the same samples for the same device. No v3 (no
crypto on the board).

Transport: `SnmpLiteDriver(device, transport=factory)` where `await factory(host, port)` returns an
object with async send/recv(timeout) and close() (see snmp_client). Without one the host's asyncio
UDP transport (agent/host/udp.py) is used; a board's firmware injects a socket-based factory,
either per driver or once for all as `SnmpLiteDriver.TRANSPORT = factory`.
"""

from agent.core.errors import DeviceError
from drivers.base import EXPERIMENTAL
from drivers.proto.snmp_client import SnmpClient
from drivers.snmp_base import SnmpBase

MAX_MESSAGE = 8192  # bytes per reply we accept: a 60-varbind GETBULK of ifTable fits in 4 KB


async def _host_udp(host, port):
    try:
        from agent.host.udp import UdpTransport  # CPython only; a board injects its own
    except ImportError:
        raise DeviceError("no UDP transport here: set SnmpLiteDriver.TRANSPORT") from None
    return await UdpTransport.open(host, port)


class SnmpLiteDriver(SnmpBase):
    INFO = {
        "name": "snmp-lite",
        "version": "0.2",
        "maturity": EXPERIMENTAL,
        "transport": "udp",
        "description": "SNMP v1/v2c on the portable BER client, same profiles as 'snmp'",
    }
    TRANSPORT = None  # default transport factory; None means agent/host/udp.py
    VERSIONS = ("1", "2c")  # for snmp-lite

    def __init__(self, device, transport=None):
        SnmpBase.__init__(self, device)
        self.community = self.cfg.get("community", "public")
        self.factory = transport or self.TRANSPORT or _host_udp
        self.transport = None
        self.client = None

    async def open(self):
        self.transport = await self.factory(self.host, self.port)
        self.client = SnmpClient(
            self.transport,
            self.community,
            self.version,
            self.try_s,
            self.retries,
            MAX_MESSAGE,
            self.where,
        )

    async def fetch(self, gets, walks, types):
        client = self.client
        client.timeout = self.try_s
        client.deadline = self.deadline
        before = client.requests
        try:
            values = await client.get(gets, types)
            if walks:
                values.update(await client.walk(walks, types))
        finally:
            self.requests += client.requests - before
        return values

    async def close(self):
        t, self.transport = self.transport, None
        self.client = None
        if t is not None:
            try:
                t.close()
            except Exception:  # noqa: BLE001 - close must not raise
                pass
