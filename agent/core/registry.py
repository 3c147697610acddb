"""The one registry of metric names, NUT-style (`battery.charge`, `input.voltage`).

Every reading a driver emits must use a name from this table. A `<x>` part matches one dotted
component (an interface name, a rectifier index). Names under `experimental.` are accepted without
an entry, as NUT does, until they are agreed and added here. docs/metrics.md is this table in
prose; a test keeps the two identical.

Columns: name, unit ("" for none), type (float, int, str, bool), description.
"""

METRICS = (
    # Mains and AC input
    ("input.voltage", "V", "float", "AC input voltage (phase 1 or single phase)"),
    ("input.voltage.l<n>", "V", "float", "AC input voltage of phase n (1-3)"),
    ("input.frequency", "Hz", "float", "AC input frequency"),
    ("input.voltage.fault", "V", "float", "input voltage at the last fault (Megatec)"),
    ("input.transfer.count", "", "int", "times the input went bad (upsInputLineBads)"),
    ("mains.present", "", "bool", "mains is present at the site"),
    ("generator.running", "", "bool", "a generator feeds the site"),
    # AC output (UPS, inverter)
    ("output.voltage", "V", "float", "AC output voltage (phase 1 or single phase)"),
    ("output.voltage.l<n>", "V", "float", "AC output voltage of phase n (1-3)"),
    ("output.frequency", "Hz", "float", "AC output frequency"),
    ("output.current", "A", "float", "AC output current"),
    ("output.power", "W", "float", "AC output real power"),
    ("output.source", "", "str", "what feeds the output: normal, battery, bypass, none, boost, "
     "trim, other"),
    ("ups.load", "%", "float", "UPS load as a percentage of its rating (three-phase: the most "
     "loaded phase)"),
    ("ups.load.l<n>", "%", "float", "UPS load of output phase n (1-3), as a percentage of its "
     "rating"),
    ("ups.status", "", "str", "NUT status tokens separated by spaces: OL, OB, LB, RB, CHRG, "
     "DISCHRG, BYPASS, BOOST, TRIM, OVER, FSD, ALARM, TEST, OFF"),
    ("ups.alarm", "", "str", "active UPS alarms, names separated by spaces ('' when none)"),
    ("ups.alarm.count", "", "int", "number of active UPS alarms"),
    ("ups.temperature", "C", "float", "UPS internal temperature"),
    ("ups.beeper", "", "bool", "beeper enabled"),
    ("ups.seconds_on_battery", "s", "int", "seconds since the UPS went on battery (0 on mains)"),
    ("ups.rating.voltage", "V", "float", "rated output voltage"),
    ("ups.rating.current", "A", "float", "rated output current"),
    ("ups.rating.battery_voltage", "V", "float", "rated battery voltage"),
    ("ups.rating.frequency", "Hz", "float", "rated frequency"),
    ("ups.model", "", "str", "model as the device reports it"),
    ("ups.mfr", "", "str", "manufacturer as the device reports it"),
    ("ups.firmware", "", "str", "firmware version as the device reports it"),
    # Battery
    ("battery.charge", "%", "float", "state of charge"),
    ("battery.voltage", "V", "float", "battery (bank) voltage"),
    ("battery.current", "A", "float", "battery current; negative while discharging"),
    ("battery.temperature", "C", "float", "battery temperature"),
    ("battery.runtime", "s", "int", "runtime remaining as the device estimates it"),
    ("battery.status", "", "str", "normal, low, depleted, unknown"),
    ("battery.replace", "", "bool", "the device asks for the battery to be replaced"),
    ("battery.power", "W", "float", "battery power; negative while discharging (battery monitor)"),
    ("battery.alarm", "", "str", "active battery/BMS alarms, names separated by spaces ('' when "
     "none)"),
    ("battery.cycles", "", "int", "charge cycles the BMS has counted"),
    ("battery.cell.<n>.voltage", "V", "float", "voltage of cell n (BMS)"),
    ("battery.cell.<n>.temperature", "C", "float", "temperature of cell group n (BMS)"),
    ("battery.lvd", "", "str", "low-voltage disconnect: connected, disconnected, disabled"),
    # DC power plant
    ("dc.voltage", "V", "float", "DC system (bus) voltage"),
    ("dc.current", "A", "float", "DC load current"),
    ("dc.status", "", "str", "plant status: normal, warning, minor, major, critical, unknown"),
    ("dc.mode", "", "str", "float, boost, test, temp-compensated float"),
    ("rectifier.current", "A", "float", "total rectifier output current"),
    ("rectifier.count", "", "int", "rectifiers installed"),
    ("rectifier.utilisation", "%", "float", "rectifier capacity in use"),
    ("rectifier.<n>.status", "", "str", "status of rectifier n: normal, alarm, absent"),
    ("rectifier.<n>.current", "A", "float", "output current of rectifier n"),
    ("plant.alarm.<name>", "", "bool", "a DC plant alarm flag (mains_lost, lvd_open, "
     "rectifier_major ...)"),
    # Any device the agent polls (NUT's device.*): what it is and how long it has run
    ("device.model", "", "str", "model as the device reports it (PDUs and devices that are not "
     "UPSes)"),
    ("device.firmware", "", "str", "firmware version as the device reports it"),
    ("device.uptime", "s", "int", "device uptime (SNMP sysUpTime)"),
    ("device.rebooted", "", "bool", "device.uptime went backwards since the last poll"),
    ("device.profile", "", "str", "SNMP profile the device is read with (ups-mib, apc-pdu, "
     "router ...)"),
    ("device.identified", "", "bool", "a device MIB the agent knows answered; false: read "
     "through the generic router/system view only"),
    ("device.object_id", "", "str", "SNMP sysObjectID, the vendor's identifier of the device"),
    ("device.description", "", "str", "SNMP sysDescr, as the device describes itself"),
    # Solar
    ("solar.voltage", "V", "float", "PV array voltage"),
    ("solar.current", "A", "float", "PV array current"),
    ("solar.power", "W", "float", "PV array power"),
    ("charger.current", "A", "float", "charge current into the battery"),
    ("charger.status", "", "str", "charging state: off, float, boost, equalise, bulk, absorption"),
    ("load.voltage", "V", "float", "DC load output voltage (charge controller)"),
    ("load.current", "A", "float", "DC load output current (charge controller)"),
    ("device.temperature", "C", "float", "device (case or heatsink) temperature"),
    ("device.unsupported", "", "str", "metrics the device lacks (a Modbus slave refused their "
     "registers with exception 2), names separated by spaces; '' when it has them all"),
    # PDU
    ("outlet.<n>.status", "", "str", "outlet n state: on, off"),
    ("outlet.<n>.current", "A", "float", "current drawn through outlet n (metered outlets)"),
    ("outlet.<n>.power", "W", "float", "power drawn through outlet n (metered outlets)"),
    ("phase.<n>.current", "A", "float", "current drawn on phase n"),
    ("phase.<n>.voltage", "V", "float", "voltage of phase n at the PDU"),
    ("phase.<n>.power", "W", "float", "power drawn on phase n"),
    ("bank.<n>.current", "A", "float", "current drawn by outlet bank n (its breaker's load)"),
    # Router and network
    ("router.cpu", "%", "float", "router CPU load (mean over processors)"),
    ("router.memory", "%", "float", "router memory in use"),
    ("if.<name>.oper", "", "str", "interface operational status: up, down, testing, unknown, "
     "dormant, notPresent, lowerLayerDown"),
    ("if.<name>.in_bps", "bit/s", "float", "inbound traffic rate from 64-bit counters"),
    ("if.<name>.out_bps", "bit/s", "float", "outbound traffic rate from 64-bit counters"),
    ("probe.<name>.ok", "", "bool", "a reachability probe succeeded"),
    ("probe.<name>.latency", "ms", "float", "a reachability probe's round-trip time"),
    ("probe.<name>.loss", "%", "float", "share of failed probes over the window"),
    # Derived site state
    ("site.power_source", "", "str", "mains, battery, generator, solar, unknown"),
    ("site.runtime", "s", "int", "estimated runtime left for the site"),
    ("site.runtime_estimated", "", "bool", "site.runtime is the agent's estimate from the "
     "discharge trend, not a device's figure"),
    ("site.battery_charge", "%", "float", "the lowest state of charge any device at the site "
     "reports"),
    ("site.on_battery_s", "s", "int", "seconds the site has been on battery"),
    ("site.backhaul", "", "str", "up, down, degraded, unknown"),
    # The agent itself
    ("agent.cpu", "%", "float", "host CPU load"),
    ("agent.memory", "%", "float", "host memory in use"),
    ("agent.rss", "B", "int", "the agent's resident memory"),
    ("agent.heap_free", "B", "int", "free heap (board)"),
    ("agent.disk_used", "%", "float", "use of the filesystem holding the data directory"),
    ("agent.temperature", "C", "float", "SoC temperature"),
    ("agent.uptime", "s", "int", "seconds since the agent started"),
    ("agent.clock.trusted", "", "bool", "the agent trusts its wall clock (NTP synchronised, RTC, "
     "or set by broker or console)"),
    ("agent.reset_cause", "", "str", "why the board last reset: power_on, hard, watchdog, "
     "deep_sleep, soft"),
    ("agent.boot_count", "", "int", "boots of the board since it was flashed (board)"),
    ("agent.net.link", "", "bool", "the board's network link is up with an address (board)"),
    ("agent.net.rssi", "dBm", "int", "Wi-Fi signal strength of the access point in use (board)"),
    ("agent.device.stale", "", "bool", "the device's last poll failed (value of the device's "
     "reason in unit-less form)"),
    ("agent.queue.depth", "", "int", "records waiting in the store"),
    ("agent.queue.bytes", "B", "int", "bytes the store uses"),
    ("agent.queue.used", "%", "float", "share of the store's byte budget in use"),
    ("agent.queue.thinned", "", "int", "routine readings aggregated to make room"),
    ("agent.queue.dropped", "", "int", "records dropped to stay within the byte budget"),
    ("agent.uplink.connected", "", "bool", "the uplink holds a broker connection"),
)

_exact = {}
_patterns = []
for _row in METRICS:
    if "<" in _row[0]:
        _patterns.append((_row[0].split("."), _row))
    else:
        _exact[_row[0]] = _row
del _row


# Names matched by a pattern, remembered: every poll asks for the same series' units again (an
# interface's in_bps, a cell's voltage), and the pattern scan is the dear part. Bounded, because
# the names come from devices: past _SEEN_MAX names the scan runs, nothing is forgotten wrongly.
_seen = {}
_SEEN_MAX = 512


def lookup(name):
    """Return the registry row (name, unit, type, description) for a metric name, or None."""
    row = _exact.get(name)
    if row is not None:
        return row
    row = _seen.get(name)
    if row is not None:
        return row
    row = _scan(name)
    if row is not None and len(_seen) < _SEEN_MAX:
        _seen[name] = row
    return row


def _scan(name):
    parts = name.split(".")
    for pattern, row in _patterns:
        if len(pattern) != len(parts):
            continue
        for want, got in zip(pattern, parts):
            if not _part_matches(want, got):
                break
        else:
            return row
    return None


def _part_matches(want, got):
    """A pattern part is literal, or `prefix<x>suffix` where <x> stands for at least one char."""
    if not got:
        return False
    i = want.find("<")
    if i < 0:
        return want == got
    prefix = want[:i]
    suffix = want[want.index(">") + 1 :]
    return (
        len(got) > len(prefix) + len(suffix)
        and got.startswith(prefix)
        and got.endswith(suffix)
    )


def is_known(name):
    return name.startswith("experimental.") or lookup(name) is not None


def unit_of(name):
    row = lookup(name)
    return row[1] if row else ""
