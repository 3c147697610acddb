"""The board image builder (firmware/build.py), the contract with tools/flash.py: what it refuses
before writing anything, what it writes (romfs.img, files/, manifest.json) and that the ROMFS
image is one MicroPython mounts and imports from."""

import json
import os
import subprocess
import sys

import pytest

from agent.core.errors import ConfigError
from firmware import board_table, fit
from firmware.build import build_image, main
from hil.board_sim import micropython_exe
from hil.pki import make_pki

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PSRAM = "esp32-s3-devkitc-n8r8"

SITE = """
[site]
id = "vn-hue-wifi-0342"
kind = "wifi"

[network]
[[network.wifi]]
ssid = "CommunityHouse"
password = {{ file = "wifi.secret" }}

[[devices]]
id = "ups"
driver = "megatec"
[devices.serial]
port = "uart2"

[[devices]]
id = "router"
driver = "snmp-lite"
[devices.snmp]
host = "192.0.2.1"
community = {{ env = "ROUTER_COMMUNITY" }}
profile = "router"

[uplink]
[[uplink.brokers]]
name = "noc"
host = "mqtt.example.net"
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client.key"
password = "broker-Pa55-word"
username = "site-0342"
{extra}
"""
ENV = {"ROUTER_COMMUNITY": "c0mmunity-0342"}
SECRETS = ("wifi-pass-0342", "c0mmunity-0342", "broker-Pa55-word")


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(str(tmp_path_factory.mktemp("pki")))


def _site(d, pki, extra="", secrets_dir=None):
    sd = secrets_dir or d
    os.makedirs(sd, exist_ok=True)
    with open(os.path.join(sd, "wifi.secret"), "w") as f:
        f.write("wifi-pass-0342")
    for name, key in (("ca.pem", "ca_file"), ("client.pem", "client_cert"),
                      ("client.key", "client_key")):  # fmt: skip
        with open(pki[key], "rb") as src, open(os.path.join(sd, name), "wb") as dst:
            dst.write(src.read())
    path = os.path.join(d, "site.toml")
    with open(path, "w") as f:
        f.write(SITE.format(extra=extra))
    return path


def test_image_contract_files_manifest_and_secrets(tmp_path, pki):
    out = tmp_path / "out"
    m = build_image(_site(str(tmp_path), pki), PSRAM, str(out), environ=ENV)
    assert m["format"] == 1 and m["site"] == "vn-hue-wifi-0342" and m["board"] == PSRAM
    assert m["micropython"]["mpy_version"] == "6.3" and m["micropython"]["min"] == "1.27.0"
    # Every file listed, with its real size and hash; and nothing unlisted.
    import hashlib

    listed = set()
    for e in m["files"]:
        data = (out / e["path"]).read_bytes()
        assert len(data) == e["size"] and hashlib.sha256(data).hexdigest() == e["sha256"]
        assert e["dest"] == "/" + e["path"][len("files/"):]
        listed.add(e["path"])
    on_disk = {str(p.relative_to(out)) for p in (out / "files").rglob("*") if p.is_file()}
    assert on_disk == listed
    rom = (out / "romfs.img").read_bytes()
    assert rom[:3] == b"\xd2\xcd\x31" and hashlib.sha256(rom).hexdigest() == m["romfs"]["sha256"]
    kinds = {e["dest"]: e["kind"] for e in m["files"]}
    assert kinds["/boot.py"] == kinds["/main.py"] == "boot"
    assert kinds["/site.json"] == "config" and kinds["/lib/agent/core/poll/loop.mpy"] == "code"
    # Only the modules this site uses: no Modbus, no other profile, nothing host-only.
    assert "drivers.megatec" in m["modules"] and "drivers.profiles.if_mib" in m["modules"]
    assert "drivers.modbus" not in m["modules"] and "drivers.profiles.eltek" not in m["modules"]
    assert not any(x.startswith(("agent.host", "hil", "tests")) for x in m["modules"])
    # Secrets: each in its own 0600 file, referenced from site.json, never in it.
    site = (out / "files" / "site.json").read_text()
    for secret in SECRETS:
        assert secret not in site and secret not in (out / "manifest.json").read_text()
    cfg = json.loads(site)
    assert cfg["devices"][1]["snmp"]["community"] == {"file": "/secrets/devices-1-snmp-community"}
    assert (out / "files/secrets/devices-1-snmp-community").read_text() == "c0mmunity-0342"
    assert oct((out / "files/secrets/uplink-brokers-0-password").stat().st_mode & 0o777) == "0o600"
    assert cfg["uplink"]["brokers"][0]["key_file"] == "/secrets/broker0-key.der"
    assert (out / "files/certs/broker0-ca.der").read_bytes()[:1] == b"\x30"  # DER
    assert cfg["storage"]["dir"] == "/data" and cfg["console"]["socket"] is False


def test_romfs_image_mounts_and_imports_under_micropython(tmp_path, pki):
    out = tmp_path / "out"
    m = build_image(_site(str(tmp_path), pki), PSRAM, str(out), environ=ENV)
    script = tmp_path / "t.py"
    script.write_text(
        "import vfs, sys, json\n"
        "img = open(%r, 'rb').read()\n"
        "vfs.mount(vfs.VfsRom(img), '/rom')\n"
        "sys.path[:] = ['/rom', '.frozen']\n"
        "import agent.board.uplink, drivers.megatec, drivers.profiles.if_mib\n"
        "print(json.load(open('/rom/image.json'))['build'], agent.board.uplink.__file__)\n"
        % str(out / "romfs.img")
    )
    r = subprocess.run([micropython_exe(), str(script)], capture_output=True, text=True,
                       timeout=60)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.split() == [m["build"], "/rom/agent/board/uplink.mpy"]


def _refused(tmp_path, pki, extra="", board=PSRAM, env=ENV):
    with pytest.raises(ConfigError) as e:
        build_image(_site(str(tmp_path), pki, extra), board, str(tmp_path / "out"), environ=env)
    assert not (tmp_path / "out").exists()  # nothing written
    return "\n".join(e.value.errors)


DEV = """
[[devices]]
id = "{id}"
driver = "{driver}"
{section}
"""


def test_refusals_name_the_reason_before_anything_is_written(tmp_path, pki):
    text = _refused(tmp_path, pki, DEV.format(id="x", driver="snmp",
                    section='[devices.snmp]\nhost = "192.0.2.2"\ncommunity = "abc-123"'))
    assert 'devices[2].driver: driver \'snmp\' uses pysnmp' in text and "snmp-lite" in text
    text = _refused(tmp_path, pki, DEV.format(id="p", driver="probe",
                    section='[devices.probe]\nkind = "tcp"\ntarget = "192.0.2.3"\nport = 80'))
    assert "host only" in text
    text = _refused(tmp_path, pki, DEV.format(id="v", driver="voltronic",
                    section='[devices.serial]\nport = "uart7"'))  # fmt: skip
    assert "has no 'uart7'" in text
    text = _refused(tmp_path, pki, DEV.format(id="v", driver="voltronic",
                    section='[devices.serial]\nport = "uart0"'))  # fmt: skip
    assert "carries the REPL" in text
    text = _refused(tmp_path, pki, DEV.format(id="v", driver="voltronic",
                    section='[devices.serial]\nport = "uart2"'))  # fmt: skip
    assert "only Modbus slaves may share a UART" in text
    text = _refused(tmp_path, pki, "[storage]\nbudget_mb = 64")
    assert "storage.budget_mb: 64 MB does not fit" in text


def test_bad_config_is_refused_with_the_validators_own_words(tmp_path, pki):
    text = _refused(tmp_path, pki, env={})
    assert "ROUTER_COMMUNITY" in text  # the secret's variable is not set


def test_no_psram_board_is_refused_for_ram_with_figures(tmp_path, pki):
    text = _refused(tmp_path, pki, board="esp32-devkitc")
    assert "KB of heap" in text and "PSRAM" in text


def test_more_devices_than_the_heap_holds_is_refused(tmp_path, pki):
    costs = fit.load_costs()
    board = dict(board_table.load(PSRAM))
    board["heap_kb"] = (costs["base"] + 200 * 1024) // 1024  # code and a few devices fit
    many = "".join(DEV.format(id="m%d" % i, driver="modbus",
                              section='[devices.serial]\nport = "uart1"\n[devices.modbus]\n'
                              "slave = %d" % (i + 1)) for i in range(60))  # fmt: skip
    with pytest.raises(fit.BoardFitError) as e:
        build_image(_site(str(tmp_path), pki, many), board, str(tmp_path / "out"), environ=ENV)
    assert "62 devices need" in "\n".join(e.value.errors) or "62 devices" in str(e.value)


def test_secrets_dir_holds_the_relative_secret_files(tmp_path, pki):
    d = tmp_path / "conf"
    d.mkdir()
    sd = tmp_path / "secret-stick"
    path = _site(str(d), pki, secrets_dir=str(sd))
    m = build_image(path, PSRAM, str(tmp_path / "out"), secrets_dir=str(sd), environ=ENV)
    assert m["site"] == "vn-hue-wifi-0342"


def test_every_board_table_is_valid_and_says_where_its_pins_come_from():
    names = board_table.names()
    assert {"esp32-devkitc", "wt32-eth01", "esp32-poe-iso", "esp32-s3-devkitc-n8r8"} <= set(names)
    for name in names:
        t = board_table.load(name)
        assert t["sources"]
    bad = {"name": "x", "uarts": {"uart1": {"tx": 99}}}
    assert board_table.check(bad, "x.json")  # missing keys, bad pins: reported


def test_cli_builds_and_reports_errors(tmp_path, pki, capsys, monkeypatch):
    monkeypatch.setenv("ROUTER_COMMUNITY", "c0mmunity-0342")
    path = _site(str(tmp_path), pki)
    assert main(["--config", path, "--board", PSRAM, "--out", str(tmp_path / "o")]) == 0
    assert "image " in capsys.readouterr().out
    assert main(["--config", path, "--board", "no-such-board", "--out", str(tmp_path / "p")]) == 2
    assert "no such board table" in capsys.readouterr().err
    r = subprocess.run([sys.executable, "-m", "firmware.build", "--config", path, "--board",
                        "esp32-devkitc", "--out", str(tmp_path / "q")], cwd=REPO,
                       capture_output=True, text=True)  # fmt: skip
    assert r.returncode == 2 and "config error:" in r.stderr and "PSRAM" in r.stderr
