"""SNMP driver (host): v1/v2c on the portable BER client, v3 on pysnmp, one config.

`driver = "snmp"` reads a device through the same profiles, detection and messages whatever its
version (drivers/snmp_base.py decides all a user sees); only the engine that sends the requests
differs:

- v1 and v2c: the portable BER client over asyncio UDP (drivers/proto/snmp_client.py, the one
  `snmp-lite` uses on the board). Same samples as pysnmp on every recording the tests serve, at
  about a third of the CPU per reading and without pysnmp's 25 MB.
- v3: pysnmp (drivers/snmp_pysnmp.py: USM users, keys, auth and privacy), imported only when a
  device is SNMPv3, so a v1/v2c-only site never loads pysnmp or pyasn1.

SnmpDriver(device) returns a PysnmpDriver (a subclass) for a v3 device and an SnmpDriver
otherwise; `engine` says which ("ber" or "pysnmp"). Config (device["snmp"]): host, port (161),
version "1" | "2c" | "3", community, profile ("auto" or a name from drivers.profiles), retries
(1); v3: user, auth_protocol, auth_key, priv_protocol, priv_key, security_level, context.
device["timeout"]: the poll's budget, split over the tries.
"""

from drivers.base import EXPERIMENTAL
from drivers.snmp_lite import SnmpLiteDriver


class SnmpDriver(SnmpLiteDriver):
    INFO = {
        "name": "snmp",
        "version": "0.4",
        "maturity": EXPERIMENTAL,
        "transport": "udp",
        "description": "SNMP v1/v2c (portable BER client) and v3 (pysnmp) with data-table "
        "profiles (UPS-MIB, router, APC, DC plants)",
    }
    VERSIONS = ("1", "2c", "3")
    engine = "ber"

    def __new__(cls, device, *args, **kwargs):
        # The engine is chosen by the config's version; a bad config is __init__'s to report.
        cfg = device.get("snmp") if isinstance(device, dict) else None
        if cls is SnmpDriver and isinstance(cfg, dict) and str(cfg.get("version")) == "3":
            from drivers.snmp_pysnmp import PysnmpDriver  # imports pysnmp: v3 sites only

            cls = PysnmpDriver
        return object.__new__(cls)
