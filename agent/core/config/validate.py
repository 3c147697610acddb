"""The site config: cross-field rules, validate(), and the validated SiteConfig.

`validate(data)` takes the parsed TOML (or the JSON a board gets from tools/flash.py) as plain
dicts and lists, and either returns a SiteConfig with every default filled and every secret
resolved, or raises ConfigError listing every problem at once. Portable (CPython, MicroPython):
reading files and the environment is injected (getenv, read_file); agent/host/configfile.py
adds TOML parsing. The schema tables are in agent/core/config/tables.py, the rules of
[[devices]] and their drivers in agent/core/config/devices.py.
"""

import os

from agent.core import registry
from agent.core.config.checker import Checker, show
from agent.core.config.devices import devices, given, missing
from agent.core.config.tables import (  # noqa: F401  (DRIVER_SECTIONS, SCHEMA_TABLES: public)
    DRIVER_SECTIONS,
    SCHEMA_TABLES,
    TOP,
    pin_hash_ok,
)
from agent.core.errors import ConfigError

SECRET = "<secret>"
_TOP_ORDER = [key for key, _ in TOP]
_RULE_KINDS = ("above", "below", "equals", "contains", "stale")  # a rule has exactly one


# -- cross-field rules (run after every table has been checked on its own) ------------------


def _get(raw, *keys):
    for k in keys:
        in_dict = isinstance(raw, dict) and isinstance(k, str) and k in raw
        if not in_dict and not (isinstance(raw, list) and isinstance(k, int) and k < len(raw)):
            return None
        raw = raw[k]
    return raw


def _defaults_rules(ck, d):
    if "interval" in d and "timeout" in d and not d["timeout"] < d["interval"]:
        ck.error(
            ("defaults", "timeout"),
            "expected less than defaults.interval (" + show(d["interval"]) + "), got "
            + show(d["timeout"]),
        )  # fmt: skip


def _uplink(ck, u, raw, site_id):
    if "client_id" not in u and site_id is not None:
        u["client_id"] = site_id
    if "backoff_base" in u and "backoff_cap" in u and u["backoff_base"] > u["backoff_cap"]:
        where = "backoff_cap" if given(raw, "backoff_cap") else "backoff_base"
        ck.error(
            ("uplink", where),
            "expected backoff_base (" + show(u["backoff_base"]) + ") <= backoff_cap ("
            + show(u["backoff_cap"]) + ")",
        )  # fmt: skip
    if "topic_prefix" not in u and not given(raw, "topic_prefix"):
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
        elif not given(rb, "ca_file"):
            missing(ck, path + ("ca_file",), "insecure = false", "the CA certificate file")
        for have, need in (("cert_file", "key_file"), ("key_file", "cert_file")):
            if given(rb, have) and not given(rb, need):
                missing(ck, path + (need,), have + " is set", "a file path")
        if given(rb, "password") and not given(rb, "username"):
            missing(ck, path + ("username",), "password is set", "a string")
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
        if not given(raw, "port"):
            missing(ck, ("console", "port"), "enabled = true", "a serial port")
        if not given(raw, "pin_hash"):
            missing(ck, ("console", "pin_hash"), "enabled = true", "a secret")
    if "pin_hash" in c and not pin_hash_ok(c["pin_hash"]):
        ck.error(
            ("console", "pin_hash"),
            "expected pbkdf2-sha256$<iterations>$<salt hex>$<hash hex> (value not shown: secret)",
        )


def _network(ck, n, raw):
    if given(raw, "address") and not given(raw, "gateway"):
        missing(ck, ("network", "gateway"), "address is set", "the gateway's IPv4 address")
    if given(raw, "gateway") and not given(raw, "address"):
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
    cfg["devices"] = devices(ck, data.get("devices", []), cfg["defaults"], drivers)
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
