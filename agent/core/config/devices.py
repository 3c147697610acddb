"""The site config's [[devices]]: each device's table, its driver's sections, its options against
the driver's own OPTIONS, and the driver made once, as `run` will make it (portable).

    devs = devices(ck, data.get("devices", []), cfg["defaults"], load_driver)

Called by validate() (agent/core/config/validate.py) after the top-level tables are checked;
errors and warnings go to the Checker, never raised. `given` and `missing` are the cross-field
rules' helpers, shared with validate.py.
"""

from agent.core import registry, serial_line
from agent.core.config.checker import MISSING, closest, show
from agent.core.config.tables import DEVICE, DRIVER_SECTIONS, SECTION_NAMES, SECTIONS
from agent.core.errors import ConfigError

SNMP_V3_KEYS = (
    "user", "auth_protocol", "auth_key", "priv_protocol", "priv_key", "security_level", "context",
)  # fmt: skip
DEVICE_BASE = DEVICE[: len(DEVICE) - len(SECTIONS)]
_SECTION_SPECS = dict(SECTIONS)


def given(raw, key):
    """The user wrote `key` in the table `raw` (whether or not its value was valid)."""
    return isinstance(raw, dict) and key in raw


def missing(ck, path, when, what):
    ck.error(path, "missing required key when " + when + " (expected " + what + ")")


# Device ids the agent itself reports under; a configured device may not take them.
RESERVED_DEVICE_IDS = {
    "agent": "the agent reports its own health under this device id",
    "site": "the derived site state (power source, runtime, backhaul) uses this device id",
}


def devices(ck, raw, defaults, load_driver):
    """Check [[devices]]: each table on its own, then against its driver; returns the checked
    tables (a device with errors is still returned, so later rules can name it)."""
    if not isinstance(raw, list):
        ck.expected(("devices",), "an array of tables ([[devices]])", raw)
        return []
    out, first = [], {}
    for i, item in enumerate(raw):
        path = ("devices", i)
        errors_before = len(ck.errors)
        d = ck.table(item, DEVICE_BASE, path, skip=SECTION_NAMES)
        out.append(d)
        if not isinstance(item, dict):
            continue
        dev_id = d.get("id")
        if dev_id in RESERVED_DEVICE_IDS:
            ck.error(path + ("id",), show(dev_id) + " is reserved: " + RESERVED_DEVICE_IDS[dev_id])
        elif dev_id is not None:
            if dev_id in first:
                ck.error(
                    path + ("id",),
                    "duplicate device id " + show(dev_id) + " (first used by devices["
                    + str(first[dev_id]) + "])",
                )  # fmt: skip
            else:
                first[dev_id] = i
            if "name" not in item:
                d["name"] = dev_id
        _timing(ck, d, item, defaults, path)
        _sections(ck, d, item, path)
        cls = _driver_class(ck, d, path, load_driver)
        _options(ck, d, item, path, cls)
        if cls is not None and len(ck.errors) == errors_before:
            _construct(ck, d, path, cls)
    return out


# -- the driver: loaded, its options checked, and made once, as `run` will make it ------------


def _driver_class(ck, d, path, load):
    name = d.get("driver")
    if load is None or name is None or name not in DRIVER_SECTIONS:
        return None  # no loader given, or missing or unknown: already reported
    try:
        return load(name)
    except KeyError:
        ck.error(path + ("driver",), "no driver " + show(name) + " in this build")
    except Exception as e:  # noqa: BLE001 - ImportError, or whatever the module raises
        ck.error(
            path + ("driver",),
            "driver " + show(name) + " cannot load on this runtime: " + _why(e),
        )
    return None


def _why(e):
    return type(e).__name__ + ": " + (str(e) or "no detail")


def _options(ck, d, item, path, cls):
    """[devices.options] against the driver's OPTIONS (drivers/base.py): unknown names are errors
    that list what the driver takes; every option the driver does not declare public is
    recorded as a secret, so `config show` and the MQTT `config` command never show it."""
    opath = path + ("options",)
    raw = item.get("options", {}) if isinstance(item, dict) else {}
    d["options"] = {}
    if not isinstance(raw, dict):
        ck.expected(opath, "a table", raw)
        return
    declared = getattr(cls, "OPTIONS", ()) if cls is not None else ()
    if cls is None or declared is None:  # no driver class to ask, or free-form options
        d["options"] = dict(raw)
        for key in raw:
            ck.secrets.append(opath + (key,))
        return
    names = [k for k, _ in declared]
    known = {}
    for key in raw:
        if key in names:
            known[key] = raw[key]
            continue
        hint = closest(key, names)
        text = "unknown key" + (' (did you mean "' + hint + '"?)' if hint else "")
        takes = ", ".join(names) if names else "no options"
        ck.error(opath + (key,), text + "; driver " + show(d["driver"]) + " takes " + takes)
    d["options"] = ck.table(known, declared, opath)
    for key, spec in declared:
        if key in d["options"] and not spec.get("public") and spec["kind"] != "secret":
            ck.secrets.append(opath + (key,))


def _construct(ck, d, path, cls):
    # Drivers make no I/O in their constructor (drivers/base.py), so making one here costs
    # nothing and proves `run` can make it: whatever the driver refuses is refused by `check`.
    try:
        cls(d)
    except ConfigError as e:
        for line in e.errors:
            ck.error(path, "driver " + show(d["driver"]) + " refused this device: " + line)
    except Exception as e:  # noqa: BLE001 - a driver bug must give a message, not a traceback
        ck.error(path, "driver " + show(d["driver"]) + " cannot be set up: " + _why(e))


def _timing(ck, d, item, defaults, path):
    # A key written but invalid is already reported; do not compare it again.
    bad = [k for k in ("interval", "timeout") if k in item and k not in d]
    for key in ("interval", "timeout", "jitter"):
        if key not in d and key in defaults:
            d[key] = defaults[key]
    own = "interval" in item or "timeout" in item
    if own and not bad and "interval" in d and "timeout" in d and d["timeout"] >= d["interval"]:
        where = "" if "timeout" in item else " (from defaults.timeout)"
        ck.error(
            path + ("timeout",),
            "expected less than interval (" + show(d["interval"]) + "), got "
            + show(d["timeout"]) + where,
        )  # fmt: skip


def _takes(driver):
    names = ["[devices." + n + "]" for n in DRIVER_SECTIONS[driver][0]]
    return "it takes " + " and ".join(names)


def _sections(ck, d, item, path):
    driver = d.get("driver")
    spec = DRIVER_SECTIONS.get(driver)  # None when the driver is missing or unknown
    for name in SECTION_NAMES:
        d.pop(name, None)  # copied unchecked by table(skip=...)
        if name not in item:
            continue
        spath = path + (name,)
        if spec is not None and name != "options" and name not in spec[0]:
            ck.error(spath, "not used by driver " + show(driver) + " (" + _takes(driver) + ")")
            continue
        if name == "options":
            continue  # checked against the driver's own OPTIONS table by _options
        value = ck.value(item[name], _SECTION_SPECS[name], spath)
        if value is MISSING:
            continue
        d[name] = value
        if name == "snmp":
            _snmp(ck, value, item[name], spath)
            if driver == "snmp-lite" and value.get("version") == "3":
                ck.error(spath + ("version",), 'driver "snmp-lite" speaks SNMP v1 and v2c only; '
                         'use driver "snmp" for v3')  # fmt: skip
        elif name == "modbus":
            _modbus(ck, value, item[name], spath)
        elif name == "probe":
            _probe(ck, value, item[name], spath, d.get("id"))
    if spec is not None:
        for name in spec[0]:
            if name not in item:
                ck.error(
                    path + (name,),
                    "missing required section [devices." + name + "] for driver " + show(driver),
                )
        if "serial" in d:
            _serial_defaults(d["serial"], item["serial"], driver)


def _serial_defaults(s, raw, driver):
    """Fill the line settings a device leaves out from its driver's row of the one table
    (agent/core/serial_line.py); a key written but invalid is already reported, and a
    driver's "leave as the OS sets it" (None) is not written."""
    for key, value in serial_line.driver_defaults(driver).items():
        if value is not None and key not in s and not given(raw, key):
            s[key] = value


def _snmp(ck, s, raw, path):
    version = s.get("version")
    if version is None:
        return  # an invalid version is already reported
    if version != "3":
        for key in SNMP_V3_KEYS:
            if key in raw:
                ck.error(path + (key,), 'only for version "3", got version ' + show(version))
        if "community" not in raw:
            s["community"] = "public"
            ck.secrets.append(path + ("community",))
        if s.get("community") in ("public", "private"):
            ck.warn(
                path + ("community",),
                "the well-known community " + show(s["community"]) + " lets anyone who can "
                "reach the device read it (\"private\" often writes too); use a site-specific "
                "community",
            )  # fmt: skip
        return
    if "community" in raw:
        ck.error(path + ("community",), 'only for version "1" or "2c", got version "3"')
    if "user" not in raw:
        missing(ck, path + ("user",), 'version = "3"', "a string")
    for key, default in (("auth_protocol", "SHA"), ("priv_protocol", "AES")):
        if key not in raw:
            s[key] = default
    if "security_level" not in raw:
        s["security_level"] = "authPriv"
    level = s.get("security_level")
    if "auth_key" not in raw:
        missing(ck, path + ("auth_key",), 'version = "3"', "a secret")
    if level == "authPriv":
        if s.get("priv_protocol") == "none":
            ck.error(
                path + ("priv_protocol",),
                'expected "AES", "AES256" or "DES" with security_level "authPriv", got "none"',
            )
        elif "priv_key" not in raw:
            missing(ck, path + ("priv_key",), 'security_level = "authPriv"', "a secret")
    elif level == "authNoPriv" and "priv_key" in raw:
        ck.error(path + ("priv_key",), 'not used with security_level "authNoPriv"')
    for key in ("auth_key", "priv_key"):
        if key in s and len(s[key]) < 8:  # USM pass phrases: RFC 3414 needs at least 8 octets
            ck.error(path + (key,), "expected at least 8 characters (value not shown: secret)")


def _modbus(ck, m, raw, path):
    if m.get("map") == "custom" and "registers" not in raw:
        missing(ck, path + ("registers",), 'map = "custom"', "[[devices.modbus.registers]]")
    if m.get("map") == "epever" and "registers" in raw:
        ck.error(path + ("registers",), 'only with map = "custom", got map = "epever"')
    if "registers" not in m:
        m["registers"] = []
    for j, r in enumerate(m["registers"]):
        metric = r.get("metric")
        if metric is None or registry.lookup(metric) is None:
            continue  # a bad metric is reported; experimental.* metrics take any unit
        unit = registry.unit_of(metric)
        if "unit" not in r:
            r["unit"] = unit
        elif r["unit"] != unit:
            ck.error(
                path + ("registers", j, "unit"),
                "expected " + show(unit) + " (the registry unit of " + metric + "), got "
                + show(r["unit"]),
            )  # fmt: skip


_PROBE_NEEDS = {"tcp": ("target", "port"), "dns": ("target",), "http": ("url",)}


def _probe(ck, p, raw, path, dev_id):
    kind = p.get("kind")
    if kind in _PROBE_NEEDS:
        need = _PROBE_NEEDS[kind]
        for key in ("target", "port", "url"):
            if key in need and key not in raw:
                missing(ck, path + (key,), "kind = " + show(kind), _PROBE_WHAT[key])
            elif key not in need and key in raw:
                ck.error(path + (key,), "not used by kind " + show(kind))
    if "name" not in raw and dev_id is not None:
        p["name"] = dev_id.replace(".", "_")  # one component of probe.<name>.ok


_PROBE_WHAT = {"target": "a host name or IP address", "port": "a TCP port", "url": "a URL"}
