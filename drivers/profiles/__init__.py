"""SNMP device profiles (portable): data tables of OIDs, metrics, scales and enum maps.

    from drivers import profiles
    profile = profiles.lookup("ups-mib")     # the profile dict (see engine.py for its shape)
    profiles.names()                         # every profile name a config may use
    profiles.AUTO                            # (probe OID, profile, object name) in order tried
    profiles.choose(answers)                 # (profile, AUTO row) the answers pick

Modules are imported on first lookup, so a board loads only the tables it uses.
"""

from . import system

# name -> (module, attribute). "router" is the composite most routers answer.
PROFILES = {
    "ups-mib": ("ups_mib", "PROFILE"),
    "huawei-ups": ("huawei_ups", "PROFILE"),
    "apc-powernet": ("apc_powernet", "PROFILE"),
    "apc-pdu": ("apc_powernet", "PDU_PROFILE"),
    "eltek": ("eltek", "PROFILE"),
    "netsure": ("netsure", "PROFILE"),
    "if-mib": ("if_mib", "PROFILE"),
    "host-resources": ("host_resources", "PROFILE"),
    "system": ("system", "PROFILE"),
    "router": None,  # system + if-mib + host-resources, built in lookup()
}

# profile "auto": GET all probe OIDs at once; the first one the device answers (with anything but
# noSuch*/endOfMibView/-1) picks the profile. sysObjectID alone decides nothing: an Eaton card
# and a Huawei UPS both announce net-snmp or vendor roots; what they answer is what counts.
# Vendor MIBs come before UPS-MIB: a card that has both is read through its vendor view, which
# takes UPS-MIB for what the vendor MIB lacks. Columns: probe OID, profile, the object's name.
AUTO = (
    ("1.3.6.1.4.1.2011.6.174.1.2.100.1.2.1", "huawei-ups", "hwUpsDeviceType"),
    ("1.3.6.1.4.1.318.1.1.1.2.1.1.0", "apc-powernet", "upsBasicBatteryStatus"),
    ("1.3.6.1.4.1.318.1.1.26.2.1.3.1", "apc-pdu", "rPDU2IdentName"),
    ("1.3.6.1.4.1.318.1.1.12.1.1.0", "apc-pdu", "rPDUIdentName"),
    ("1.3.6.1.4.1.12148.9.3.2.0", "eltek", "batteryVoltage (ELTEK-DISTRIBUTED-MIB)"),
    ("1.3.6.1.4.1.6302.2.1.2.1.0", "netsure", "systemStatus (EES-POWER-MIB)"),
    ("1.3.6.1.2.1.33.1.2.1.0", "ups-mib", "upsBatteryStatus"),
    ("1.3.6.1.2.1.2.1.0", "router", "ifNumber"),
    (system.SYS_UPTIME, "system", "sysUpTime"),
)
# What auto falls back to when no device MIB answers: the views every SNMP agent has. A device
# read through them is not identified (a router, or a device whose MIB the agent does not know).
GENERIC = ("router", "system")
# The device MIBs auto knows, for messages: "no UPS-MIB, ... object answered".
KNOWN_MIBS = "HUAWEI-UPS-MIB, PowerNet (APC UPS, rPDU2, rPDU), Eltek, NetSure, UPS-MIB"


def names():
    return sorted(PROFILES)


def lookup(name):
    """The profile dict for `name`; raises KeyError for an unknown name."""
    if name == "router":
        return {
            "name": "router",
            "parts": (lookup("system"), lookup("if-mib"), lookup("host-resources")),
        }
    module_name, attr = PROFILES[name]
    module = __import__("drivers.profiles." + module_name, None, None, [attr])
    return getattr(module, attr)


def choose(answers):
    """(profile name, probe row) for profile "auto", from {probe oid: value} of the AUTO probes;
    (None, None) when the device answered none of them."""
    for row in AUTO:
        value = answers.get(row[0])
        if value is not None and value != -1 and value != "":
            return row[1], row
    return None, None


def probes(generic=True):
    """The AUTO probe OIDs (without the generic ones when `generic` is False)."""
    return [row[0] for row in AUTO if generic or row[1] not in GENERIC]
