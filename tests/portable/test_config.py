"""Site config validation on plain dicts: defaults, secrets, warnings, and one test per kind of
mistake, each asserting the exact key path in the message. Portable (pytest and MicroPython)."""

from agent.core.config.validate import DRIVER_SECTIONS, validate
from agent.core.errors import ConfigError

from support import raises

PIN = "pbkdf2-sha256$200000$a1b2c3d4$" + "0f" * 32


def base():
    """A small valid site: one device of each connection kind, a TLS broker, a console."""
    return {
        "site": {"id": "vn-qn-0042", "kind": "bts", "location": {"lat": 15.1, "lon": 108.8}},
        "devices": [
            {"id": "dc", "driver": "snmp", "snmp": {"host": "192.0.2.10", "community": "k8s!x"}},
            {"id": "ups", "driver": "megatec", "serial": {"port": "/dev/ttyUSB0"}},
            {
                "id": "mppt",
                "driver": "modbus",
                "serial": {"port": "/dev/ttyUSB1"},
                "modbus": {"slave": 1},
            },
            {"id": "wan", "driver": "probe", "probe": {"kind": "dns", "target": "example.net"}},
        ],
        "uplink": {
            "brokers": [
                {
                    "host": "mqtt.example.net",
                    "ca_file": "/etc/site-agent/ca.pem",
                    "username": "vn-qn-0042",
                    "password": {"env": "MQTT_PASSWORD"},
                }
            ]
        },
        "console": {"enabled": True, "port": "/dev/ttyGS0", "pin_hash": {"file": "/etc/pin"}},
    }


ENV = {"MQTT_PASSWORD": "hunter2-but-longer"}
FILES = {"/etc/pin": PIN + "\n", "/etc/auth": "auth-pass-phrase\n"}


def getenv(name):
    return ENV.get(name)


def read_file(path):
    if path not in FILES:
        raise OSError(2, "No such file or directory")
    return FILES[path]


def check(data):
    return validate(data, "site.toml", getenv, read_file)


def errors(data):
    return raises(ConfigError, check, data).errors


def only(data):
    """The single error `data` produces."""
    errs = errors(data)
    assert len(errs) == 1, errs
    return errs[0]


# -- a good config ---------------------------------------------------------------------------


def test_valid_config_fills_defaults():
    cfg = check(base())
    assert cfg.source == "site.toml"
    assert cfg.site["name"] == "vn-qn-0042"
    ups = cfg.device("ups")
    assert ups["interval"] == 30 and ups["timeout"] == 5 and ups["jitter"] == 0.1
    assert ups["enabled"] is True and ups["name"] == "ups" and ups["options"] == {}
    assert ups["serial"]["baud"] == 2400 and ups["serial"]["parity"] == "N"
    assert cfg.device("mppt")["serial"]["baud"] == 115200
    assert cfg.device("mppt")["modbus"]["map"] == "epever"
    snmp = cfg.device("dc")["snmp"]
    assert snmp["port"] == 161 and snmp["version"] == "2c" and snmp["profile"] == "auto"
    assert "user" not in snmp and "auth_protocol" not in snmp
    assert cfg.device("nope") is None
    broker = cfg.uplink["brokers"][0]
    assert broker["port"] == 8883 and broker["password"] == "hunter2-but-longer"
    assert (
        cfg.uplink["client_id"] == "vn-qn-0042" and cfg.uplink["topic_prefix"] == "site-agent/v1"
    )
    assert cfg.storage["budget_mb"] == 64 and cfg.storage["dir"] == "/var/lib/site-agent"
    assert cfg.alarms == {"defaults": True, "rules": []}
    assert cfg.console["pin_hash"] == PIN and cfg.console["baud"] == 115200
    assert cfg.warnings == []


def test_defaults_table_applies_to_devices_that_do_not_set_them():
    data = base()
    data["defaults"] = {"interval": 60, "timeout": 10, "jitter": 0.2}
    data["devices"][1]["interval"] = 15
    cfg = check(data)
    assert cfg.device("dc")["interval"] == 60 and cfg.device("dc")["jitter"] == 0.2
    assert cfg.device("ups")["interval"] == 15 and cfg.device("ups")["timeout"] == 10


def test_no_uplink_and_no_devices_is_valid():
    cfg = check({"site": {"id": "a", "kind": "wifi"}})
    assert cfg.uplink is None and cfg.devices == [] and cfg.console["enabled"] is False


def test_redacted_replaces_every_secret():
    cfg = check(base())
    red = cfg.redacted()
    assert red["uplink"]["brokers"][0]["password"] == "<secret>"
    assert red["console"]["pin_hash"] == "<secret>"
    assert red["devices"][0]["snmp"]["community"] == "<secret>"
    assert red["devices"][0]["snmp"]["host"] == "192.0.2.10"
    # the live config keeps the values
    assert cfg.uplink["brokers"][0]["password"] == "hunter2-but-longer"
    text = repr(red)
    for secret in ("hunter2", "k8s!x", PIN):
        assert secret not in text


def test_default_community_is_a_secret_and_warns():
    data = base()
    del data["devices"][0]["snmp"]["community"]
    cfg = check(data)
    assert cfg.device("dc")["snmp"]["community"] == "public"
    assert cfg.redacted()["devices"][0]["snmp"]["community"] == "<secret>"
    assert len(cfg.warnings) == 1
    assert cfg.warnings[0].startswith("site.toml: devices[0].snmp.community: the well-known")


def test_private_community_warns():
    data = base()
    data["devices"][0]["snmp"]["community"] = "private"
    w = check(data).warnings
    assert len(w) == 1 and w[0].startswith("site.toml: devices[0].snmp.community:")
    assert '"private"' in w[0]


def test_insecure_broker_warns_and_defaults_to_1883():
    data = base()
    data["uplink"]["brokers"][0] = {"host": "192.0.2.7", "insecure": True}
    cfg = check(data)
    assert cfg.uplink["brokers"][0]["port"] == 1883
    assert cfg.warnings == [
        (
            "site.toml: uplink.brokers[0]: insecure = true: MQTT without TLS; readings and "
            "credentials cross the network in clear text"
        )
    ]


def test_literal_password_warns():
    data = base()
    data["uplink"]["brokers"][0]["password"] = "in-the-file"
    w = check(data).warnings
    assert len(w) == 1
    assert w[0].startswith("site.toml: uplink.brokers[0].password: password written in the file")
    assert "env" in w[0] and "file" in w[0]


def test_snmp_v3_valid_with_secret_from_file():
    data = base()
    data["devices"][0]["snmp"] = {
        "host": "192.0.2.10",
        "version": "3",
        "user": "monitor",
        "auth_key": {"file": "/etc/auth"},
        "priv_key": "priv-pass-phrase",
    }
    cfg = check(data)
    snmp = cfg.device("dc")["snmp"]
    assert snmp["auth_key"] == "auth-pass-phrase"  # trailing newline of the file dropped
    assert snmp["auth_protocol"] == "SHA" and snmp["priv_protocol"] == "AES"
    assert snmp["security_level"] == "authPriv" and "community" not in snmp
    red = cfg.redacted()["devices"][0]["snmp"]
    assert red["auth_key"] == "<secret>" and red["priv_key"] == "<secret>"


def test_custom_modbus_registers_take_registry_units():
    data = base()
    data["devices"][2]["modbus"] = {
        "slave": 3,
        "map": "custom",
        "registers": [
            {"address": 0x3104, "metric": "battery.voltage", "scale": 0.01},
            {
                "address": 0x331B,
                "type": "s32",
                "word_order": "little",
                "metric": "battery.current",
            },
        ],
    }
    regs = check(data).device("mppt")["modbus"]["registers"]
    assert regs[0]["unit"] == "V" and regs[0]["function"] == 4 and regs[0]["type"] == "u16"
    assert regs[1]["unit"] == "A" and regs[1]["word_order"] == "little"


def test_driver_table_covers_the_issue_list():
    for name in ("snmp", "megatec", "voltronic", "vedirect", "modbus", "pylontech", "probe"):
        assert name in DRIVER_SECTIONS
    assert DRIVER_SECTIONS["vedirect"] == (("serial",), 19200)
    assert DRIVER_SECTIONS["modbus"][0] == ("serial", "modbus")


def test_serial_lines_are_filled_from_the_one_table_per_driver():
    # Issue 11 point 3: the schema used to fill read_timeout 1.0 and gap_ms 0 into every serial
    # device, over the drivers' own (VE.Direct waits 2 s for its stream, Modbus keeps 5 ms of
    # quiet on RS-485); the transports had a third copy.
    from agent.core import serial_line

    data = base()
    data["devices"].append({"id": "bmv", "driver": "vedirect", "serial": {"port": "/dev/ttyS1"}})
    data["devices"].append({"id": "mppt2", "driver": "modbus", "modbus": {"slave": 2},
                            "serial": {"port": "/dev/ttyUSB1", "gap_ms": 20}})  # fmt: skip
    cfg = check(data)
    for dev_id, driver in (("ups", "megatec"), ("mppt", "modbus"), ("bmv", "vedirect")):
        want = {k: v for k, v in serial_line.driver_defaults(driver).items() if v is not None}
        want["port"] = cfg.device(dev_id)["serial"]["port"]
        assert cfg.device(dev_id)["serial"] == want, dev_id
    bmv = cfg.device("bmv")["serial"]
    assert bmv["read_timeout"] == 2.0 and bmv["dtr"] is True and bmv["baud"] == 19200
    assert cfg.device("mppt")["serial"]["gap_ms"] == 5
    assert cfg.device("mppt2")["serial"]["gap_ms"] == 20  # what the device says wins
    assert cfg.device("ups")["serial"]["turnaround_ms"] == 100
    for driver, (sections, baud) in DRIVER_SECTIONS.items():
        if "serial" in sections:
            assert baud == serial_line.DRIVERS[driver]["baud"], driver


# -- bad configs: one test per mistake, exact key path ---------------------------------------


def test_bad_snmp_version():
    data = base()
    data["devices"][0]["snmp"]["version"] = "4"
    assert only(data) == ('site.toml: devices[0].snmp.version: expected "1", "2c" or "3", got "4"')


def test_version_as_integer_is_a_wrong_type():
    data = base()
    data["devices"][0]["snmp"]["version"] = 2
    assert only(data) == 'site.toml: devices[0].snmp.version: expected "1", "2c" or "3", got 2'


def test_unknown_key_in_device_suggests_closest():
    data = base()
    data["devices"][0]["intervall"] = 10
    assert only(data) == 'site.toml: devices[0].intervall: unknown key (did you mean "interval"?)'


def test_unknown_key_at_top_level():
    data = base()
    data["uplinks"] = {}
    assert only(data) == 'site.toml: uplinks: unknown key (did you mean "uplink"?)'


def test_unknown_key_without_suggestion():
    data = base()
    data["site"]["colour"] = "red"
    assert only(data) == "site.toml: site.colour: unknown key"


def test_unknown_key_in_nested_tables():
    data = base()
    data["site"]["location"]["elevation"] = 12
    data["devices"][1]["serial"]["buad"] = 2400
    data["uplink"]["brokers"][0]["cafile"] = "/x"
    data["devices"][2]["modbus"]["slav"] = 2
    errs = errors(data)
    assert "site.toml: site.location.elevation: unknown key" in errs
    assert 'site.toml: devices[1].serial.buad: unknown key (did you mean "baud"?)' in errs
    assert 'site.toml: uplink.brokers[0].cafile: unknown key (did you mean "ca_file"?)' in errs
    assert 'site.toml: devices[2].modbus.slav: unknown key (did you mean "slave"?)' in errs
    assert len(errs) == 4, errs


def test_missing_required_site():
    data = base()
    del data["site"]
    assert only(data) == "site.toml: site: missing required key (expected a table)"


def test_missing_required_keys_collects_all():
    data = base()
    del data["site"]["kind"]
    del data["devices"][0]["snmp"]["host"]
    del data["devices"][3]["driver"]
    errs = errors(data)
    assert errs == [
        'site.toml: site.kind: missing required key (expected "bts" or "wifi")',
        "site.toml: devices[0].snmp.host: missing required key (expected a string)",
        "site.toml: devices[3].driver: missing required key (expected a string)",
    ], errs


def test_wrong_types():
    data = base()
    data["devices"][1]["enabled"] = "yes"
    data["devices"][1]["interval"] = "30"
    data["storage"] = {"commit_records": 2.5}
    data["devices"] = data["devices"][:2]
    errs = errors(data)
    assert errs == [  # in the order of the file's tables, not the order of the checks
        'site.toml: devices[1].enabled: expected true or false, got "yes"',
        'site.toml: devices[1].interval: expected a number, got "30"',
        "site.toml: storage.commit_records: expected an integer, got 2.5",
    ], errs


def test_bool_is_not_a_number():
    data = base()
    data["devices"][0]["snmp"]["port"] = True
    assert only(data) == "site.toml: devices[0].snmp.port: expected an integer, got true"


def test_out_of_range():
    data = base()
    data["devices"][0]["snmp"]["port"] = 70000
    data["site"]["location"]["lat"] = 91
    errs = errors(data)
    assert errs == [
        "site.toml: site.location.lat: expected a number from -90 to 90, got 91",
        "site.toml: devices[0].snmp.port: expected an integer from 1 to 65535, got 70000",
    ], errs


def test_bad_enum_suggests_closest():
    data = base()
    data["devices"][0]["snmp"]["profile"] = "upsmib"
    assert only(data) == (
        'site.toml: devices[0].snmp.profile: expected "auto", "ups-mib", "apc-powernet", '
        '"apc-pdu", "eltek", "netsure", "if-mib", "host-resources", "system" or "router", '
        'got "upsmib" (did you mean "ups-mib"?)'
    )


def test_unknown_driver():
    data = base()
    data["devices"][0]["driver"] = "snpm"
    err = only(data)
    assert err.startswith('site.toml: devices[0].driver: expected one of "megatec", ')
    assert err.endswith('got "snpm" (did you mean "snmp"?)')


def test_duplicate_device_id():
    data = base()
    data["devices"][3]["id"] = "ups"
    assert only(data) == (
        'site.toml: devices[3].id: duplicate device id "ups" (first used by devices[1])'
    )


def test_bad_site_id_characters():
    for bad in ("vn/qn", "vn+1", "site#", "vn qn", "", "x" * 65):
        data = base()
        data["site"]["id"] = bad
        err = only(data)
        assert err.startswith("site.toml: site.id: expected "), err


def test_bad_device_id_characters():
    data = base()
    data["devices"][1]["id"] = "ups/1"
    assert only(data) == (
        "site.toml: devices[1].id: expected 1 to 64 of the characters A-Z a-z 0-9 . _ -, "
        'got "ups/1"'
    )


def test_secret_env_missing():
    data = base()
    data["uplink"]["brokers"][0]["password"] = {"env": "NOT_SET_ANYWHERE"}
    assert only(data) == (
        "site.toml: uplink.brokers[0].password: environment variable NOT_SET_ANYWHERE is not set"
    )


def test_secret_file_missing():
    data = base()
    data["console"]["pin_hash"] = {"file": "/run/secrets/none"}
    assert only(data) == (
        "site.toml: console.pin_hash: cannot read secret file /run/secrets/none: "
        "No such file or directory"
    )


def test_secret_table_with_wrong_key():
    data = base()
    data["uplink"]["brokers"][0]["password"] = {"evn": "X"}
    assert only(data) == (
        'site.toml: uplink.brokers[0].password.evn: unknown key (did you mean "env"?)'
    )


def test_secret_wrong_type():
    data = base()
    data["uplink"]["brokers"][0]["password"] = 1234
    assert only(data) == (
        "site.toml: uplink.brokers[0].password: expected a string or a table "
        '{ env = "NAME" } or { file = "/path" }, got 1234'
    )


def test_v3_without_user():
    data = base()
    data["devices"][0]["snmp"] = {
        "host": "192.0.2.10",
        "version": "3",
        "auth_key": "auth-pass-phrase",
        "priv_key": "priv-pass-phrase",
    }
    assert only(data) == (
        'site.toml: devices[0].snmp.user: missing required key when version = "3" '
        "(expected a string)"
    )


def test_v3_keys_on_v2c_and_community_on_v3():
    data = base()
    data["devices"][0]["snmp"]["user"] = "monitor"
    data["devices"].append(
        {
            "id": "dc2",
            "driver": "snmp",
            "snmp": {"host": "192.0.2.11", "version": "3", "community": "x", "user": "u",
                     "auth_key": "12345678", "security_level": "authNoPriv"},
        }
    )  # fmt: skip
    assert errors(data) == [
        'site.toml: devices[0].snmp.user: only for version "3", got version "2c"',
        'site.toml: devices[4].snmp.community: only for version "1" or "2c", got version "3"',
    ]


def test_v3_short_key_does_not_show_the_secret():
    data = base()
    data["devices"][0]["snmp"] = {"host": "h", "version": "3", "user": "u",
                                  "auth_key": "short", "security_level": "authNoPriv"}  # fmt: skip
    err = only(data)
    assert err.startswith("site.toml: devices[0].snmp.auth_key: expected at least 8 characters")
    assert "short" not in err


def test_serial_driver_without_serial_section():
    data = base()
    del data["devices"][1]["serial"]
    assert only(data) == (
        "site.toml: devices[1].serial: missing required section [devices.serial] for driver "
        '"megatec"'
    )


def test_section_of_another_driver():
    data = base()
    data["devices"][1]["snmp"] = {"host": "192.0.2.1"}
    assert only(data) == (
        'site.toml: devices[1].snmp: not used by driver "megatec" (it takes [devices.serial])'
    )


def test_interval_zero_or_negative():
    for bad in (0, -5, 0.5):
        data = base()
        data["devices"][0]["interval"] = bad
        err = only(data)
        assert err == "site.toml: devices[0].interval: expected a number >= 1, got " + repr(bad)


def test_timeout_not_below_interval():
    data = base()
    data["devices"][0]["interval"] = 10
    data["devices"][0]["timeout"] = 10
    assert only(data) == (
        "site.toml: devices[0].timeout: expected less than interval (10), got 10"
    )


def test_default_timeout_against_short_device_interval():
    data = base()
    data["devices"][0]["interval"] = 3
    assert only(data) == (
        "site.toml: devices[0].timeout: expected less than interval (3), got 5 "
        "(from defaults.timeout)"
    )


def test_defaults_timeout_not_below_defaults_interval():
    data = base()
    data["defaults"] = {"interval": 5, "timeout": 6}
    assert only(data) == (
        "site.toml: defaults.timeout: expected less than defaults.interval (5), got 6"
    )


def test_negative_storage_budget():
    data = base()
    data["storage"] = {"budget_mb": -1}
    assert only(data) == "site.toml: storage.budget_mb: expected a number > 0, got -1"


def test_jitter_out_of_range():
    data = base()
    data["defaults"] = {"jitter": 0.6}
    assert only(data) == "site.toml: defaults.jitter: expected a number from 0 to 0.5, got 0.6"


def test_tls_broker_without_ca_file():
    data = base()
    del data["uplink"]["brokers"][0]["ca_file"]
    assert only(data) == (
        "site.toml: uplink.brokers[0].ca_file: missing required key when insecure = false "
        "(expected the CA certificate file)"
    )


def test_cert_without_key():
    data = base()
    data["uplink"]["brokers"][0]["cert_file"] = "/etc/site-agent/client.pem"
    assert only(data) == (
        "site.toml: uplink.brokers[0].key_file: missing required key when cert_file is set "
        "(expected a file path)"
    )


def test_uplink_without_brokers():
    data = base()
    data["uplink"] = {"format": "compact"}
    assert only(data) == (
        "site.toml: uplink.brokers: missing required key (expected an array of tables)"
    )
    data["uplink"]["brokers"] = []
    assert (
        only(data)
        == "site.toml: uplink.brokers: expected at least one [[uplink.brokers]], got none"
    )


def test_topic_prefix_wildcards():
    data = base()
    data["uplink"]["topic_prefix"] = "sites/+/v1"
    assert only(data).startswith("site.toml: uplink.topic_prefix: expected a topic prefix")


def test_modbus_custom_map_needs_registers_and_known_metrics():
    data = base()
    data["devices"][2]["modbus"] = {"slave": 248, "map": "custom"}
    assert errors(data) == [
        "site.toml: devices[2].modbus.slave: expected an integer from 1 to 247, got 248",
        (
            'site.toml: devices[2].modbus.registers: missing required key when map = "custom" '
            "(expected [[devices.modbus.registers]])"
        ),
    ]
    data["devices"][2]["modbus"] = {
        "slave": 1,
        "map": "custom",
        "registers": [{"address": 1, "metric": "battery.voltage"}, {"address": 2,
                       "metric": "battery.volts", "function": 6}],
    }  # fmt: skip
    assert errors(data) == [
        "site.toml: devices[2].modbus.registers[1].function: expected 3 or 4, got 6",
        (
            "site.toml: devices[2].modbus.registers[1].metric: expected a metric name from "
            'agent/core/registry.py, got "battery.volts" (did you mean "battery.voltage"?)'
        ),
    ]


def test_modbus_unit_must_match_registry():
    data = base()
    data["devices"][2]["modbus"] = {
        "slave": 1,
        "map": "custom",
        "registers": [{"address": 1, "metric": "battery.voltage", "unit": "mV"}],
    }
    assert only(data) == (
        'site.toml: devices[2].modbus.registers[0].unit: expected "V" (the registry unit of '
        'battery.voltage), got "mV"'
    )


def test_probe_kind_needs_its_keys():
    data = base()
    data["devices"][3]["probe"] = {"kind": "tcp", "target": "192.0.2.1", "url": "http://x"}
    assert errors(data) == [
        (
            'site.toml: devices[3].probe.port: missing required key when kind = "tcp" '
            "(expected a TCP port)"
        ),
        'site.toml: devices[3].probe.url: not used by kind "tcp"',
    ]


def test_serial_port_format_and_baud():
    data = base()
    data["devices"][1]["serial"] = {"port": "socket://127.0.0.1", "baud": 2401, "stopbits": 3}
    errs = errors(data)
    assert len(errs) == 3, errs
    assert errs[0].startswith("site.toml: devices[1].serial.port: expected a device path")
    assert errs[1].startswith("site.toml: devices[1].serial.baud: expected 300, 600, ")
    assert errs[2] == "site.toml: devices[1].serial.stopbits: expected 1 or 2, got 3"
    data["devices"][1]["serial"] = {"port": "socket://127.0.0.1:7000"}
    assert check(data).device("ups")["serial"]["port"] == "socket://127.0.0.1:7000"


def test_alarm_rules():
    data = base()
    data["alarms"] = {
        "rules": [
            {"id": "BATT_LOW", "metric": "battery.voltage", "below": 46, "clear": 48},
            {"id": "BATT_LOW", "metric": "battery.charge", "below": 20, "above": 90},
            {"id": "hot", "metric": "battery.temperature", "above": 45, "clear": 50},
            {"id": "ON_BATT", "metric": "ups.status", "contains": "OB", "clear": 1},
            {"id": "X", "metric": "battery.charge", "below": 1, "device": "upss"},
        ]
    }
    assert errors(data) == [
        (
            'site.toml: alarms.rules[1].id: duplicate rule id "BATT_LOW" (first used by '
            "alarms.rules[0])"
        ),
        (
            "site.toml: alarms.rules[1]: expected exactly one of above, below, equals, "
            "contains, stale, got above and below"
        ),
        'site.toml: alarms.rules[2].id: expected an UPPER_SNAKE id (A-Z 0-9 _), got "hot"',
        "site.toml: alarms.rules[2].clear: expected less than above (45), got 50",
        "site.toml: alarms.rules[3].clear: only for above or below rules, got contains",
        (
            'site.toml: alarms.rules[4].device: expected "*" or the id of a configured device, '
            'got "upss"'
        ),
    ]


def test_console_enabled_needs_port_and_pin_hash():
    data = base()
    data["console"] = {"enabled": True}
    assert errors(data) == [
        (
            "site.toml: console.port: missing required key when enabled = true "
            "(expected a serial port)"
        ),
        (
            "site.toml: console.pin_hash: missing required key when enabled = true "
            "(expected a secret)"
        ),
    ]


def test_console_pin_hash_format_is_checked_without_showing_it():
    data = base()
    data["console"]["pin_hash"] = "1234"
    err = only(data)
    assert err.startswith("site.toml: console.pin_hash: expected pbkdf2-sha256$")
    assert "1234" not in err


def test_top_level_not_a_table():
    err = raises(ConfigError, check, [1, 2])
    assert err.errors == ["site.toml: expected a table of settings at the top level, got an array"]


def test_devices_not_an_array_of_tables():
    data = base()
    data["devices"] = {"id": "x"}
    assert only(data) == (
        "site.toml: devices: expected an array of tables ([[devices]]), got a table"
    )


def test_many_errors_are_all_reported():
    data = base()
    data["site"]["kind"] = "tower"
    data["devices"][0]["snmp"]["version"] = "4"
    data["devices"][1]["serial"]["parity"] = "X"
    data["storage"] = {"budget_mb": 0}
    data["console"]["idle_timeout"] = -1
    assert len(errors(data)) == 5


def test_errors_come_in_file_order():
    data = base()
    data["console"]["baud"] = 1
    data["devices"][3]["id"] = "dc"  # a cross-field rule, checked after the tables
    data["devices"][0]["snmp"]["port"] = 0
    data["bogus"] = 1
    data["site"]["kind"] = "x"
    paths = [e.split(": ")[1] for e in errors(data)]
    assert paths == ["bogus", "site.kind", "devices[0].snmp.port", "devices[3].id", "console.baud"]


def test_alarm_rule_kinds_of_the_engine():
    data = base()
    data["alarms"] = {
        "defaults": False,
        "rules": [
            {"id": "DEVICE_UNREACHABLE", "metric": "agent.device.stale", "stale": 5},
            {"id": "MAINS_LOST", "metric": "plant.alarm.mains_lost", "equals": "true",
             "clear_s": 60},
            {"id": "RUNTIME_LOW", "metric": "site.runtime", "below": 900, "clear": 1800,
             "when": ["site.power_source", "battery"]},
            {"id": "LINK_DOWN", "metric": "if.<name>.oper", "equals": "down", "transition": True},
        ],
    }  # fmt: skip
    rules = check(data).alarms["rules"]
    assert rules[0]["stale"] == 5 and rules[0]["severity"] == "major" and rules[0]["device"] == "*"
    assert rules[2]["when"] == ["site.power_source", "battery"]
    data["alarms"]["rules"][0]["clear_s"] = 5
    data["alarms"]["rules"][2]["when"] = ["site.power", 1]
    data["alarms"]["rules"][3]["stale"] = 0
    assert errors(data) == [
        "site.toml: alarms.rules[0].clear_s: only for equals or contains rules, got stale",
        (
            'site.toml: alarms.rules[2].when: expected an array of two strings ["metric", '
            '"value"], got an array'
        ),
        "site.toml: alarms.rules[3].stale: expected an integer >= 1, got 0",
        (
            "site.toml: alarms.rules[3]: expected exactly one of above, below, equals, "
            "contains, stale, got equals and stale"
        ),
    ]


def test_reserved_device_ids():
    for reserved in ("agent", "site"):
        d = base()
        d["devices"][0]["id"] = reserved
        assert only(d).startswith('site.toml: devices[0].id: "%s" is reserved' % reserved)


def test_snmp_lite_takes_the_snmp_section_but_not_v3():
    d = base()
    d["devices"][0]["driver"] = "snmp-lite"
    cfg = check(d)
    assert cfg.devices[0]["snmp"]["version"] == "2c"
    d["devices"][0]["snmp"] = {"host": "192.0.2.10", "version": "3", "user": "u",
                               "auth_key": "authkey-123", "priv_key": "privkey-123"}
    assert only(d).startswith('site.toml: devices[0].snmp.version: driver "snmp-lite" speaks')


def test_site_backhaul_is_a_list_of_metric_patterns():
    d = base()
    d["site"]["backhaul"] = ["if.wan0.oper", "probe.<name>.ok"]
    assert check(d).site["backhaul"] == ["if.wan0.oper", "probe.<name>.ok"]
    d["site"]["backhaul"] = "if.wan0.oper"
    assert only(d).startswith("site.toml: site.backhaul: expected an array of non-empty strings")
    d["site"]["backhaul"] = ["if.wan0.oper", ""]
    assert only(d).startswith("site.toml: site.backhaul: expected an array of non-empty strings")


def test_device_battery_bank():
    d = base()
    d["devices"][0]["battery"] = {"nominal_v": 48.0, "cutoff_cell_v": 1.8}
    assert check(d).devices[0]["battery"] == {"nominal_v": 48.0, "cutoff_cell_v": 1.8}
    d["devices"][0]["battery"] = {"nominal_v": 48.0, "cutoff_cell_v": 0.9}
    assert only(d).startswith("site.toml: devices[0].battery.cutoff_cell_v: expected")
    d["devices"][0]["battery"] = {"nominal": 48.0}
    assert only(d).startswith("site.toml: devices[0].battery.nominal: unknown key")
