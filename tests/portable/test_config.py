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


HOST_ONLY = ("snmp", "probe")  # not copied to MicroPython (tests/mpy/portable.json)


def drivers_here(name):
    """What `run` loads (drivers.load). Where a host-only driver cannot load (under MicroPython)
    the base Driver stands in for it, so base() checks the same on both runtimes;
    test_a_driver_that_cannot_load_is_a_config_error covers the failing load itself."""
    import drivers
    from drivers.base import Driver

    try:
        return drivers.load(name)
    except ImportError:
        if name not in HOST_ONLY:
            raise
        return Driver


def check(data, drivers=drivers_here):
    return validate(data, "site.toml", getenv, read_file, drivers=drivers)


def errors(data, **kw):
    return raises(ConfigError, check, data, **kw).errors


def only(data):
    """The single error `data` (or a list of errors) produces."""
    errs = data if isinstance(data, list) else errors(data)
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
        'site.toml: devices[1].interval: expected a number from 1 to 86400, got "30"',
        "site.toml: storage.commit_records: expected an integer from 1 to 100000, got 2.5",
    ], errs


def test_bool_is_not_a_number():
    data = base()
    data["devices"][0]["snmp"]["port"] = True
    assert only(data) == (
        "site.toml: devices[0].snmp.port: expected an integer from 1 to 65535, got true"
    )


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
        'site.toml: devices[0].snmp.profile: expected "auto", "ups-mib", "huawei-ups", '
        '"apc-powernet", "apc-pdu", "eltek", "netsure", "if-mib", "host-resources", "system" or '
        '"router", got "upsmib" (did you mean "ups-mib"?)'
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
        want = "site.toml: devices[0].interval: expected a number from 1 to 86400, got "
        assert err == want + repr(bad)


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
    assert only(data) == (
        "site.toml: storage.budget_mb: expected a number from 0.1 to 1048576, got -1"
    )


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


def test_contract_version_chooses_the_topic_prefix_unless_one_is_given():
    data = base()
    data["uplink"]["contract"] = 2
    cfg = check(data)
    assert cfg.uplink["contract"] == 2 and cfg.uplink["topic_prefix"] == "site-agent/v2"
    assert cfg.uplink["integrity_period"] == 600
    data["uplink"]["topic_prefix"] = "ops/sites"
    assert check(data).uplink["topic_prefix"] == "ops/sites"
    data["uplink"]["contract"] = 3
    assert only(data) == 'site.toml: uplink.contract: expected 1 or 2, got 3'
    data["uplink"]["contract"] = 2
    data["uplink"]["integrity_period"] = 10
    assert only(data).startswith("site.toml: uplink.integrity_period: expected")


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
        "site.toml: alarms.rules[3].stale: expected an integer from 1 to 10000, got 0",
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


# -- numbers: every number key has a finite range; nan and inf never pass (issue 12, 6) -------

NAN = float("nan")
INF = float("inf")


def _number_keys():
    """(table, key, spec) for every number key of the schema that is not a list of choices."""
    from agent.core.config.tables import SCHEMA_TABLES

    out = []
    for table, fields in SCHEMA_TABLES:
        for key, spec in fields:
            if spec["kind"] in ("int", "num") and "choices" not in spec:
                out.append((table, key, spec))
    return out


def test_every_number_key_has_a_lower_and_an_upper_bound():
    loose = []
    for table, key, spec in _number_keys():
        low = spec.get("min", spec.get("gt"))
        high = spec.get("max", spec.get("lt"))
        if low is None or high is None:
            loose.append(table + "." + key)
    assert not loose, "number keys without a range: " + ", ".join(loose)


def _with(table, key, value):
    """base() with `value` written at the key `table`.`key`; returns (data, key path text)."""
    data = base()
    data["uplink"]["brokers"][0]["budget_bytes"] = 10
    rule = {"id": "R", "metric": "battery.charge", "below": 10}
    data["alarms"] = {"rules": [rule]}
    data["devices"][0]["battery"] = {"nominal_v": 48}
    regs = {"address": 1, "metric": "battery.voltage"}
    data["devices"][2]["modbus"] = {"slave": 1, "map": "custom", "registers": [regs]}
    data["devices"][3]["probe"] = {"kind": "tcp", "target": "192.0.2.1", "port": 80}
    places = {
        "site.location": (data["site"]["location"], "site.location"),
        "defaults": (data.setdefault("defaults", {}), "defaults"),
        "devices": (data["devices"][1], "devices[1]"),
        "devices.snmp": (data["devices"][0]["snmp"], "devices[0].snmp"),
        "devices.serial": (data["devices"][1]["serial"], "devices[1].serial"),
        "devices.modbus": (data["devices"][2]["modbus"], "devices[2].modbus"),
        "devices.modbus.registers": (regs, "devices[2].modbus.registers[0]"),
        "devices.probe": (data["devices"][3]["probe"], "devices[3].probe"),
        "devices.battery": (data["devices"][0]["battery"], "devices[0].battery"),
        "uplink": (data["uplink"], "uplink"),
        "uplink.brokers": (data["uplink"]["brokers"][0], "uplink.brokers[0]"),
        "storage": (data.setdefault("storage", {}), "storage"),
        "alarms.rules": (rule, "alarms.rules[0]"),
        "console": (data["console"], "console"),
    }
    if table == "alarms.rules" and key in ("above", "clear"):
        del rule["below"]
        rule["above"] = 90
    node, where = places[table]
    node[key] = value
    return data, where + "." + key


def test_nan_inf_and_absurd_magnitudes_are_refused_in_every_number_key():
    for table, key, spec in _number_keys():
        for bad in (NAN, INF, -INF, 1e300, -1e300):
            if spec["kind"] == "int" and bad != bad:
                continue  # covered by the num keys; an int key says "expected an integer"
            data, where = _with(table, key, bad)
            errs = errors(data)
            mine = [e for e in errs if e.startswith("site.toml: " + where + ": expected")]
            assert mine, (where, bad, errs)
            assert mine[0].endswith(", got " + repr(bad)), mine


def test_the_field_test_numbers_name_their_key():
    cases = (
        ("storage", "budget_mb", NAN, "expected a number from 0.1 to 1048576, got nan"),
        ("defaults", "jitter", NAN, "expected a number from 0 to 0.5, got nan"),
        ("defaults", "interval", INF, "expected a number from 1 to 86400, got inf"),
        ("uplink", "connect_timeout", 1e300, "expected a number > 0 and <= 600, got 1e+300"),
        ("site.location", "lat", NAN, "expected a number from -90 to 90, got nan"),
    )
    for table, key, value, text in cases:
        data, where = _with(table, key, value)
        assert only(data) == "site.toml: " + where + ": " + text


def test_backoff_base_above_backoff_cap_is_refused():
    data = base()
    data["uplink"]["backoff_base"] = 60
    data["uplink"]["backoff_cap"] = 30
    assert only(data) == (
        "site.toml: uplink.backoff_cap: expected backoff_base (60) <= backoff_cap (30)"
    )


# -- hosts: a port, a scheme or brackets inside a host are refused with what to write (7) ------


def test_host_with_a_port_says_where_the_port_goes():
    data = base()
    data["uplink"]["brokers"][0]["host"] = "127.0.0.1:18839"
    assert only(data) == (
        "site.toml: uplink.brokers[0].host: expected a host without a port (put the port in "
        'port = 18839), got "127.0.0.1:18839"'
    )


def test_malformed_hosts_are_refused_in_every_host_key():
    bad = {
        "mqtt://broker.example.net": "without mqtt:// (only the host)",
        "[::1]": 'an IPv6 address without brackets ("::1")',
        "[2001:db8::1]:8883": "(put the port in port = 8883)",
        "broker example.net": "without spaces",
        " broker.example.net": "without spaces",
        "user@broker": "no user, path or URL",
        "10.0.0": "an IPv4 address of four numbers 0-255",
        "300.1.1.1": "an IPv4 address of four numbers 0-255",
        "1::2::3": "not a valid IPv6 address",
        "host:port": "not a valid IPv6 address",
        "bad_label-.example.net": "a host name",
    }
    for value, text in bad.items():
        for place in ("broker", "snmp", "probe"):
            data = base()
            if place == "broker":
                data["uplink"]["brokers"][0]["host"] = value
                where = "uplink.brokers[0].host"
            elif place == "snmp":
                data["devices"][0]["snmp"]["host"] = value
                where = "devices[0].snmp.host"
            else:
                data["devices"][3]["probe"]["target"] = value
                where = "devices[3].probe.target"
            err = only(data)
            assert err.startswith("site.toml: " + where + ": expected "), err
            assert text in err, (value, err)


def test_good_hosts_pass():
    for value in ("mqtt.example.net", "broker", "192.0.2.7", "::1", "2001:db8::10",
                  "fe80::1%eth0", "::ffff:192.0.2.1", "rtr_01.lan", "mqtt.example.net."):
        data = base()
        data["uplink"]["brokers"][0]["host"] = value
        data["devices"][0]["snmp"]["host"] = value
        assert check(data).uplink["brokers"][0]["host"] == value


# -- [devices.options]: checked by the driver's own OPTIONS table at check time (9, 13) --------


def with_bms(options):
    data = base()
    data["devices"].append({"id": "bms", "driver": "pylontech",
                            "serial": {"port": "/dev/ttyUSB2"}, "options": options})  # fmt: skip
    return data


def test_driver_options_are_checked_with_the_key_path():
    assert only(with_bms({"address": "two"})) == (
        'site.toml: devices[4].options.address: expected an integer from 0 to 255, got "two"'
    )
    assert only(with_bms({"address": 256})).endswith("from 0 to 255, got 256")
    cfg = check(with_bms({"address": 3}))
    assert cfg.device("bms")["options"] == {"address": 3}
    assert check(with_bms({})).device("bms")["options"] == {"address": 2}  # the default


def test_an_option_no_code_reads_is_refused_naming_what_the_driver_takes():
    # config/bts-hardened.toml had pack_addresses = [2, 3]: only pack 2 was ever polled.
    assert only(with_bms({"pack_addresses": [2, 3]})) == (
        'site.toml: devices[4].options.pack_addresses: unknown key; driver "pylontech" takes '
        "address"
    )
    assert only(with_bms({"adress": 3})).startswith(
        'site.toml: devices[4].options.adress: unknown key (did you mean "address"?)'
    )
    data = base()
    data["devices"][1]["options"] = {"retries": 2}
    assert only(data) == (
        'site.toml: devices[1].options.retries: unknown key; driver "megatec" takes no options'
    )
    data = base()
    data["devices"][2]["options"] = {"retries": 9}
    assert only(data) == (
        "site.toml: devices[2].options.retries: expected an integer from 0 to 5, got 9"
    )
    data["devices"][2]["options"] = "fast"
    assert only(data) == 'site.toml: devices[2].options: expected a table, got "fast"'


class FreeForm:
    """A driver written before OPTIONS tables (OPTIONS = None): options pass unchecked."""

    OPTIONS = None

    def __init__(self, device):
        self.device = device


class Picky:
    OPTIONS = ()

    def __init__(self, device):
        raise ConfigError("serial.port: this device needs a port with RTS wired")


def test_options_are_secret_unless_the_driver_declares_them_public():
    from agent.core.config.checker import field
    from drivers.base import Driver

    class Declared(Driver):
        OPTIONS = (("passwd", field("str")), ("mode", field("str", public=True)))

    def lookup(name):
        return {"megatec": FreeForm, "modbus": Declared}.get(name) or drivers_here(name)

    data = base()
    data["devices"][1]["options"] = {"auth": "s3cret-auth", "token": "t0k3n", "speed": "fast"}
    data["devices"][2]["options"] = {"passwd": "hunter3", "mode": "eco"}
    cfg = check(data, drivers=lookup)
    assert cfg.device("ups")["options"]["auth"] == "s3cret-auth"  # the driver gets the value
    red = cfg.redacted()
    assert red["devices"][1]["options"] == {"auth": "<secret>", "token": "<secret>",
                                            "speed": "<secret>"}  # fmt: skip
    assert red["devices"][2]["options"] == {"passwd": "<secret>", "mode": "eco"}
    assert cfg.warnings == []
    assert check(with_bms({"address": 3})).redacted()["devices"][4]["options"] == {"address": 3}


def test_a_driver_that_cannot_load_is_a_config_error():
    def lookup(name):
        if name == "megatec":
            raise ImportError("no module named 'serial'")
        return drivers_here(name)

    assert only(check_errors_with(lookup)) == (
        'site.toml: devices[1].driver: driver "megatec" cannot load on this runtime: '
        "ImportError: no module named 'serial'"
    )


def check_errors_with(lookup):
    return raises(ConfigError, check, base(), drivers=lookup).errors


def test_what_the_driver_refuses_is_refused_by_check_with_the_device_path():
    def lookup(name):
        return Picky if name == "megatec" else drivers_here(name)

    assert only(check_errors_with(lookup)) == (
        'site.toml: devices[1]: driver "megatec" refused this device: serial.port: this device '
        "needs a port with RTS wired"
    )


def test_a_pin_hash_the_console_cannot_use_is_refused_by_check():
    # Each of these passed check and stopped `run` at start (auth.Access refused it).
    for bad in (
        "pbkdf2-sha256$9999999$a1b2c3d4$" + "0f" * 32,  # minutes per login
        "pbkdf2-sha256$1000$a1b2c3d4$0f0f",  # a 2-byte hash
        "pbkdf2-sha256$1000$$" + "0f" * 32,  # no salt
    ):
        data = base()
        data["console"]["pin_hash"] = bad
        err = only(data)
        assert err.startswith("site.toml: console.pin_hash: expected pbkdf2-sha256$"), err
        assert bad not in err
