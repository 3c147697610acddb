"""Huawei UPS cards (UPS2000 / UPS5000, HUAWEI-UPS-MIB, 1.3.6.1.4.1.2011.6.174) as a vendor view
(portable): the rows this MIB reads better than the card's UPS-MIB, then UPS-MIB for the rest.

Why: the UPS5000-E card (snmpsim-data UPS/huawei-gse200m) answers -1 for charge and runtime in
UPS-MIB, reports one output line with 8 % load while its three phases carry 20.0, 21.9 and
48.1 %, and uses 0.01 Hz / 0.1 V where RFC 1628 says 0.1 Hz / 1 V. Its own MIB has them all.

Facts: HUAWEI-UPS-MIB V1.01 (public MIB file, as shipped in Observium and LibreNMS), cross-checked
with NUT's drivers/huawei-mib.c 0.40 and the recording. Every table is indexed by hwUpsDeviceId;
a stand-alone UPS is device 1 (a parallel system lists more, read here: device 1 only).
"""

from . import ups_mib

_H = "1.3.6.1.4.1.2011.6.174.1."
_IN = _H + "3.100.1."  # hwUpsInputEntry
_OUT = _H + "4.100.1."  # hwUpsOutputEntry
_BAT = _H + "6.100.1."  # hwUpsBatteryEntry
D1 = ".1"  # hwUpsDeviceId 1

PHASES = (("1", "A"), ("2", "B"), ("3", "C"))

VENDOR = {
    "name": "huawei-ups-mib",
    "get": (
        # oid, metric, conv, scale, (lo, hi) = the raw range HUAWEI-UPS-MIB defines
        (_H + "2.100.1.2" + D1, "ups.model", "str", None),  # hwUpsDeviceType
        (_H + "2.100.1.3" + D1, "ups.firmware", "str", None),  # hwUpsDeviceSoftVersion
        (_BAT + "3" + D1, "battery.charge", "num", 1, (0, 100)),  # hwUpsBatteryCapacityLeft %
        (_BAT + "4" + D1, "battery.runtime", "int", 1, (0, 172800)),  # hwUpsBatteryBackupTime s
        (_BAT + "1" + D1, "battery.voltage", "num", 0.1, (0, 20000)),  # hwUpsBatteryVoltage
        (_BAT + "2" + D1, "battery.current", "snum", 0.1, (-60000, 60000)),  # hwUpsBatteryCurrent
        # hwUpsBatterytemperature, 0.1 C; the UPS5000 recording sends 4294967295 (-1 as Gauge32)
        (_BAT + "6" + D1, "battery.temperature", "snum", 0.1, (-200, 800)),
        (_IN + "1" + D1, "input.voltage", "num", 0.1, (0, 10000)),  # hwUpsInputVoltageA
        (_IN + "4" + D1, "input.frequency", "num", 0.01, (0, 10000)),  # hwUpsInputFrequency
        (_OUT + "1" + D1, "output.voltage", "num", 0.1, (0, 10000)),  # hwUpsOutputVoltageA
        (_OUT + "7" + D1, "output.frequency", "num", 0.01, (0, 10000)),  # hwUpsOutputFrequency
    )
    # per phase: hwUpsInputVoltageA-C (.1-.3), hwUpsOutputVoltageA-C (.1-.3), hwUpsOutputLoadA-C
    # (.14-.16, 0.1 %, 0..5000)
    + tuple((_IN + n + D1, "input.voltage.l" + n, "num", 0.1, (0, 10000)) for n, _p in PHASES)
    + tuple((_OUT + n + D1, "output.voltage.l" + n, "num", 0.1, (0, 10000)) for n, _p in PHASES)
    + tuple(
        (_OUT + str(13 + int(n)) + D1, "ups.load.l" + n, "num", 0.1, (0, 5000))
        for n, _p in PHASES
    ),
    "walk": (),
    # The most loaded phase is the one that trips.
    "derive": (("max_of", {"metric": "ups.load", "of": ("ups.load.l1", "ups.load.l2",
                                                         "ups.load.l3")}),),  # fmt: skip
}

PROFILE = {"name": "huawei-ups", "parts": (VENDOR, ups_mib.PROFILE)}
