"""Host side of the site config: TOML files, line numbers for syntax errors, secrets from the
environment and from files, the shipped examples, and docs/config.md covering every key."""

import os
import re
from pathlib import Path

import pytest

import drivers
from agent.core.config.validate import SCHEMA_TABLES, validate
from agent.core.errors import ConfigError
from agent.host.configfile import load, parse

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "config").glob("*.toml"))
PIN = "pbkdf2-sha256$200000$a1b2c3d4$" + "0f" * 32

GOOD = """\
[site]
id = "vn-test-01"
kind = "wifi"

[[devices]]
id = "ups"
driver = "megatec"
[devices.serial]
port = "/dev/ttyUSB0"

[uplink]
[[uplink.brokers]]
host = "mqtt.example.net"
ca_file = "/etc/ca.pem"
username = "vn-test-01"
password = { env = "SITE_MQTT_PW" }

[console]
enabled = true
port = "/dev/ttyGS0"
pin_hash = { file = "pin.txt" }
"""


def write(tmp_path, text, name="site.toml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def secret_file(tmp_path, name, text, mode=0o600):
    p = tmp_path / name
    p.write_text(text)
    p.chmod(mode)
    return p


def test_load_resolves_env_and_relative_file_secrets(tmp_path):
    secret_file(tmp_path, "pin.txt", PIN + "\n")
    path = write(tmp_path, GOOD)
    cfg = load(path, environ={"SITE_MQTT_PW": "s3cret-pw"})
    assert cfg.source == path
    assert cfg.uplink["brokers"][0]["password"] == "s3cret-pw"
    assert cfg.console["pin_hash"] == PIN
    assert cfg.device("ups")["serial"]["baud"] == 2400
    assert cfg.warnings == []
    red = cfg.redacted()
    assert red["uplink"]["brokers"][0]["password"] == "<secret>"
    assert "s3cret-pw" not in repr(red) and PIN not in repr(red)


def test_load_accepts_a_path_object(tmp_path):
    secret_file(tmp_path, "pin.txt", PIN)
    cfg = load(Path(write(tmp_path, GOOD)), environ={"SITE_MQTT_PW": "x"})
    assert cfg.site["id"] == "vn-test-01"


def test_world_readable_secret_file_warns(tmp_path):
    secret_file(tmp_path, "pin.txt", PIN, mode=0o644)
    path = write(tmp_path, GOOD)
    cfg = load(path, environ={"SITE_MQTT_PW": "x"})
    assert cfg.warnings == [
        f"{path}: secret file pin.txt can be read by every user (mode 644); chmod 600 it"
    ]


def test_missing_env_and_file_are_reported_together_with_the_path(tmp_path):
    path = write(tmp_path, GOOD)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert info.value.errors == [
        f"{path}: uplink.brokers[0].password: environment variable SITE_MQTT_PW is not set",
        f"{path}: console.pin_hash: cannot read secret file pin.txt: No such file or directory",
    ]


def test_validation_errors_name_the_file(tmp_path):
    path = write(tmp_path, GOOD.replace('kind = "wifi"', 'kind = "wifi"\nnmae = "x"'))
    secret_file(tmp_path, "pin.txt", PIN)
    with pytest.raises(ConfigError) as info:
        load(path, environ={"SITE_MQTT_PW": "x"})
    assert info.value.errors == [f'{path}: site.nmae: unknown key (did you mean "name"?)']


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ('[site]\nid = "a"\nkind = wifi\n', 3, "TOML syntax: Invalid value (column 8)"),
        ('[site]\nid = "a"\n[site]\nkind = "bts"\n', 3, "TOML syntax: Cannot declare"),
        ('[site]\nid = "a\n', 2, "TOML syntax: Illegal character"),
        ("[site]\nid = [1,\n", 2, "TOML syntax: "),
        ('[site]\n\n\nid = "a"\nid = "b"\n', 5, "TOML syntax: Cannot overwrite a value"),
    ],
)
def test_toml_syntax_error_has_file_and_line(tmp_path, text, line, message):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load(path, environ={})
    assert len(info.value.errors) == 1
    err = info.value.errors[0]
    assert err.startswith(f"{path}:{line}: {message}"), err


def test_not_utf8_reports_the_line(tmp_path):
    path = tmp_path / "site.toml"
    path.write_bytes(b'[site]\nid = "a"\nname = "\xff"\n')
    with pytest.raises(ConfigError) as info:
        load(str(path), environ={})
    assert info.value.errors == [f"{path}:3: TOML syntax: not valid UTF-8"]


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load(path)
    assert info.value.errors == [f"{path}: cannot read: No such file or directory"]


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load(str(tmp_path))
    assert info.value.errors[0].startswith(f"{tmp_path}: cannot read: ")


# -- the shipped examples ------------------------------------------------------------------


def fake_secrets():
    """Every env var and file the examples name, with plausible values."""
    env = {
        "ELTEK_AUTH_KEY": "auth-pass-phrase",
        "ELTEK_PRIV_KEY": "priv-pass-phrase",
        "ROUTER_COMMUNITY": "rtr-ro-7Qx",
    }
    files = {
        "/etc/site-agent/secrets/ups-community": "ups-ro-9Kp\n",
        "/etc/site-agent/secrets/mqtt-password": "mqtt-pass\n",
        "/etc/site-agent/secrets/console-pin": PIN + "\n",
    }

    def read_file(path):
        if path not in files:
            raise OSError(2, "No such file or directory")
        return files[path]

    return env.get, read_file


def test_examples_exist():
    names = {p.name for p in EXAMPLES}
    assert {"bts-hardened.toml", "community-wifi.toml"} <= names


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_without_warnings(path):
    getenv, read_file = fake_secrets()
    cfg = validate(parse(path), source=str(path), getenv=getenv, read_file=read_file,
                   drivers=drivers.load)
    assert cfg.warnings == []
    assert cfg.devices, "an example should show devices"
    assert cfg.uplink and cfg.uplink["brokers"]
    for broker in cfg.uplink["brokers"]:
        assert not broker["insecure"] and "cert_file" in broker  # examples show mutual TLS
    text = path.read_text()
    for host in re.findall(r'host = "([^"]+)"', text) + re.findall(r'target = "([^"]+)"', text):
        assert host.startswith(("192.0.2.", "198.51.100.", "203.0.113.")) or host.endswith(
            "example.net"
        ), host


def test_bts_example_has_the_devices_the_issue_lists():
    getenv, read_file = fake_secrets()
    path = ROOT / "config" / "bts-hardened.toml"
    cfg = validate(parse(path), source=str(path), getenv=getenv, read_file=read_file,
                   drivers=drivers.load)
    profiles = {d["snmp"]["profile"] for d in cfg.devices if d["driver"] == "snmp"}
    assert profiles == {"eltek", "ups-mib", "router"}
    mppt = next(d for d in cfg.devices if d["driver"] == "modbus")
    assert mppt["serial"]["port"] == "/dev/ttyUSB0" and mppt["modbus"]["slave"] == 1
    packs = [d for d in cfg.devices if d["driver"] == "pylontech"]
    assert [d["serial"]["port"] for d in packs] == ["/dev/ttyUSB1"] * 2
    # One device per pack, each polled at its own address (what pack_addresses = [2, 3] meant,
    # which no code read: only pack 2 was polled).
    from drivers.pylontech import PylontechDriver

    assert [PylontechDriver(d).address for d in packs] == [2, 3]
    sat = cfg.uplink["brokers"][1]
    assert sat["budget_bytes"] > 0 and sat["budget_window"] == "day"
    assert cfg.storage["budget_mb"] == 512 and cfg.console["port"] == "/dev/ttyGS0"
    assert cfg.alarms["rules"]


def test_wifi_example_has_the_devices_the_issue_lists():
    getenv, read_file = fake_secrets()
    path = ROOT / "config" / "community-wifi.toml"
    cfg = validate(parse(path), source=str(path), getenv=getenv, read_file=read_file,
                   drivers=drivers.load)
    assert [d["driver"] for d in cfg.devices].count("megatec") == 1
    assert {d["probe"]["kind"] for d in cfg.devices if d["driver"] == "probe"} == {
        "tcp",
        "dns",
        "http",
    }
    assert cfg.device("router")["snmp"]["version"] == "2c"
    assert cfg.storage["budget_mb"] == 8


# -- docs/config.md covers every key ---------------------------------------------------------


def doc_sections():
    """{"devices.snmp": text of that section} from headings like "### `[devices.snmp]`"."""
    text = (ROOT / "docs" / "config.md").read_text()
    sections = {}
    name = None
    for line in text.splitlines():
        m = re.match(r"#+ .*`\[\[?([a-z_.]+)\]\]?`", line)
        if m:
            name = m.group(1)
            sections[name] = ""
        elif line.startswith("#"):
            name = "top" if "top level" in line.lower() else None
            if name:
                sections[name] = ""
        elif name:
            sections[name] += line + "\n"
    return sections


def test_docs_document_every_key_in_its_table():
    sections = doc_sections()
    missing = []
    for table, fields in SCHEMA_TABLES:
        body = sections.get(table or "top")
        if body is None:
            missing.append(f"section for [{table}]")
            continue
        for key, _ in fields:
            if not re.search(r"^\| `" + re.escape(key) + r"` \|", body, re.MULTILINE):
                missing.append(f"{table}.{key}" if table else key)
    assert not missing, "docs/config.md lacks: " + ", ".join(missing)


def test_docs_mention_no_unknown_keys():
    known = {table or "top": {k for k, _ in fields} for table, fields in SCHEMA_TABLES}
    extra = []
    for table, body in doc_sections().items():
        if table == "devices.options":
            continue  # the drivers' own tables: test_docs_list_every_driver_option
        for key in re.findall(r"^\| `([a-z_0-9]+)` \|", body, re.MULTILINE):
            if key not in known.get(table, ()):
                extra.append(f"{table}.{key}")
    assert not extra, "docs/config.md documents keys the schema lacks: " + ", ".join(extra)


def test_docs_show_the_serial_line_table():
    from agent.core import serial_line

    body = doc_sections()["devices.serial"]
    rows = dict(re.findall(r'^\| `"([a-z]+)"` \| (.*) \|$', body, re.MULTILINE))
    assert set(rows) == set(serial_line.DRIVERS)
    for driver, line in serial_line.DRIVERS.items():
        shown = dict(re.findall(r"`([a-z_]+) = ([^`]+)`", rows[driver]))
        want = {k: str(v).lower() for k, v in line.items()}
        assert shown == want, driver
    # The default column of each key ends with the table's LINE value ("...; else 1.0").
    for key in ("bytesize", "parity", "stopbits", "read_timeout", "gap_ms", "turnaround_ms"):
        row = re.search(r"^\| `" + key + r"` \|(.*)$", body, re.MULTILINE).group(1)
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", row)]
        assert cells[1].strip("`").strip('"').endswith(str(serial_line.LINE[key])), (key, cells)


def test_environ_default_is_os_environ(tmp_path, monkeypatch):
    secret_file(tmp_path, "pin.txt", PIN)
    monkeypatch.setenv("SITE_MQTT_PW", "from-os-environ")
    cfg = load(write(tmp_path, GOOD))
    assert cfg.uplink["brokers"][0]["password"] == "from-os-environ"
    assert os.environ["SITE_MQTT_PW"] == "from-os-environ"


def test_snmp_profiles_match_the_driver_table():
    from agent.core.config.tables import SNMP_PROFILES
    from drivers import profiles

    assert set(SNMP_PROFILES) == {"auto"} | set(profiles.PROFILES)


def test_driver_sections_name_only_known_or_planned_drivers():
    from agent.core.config.validate import DRIVER_SECTIONS
    from drivers import DRIVERS

    # Every driver the registry can load must be configurable; the config table may list drivers
    # whose modules are still to come (voltronic, vedirect, ...).
    assert set(DRIVERS) <= set(DRIVER_SECTIONS)


def _driver_options():
    """{(driver, option): spec} over every driver this build can load."""
    import drivers

    out = {}
    for name in drivers.names():
        for key, spec in drivers.load(name).OPTIONS or ():
            out[(name, key)] = spec
    return out


def test_docs_list_every_driver_option():
    body = doc_sections()["devices.options"]
    rows = re.findall(r"^\| `([a-z_0-9]+)` \| `([a-z-]+)` \| ([^|]*) \|", body, re.MULTILINE)
    documented = {(driver, key): kind for key, driver, kind in rows}
    declared = _driver_options()
    assert set(documented) == set(declared)
    for where, spec in declared.items():
        assert ("(public)" in documented[where]) == bool(spec.get("public")), where
    assert declared, "no driver declares options: the section documents nothing"


def _numbers(text):
    """Every number written in a docs cell: 86400, 0.1, -90, 10^12, -10^15."""
    out = []
    for sign, base, exp, plain in re.findall(r"(-?)(?:(10)\^(\d+)|(\d+(?:\.\d+)?))", text):
        value = 10 ** int(exp) if base else float(plain)
        out.append(-value if sign else value)
    return out


def test_docs_give_every_number_key_its_range():
    """The type column of every number key names both ends of the schema's range."""
    from agent.core.config.tables import SCHEMA_TABLES

    sections = doc_sections()
    wrong = []
    tables = list(SCHEMA_TABLES) + [("devices.options", [(k, s) for (_, k), s in
                                                         _driver_options().items()])]
    for table, fields in tables:
        body = sections[table or "top"]
        for key, spec in fields:
            if spec["kind"] not in ("int", "num") or "choices" in spec:
                continue
            m = re.search(r"^\| `" + re.escape(key) + r"` \|(?: `[a-z-]+` \|)? ([^|]*) \|",
                          body, re.MULTILINE)
            numbers = _numbers(m.group(1)) if m else []
            for bound in ("min", "gt", "max", "lt"):
                if bound in spec and float(spec[bound]) not in numbers:
                    wrong.append("%s.%s: %s %s not in %r" % (table, key, bound, spec[bound],
                                                            m and m.group(1)))
    assert not wrong, "docs/config.md ranges disagree with the schema:\n" + "\n".join(wrong)
