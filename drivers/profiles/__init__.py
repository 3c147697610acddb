"""SNMP device profiles (portable): data tables of OIDs, metrics, scales and enum maps.

    from drivers import profiles
    profile = profiles.lookup("ups-mib")     # the profile dict (see engine.py for its shape)
    profiles.names()                         # every profile name a config may use
    profiles.AUTO                            # (probe OID, profile name) in the order tried

Modules are imported on first lookup, so a board loads only the tables it uses.
"""

from . import system

# name -> (module, attribute). "router" is the composite most routers answer.
PROFILES = {
    "ups-mib": ("ups_mib", "PROFILE"),
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
AUTO = (
    ("1.3.6.1.2.1.33.1.2.1.0", "ups-mib"),  # upsBatteryStatus
    ("1.3.6.1.4.1.318.1.1.1.2.1.1.0", "apc-powernet"),  # upsBasicBatteryStatus
    ("1.3.6.1.4.1.318.1.1.12.1.1.0", "apc-pdu"),  # rPDUIdentName (rPDU)
    ("1.3.6.1.4.1.318.1.1.26.2.1.3.1", "apc-pdu"),  # rPDU2DeviceConfigName (rPDU2)
    ("1.3.6.1.4.1.12148.9.3.2.0", "eltek"),  # batteryVoltage
    ("1.3.6.1.4.1.6302.2.1.2.1.0", "netsure"),  # systemStatus
    ("1.3.6.1.2.1.2.1.0", "router"),  # ifNumber
    (system.SYS_UPTIME, "system"),
)


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
    """Profile name for profile "auto", from {probe oid: value} of the AUTO probes; None when
    the device answered none of them."""
    for oid, name in AUTO:
        value = answers.get(oid)
        if value is not None and value != -1:
            return name
    return None
