"""Device drivers. Each driver is one module with one class of the shape in drivers/base.py.

The table below maps a config's `driver = "..."` to "module:Class". Modules are imported only
when a site uses them, so the board never imports pysnmp or pyserial.
"""

DRIVERS = {
    "snmp": "drivers.snmp:SnmpDriver",
    "snmp-lite": "drivers.snmp_lite:SnmpLiteDriver",
    "megatec": "drivers.megatec:MegatecDriver",
    "modbus": "drivers.modbus:ModbusDriver",
    "voltronic": "drivers.voltronic:VoltronicDriver",
    "vedirect": "drivers.vedirect:VeDirectDriver",
    "pylontech": "drivers.pylontech:PylontechDriver",
    "probe": "drivers.probe:ProbeDriver",
}


def register(name, target):
    DRIVERS[name] = target


def load(name):
    """Return the driver class for a config's driver name; raises KeyError for an unknown name."""
    target = DRIVERS[name]
    module_name, class_name = target.split(":")
    module = __import__(module_name, None, None, [class_name])
    return getattr(module, class_name)


def names():
    return sorted(DRIVERS)
