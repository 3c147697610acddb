"""tools/flash.py esp32 with the agent's own image: firmware/build.py builds it from the
reference site's config (tests/host/board_rig.py: a Megatec UPS and an EPEVER controller on
UARTs, SNMP UPS and router, SNTP, mosquitto with mutual TLS), the flash tool deploys it over the
REPL to the simulated board (hil/fake_board.py hosting the board's stand-ins, hil/board_vm),
checks it, resets it and watches the agent start; an independent subscriber sees what it
publishes. A config the board cannot run is refused before the board is touched."""

import io
import os

from board_rig import ReferenceSite

from hil.fake_board import FakeBoard
from tools.flashing import cli

HIL = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                   "hil")  # fmt: skip
BOARD = "esp32-s3-devkitc-n8r8"
S3 = "Generic ESP32S3 module with ESP32S3"


def flash(*argv):
    out = io.StringIO()
    return cli.main(list(argv), out=out), out.getvalue()


def _board(site, tmp_path, **kw):
    sim = {"uarts": {site.ups_uart: site.megatec.path, site.solar_uart: site.epever.path},
           "wifi_aps": site.sim._default_aps(),
           "hang_file": str(tmp_path / "hang"), "link_down_file": str(tmp_path / "link_down")}
    return FakeBoard(tmp_path / "fake", machine=S3, stand_ins=os.path.join(HIL, "board_vm"),
                     sim=sim, fs_kb=2048, rom_kb=512, **kw)  # fmt: skip


def test_the_agents_image_is_deployed_starts_and_publishes(tmp_path):
    with ReferenceSite(tmp_path / "site", board=BOARD) as site:
        conf = os.path.dirname(site.toml)
        with _board(site, tmp_path) as b:
            code, text = flash("esp32", "--config", site.toml, "--secrets", conf, "--board",
                               BOARD, "--port", b.path, "--ack-timeout", "30")  # fmt: skip
            assert code == 0, text
            done = text.strip().splitlines()[-1]
            assert done.startswith("done: %s: site sim-bts-01 runs site-agent 0.1.0 (image "
                                   % b.path), done  # fmt: skip
            assert "on %s with MicroPython 1.27.0; broker 127.0.0.1:%d; 4 devices;" % (
                BOARD, site.broker.port) in done
            assert "board| " in text and "INFO agent: started" in text
            # The code is in the ROMFS partition; the rest on littlefs, byte for byte.
            with open(os.path.join(site.image, "romfs.img"), "rb") as f:
                rom = f.read()
            assert b.romfs_partition()[: len(rom)] == rom
            files = b.littlefs_files()
            for e in site.manifest["files"]:
                if e["kind"] != "code":
                    with open(os.path.join(site.image, e["path"]), "rb") as f:
                        assert files[e["dest"]] == f.read(), e["dest"]
            # The operations centre's side sees the board's readings over mutual TLS.
            site.up.wait_for(lambda latest: ("ups-serial", "input.voltage") in latest
                             and any(k[0] == "solar" for k in latest)
                             and ("ups-snmp", "battery.charge") in latest, 60)  # fmt: skip


def test_a_config_the_board_cannot_run_is_refused_before_the_board_is_touched(tmp_path):
    with ReferenceSite(tmp_path / "site", board=BOARD) as site:
        with open(site.toml) as f:
            text = f.read()
        bad = os.path.join(os.path.dirname(site.toml), "host-only.toml")
        with open(bad, "w") as f:  # "snmp" (pysnmp) runs only on a Pi; the board has snmp-lite
            f.write(text.replace('driver = "snmp-lite"', 'driver = "snmp"', 1))
        with _board(site, tmp_path) as b:
            code, out = flash("esp32", "--config", bad, "--secrets", os.path.dirname(site.toml),
                              "--board", BOARD, "--port", b.path)  # fmt: skip
            assert code == 2, out
            want = "\nerror: config error:\n  %s: devices[2].driver: driver 'snmp' uses pysnmp"
            want = want % bad
            assert want in out, out
            assert "nothing was written to any board" in out
            assert b.received == 0
