"""The board firmware as a whole program: the image firmware/build.py makes (and tools/flash.py
deploys), run by the MicroPython unix port as a simulated board (hil/board_sim.py) against real
mosquitto with mutual TLS, snmpsim recordings, the Megatec and EPEVER emulators on ptys and an
SNTP server; an independent subscriber (hil/upstream.py) sees what the operations centre sees.

Scenarios: a normal run by the contract (docs/mqtt.md), a command, the same image from /lib
instead of ROMFS, an Ethernet board; a broker outage; contract 2's compact stream through an
outage, read by the fleet decoder; power cuts (SIGKILL of the VM at random
moments, and cuts at the flash level tearing a write) with no confirmed reading missing; a hung
driver ending in a watchdog reset that the board then reports; a boot loop and a bad config
ending in safe mode, which the console and the status topic explain."""

import json
import os
import random
import re
import time

import pytest

from tests.host.board_rig import ReferenceSite

pytestmark = pytest.mark.slow

DEVICES = ("ups-serial", "solar", "ups-snmp", "router")
# A series each device reports only when it answers (the emulators' and recordings' values).
PROOF = {
    ("ups-serial", "input.voltage"),
    ("solar", "battery.voltage"),
    ("ups-snmp", "battery.charge"),
    ("router", "if.br0.oper"),
    ("agent", "agent.reset_cause"),
    ("agent", "agent.boot_count"),
}


def _wait(pred, timeout, what, site):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.1)
    raise AssertionError("timed out waiting for %s; board log:\n%s"
                         % (what, "\n".join(site.sim.lines[-80:])))  # fmt: skip


def _latest(site):
    return site.up.snapshot()[0]


def _value(site, dev, metric):
    rec = _latest(site).get((dev, metric))
    return rec[0]["value"] if rec else None


def _all_confirmed_delivered(site):
    return not site.missing() and len(site.confirmed()) > 0


def test_normal_run_by_the_contract_on_a_wifi_board_from_romfs(tmp_path):
    with ReferenceSite(tmp_path) as site:
        assert site.manifest["board"] == "esp32-s3-devkitc-n8r8"
        site.boot()
        site.sim.wait_for("agent: started", 60)
        assert "code=/rom" in site.sim.wait_for("agent: boot", 1)
        _wait(lambda: PROOF <= set(_latest(site)), 60, "every device's readings", site)
        # Every device answered (PROOF: series only an answer gives) with its own values.
        assert _value(site, "ups-snmp", "ups.mfr") == "EATON"
        assert _value(site, "agent", "agent.reset_cause") == "power_on"
        assert _value(site, "agent", "agent.boot_count") == 1
        assert _value(site, "agent", "agent.net.link") is True
        assert _value(site, "agent", "agent.clock.trusted") is True  # SNTP answered
        # A reading read out before SNTP answered has no time yet (the contract's null): wait
        # for one stamped after it (the uplink may connect before SNTP does).
        _wait(lambda: _latest(site)[("ups-serial", "input.voltage")][0]["time"] is not None, 30,
              "a reading stamped after SNTP", site)  # fmt: skip
        rec = _latest(site)[("ups-serial", "input.voltage")][0]
        assert rec["quality"] in ("good", "est") and abs(rec["time"] - time.time()) < 120
        assert site.megatec.requests > 0 and site.epever.requests > 0
        # Birth (retained, echoed), state and active alarms retained, as on the host.
        status = json.loads(site.up.status)
        assert status["state"] == "online" and status["v"] == 1 and status["session"]
        kinds = [a[0] for a in site.up.arrivals]
        assert "state" in kinds and "alarms" in kinds and "data" in kinds
        # A command answers through the same allow-list as on the host.
        site.up.send("cmd", json.dumps({"id": "c1", "cmd": "ping"}).encode())
        site.up.send("cmd", json.dumps({"id": "c2", "cmd": "reboot"}).encode())
        _wait(lambda: len(site.up.replies) >= 2, 30, "command replies", site)
        by_id = {r.get("id"): r for r in site.up.replies}
        assert by_id["c1"]["ok"] is True and by_id["c1"]["result"]["pong"] is True
        assert by_id["c2"]["ok"] is False and by_id["c2"]["error"]["code"] == "unknown_command"
        # Every record the board confirmed as stored arrived; seqs are unique per record.
        _wait(lambda: _all_confirmed_delivered(site), 30, "delivery of confirmed records", site)
        seqs = site.up.snapshot()[1]
        assert min(seqs) == 0 and site.up.bad_payloads == 0
        # No secret in anything the board printed.
        text = site.sim.text()
        for secret in ("cabinet-wifi-pass", site.snmp.community_for("UPS/eaton-93e-80")):
            assert secret not in text
        assert "Traceback" not in text


def test_same_image_from_lib_without_romfs_on_an_ethernet_board(tmp_path):
    # The POE-ISO has one free UART (UEXT1): the UPS is there, no solar controller.
    with ReferenceSite(tmp_path, board="esp32-poe-iso-wrover", romfs=False, ups_uart="uart1",
                       solar_uart=None) as site:
        site.boot()
        line = site.sim.wait_for("agent: started", 60)
        assert "board=esp32-poe-iso-wrover" in line
        assert "kind=ethernet" in site.sim.wait_for("net: link up", 30)
        proof = {p for p in PROOF if p[0] != "solar"}
        _wait(lambda: proof <= set(_latest(site)), 60, "every device's readings", site)
        assert ("agent", "agent.net.rssi") not in _latest(site)  # no RSSI on Ethernet
        assert "code=/lib" in site.sim.wait_for("agent: boot", 1)  # no ROMFS: the /lib copy
        assert _value(site, "agent", "agent.net.link") is True


def test_broker_outage_keeps_polling_and_delivers_everything_after(tmp_path):
    with ReferenceSite(tmp_path, persistent=True) as site:
        site.boot()
        site.sim.wait_for("uplink: connected", 60)
        _wait(lambda: PROOF <= set(_latest(site)), 60, "readings", site)
        mark = len(site.sim.lines)
        site.broker.halt()
        site.sim.wait_for("uplink: link lost", 30, start=mark)
        before = max(site.confirmed())
        _wait(lambda: max(site.confirmed()) > before + 100, 60, "polling during the outage", site)
        site.broker.restart()
        site.sim.wait_for("uplink: connected", 60, start=mark)
        _wait(lambda: _all_confirmed_delivered(site), 60, "the backlog after the outage", site)
        # The backlog went out after the retained state, oldest first.
        assert "Traceback" not in site.sim.text()


def test_contract_2_compact_stream_through_an_outage_is_read_by_the_fleet_decoder(tmp_path):
    """contract = 2 on the board: the compact stream, its retained series table and a birth
    that names the site; the fleet decoder (contract.decode with the subscriber's own context)
    rebuilds every reading. The broker cut and brought back: the board probes, comes back after
    the spread and delivers every record it confirmed, as the Pi does (docs/mqtt.md)."""
    extra = ('contract = 2\nformat = "compact"\nprobe_interval = 1\nreconnect_spread = 2\n'
             "integrity_period = 60")  # fmt: skip
    with ReferenceSite(tmp_path, persistent=True, uplink_extra=extra,
                       prefix="site-agent/v2") as site:  # fmt: skip
        site.boot()
        assert "contract=2 format=compact" in site.sim.wait_for("uplink: started", 60)
        site.sim.wait_for("uplink: connected", 60)
        _wait(lambda: PROOF <= set(_latest(site)), 60, "readings", site)
        status = json.loads(site.up.status)
        assert status["state"] == "online" and status["v"] == 1 and status["session"]
        assert status["name"] == "Simulated board, reference site" and status["kind"] == "bts"
        _wait(lambda: site.up.series is not None, 30, "the series table", site)
        assert site.up.retained["state"][:1] == b"\xc2"  # v2 compact
        mark = len(site.sim.lines)
        site.broker.halt()
        site.sim.wait_for("uplink: no broker answers; probing", 30, start=mark)
        before = max(site.confirmed())
        _wait(lambda: max(site.confirmed()) > before + 50, 60, "polling during the outage", site)
        site.broker.restart()
        site.sim.wait_for("uplink: a broker answers again", 60, start=mark)
        site.sim.wait_for("uplink: connected", 60, start=mark)
        _wait(lambda: _all_confirmed_delivered(site), 60, "the backlog after the outage", site)
        assert site.up.bad_payloads == 0 and site.up.unresolved == []
        assert "Traceback" not in site.sim.text()


def test_power_cuts_at_random_moments_lose_no_confirmed_reading(tmp_path):
    rng = random.Random(int(os.environ.get("SITE_AGENT_CUT_SEED", "1313")))
    with ReferenceSite(tmp_path, interval=1) as site:
        site.boot()
        site.sim.wait_for("agent: started", 60)
        cuts = 0
        for _ in range(50):
            time.sleep(rng.uniform(0.05, 2.5))
            site.sim.power_cut(restart=True)
            cuts += 1
        # Cuts at the flash level: power dies in the middle of the Nth write of a boot.
        flash_cuts = 0
        for _ in range(10):
            site.sim.cut_after = rng.randint(20, 400)
            site.sim.power_cut(restart=True)
            mark = len(site.sim.lines)
            try:
                site.sim.wait_for("SIM power cut at flash write", 30, start=mark)
                flash_cuts += 1
            except AssertionError:
                site.sim.cut_after = None  # the boot wrote less than that: a plain cut then
        assert cuts == 50 and flash_cuts >= 5, flash_cuts
        last_boot = max(i for i, line in enumerate(site.sim.lines)
                        if line.startswith("SIM power on"))  # fmt: skip
        site.sim.wait_for("uplink: connected", 60, start=last_boot)
        _wait(lambda: _all_confirmed_delivered(site), 120, "every confirmed record", site)
        confirmed = site.confirmed()
        boots = sum(1 for line in site.sim.lines if line.startswith("SIM power on"))
        assert boots >= 61 and len(confirmed) > 200, (boots, len(confirmed))
        assert "Traceback" not in site.sim.text()
        # The flash survived every cut: the boot count goes up by one at every boot that got
        # as far as logging it (littlefs was never formatted again, no record went back).
        counts = [int(re.search(r"boots=(\d+)", line).group(1)) for line in site.sim.lines
                  if "agent: boot " in line]  # fmt: skip
        assert _increasing(counts), counts


def _increasing(counts):
    # A cut between writing boot.json and logging the line skips a number; never goes back.
    return counts[0] == 1 and all(b > a for a, b in zip(counts, counts[1:]))


def test_hung_driver_ends_in_a_watchdog_reset_that_is_reported(tmp_path):
    with ReferenceSite(tmp_path, overrides={"wdt_s": 4}) as site:
        site.boot()
        site.sim.wait_for("agent: started", 60)
        _wait(lambda: PROOF <= set(_latest(site)), 60, "readings", site)
        site.sim.hang_drivers(True)  # the next UART write blocks the interpreter
        _wait(lambda: any(c == "watchdog" for c, _ in site.sim.boots), 60, "a watchdog reset",
              site)  # fmt: skip
        site.sim.hang_drivers(False)
        _wait(lambda: _value(site, "agent", "agent.reset_cause") == "watchdog", 60,
              "reset cause watchdog upstream", site)  # fmt: skip
        assert _value(site, "agent", "agent.boot_count") == 2
        assert "SIM watchdog: no feed" in site.sim.text()


def _safe_status(site):
    st = site.up.status
    return json.loads(st) if st else {}


SITE_INFO = {"name": "Simulated board, reference site", "kind": "bts",
             "location": {"lat": 15.2463, "lon": 108.8069, "commune": "Tinh Ky",
                          "province": "Quang Ngai"}}  # fmt: skip


def _says_the_site(st):
    """A status message carries the site info the birth does (docs/mqtt.md)."""
    assert {k: st.get(k) for k in SITE_INFO} == SITE_INFO, st


CONSOLE = """
[console]
enabled = true
port = "uart0"
pin_hash = "{pin_hash}"
"""


def test_boot_loop_ends_in_safe_mode_with_console_and_status(tmp_path):
    from agent.core.console import auth

    # The console is on uart0, the USB serial port; in the simulation that UART is a pty the
    # test holds (repl_uart moved out of the way), so the test types as a technician would.
    over = {"wdt_s": 3, "safe_mode": {"resets": 3, "window_s": 600, "retry_s": 3600},
            "repl_uart": "uart9"}  # fmt: skip
    extra = CONSOLE.format(pin_hash=auth.make_hash("2468", 1000))
    with ReferenceSite(tmp_path, overrides=over, console="uart0", extra=extra) as site:
        site.sim.hang_drivers(True)  # every boot wedges at its first UART write
        site.boot()
        site.sim.wait_for("SAFE MODE", 120)
        assert [c for c, _ in site.sim.boots][:4] == ["power_on", "watchdog", "watchdog",
                                                     "watchdog"]  # fmt: skip
        assert "boot loop: 3 resets" in site.sim.wait_for("SAFE MODE", 1)
        _wait(lambda: _safe_status(site).get("state") == "safe", 60, "safe status upstream",
              site)  # fmt: skip
        st = _safe_status(site)
        assert "boot loop" in st["reason"] and st["reset"] == "watchdog"
        _says_the_site(st)  # from the validated config
        # The console says why.
        os.write(site.sim.console_fd, b"status\r")
        out = _read_console(site, b"SAFE MODE", 20)
        assert b"boot loop" in out
        # Safe mode stays: the watchdog is fed, no more resets.
        n = len(site.sim.boots)
        time.sleep(8)
        assert len(site.sim.boots) == n


def _read_console(site, needle, timeout):
    import select

    buf = b""
    end = time.monotonic() + timeout
    while time.monotonic() < end and needle not in buf:
        r, _, _ = select.select([site.sim.console_fd], [], [], 0.2)
        if r:
            buf += os.read(site.sim.console_fd, 4096)
    assert needle in buf, buf[-2000:]
    return buf


def test_bad_config_on_the_board_ends_in_safe_mode_naming_the_error(tmp_path):
    with ReferenceSite(tmp_path) as site:
        # The image was valid when built; on the board a secret file is gone (a bad flash).
        names = os.listdir(os.path.join(site.image, "files", "secrets"))
        victim = [n for n in names if n.startswith("devices-")][0]
        site.sim.remove_files(["secrets/" + victim])
        site.boot()
        line = site.sim.wait_for("SAFE MODE", 60)
        assert "config does not validate" in line
        site.sim.wait_for("config: /site.json: devices[", 10)
        _wait(lambda: _safe_status(site).get("state") == "safe", 60, "safe status upstream",
              site)  # fmt: skip
        assert "config does not validate" in _safe_status(site)["reason"]
        _says_the_site(_safe_status(site))  # from the [site] table read without validating
        assert not any(k[0] in DEVICES for k in _latest(site))  # no driver ran
