"""UPS-MIB (RFC 1628) as a data table (portable). Base 1.3.6.1.2.1.33.1; facts from RFC 1628
and NUT's ietf-mib mapping (shared/PROTOCOLS.md)."""

_B = "1.3.6.1.2.1.33.1."

BATTERY_STATUS = {1: "unknown", 2: "normal", 3: "low", 4: "depleted"}
OUTPUT_SOURCE = {
    1: "other",
    2: "none",
    3: "normal",
    4: "bypass",
    5: "battery",
    6: "boost",  # booster
    7: "trim",  # reducer
}

# Well-known alarms: upsAlarmDescr values are _B + "6.3.N".
ALARMS = {
    1: "BatteryBad",
    2: "OnBattery",
    3: "LowBattery",
    4: "DepletedBattery",
    5: "TempBad",
    6: "InputBad",
    7: "OutputBad",
    8: "OutputOverload",
    9: "OnBypass",
    10: "BypassBad",
    11: "OutputOffAsRequested",
    12: "UpsOffAsRequested",
    13: "ChargerFailed",
    14: "UpsOutputOff",
    15: "UpsSystemOff",
    16: "FanFailure",
    17: "FuseFailure",
    18: "GeneralFault",
    19: "DiagnosticTestFailed",
    20: "CommunicationsLost",
    21: "AwaitingPower",
    22: "ShutdownPending",
    23: "ShutdownImminent",
    24: "TestInProgress",
}

# An alarm not listed in ALARM_TOKENS adds ALARM.
# NUT ups.status tokens; every value the MIB defines is listed ("" = adds no token), a value
# outside these maps counts as unknown.
SOURCE_TOKENS = {1: "", 2: "OFF", 3: "OL", 4: "BYPASS", 5: "OB", 6: "OL BOOST", 7: "OL TRIM"}
BATTERY_TOKENS = {1: "", 2: "", 3: "LB", 4: "LB"}
ALARM_TOKENS = {
    "BatteryBad": "RB",
    "OnBattery": "OB",
    "LowBattery": "LB",
    "DepletedBattery": "LB",
    "OnBypass": "BYPASS",
    "OutputOffAsRequested": "OFF",
    "UpsOffAsRequested": "OFF",
    "UpsOutputOff": "OFF",
    "UpsSystemOff": "OFF",
    "ShutdownImminent": "FSD",
    "TestInProgress": "TEST",
}

PROFILE = {
    "name": "ups-mib",
    "get": (
        # oid, metric, conv, arg (scale, enum map or true values)
        (_B + "1.1.0", "ups.mfr", "str", None),
        (_B + "1.2.0", "ups.model", "str", None),
        (_B + "1.3.0", "ups.firmware", "str", None),
        (_B + "2.1.0", "battery.status", "enum", BATTERY_STATUS),
        (_B + "2.2.0", "ups.seconds_on_battery", "int", 1),
        (_B + "2.3.0", "battery.runtime", "int", 60),  # minutes -> s
        (_B + "2.4.0", "battery.charge", "num", 1),
        (_B + "2.5.0", "battery.voltage", "num", 0.1),
        # -1 (= -0.1 A) is read as unknown: devices use it so, and 0.1 A is below any alarm.
        (_B + "2.6.0", "battery.current", "num", 0.1),
        (_B + "2.7.0", "battery.temperature", "num", 1),
        (_B + "3.1.0", "input.transfer.count", "int", 1),
        (_B + "4.1.0", "output.source", "enum", OUTPUT_SOURCE),
        (_B + "4.2.0", "output.frequency", "num", 0.1),
        (_B + "6.1.0", "ups.alarm.count", "int", 1),
    ),
    "walk": (
        # column, metric, conv, arg, reduce, limit (number of valid rows)
        (_B + "3.3.1.2", "input.frequency", "num", 0.1, "first", _B + "3.2.0"),
        (_B + "3.3.1.3", "input.voltage", "num", 1, "first", _B + "3.2.0"),
        # three-phase units: one reading per input phase as well
        (_B + "3.3.1.3", "input.voltage.l<n>", "num", 1, "phases", _B + "3.2.0"),
        (_B + "4.4.1.2", "output.voltage", "num", 1, "first", _B + "4.3.0"),
        # Three-phase: the most loaded phase is the one that trips, so ups.load is the maximum;
        # each phase is published as well, so that no phase hides behind it.
        (_B + "4.4.1.5", "ups.load", "num", 1, "max", _B + "4.3.0"),
        (_B + "4.4.1.5", "ups.load.l<n>", "num", 1, "phases", _B + "4.3.0"),
    ),
    "derive": (
        (
            "alarm_table",
            {
                "walk": (_B + "6.2.1.2",),
                "column": _B + "6.2.1.2",
                "base": _B + "6.3",
                "names": ALARMS,
                "count_oid": _B + "6.1.0",
            },
        ),
        (
            "nut_status",
            {
                "source_oid": _B + "4.1.0",
                "source_tokens": SOURCE_TOKENS,
                "battery_oid": _B + "2.1.0",
                "battery_tokens": BATTERY_TOKENS,
                "alarms": True,
                "alarm_tokens": ALARM_TOKENS,
            },
        ),
    ),
    # Huawei UPS5000 cards report input/output frequency in 0.01 Hz and input/output voltage in
    # 0.1 V (5000 -> 50.00 Hz, 2369 -> 236.9 V), against RFC 1628's 0.1 Hz and 1 V.
    "quirks": (
        (
            _B + "1.1.0",
            "HUAWEI",
            {
                "input.frequency": 0.1,
                "output.frequency": 0.1,
                "input.voltage": 0.1,
                "input.voltage.l<n>": 0.1,
                "output.voltage": 0.1,
            },
        ),
    ),
}
