"""Vertiv/Emerson NetSure DC plant (EES-POWER-MIB, 1.3.6.1.4.1.6302.2.1.2) as a data table
(portable). Facts from shared/PROTOCOLS.md; mains phase voltages (.6.x) are left out until their
units are verified on a real controller."""

_N = "1.3.6.1.4.1.6302.2.1.2."

STATUS = {
    1: "unknown",
    2: "normal",
    3: "warning",
    4: "minor",
    5: "major",
    6: "critical",
    7: "unmanaged",
    8: "restricted",
    9: "testing",
    10: "disabled",
}

PROFILE = {
    "name": "netsure",
    "get": (
        (_N + "1.0", "dc.status", "enum", STATUS),
        (_N + "2.0", "dc.voltage", "num", 0.001),  # mV
        (_N + "3.0", "dc.current", "num", 0.001),  # mA
        (_N + "4.0", "rectifier.utilisation", "num", 1),  # used capacity %
        (_N + "8.0", "plant.alarm.communication_lost", "bool", (3,)),  # 3 interrupted
    ),
    "walk": (),
    "derive": (),
}
