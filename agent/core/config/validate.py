"""The site config: cross-field rules, validate(), and the validated SiteConfig.

`validate(data)` takes the parsed TOML (or the JSON a board gets from tools/flash.py) as plain
dicts and lists, and either returns a SiteConfig with every default filled and every secret
resolved, or raises ConfigError listing every problem at once. Portable (CPython, MicroPython):
reading files and the environment is injected (getenv, read_file); agent/host/configfile.py
adds TOML parsing. The schema tables are in agent/core/config/tables.py.
"""

import os

from agent.core import registry, serial_line
from agent.core.config.checker import MISSING, Checker, closest, show
from agent.core.config.tables import (  # noqa: F401  (DRIVER_SECTIONS, SCHEMA_TABLES: public)
    DEVICE,
    DRIVER_SECTIONS,
    SCHEMA_TABLES,
    SECTION_NAMES,
    SECTIONS,
    TOP,
    pin_hash_ok,
)
from agent.core.errors import ConfigError

SNMP_V3_KEYS = (
    "user", "auth_protocol", "auth_key", "priv_protocol", "priv_key", "security_level", "context",
)  # fmt: skip
SECRET = "<secret>"
_TOP_ORDER = [key for key, _ in TOP]
_RULE_KINDS = ("above", "below", "equals", "contains", "stale")  # a rule has exactly one


DEVICE_BASE = DEVICE[: len(DEVICE) - len(SECTIONS)]
_SECTION_SPECS = dict(SECTIONS)


# -- cross-field rules (run after every table has been checked on its own) ------------------


def _given(raw, key):
    """The user wrote `key` in the table `raw` (whether or not its value was valid)."""
    return isinstance(raw, dict) and key in raw


def _get(raw, *keys):
    for k in keys:
        in_dict = isinstance(raw, dict) and isinstance(k, str) and k in raw
        if not in_dict and not (isinstance(raw, list) and isinstance(k, int) and k < len(raw)):
            return None
        raw = raw[k]
    return raw


def _missing(ck, path, when, what):
    ck.error(path, "missing required key when " + when + " (expected " + what + ")")


def _defaults_rules(ck, d):
    if "interval" in d and "timeout" in d and not d["timeout"] < d["interval"]:
        ck.error(
            ("defaults", "timeout"),
            "expected less than defaults.interval (" + show(d["interval"]) + "), got "
            + show(d["timeout"]),
        )  # fmt: skip


# Device ids the agent itself reports under; a configured device may not take them.
RESERVED_DEVICE_IDS = {
    "agent": "the agent reports its own health under this device id",
    "site": "the derived site state (power source, runtime, backhaul) uses this device id",
}


def _devices(ck, raw, defaults, load_driver):
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
        if value is not None and key not in s and not _given(raw, key):
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
        _missing(ck, path + ("user",), 'version = "3"', "a string")
    for key, default in (("auth_protocol", "SHA"), ("priv_protocol", "AES")):
        if key not in raw:
            s[key] = default
    if "security_level" not in raw:
        s["security_level"] = "authPriv"
    level = s.get("security_level")
    if "auth_key" not in raw:
        _missing(ck, path + ("auth_key",), 'version = "3"', "a secret")
    if level == "authPriv":
        if s.get("priv_protocol") == "none":
            ck.error(
                path + ("priv_protocol",),
                'expected "AES", "AES256" or "DES" with security_level "authPriv", got "none"',
            )
        elif "priv_key" not in raw:
            _missing(ck, path + ("priv_key",), 'security_level = "authPriv"', "a secret")
    elif level == "authNoPriv" and "priv_key" in raw:
        ck.error(path + ("priv_key",), 'not used with security_level "authNoPriv"')
    for key in ("auth_key", "priv_key"):
        if key in s and len(s[key]) < 8:  # USM pass phrases: RFC 3414 needs at least 8 octets
            ck.error(path + (key,), "expected at least 8 characters (value not shown: secret)")


def _modbus(ck, m, raw, path):
    if m.get("map") == "custom" and "registers" not in raw:
        _missing(ck, path + ("registers",), 'map = "custom"', "[[devices.modbus.registers]]")
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
                _missing(ck, path + (key,), "kind = " + show(kind), _PROBE_WHAT[key])
            elif key not in need and key in raw:
                ck.error(path + (key,), "not used by kind " + show(kind))
    if "name" not in raw and dev_id is not None:
        p["name"] = dev_id.replace(".", "_")  # one component of probe.<name>.ok


_PROBE_WHAT = {"target": "a host name or IP address", "port": "a TCP port", "url": "a URL"}


def _uplink(ck, u, raw, site_id):
    if "client_id" not in u and site_id is not None:
        u["client_id"] = site_id
    if "backoff_base" in u and "backoff_cap" in u and u["backoff_base"] > u["backoff_cap"]:
        where = "backoff_cap" if _given(raw, "backoff_cap") else "backoff_base"
        ck.error(
            ("uplink", where),
            "expected backoff_base (" + show(u["backoff_base"]) + ") <= backoff_cap ("
            + show(u["backoff_cap"]) + ")",
        )  # fmt: skip
    if "topic_prefix" not in u and not _given(raw, "topic_prefix"):
        u["topic_prefix"] = "site-agent/v%d" % u.get("contract", 1)
    if u.get("brokers") == [] and _get(raw, "brokers") == []:
        ck.error(("uplink", "brokers"), "expected at least one [[uplink.brokers]], got none")
    for j, b in enumerate(u.get("brokers", ())):
        path = ("uplink", "brokers", j)
        rb = _get(raw, "brokers", j)
        insecure = b.get("insecure", False)
        if "port" not in b:
            b["port"] = 1883 if insecure else 8883
        if "name" not in b:
            b["name"] = b.get("host", "broker" + str(j))
        if insecure:
            ck.warn(
                path,
                "insecure = true: MQTT without TLS; readings and credentials cross the network "
                "in clear text",
            )
        elif not _given(rb, "ca_file"):
            _missing(ck, path + ("ca_file",), "insecure = false", "the CA certificate file")
        for have, need in (("cert_file", "key_file"), ("key_file", "cert_file")):
            if _given(rb, have) and not _given(rb, need):
                _missing(ck, path + (need,), have + " is set", "a file path")
        if _given(rb, "password") and not _given(rb, "username"):
            _missing(ck, path + ("username",), "password is set", "a string")
        if path + ("password",) in ck.literal_secrets:
            ck.warn(
                path + ("password",),
                'password written in the file; use password = { env = "NAME" } or '
                '{ file = "/path" }',
            )


def _alarms(ck, a, raw, devices):
    ids = [d["id"] for d in devices if "id" in d]
    first = {}
    for j, r in enumerate(a.get("rules", ())):
        path = ("alarms", "rules", j)
        rr = _get(raw, "rules", j)
        if not isinstance(rr, dict):
            continue
        rule_id = r.get("id")
        if rule_id is not None:
            if rule_id in first:
                ck.error(
                    path + ("id",),
                    "duplicate rule id " + show(rule_id) + " (first used by alarms.rules["
                    + str(first[rule_id]) + "])",
                )  # fmt: skip
            else:
                first[rule_id] = j
        dev = r.get("device")
        if dev is not None and dev != "*" and dev not in ids:
            ck.error(
                path + ("device",),
                'expected "*" or the id of a configured device, got ' + show(dev),
            )
        when = r.get("when")
        if when is not None and not registry.is_known(when[0]):
            ck.error(
                path + ("when",),
                "expected a metric name from agent/core/registry.py first, got " + show(when[0]),
            )
        kinds = [k for k in _RULE_KINDS if k in rr]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "none"
            ck.error(path, "expected exactly one of " + ", ".join(_RULE_KINDS) + ", got " + got)
            continue
        kind = kinds[0]
        if "clear_s" in rr and kind not in ("equals", "contains"):
            ck.error(path + ("clear_s",), "only for equals or contains rules, got " + kind)
        if "clear" not in rr:
            continue
        if kind not in ("above", "below"):
            ck.error(path + ("clear",), "only for above or below rules, got " + kind)
        elif "clear" in r and kind in r:
            bad = r["clear"] >= r[kind] if kind == "above" else r["clear"] <= r[kind]
            if bad:
                side = "less" if kind == "above" else "greater"
                ck.error(
                    path + ("clear",),
                    "expected " + side + " than " + kind + " (" + show(r[kind]) + "), got "
                    + show(r["clear"]),
                )  # fmt: skip


def _console(ck, c, raw):
    if c.get("enabled"):
        if not _given(raw, "port"):
            _missing(ck, ("console", "port"), "enabled = true", "a serial port")
        if not _given(raw, "pin_hash"):
            _missing(ck, ("console", "pin_hash"), "enabled = true", "a secret")
    if "pin_hash" in c and not pin_hash_ok(c["pin_hash"]):
        ck.error(
            ("console", "pin_hash"),
            "expected pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> (value not shown: secret)",
        )


def _network(ck, n, raw):
    if _given(raw, "address") and not _given(raw, "gateway"):
        _missing(ck, ("network", "gateway"), "address is set", "the gateway's IPv4 address")
    if _given(raw, "gateway") and not _given(raw, "address"):
        ck.error(("network", "gateway"), "only with a static address (network.address)")


# -- the validated config --------------------------------------------------------------------


class SiteConfig:
    """A validated site config. Every table is a plain dict with defaults filled; secrets are
    resolved in place, and `redacted()` gives a copy safe to print or publish."""

    def __init__(self, data, secrets, warnings, source):
        self.site = data["site"]
        self.defaults = data["defaults"]
        self.devices = data["devices"]
        self.uplink = data.get("uplink")
        self.storage = data["storage"]
        self.alarms = data["alarms"]
        self.console = data["console"]
        self.network = data.get("network")  # a board's link; None when the table is absent
        self.warnings = warnings
        self.source = source
        self.secret_paths = secrets  # key paths as tuples: ("uplink", "brokers", 0, "password")

    def device(self, device_id):
        for d in self.devices:
            if d["id"] == device_id:
                return d
        return None

    def as_dict(self):
        """The config as one plain dict (shared with this object, secrets in clear)."""
        return {
            "site": self.site,
            "defaults": self.defaults,
            "devices": self.devices,
            "uplink": self.uplink,
            "storage": self.storage,
            "alarms": self.alarms,
            "console": self.console,
            "network": self.network,
        }

    def redacted(self):
        """A deep copy of as_dict() with every secret replaced by "<secret>"."""
        out = _copy(self.as_dict())
        for path in self.secret_paths:
            node = out
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = SECRET
        return out


def _copy(v):
    if isinstance(v, dict):
        return {k: _copy(v[k]) for k in v}
    if isinstance(v, list):
        return [_copy(x) for x in v]
    return v


def _default_getenv():
    getenv = getattr(os, "getenv", None)  # absent on most MicroPython ports
    return getenv if getenv is not None else (lambda name: None)


def _default_read_file(path):
    with open(path) as f:
        return f.read()


def validate(data, source="site.toml", getenv=None, read_file=None, drivers=None):
    """Check a parsed site config; return a SiteConfig or raise ConfigError listing every error.

    getenv(name) -> str or None resolves { env = "NAME" } secrets (default: os.getenv where the
    runtime has it); read_file(path) -> str resolves { file = "/path" } (default: open());
    drivers(name) -> driver class (KeyError: none in this build, ImportError: cannot load here)
    is the runtime's driver loader, drivers.load, which `run` uses too: each device's driver is
    loaded, its OPTIONS check [devices.options], and it is made once, so check and run accept
    the same devices. The core imports no driver itself (docs/architecture.md), so a runtime
    passes it (agent/host/configfile.py does). Without it only the file is checked, and every
    option counts as a secret."""
    ck = Checker(
        source,
        getenv if getenv is not None else _default_getenv(),
        read_file if read_file is not None else _default_read_file,
    )
    if not isinstance(data, dict):
        raise ConfigError(
            source + ": expected a table of settings at the top level, got " + show(data)
        )
    cfg = ck.table(data, TOP, (), skip=("devices",))
    _defaults_rules(ck, cfg["defaults"])
    cfg["devices"] = _devices(ck, data.get("devices", []), cfg["defaults"], drivers)
    site_id = cfg.get("site", {}).get("id")
    if "uplink" in cfg:
        _uplink(ck, cfg["uplink"], data["uplink"], site_id)
    _alarms(ck, cfg["alarms"], data.get("alarms"), cfg["devices"])
    _console(ck, cfg["console"], data.get("console"))
    if "network" in cfg:
        _network(ck, cfg["network"], data["network"])
    if site_id is not None and "name" not in cfg["site"]:
        cfg["site"]["name"] = site_id
    if ck.errors:
        raise ConfigError(ck.sorted_errors(_TOP_ORDER))
    return SiteConfig(cfg, ck.secrets, ck.warnings, source)
