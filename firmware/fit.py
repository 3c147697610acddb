"""Fit a validated site config to a board, and compile it to what the board loads (host side).

    errors = check(cfg, raw, board)             # [] or every reason the board cannot run it
    site, secrets, certs = compile_site(cfg, raw, board, base_dir)

`check` refuses, with the reason, a config the board cannot run: a host-only driver, a serial
port the board does not have (or the one carrying its REPL), two devices on one UART that are not
Modbus slaves sharing an RS-485 bus, a Wi-Fi board without access points, a queue budget larger
than the board's flash filesystem, or more devices than its heap holds (estimated from the
measured costs in firmware/costs.json, see docs/board.md).

`compile_site` returns the site config as the board loads it (the TOML's own tables, so the
board's validator fills the same defaults as the host's) with these changes:
- every secret is moved to its own file under /secrets and replaced by { file = "/secrets/.." },
  so site.json holds no secret and the board resolves them with the same validator code;
- broker certificates become DER files under /certs (the board's TLS reads DER only), the client
  key a DER file under /secrets; ca_file may hold several DER certificates back to back;
- storage.dir is the board's /data; storage.budget_mb, when the TOML leaves it out, is the
  board's default (half its filesystem, at most 4 MB).
"""

import json
import os
import ssl

from agent.core.errors import ConfigError
from firmware.main import BOOT_ONLY

BOARD_DRIVERS = ("megatec", "voltronic", "vedirect", "modbus", "pylontech", "snmp-lite")
SHARED_BUS_DRIVERS = ("modbus",)  # several slaves may share one RS-485 UART
HOST_ONLY = {
    "snmp": 'uses pysnmp, which a board does not have: use driver "snmp-lite" (SNMP v1/v2c) '
            "on a board",
    "probe": "is host only: the TCP, DNS and HTTP probes are not ported to the board",
}  # fmt: skip
DATA_DIR = "/data"
SECRETS_DIR = "/secrets"
CERTS_DIR = "/certs"
QUEUE_SHARE = 0.6  # most of the littlefs partition the queue may use (code, config, logs: rest)
DEFAULT_QUEUE_MB = 4.0
HEAP_SHARE = 0.9  # of heap_kb the estimate may reach; the rest is headroom for fragmentation
COSTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "costs.json")


class BoardFitError(ConfigError):
    """The site config is valid but this board cannot run it; `errors` says why, line by line."""


def _where(cfg, path):
    return "%s: %s" % (cfg.source, path)


def load_costs(path=COSTS):
    with open(path) as f:
        return json.load(f)


# Modules the image carries but the running agent does not hold: boot-only (released after
# the config is validated), safe mode's, the console's when the console is off, and the HIL
# drill's site time (imported only where there is an environment asking for it: the VM).
NOT_RUNNING = BOOT_ONLY + ("firmware.safe", "firmware.main", "agent.core.simtime")
CONSOLE_ONLY = ("agent.core.console.session", "agent.core.console.views",
                "agent.core.console.fmt", "agent.core.console.line", "agent.core.console.output",
                "agent.core.console.auth", "agent.core.console.facade",
                "agent.board.console_uart")  # fmt: skip


def estimate_heap(cfg, modules, costs=None, board=None):
    """Bytes of heap the running site is expected to hold (32-bit, measured figures from
    costs.json): the runtime (interpreter, asyncio, the agent's state for the reference site's
    devices), each module it runs (its .mpy loaded into RAM; times romfs_factor when the board's
    firmware runs code from ROMFS, "code_in_flash" in its table) and each device beyond the
    reference site's."""
    costs = costs or load_costs()
    own = costs["modules"]
    skip = NOT_RUNNING + (() if cfg.console.get("enabled") else CONSOLE_ONLY)
    code = sum(own.get(m, costs["module_default"]) for m in modules if m not in skip)
    if board is not None and board.get("code_in_flash"):
        code = int(code * costs["romfs_factor"])
    n = sum(1 for d in cfg.devices if d.get("enabled", True))
    return costs["base"] + code + (n - costs["reference_devices"]) * costs["per_device"]


def queue_limit_mb(board):
    return round(board["fs_kb"] * QUEUE_SHARE / 1024.0, 2)


def check(cfg, raw, board, modules=None, costs=None):
    """Every reason `board` cannot run `cfg` (a validated SiteConfig; raw: the parsed TOML)."""
    errs = []
    name = board["name"]
    uarts = board["uarts"]
    users = {}  # uart -> [(index, driver)]
    for i, dev in enumerate(cfg.devices):
        if not dev.get("enabled", True):
            continue
        path = "devices[%d]" % i
        drv = dev.get("driver")
        if drv in HOST_ONLY:
            errs.append(_where(cfg, path + ".driver") + ": driver %r %s" % (drv, HOST_ONLY[drv]))
        elif drv not in BOARD_DRIVERS:
            errs.append(_where(cfg, path + ".driver") + ": driver %r is not built for boards"
                        % drv)  # fmt: skip
        port = (dev.get("serial") or {}).get("port")
        if port is None:
            continue
        if port not in uarts:
            errs.append(_where(cfg, path + ".serial.port") + ': board %s has no %r (it has %s)'
                        % (name, port, ", ".join(sorted(uarts))))  # fmt: skip
        elif port == board["repl_uart"]:
            errs.append(_where(cfg, path + ".serial.port") + ": %s carries the REPL and the "
                        "log on board %s; wire the device to another UART" % (port, name))
        users.setdefault(port, []).append((i, drv))
    for port, devs in sorted(users.items()):
        if len(devs) > 1 and any(d not in SHARED_BUS_DRIVERS for _, d in devs):
            errs.append(_where(cfg, "devices[%d].serial.port" % devs[1][0]) + ": %s is also used "
                        "by devices[%d]; only Modbus slaves may share a UART (one RS-485 bus)"
                        % (port, devs[0][0]))  # fmt: skip
    con = cfg.console
    if con.get("enabled") and con.get("port") not in uarts:
        errs.append(_where(cfg, "console.port") + ": board %s has no %r (it has %s)"
                    % (name, con.get("port"), ", ".join(sorted(uarts))))  # fmt: skip
    elif con.get("enabled") and con["port"] in users:
        errs.append(_where(cfg, "console.port") + ": %s is used by a device" % con["port"])
    for j, b in enumerate((cfg.uplink or {}).get("brokers", ())):
        if b.get("protocol") == "5":
            errs.append(_where(cfg, "uplink.brokers[%d].protocol" % j) + ': "5": the board '
                        'speaks MQTT 3.1.1 only; use protocol = "3.1.1" for a board')  # fmt: skip
    net = (raw.get("network") or {}) if isinstance(raw, dict) else {}
    if board["network"]["kind"] == "wifi" and not net.get("wifi"):
        errs.append(_where(cfg, "network.wifi") + ": board %s connects over Wi-Fi: give at "
                    "least one [[network.wifi]] access point" % name)  # fmt: skip
    limit = queue_limit_mb(board)
    given = (raw.get("storage") or {}).get("budget_mb")
    if given is not None and given > limit:
        errs.append(_where(cfg, "storage.budget_mb") + ": %g MB does not fit board %s's %d KB "
                    "flash filesystem; at most %g" % (given, name, board["fs_kb"], limit))
    if modules is not None:
        need = estimate_heap(cfg, modules, costs, board)
        have = int(board["heap_kb"] * 1024 * HEAP_SHARE)
        if need > have:
            n = sum(1 for d in cfg.devices if d.get("enabled", True))
            errs.append(_where(cfg, "devices") + ": this site needs about %d KB of heap with "
                        "%d devices (measured, docs/board.md); board %s has %d KB for the agent "
                        "(%d KB free): use a board with PSRAM (esp32-s3-devkitc-n8r8, "
                        "esp32-poe-iso-wrover) or fewer devices" % (need // 1024, n, name,
                        have // 1024, board["heap_kb"]))  # fmt: skip
    return errs


# --- compiling -------------------------------------------------------------------------------


def _secret_name(path):
    return "-".join(str(p) for p in path)


def _node(data, path):
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return None
    return data


def _der_certs(text, where):
    """PEM text (one or more certificates) -> their DER encodings back to back."""
    out = b""
    marker = "-----END CERTIFICATE-----"
    for chunk in text.split(marker)[:-1]:
        try:
            out += ssl.PEM_cert_to_DER_cert(chunk.strip() + "\n" + marker + "\n")
        except ValueError as e:
            raise ConfigError("%s: not a PEM certificate: %s" % (where, e)) from None
    if not out:
        raise ConfigError("%s: no PEM certificate in the file" % where)
    return out


def _der_key(data, where):
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigError("%s: the key is encrypted; the board needs it unencrypted (it is "
                          "stored in /secrets on the board's flash)" % where) from None
    except ValueError as e:
        raise ConfigError("%s: not a PEM private key: %s" % (where, e)) from None
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _read(base_dir, name, where):
    full = os.path.join(base_dir, os.path.expanduser(name))
    try:
        with open(full, "rb") as f:
            return f.read()
    except OSError as e:
        raise ConfigError("%s: cannot read %s: %s" % (where, full, e.strerror or e)) from None


def compile_site(cfg, raw, board, base_dir):
    """(site dict for /site.json, {secret file name: bytes}, {cert file name: bytes})."""
    site = json.loads(json.dumps(raw))  # a deep copy that is plain JSON
    secrets, certs, errs = {}, {}, []
    values = cfg.as_dict()
    for path in cfg.secret_paths:
        if _node(raw, path) is None:
            continue  # a default (e.g. the "public" community): the board fills the same one
        name = _secret_name(path)
        value = _node(values, path)
        secrets[name] = value.encode() if isinstance(value, str) else bytes(value)
        _node(site, path[:-1])[path[-1]] = {"file": SECRETS_DIR + "/" + name}
    for j, b in enumerate((cfg.uplink or {}).get("brokers", ())):
        out = site["uplink"]["brokers"][j]
        where = "%s: uplink.brokers[%d]" % (cfg.source, j)
        try:
            if b.get("ca_file"):
                name = "broker%d-ca.der" % j
                certs[name] = _der_certs(_read(base_dir, b["ca_file"], where + ".ca_file")
                                         .decode("ascii", "replace"), where + ".ca_file")
                out["ca_file"] = CERTS_DIR + "/" + name
            if b.get("cert_file"):
                name = "broker%d-cert.der" % j
                certs[name] = _der_certs(_read(base_dir, b["cert_file"], where + ".cert_file")
                                         .decode("ascii", "replace"), where + ".cert_file")
                out["cert_file"] = CERTS_DIR + "/" + name
            if b.get("key_file"):
                name = "broker%d-key.der" % j
                secrets[name] = _der_key(_read(base_dir, b["key_file"], where + ".key_file"),
                                         where + ".key_file")  # fmt: skip
                out["key_file"] = SECRETS_DIR + "/" + name
        except ConfigError as e:
            errs.extend(e.errors)
    storage = site.setdefault("storage", {})
    storage["dir"] = DATA_DIR
    if "budget_mb" not in storage:
        storage["budget_mb"] = min(DEFAULT_QUEUE_MB, round(queue_limit_mb(board) * 0.8, 2))
    site.setdefault("console", {})["socket"] = False  # no Unix sockets on a board
    if errs:
        raise ConfigError(errs)
    return site, secrets, certs
