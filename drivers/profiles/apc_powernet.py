"""APC PowerNet-MIB (enterprise 318) as data tables (portable): Smart-UPS cards and rack PDUs.
Facts from shared/PROTOCOLS.md, NUT's apc-mib.c / apc-pdu-mib.c and PowerNet-MIB itself; the PDU
rows were checked against the snmpsim-data recordings UPS/apc-7902b, apc-8641 and apc-8932."""

_U = "1.3.6.1.4.1.318.1.1.1."  # upsMIB.ups
_P = "1.3.6.1.4.1.318.1.1.12."  # rPDU

OUTPUT_STATUS = {
    2: "normal",  # onLine
    3: "battery",
    4: "boost",  # onSmartBoost
    6: "bypass",  # softwareBypass
    7: "none",  # off
    9: "bypass",  # switchedBypass
    10: "bypass",  # hardwareFailureBypass
    12: "trim",  # onSmartTrim
}
STATUS_TOKENS = {
    1: "",
    2: "OL",
    3: "OB",
    4: "OL BOOST",
    5: "OFF",  # timedSleeping
    6: "BYPASS",
    7: "OFF",
    8: "",  # rebooting
    9: "BYPASS",
    10: "BYPASS",
    11: "OFF",  # sleepingUntilPowerReturn
    12: "OL TRIM",
}
# upsBasicBatteryStatus: 1 unknown, 2 normal, 3 low; 4 and 5 (fault states) read as low too.
BATTERY_STATUS = {1: "unknown", 2: "normal", 3: "low", 4: "low", 5: "low"}
BATTERY_TOKENS = {1: "", 2: "", 3: "LB", 4: "LB", 5: "LB"}

PROFILE = {
    "name": "apc-powernet",
    "get": (
        (_U + "1.1.1.0", "ups.model", "str", None),  # upsBasicIdentModel
        (_U + "1.2.1.0", "ups.firmware", "str", None),  # upsAdvIdentFirmwareRevision
        (_U + "2.1.1.0", "battery.status", "enum", BATTERY_STATUS),
        (_U + "2.3.1.0", "battery.charge", "num", 0.1),  # high precision first
        (_U + "2.2.1.0", "battery.charge", "num", 1),
        (_U + "2.2.2.0", "battery.temperature", "num", 1),
        (_U + "2.2.3.0", "battery.runtime", "ticks", None),
        (_U + "2.2.4.0", "battery.replace", "bool", (2,)),  # 1 no, 2 yes
        (_U + "2.3.4.0", "battery.voltage", "num", 0.1),
        (_U + "2.2.8.0", "battery.voltage", "num", 1),
        (_U + "3.3.1.0", "input.voltage", "num", 0.1),
        (_U + "3.2.1.0", "input.voltage", "num", 1),
        (_U + "3.2.4.0", "input.frequency", "num", 1),
        (_U + "4.1.1.0", "output.source", "enum", OUTPUT_STATUS),
        (_U + "4.2.1.0", "output.voltage", "num", 1),
        (_U + "4.2.2.0", "output.frequency", "num", 1),
        (_U + "4.2.3.0", "ups.load", "num", 1),
        (_U + "4.2.4.0", "output.current", "num", 1),
    ),
    "walk": (),
    "derive": (
        (
            "nut_status",
            {
                "source_oid": _U + "4.1.1.0",
                "source_tokens": STATUS_TOKENS,
                "battery_oid": _U + "2.1.1.0",
                "battery_tokens": BATTERY_TOKENS,
                "replace_oid": _U + "2.2.4.0",
                "replace_values": (2,),
            },
        ),
    ),
}

# Rack PDUs. Two generations of tables: rPDU (318.1.1.12, older firmware) and rPDU2 (318.1.1.26,
# the current AP7xxx/AP8xxx firmware, which may no longer answer rPDU). "apc-pdu" reads rPDU2 first
# and takes from rPDU only what rPDU2 did not give. Facts: PowerNet-MIB (rPDU2DeviceStatusTable,
# rPDU2PhaseStatusTable, rPDU2BankStatusTable, rPDU2OutletSwitchedStatusTable,
# rPDU2OutletMeteredStatusTable); checked against snmpsim-data UPS/apc-7902b, apc-8641, apc-8932.
_P2 = "1.3.6.1.4.1.318.1.1.26."

# rPDUOutletStatusOutletState: 1 on, 2 off. rPDU2OutletSwitchedStatusState is the other way round.
OUTLET_STATE = {1: "on", 2: "off"}
OUTLET2_STATE = {1: "off", 2: "on"}


def _rpdu2_rows(table, number, value, metric, conv, arg):
    """One sample per row of an rPDU2 status table, named by its `number` column, for the PDU
    that answers (module 1; daisy-chained guests are modules 2-4 and are not read)."""
    return (
        "rows_by_key",
        {
            "walk": (table + "2", table + number, table + value),
            "value": table + value,
            "key": table + number,
            "filter": table + "2",
            "filter_value": 1,
            "metric": metric,
            "conv": conv,
            "arg": arg,
        },
    )


_DEV = _P2 + "4.3.1."  # rPDU2DeviceStatusEntry
_PHASE = _P2 + "6.3.1."  # rPDU2PhaseStatusEntry: .3 number, .5 current, .6 voltage, .7 power
_BANK = _P2 + "8.3.1."  # rPDU2BankStatusEntry: .3 number, .5 current
_SWITCHED = _P2 + "9.2.3.1."  # rPDU2OutletSwitchedStatusEntry: .4 number, .5 state
_METERED = _P2 + "9.4.3.1."  # rPDU2OutletMeteredStatusEntry: .4 number, .6 current, .7 power

RPDU2 = {
    "name": "apc-rpdu2",
    "get": (
        (_P2 + "2.1.8.1", "device.model", "str", None),  # rPDU2IdentModelNumber (module 1)
        (_P2 + "2.1.6.1", "device.firmware", "str", None),  # rPDU2IdentFirmwareRev
        (_DEV + "5.1", "output.power", "num", 10),  # rPDU2DeviceStatusPower, 0.01 kW -> W
    ),
    "walk": (),
    "derive": (
        _rpdu2_rows(_PHASE, "3", "5", "phase.<n>.current", "num", 0.1),
        _rpdu2_rows(_PHASE, "3", "6", "phase.<n>.voltage", "num", 1),
        _rpdu2_rows(_PHASE, "3", "7", "phase.<n>.power", "num", 10),
        _rpdu2_rows(_BANK, "3", "5", "bank.<n>.current", "num", 0.1),
        _rpdu2_rows(_SWITCHED, "4", "5", "outlet.<n>.status", "enum", OUTLET2_STATE),
        _rpdu2_rows(_METERED, "4", "6", "outlet.<n>.current", "num", 0.1),
        _rpdu2_rows(_METERED, "4", "7", "outlet.<n>.power", "num", 1),
    ),
}

RPDU = {
    "name": "apc-rpdu",
    "get": (
        (_P + "1.5.0", "device.model", "str", None),  # rPDUIdentModelNumber
        (_P + "1.3.0", "device.firmware", "str", None),  # rPDUIdentFirmwareRevision
        (_P + "1.16.0", "output.power", "num", 1),  # rPDUIdentDevicePowerWatts
    ),
    "walk": ((_P + "3.5.1.1.4", "outlet.<n>.status", "enum", OUTLET_STATE, "each", None),),
    "derive": (
        (
            # rPDULoadStatusTable: .2 load (0.1 A), .4 phase number, .5 bank number; rows with
            # bank 0 are whole phases, the others banks of outlets.
            "rows_by_key",
            {
                "walk": (_P + "2.3.1.1.2", _P + "2.3.1.1.4", _P + "2.3.1.1.5"),
                "value": _P + "2.3.1.1.2",
                "key": _P + "2.3.1.1.4",
                "filter": _P + "2.3.1.1.5",
                "filter_value": 0,
                "metric": "phase.<n>.current",
                "conv": "num",
                "arg": 0.1,
            },
        ),
    ),
}

PDU_PROFILE = {"name": "apc-pdu", "parts": (RPDU2, RPDU)}
