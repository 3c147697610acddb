"""The site config's schema as data: one table of field specs per TOML table, and the formats.

agent/core/config/validate.py runs these through agent/core/config/checker.Checker and adds the
rules that span several keys. docs/config.md documents every key here; a test keeps the two
in step. Portable.
"""

from agent.core import registry, serial_line
from agent.core.config.checker import ID_CHARS, UPPER_SNAKE, choice_words, field

# Driver name -> (connection sections it requires, default serial baud or None). [devices.options]
# is allowed for every driver. To add a driver: one row here, one in drivers/__init__.py (and, for
# a serial one, its line in agent/core/serial_line.py DRIVERS, where the baud comes from).
DRIVER_SECTIONS = {
    "snmp": (("snmp",), None),
    # The small portable SNMP v1/v2c client (the board's; also runs on the host).
    "snmp-lite": (("snmp",), None),
    "megatec": (("serial",), serial_line.DRIVERS["megatec"]["baud"]),
    "voltronic": (("serial",), serial_line.DRIVERS["voltronic"]["baud"]),
    "vedirect": (("serial",), serial_line.DRIVERS["vedirect"]["baud"]),
    "modbus": (("serial", "modbus"), serial_line.DRIVERS["modbus"]["baud"]),
    "pylontech": (("serial",), serial_line.DRIVERS["pylontech"]["baud"]),
    "probe": (("probe",), None),
}

# The names drivers/profiles/__init__.py PROFILES knows, plus "auto" (a host test keeps them in
# step; the core does not import drivers).
SNMP_PROFILES = (
    "auto", "ups-mib", "huawei-ups", "apc-powernet", "apc-pdu", "eltek", "netsure", "if-mib",
    "host-resources", "system", "router",
)  # fmt: skip
# The serial rates every port can be set to, in one list for device lines and the console: each
# has a termios B<rate> constant on Linux (the host's console opens its tty with termios alone;
# pyserial could reach other rates through BOTHER, the console cannot), and machine.UART on the
# ESP32 takes any rate up to 5 Mbit/s. 14400 has no termios constant, so it is not here.
STANDARD_BAUDS = (
    300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600,
)  # fmt: skip
_ID_WORDS = "1 to 64 of the characters A-Z a-z 0-9 . _ -"
_RULE_WORDS = "an UPPER_SNAKE id (A-Z 0-9 _)"
_NAME_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"


# -- formats (each returns None when fine, else what was expected) -------------------------------


_HEX = "0123456789abcdefABCDEF"
_LABEL_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _ipv4(v):
    parts = v.split(".")
    if len(parts) != 4:
        return False
    for p in parts:
        if not p.isdigit() or len(p) > 3 or int(p) > 255:
            return False
    return True


def ipv6(v):
    """True for an IPv6 address as written without brackets: "::1", "fe80::1%eth0",
    "2001:db8::10", "::ffff:192.0.2.1" (portable: MicroPython has no ipaddress module)."""
    addr, _, zone = v.partition("%")
    if "%" in v and not zone:
        return False
    halves = addr.split("::")
    if len(halves) > 2:
        return False
    groups = []
    for half in halves:
        groups.append(half.split(":") if half else [])
    words = groups[0] + (groups[1] if len(groups) > 1 else [])
    count = len(words)
    if words and "." in words[-1]:  # an embedded IPv4 address counts as two groups
        if not _ipv4(words[-1]):
            return False
        words = words[:-1]
        count += 1
    for w in words:
        if not (1 <= len(w) <= 4) or any(c not in _HEX for c in w):
            return False
    return count == 8 if len(halves) == 1 else count <= 7


def _hostname(v):
    if len(v) > 253:
        return False
    for label in (v[:-1] if v.endswith(".") else v).split("."):
        if not (1 <= len(label) <= 63) or label[0] == "-" or label[-1] == "-":
            return False
        if any(c not in _LABEL_CHARS for c in label):
            return False
    return True


def _host(v):
    """A host name, an IPv4 address or an IPv6 address without brackets. The messages say what
    to write instead for the mistakes people make: a port, a URL scheme, [brackets], spaces."""
    if not v:
        return "a host name or IP address"
    if v != v.strip() or " " in v or "\t" in v:
        return "a host name or IP address without spaces"
    scheme, sep, rest = v.partition("://")
    if sep:
        return "a host name or IP address without " + scheme + ":// (only the host)"
    if v[0] == "[":
        inner, _, after = v[1:].partition("]")
        if after.startswith(":") and after[1:].isdigit():
            return "a host without a port (put the port in port = " + after[1:] + ")"
        if ipv6(inner) and not after:
            return 'an IPv6 address without brackets ("' + inner + '")'
        return "a host name or IP address"
    if "/" in v or "@" in v:
        return "a host name or IP address (no user, path or URL)"
    if ":" in v:
        if ipv6(v):
            return None
        host, _, port = v.rpartition(":")
        if port.isdigit() and ":" not in host:
            return "a host without a port (put the port in port = " + port + ")"
        return "a host name or IP address (not a valid IPv6 address)"
    if v.replace(".", "").isdigit():  # all digits and dots: it must be a whole IPv4 address
        return None if _ipv4(v) else "an IPv4 address of four numbers 0-255"
    if not _hostname(v):
        return "a host name (letters, digits, - and . ; labels of 1 to 63) or IP address"
    return None


def _hostport(rest):
    rest = rest.split("?")[0]
    host, _, port = rest.rpartition(":")
    return bool(host) and port.isdigit() and 1 <= int(port) <= 65535


def _serial_port(v):
    if v.startswith("/") and len(v) > 1 and " " not in v:
        return None
    scheme, sep, rest = v.partition("://")
    if sep and scheme in ("socket", "rfc2217") and _hostport(rest):
        return None
    if sep and scheme in ("loop", "spy", "alt", "hwgrep"):
        return None
    if v.startswith("uart") and v[4:].isdigit():  # machine.UART(n) on a board
        return None
    return (
        'a device path ("/dev/ttyUSB0"), a pyserial URL ("socket://host:port", '
        '"rfc2217://host:port") or "uart<n>" on a board'
    )


def _cidr(v):
    ip, _, bits = v.partition("/")
    parts = ip.split(".")
    ok = len(parts) == 4 and all(p.isdigit() and int(p) <= 255 for p in parts)
    if ok and bits.isdigit() and 8 <= int(bits) <= 30:
        return None
    return 'an IPv4 address with its prefix length, "192.0.2.10/24"'


def _topic_prefix(v):
    if not v or "+" in v or "#" in v or v[0] in "/$" or v[-1] == "/" or "//" in v:
        return 'a topic prefix without + or #, not starting with "/" or "$", without empty levels'
    return None


def _url(v):
    for scheme in ("http://", "https://"):
        if v.startswith(scheme) and len(v) > len(scheme) and " " not in v:
            return None
    return "an http:// or https:// URL"


def _driver(v):
    # Looked up at check time, so a row added to DRIVER_SECTIONS at run time counts.
    if v in DRIVER_SECTIONS:
        return None
    return "one of " + choice_words(sorted(DRIVER_SECTIONS))


def _metric(v):
    return None if registry.is_known(v) else "a metric name from agent/core/registry.py"


def _metric_names():
    return [row[0] for row in registry.METRICS if "<" not in row[0]]


def _rule_id(v):
    return None if v and v[0] in UPPER_SNAKE[:26] else "an UPPER_SNAKE id starting with a letter"


def pin_hash_ok(v):
    """True if v is "pbkdf2-sha256$<iterations>$<salt hex>$<hash hex>" as the console will take
    it: the console's own parser decides, so `check` accepts exactly the hashes `run` can use."""
    from agent.core.console.auth import parse_hash
    from agent.core.errors import ConfigError

    try:
        parse_hash(v)
    except ConfigError:
        return False
    return True


# -- schema tables ---------------------------------------------------------------------------

LOCATION = (
    ("lat", field("num", min=-90, max=90)),
    ("lon", field("num", min=-180, max=180)),
    ("address", field("str")),
    ("commune", field("str")),
    ("province", field("str")),
)
SITE = (
    ("id", field("str", True, minlen=1, maxlen=64, chars=ID_CHARS, chars_words=_ID_WORDS)),
    ("kind", field("str", True, choices=("bts", "wifi"))),
    ("name", field("str")),
    # When the system clock counts as right: "ntp" once the kernel says NTP synchronised it;
    # "system" at once (hosts with a battery-backed RTC). Until then readings carry boot + mono.
    ("clock", field("str", default="ntp", choices=("ntp", "system"))),
    # Metric patterns whose state is the backhaul's (e.g. "if.wan0.oper", "probe.<name>.ok");
    # unset: the site's reachability probes.
    ("backhaul", field("strs")),
    ("location", field("table", fields=LOCATION, fill=True)),
)
DAY_S = 86400
WEEK_S = 7 * DAY_S
DEFAULTS = (
    ("interval", field("num", default=30, min=1, max=DAY_S)),
    ("timeout", field("num", default=5, gt=0, max=3600)),
    ("jitter", field("num", default=0.1, min=0, max=0.5)),
)
SNMP = (
    ("host", field("str", True, check=_host)),
    ("port", field("int", default=161, min=1, max=65535)),
    ("version", field("str", default="2c", choices=("1", "2c", "3"))),
    ("community", field("secret")),
    ("profile", field("str", default="auto", choices=SNMP_PROFILES)),
    ("retries", field("int", default=1, min=0, max=10)),
    ("user", field("str", minlen=1)),
    ("auth_protocol", field("str", choices=("SHA", "SHA256", "MD5"))),
    ("auth_key", field("secret")),
    ("priv_protocol", field("str", choices=("AES", "AES256", "DES", "none"))),
    ("priv_key", field("secret")),
    ("security_level", field("str", choices=("authNoPriv", "authPriv"))),
    ("context", field("str")),
)
# No defaults here: validate.py fills what a device leaves out from its driver's line in
# agent/core/serial_line.py, the one table the transports and drivers read too.
SERIAL = (
    ("port", field("str", True, check=_serial_port)),
    ("baud", field("int", choices=STANDARD_BAUDS)),
    ("bytesize", field("int", min=5, max=8)),
    ("parity", field("str", choices=("N", "E", "O"))),
    ("stopbits", field("int", choices=(1, 2))),
    ("dtr", field("bool")),
    ("rts", field("bool")),
    ("read_timeout", field("num", gt=0, max=60)),
    ("gap_ms", field("int", min=0, max=10000)),
    ("turnaround_ms", field("int", min=1, max=10000)),
)
REGISTER = (
    ("address", field("int", True, min=0, max=65535)),
    ("function", field("int", default=4, choices=(3, 4))),
    ("type", field("str", default="u16", choices=("u16", "s16", "u32", "s32", "f32"))),
    ("scale", field("num", default=1, min=-1e6, max=1e6)),
    ("word_order", field("str", default="big", choices=("big", "little"))),
    ("unit", field("str")),
    ("metric", field("str", True, check=_metric, suggest=_metric_names)),
)
MODBUS = (
    ("slave", field("int", True, min=1, max=247)),
    ("map", field("str", default="epever", choices=("epever", "custom"))),
    ("registers", field("tables", fields=REGISTER)),
)
PROBE = (
    ("kind", field("str", True, choices=("tcp", "dns", "http"))),
    ("target", field("str", check=_host)),
    ("port", field("int", min=1, max=65535)),
    ("url", field("str", check=_url)),
    ("server", field("str", check=_host)),  # dns: ask this resolver (UDP) instead of the system's
    ("name", field("str", minlen=1, maxlen=32, chars=_NAME_CHARS, chars_words="A-Z a-z 0-9 _ -")),
)
# The battery bank behind a device, for the runtime estimate when the device does not report it
# (a DC plant's SNMP gives the bus voltage but neither the nominal voltage nor its cut-off).
BATTERY = (
    ("nominal_v", field("num", min=2, max=1000)),  # e.g. 48 for a 24-cell lead-acid bank
    ("cutoff_cell_v", field("num", min=1.5, max=3.0)),  # end of discharge per 2 V cell (the LVD)
)
SECTIONS = (
    ("snmp", field("table", fields=SNMP)),
    ("serial", field("table", fields=SERIAL)),
    ("modbus", field("table", fields=MODBUS)),
    ("probe", field("table", fields=PROBE)),
    ("options", field("free")),
)
DEVICE = (
    ("id", field("str", True, minlen=1, maxlen=64, chars=ID_CHARS, chars_words=_ID_WORDS)),
    ("driver", field("str", True, check=_driver, suggest=lambda: sorted(DRIVER_SECTIONS))),
    ("name", field("str")),
    ("enabled", field("bool", default=True)),
    ("interval", field("num", min=1, max=DAY_S)),
    ("timeout", field("num", gt=0, max=3600)),
    ("jitter", field("num", min=0, max=0.5)),
    ("battery", field("table", fields=BATTERY)),
) + SECTIONS
BROKER = (
    ("name", field("str", minlen=1)),
    ("host", field("str", True, check=_host)),
    ("port", field("int", min=1, max=65535)),
    ("insecure", field("bool", default=False)),
    ("ca_file", field("str", minlen=1)),
    ("cert_file", field("str", minlen=1)),
    ("key_file", field("str", minlen=1)),
    ("username", field("str", minlen=1)),
    ("password", field("secret")),
    ("protocol", field("str", default="3.1.1", choices=("3.1.1", "5"))),
    ("budget_bytes", field("int", default=0, min=0, max=10**12)),
    ("budget_window", field("str", default="day", choices=("hour", "day"))),
    # Payload form on this broker; a metered broker (budget_bytes > 0) defaults to "compact".
    ("format", field("str", choices=("json", "compact"))),
)
UPLINK = (
    ("client_id", field("str", minlen=1, maxlen=256)),
    # Contract version (docs/mqtt.md); the topic prefix defaults to "site-agent/v<contract>".
    ("contract", field("int", default=1, choices=(1, 2))),
    ("topic_prefix", field("str", check=_topic_prefix)),
    ("format", field("str", default="json", choices=("json", "compact"))),
    # v2 compact: every series goes in full at least this often (seconds).
    ("integrity_period", field("num", default=600, min=60, max=86400)),
    ("keepalive", field("int", default=60, min=10, max=3600)),
    ("batch_max", field("int", default=100, min=1, max=1000)),
    ("rate_msgs", field("num", default=20, gt=0, max=10000)),
    ("rate_bytes", field("int", default=0, min=0, max=10**9)),
    ("max_connects_per_min", field("int", default=6, min=1, max=60)),
    ("connect_timeout", field("num", default=15, gt=0, max=600)),
    ("echo_timeout", field("num", default=10, gt=0, max=600)),
    ("preferred_retry", field("num", default=300, min=10, max=DAY_S)),
    ("backoff_base", field("num", default=2, gt=0, max=3600)),
    ("backoff_cap", field("num", default=300, gt=0, max=DAY_S)),
    # While no broker answers TCP: probe every probe_interval x [0.5, 1.5) s, and once one
    # answers, connect after a delay uniform in [0, reconnect_spread] s (docs/mqtt.md).
    ("probe_interval", field("num", default=4, gt=0, max=300)),
    ("reconnect_spread", field("num", default=8, min=0, max=3600)),
    # A publish waiting this long for its PUBACK means the link is dead (a silent cut).
    ("ack_timeout", field("num", default=8, gt=0, max=600)),
    ("brokers", field("tables", True, fields=BROKER)),
)
STORAGE = (
    ("dir", field("str", default="/var/lib/site-agent", minlen=1)),
    ("budget_mb", field("num", default=64, min=0.1, max=1048576)),
    ("commit_interval", field("num", default=5, gt=0, max=3600)),
    ("commit_records", field("int", default=500, min=1, max=100000)),
)
THRESHOLD_MAX = 1e15  # alarm thresholds: byte counters fit, absurd magnitudes do not
RULE = (
    (
        "id",
        field("str", True, maxlen=64, chars=UPPER_SNAKE, check=_rule_id, chars_words=_RULE_WORDS),
    ),
    ("metric", field("str", True, check=_metric, suggest=_metric_names)),
    ("device", field("str", default="*", minlen=1)),
    ("above", field("num", min=-THRESHOLD_MAX, max=THRESHOLD_MAX)),
    ("below", field("num", min=-THRESHOLD_MAX, max=THRESHOLD_MAX)),
    ("equals", field("str")),
    ("contains", field("str", minlen=1)),
    ("stale", field("int", min=1, max=10000)),
    ("clear", field("num", min=-THRESHOLD_MAX, max=THRESHOLD_MAX)),
    ("clear_s", field("num", min=0, max=WEEK_S)),
    ("for_s", field("num", default=0, min=0, max=WEEK_S)),
    ("when", field("pair")),
    ("transition", field("bool")),
    ("severity", field("str", default="major", choices=("critical", "major", "minor", "warning"))),
)
ALARMS = (
    ("defaults", field("bool", default=True)),
    ("rules", field("tables", default=[], fields=RULE)),
)
IDLE_TIMEOUT_S = 120
CONSOLE = (
    ("enabled", field("bool", default=False)),
    ("port", field("str", check=_serial_port)),
    ("baud", field("int", default=115200, choices=STANDARD_BAUDS)),
    ("pin_hash", field("secret")),
    # A closed laptop is invisible on a bare UART or pty: a short default bounds how long the
    # next person could find a session still logged in (see docs/console.md).
    ("idle_timeout", field("num", default=IDLE_TIMEOUT_S, min=1, max=DAY_S)),
    ("socket", field("bool", default=True)),
)
# [network]: a board's own link (a Pi's network belongs to its OS, which ignores this table).
WIFI = (
    ("ssid", field("str", True, minlen=1, maxlen=32)),
    ("password", field("secret")),
)
NETWORK = (
    ("wifi", field("tables", fields=WIFI)),  # access points, the preferred one first
    ("hostname", field("str", minlen=1, maxlen=32, chars=_NAME_CHARS,
                       chars_words="A-Z a-z 0-9 _ -")),  # fmt: skip
    ("address", field("str", check=_cidr)),  # static IPv4 "192.0.2.10/24"; absent: DHCP
    ("gateway", field("str", check=_host)),
    ("dns", field("strs")),
    ("ipv6", field("bool", default=True)),
    ("ntp", field("strs", default=["pool.ntp.org"])),  # SNTP servers, tried in order
)
TOP = (
    ("site", field("table", True, fields=SITE)),
    ("defaults", field("table", fields=DEFAULTS, fill=True)),
    ("devices", field("tables", default=[], fields=DEVICE)),
    ("uplink", field("table", fields=UPLINK)),
    ("storage", field("table", fields=STORAGE, fill=True)),
    ("alarms", field("table", fields=ALARMS, fill=True)),
    ("console", field("table", fields=CONSOLE, fill=True)),
    ("network", field("table", fields=NETWORK)),
)
SECTION_NAMES = tuple(name for name, _ in SECTIONS)

# Every table of the schema by its place in the file; docs/config.md is checked against this.
SCHEMA_TABLES = (
    ("", TOP), ("site", SITE), ("site.location", LOCATION), ("defaults", DEFAULTS),
    ("devices", DEVICE), ("devices.snmp", SNMP), ("devices.serial", SERIAL),
    ("devices.modbus", MODBUS), ("devices.modbus.registers", REGISTER), ("devices.probe", PROBE),
    ("devices.battery", BATTERY),
    ("uplink", UPLINK), ("uplink.brokers", BROKER), ("storage", STORAGE), ("alarms", ALARMS),
    ("alarms.rules", RULE), ("console", CONSOLE), ("network", NETWORK), ("network.wifi", WIFI),
)  # fmt: skip
