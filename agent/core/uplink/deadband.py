"""Deadbands per metric class for report by exception (portable; docs/mqtt.md has this table).

A class says how far a series may drift from the value its consumer last received before it is
sent again: `absolute` in the registry's unit, `relative` as a fraction of that last value; the
larger of the two wins. `exact` classes go on every change. `static` classes (identity and
ratings) go only on change and are not part of the integrity refresh: the retained series table
carries their values instead.

Every registry name has a class: a row below names it, else its registry unit chooses (UNIT_CLASS),
else it is exact. Experimental names go by the unit their reading carries.
"""

from agent.core import registry

# name, unit, absolute, relative, registry names (patterns as in agent/core/registry.py)
CLASSES = (
    ("static", "", 0, 0, ("ups.model", "ups.mfr", "ups.firmware", "ups.rating.voltage",
                          "ups.rating.current", "ups.rating.battery_voltage",
                          "ups.rating.frequency", "rectifier.count", "device.model",
                          "device.firmware", "device.profile", "device.identified",
                          "device.object_id", "device.description")),
    ("ac_voltage", "V", 1.0, 0, ("input.voltage", "input.voltage.l<n>", "input.voltage.fault",
                                 "output.voltage", "output.voltage.l<n>", "phase.<n>.voltage")),
    ("dc_voltage", "V", 0.1, 0, ()),
    ("cell_voltage", "V", 0.01, 0, ("battery.cell.<n>.voltage",)),
    ("current", "A", 0.2, 0, ()),
    ("frequency", "Hz", 0.1, 0, ()),
    ("percent", "%", 1.0, 0, ()),
    ("temperature", "C", 0.5, 0, ()),
    ("power", "W", 10.0, 0.02, ()),
    ("bitrate", "bit/s", 1000.0, 0.05, ()),
    ("latency", "ms", 5.0, 0.1, ()),
    ("duration", "s", 60.0, 0, ()),
    ("bytes", "B", 0, 0.05, ()),
    ("exact", "", 0, 0, ()),
)  # fmt: skip

# The class of a registry row that no class names, by the row's unit.
UNIT_CLASS = {"V": "dc_voltage", "A": "current", "Hz": "frequency", "%": "percent",
              "C": "temperature", "W": "power", "bit/s": "bitrate", "ms": "latency",
              "s": "duration", "B": "bytes"}  # fmt: skip

STATIC = "static"
EXACT = "exact"

_by_class = {}
_by_name = {}
for _row in CLASSES:
    _by_class[_row[0]] = _row
    for _n in _row[4]:
        _by_name[_n] = _row[0]
del _row


def class_of(metric, unit=""):
    """The class name of a metric (unit: the reading's, used for names the registry lacks)."""
    row = registry.lookup(metric)
    if row is not None:
        cls = _by_name.get(row[0])
        if cls is not None:
            return cls
        unit = row[1]
    return UNIT_CLASS.get(unit, EXACT)


def limits(cls):
    """(absolute, relative) deadband of a class."""
    row = _by_class.get(cls) or _by_class[EXACT]
    return row[2], row[3]


def _number(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def within(cls, last, value):
    """True when a consumer holding `last` holds `value` closely enough: same type and, for
    numbers, no further apart than the class allows. NaN is never within anything."""
    if type(last) is not type(value):
        return False
    if not _number(value):
        return last == value
    if value != value or last != last:  # NaN
        return False
    a, r = limits(cls)
    d = value - last
    if d < 0:
        d = -d
    if d == 0:
        return True
    ref = last if last >= 0 else -last
    v = value if value >= 0 else -value
    # The 1e-9 share of the values absorbs binary rounding: 53.7 - 53.6 is 0.10000000000000142.
    slack = 1e-9 * (ref if ref > v else v)
    return d <= a + slack or d <= r * ref + slack


def table():
    """{class: [absolute, relative]} for the series table a consumer reads."""
    out = {}
    for row in CLASSES:
        out[row[0]] = [row[2], row[3]]
    return out
