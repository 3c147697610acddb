"""Eltek Smartpack DC plant (ELTEK-DISTRIBUTED-MIB, 1.3.6.1.4.1.12148.9) as a data table
(portable). Facts from shared/PROTOCOLS.md; no public recording exists, so hil/recordings/
power/eltek-smartpack.snmprec was written from the same facts. Current scales marked
*unverified* follow the controller's default "amps" display setting."""

_E = "1.3.6.1.4.1.12148.9."

MODE = {0: "float", 1: "temp-compensated float", 2: "boost", 3: "test"}
LVD = {0: "connected", 1: "disconnected", 2: "disabled"}
RECTIFIER_STATUS = {0: "absent", 1: "normal", 2: "alarm"}

# alarmGroup .7.1.N.0 (0 normal, 1 alarm) -> plant.alarm.<name>
ALARMS = (
    (1, "battery_voltage_high_major"),
    (2, "battery_voltage_low_major"),
    (3, "battery_voltage_high_minor"),
    (4, "battery_voltage_low_minor"),
    (5, "battery_temperature_high_major"),
    (6, "battery_temperature_high_minor"),
    (7, "battery_contactor_open"),
    (8, "lvd1_open"),
    (9, "lvd2_open"),
    (10, "lvd3_open"),
    (11, "mains_lost"),
    (12, "battery_breaker"),
    (13, "distribution_breaker"),
    (14, "rectifier_major"),
    (15, "rectifier_minor"),
    (18, "battery_life_ended"),
)

PROFILE = {
    "name": "eltek",
    "get": (
        (_E + "2.2.0", "dc.mode", "enum", MODE),
        (_E + "3.2.0", "battery.voltage", "num", 0.01),
        (_E + "3.2.0", "dc.voltage", "num", 0.01),
        (_E + "3.3.0", "battery.current", "snum", 1),  # negative = discharging (*unverified* A)
        (_E + "3.4.0", "battery.temperature", "snum", 1),
        (_E + "3.5.0", "plant.alarm.battery_breaker", "bool", (1,)),
        (_E + "3.17.1.0", "battery.lvd", "enum", LVD),
        (_E + "5.1.0", "rectifier.count", "int", 1),
        (_E + "5.3.0", "rectifier.current", "num", 0.1),
        (_E + "5.4.0", "rectifier.utilisation", "num", 1),
        (_E + "6.1.0", "input.voltage", "num", 1),
    )
    + tuple((_E + "7.1.%d.0" % n, "plant.alarm." + name, "bool", (1,)) for n, name in ALARMS),
    "walk": (
        (_E + "5.5.2.1.2", "rectifier.<n>.status", "enum", RECTIFIER_STATUS, "each", None),
        (_E + "5.5.2.1.3", "rectifier.<n>.current", "num", 0.1, "each", None),  # *unverified*
    ),
    "derive": (),
}
