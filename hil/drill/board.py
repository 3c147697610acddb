"""The board agent in a drill: the firmware image on the simulated board (host only).

    cfg, uarts = board_config(cfg, rig, site, board, sntp_port, conf_dir)   # the site config
    agent = BoardAgent(config_path, scale_spec, site_ns, log_path, board, uarts, work_dir)
    agent.start(); agent.cut("kill") or agent.cut("flash"); agent.stop(); agent.export(dir)

What runs is what a technician flashes: firmware/build.py makes the image from the drill's
site.toml (the same call tools/flash.py makes, so a config the board cannot run is refused here
with the builder's reasons), and hil/board_sim.py runs it on the MicroPython unix port with its
data on littlefs in a flash file. The VM runs in the drill's site namespace, so link cuts and the
shaped satellite link apply to it as to the Pi. Only the silicon is simulated: the board's UARTs
are wired to the rig's serial devices (the emulators' ptys, or a real port), its network
interface is always up (the links are cut beyond it, as a site's fibre is), its watchdog and
resets are the simulator's.

Differences from the Pi agent, all forced by what a board is:
- power cuts: "kill" (SIGKILL of the VM: power gone between two instructions) and "flash" (the
  power goes during the next write to the flash, tearing it: the cut a board's store must
  survive). A board has no clean stop either: the drill's end is a power cut, and what the store
  still holds is read off the flash afterwards (`export`).
- time: the board has no environment; the simulator gives the VM the drill's
  SITE_AGENT_TIME_SCALE (firmware/runner.py then runs the parts that are site time on the Pi on
  site time). Its wall clock comes from SNTP, as on a board: the drill's SNTP server on the
  site's LAN answers with site time, stepped by the scenario's clock jumps, which the board sees
  at its next sync (an hour of site time).
- disk full: the board's store is on littlefs in the flash partition, which the drill cannot
  fill from outside while the board runs; the event is skipped and the report says so.
"""

import os
import threading
import time

from agent.core.errors import ConfigError
from firmware import board_table

WIFI_SECRET = "drill-wifi.secret"


class BoardSetupError(RuntimeError):
    pass


def board_config(cfg, rig, site, board_name, sntp_port, conf_dir):
    """(config dict, {uart: host tty}) for the board: serial devices on the board's UARTs (the
    one the rig names, else the next free one), Wi-Fi to the drill's access point when the board
    has no Ethernet, SNTP from the drill's server, no system clock (a board has none)."""
    board = board_table.load(board_name)
    free = [u for u in sorted(board["uarts"]) if u != board["repl_uart"]]
    uarts = {}
    out = dict(cfg)
    devices = []
    for dev, spec in zip(rig.devices, cfg["devices"]):
        serial = spec.get("serial")
        if not serial or not serial.get("port"):
            devices.append(spec)
            continue
        asked = (dev.get("agent") or {}).get("serial", {}).get("port")
        uart = asked if asked in free else None
        if uart is None:
            left = [u for u in free if u not in uarts]
            if not left:
                raise BoardSetupError("board %s has no free UART for device %s (it has %s; %s "
                                      "carries the REPL)" % (board_name, dev["id"], ", ".join(
                                          sorted(board["uarts"])), board["repl_uart"]))
            uart = left[0]
        tty = site.where.get(dev["id"], {}).get("serial", {}).get("port") or serial["port"]
        uarts[uart] = tty
        devices.append(dict(spec, serial=dict(serial, port=uart)))
    out["devices"] = devices
    out["site"] = {k: v for k, v in cfg["site"].items() if k != "clock"}
    net = dict(out.get("network") or {})
    net["ntp"] = ["127.0.0.1:%d" % sntp_port]
    if board["network"]["kind"] == "wifi":
        with open(os.path.join(conf_dir, WIFI_SECRET), "w") as f:
            f.write("drill-%s" % rig.site_id)
        os.chmod(os.path.join(conf_dir, WIFI_SECRET), 0o600)
        net["wifi"] = [{"ssid": "drill-site", "password": {"file": WIFI_SECRET}}]
    out["network"] = net
    return out, uarts


class BoardAgent:
    kind = "board"
    cuts = ("kill", "flash")

    def __init__(self, config_path, scale_spec, site_ns, log_path, board, uarts, work):
        from firmware.build import build_image
        from hil.board_sim import SimBoard

        self.log_path = log_path
        self.boots = 0
        self._log_lock = threading.Lock()
        self.image = os.path.join(work, "image")
        try:
            self.manifest = build_image(config_path, board, self.image)
        except ConfigError as e:
            raise BoardSetupError("the board image cannot be built from %s for %s:\n  %s"
                                  % (config_path, board, "\n  ".join(e.errors))) from None
        table = board_table.load(board)
        # The board's own watchdog timeout (the simulator's default is shorter, for its tests);
        # debug log: the store's "stored confirmed_seq" lines the report's loss check reads.
        overrides = {"boot_window_s": 0.2, "wdt_s": table.get("wdt_s", 60), "log_level": "debug"}
        self.sim = SimBoard(self.image, os.path.join(work, "sim"), uarts=uarts, romfs=True,
                            board_overrides=overrides, netns=site_ns,
                            env={"SITE_AGENT_TIME_SCALE": scale_spec}, on_line=self._line,
                            hold_after_cut=True)  # fmt: skip
        self.sim.flash()

    @property
    def proc(self):
        return self.sim.proc

    def _line(self, line):
        with self._log_lock, open(self.log_path, "a") as f:
            if line.startswith("SIM power on"):
                self.boots += 1  # every power-on, the simulator's own resets included
                f.write("### drill: boot %d at real %.3f\n" % (self.boots, time.time()))
            f.write(line + "\n")

    def running(self):
        """Powered: the VM runs, or the simulator is resetting it (watchdog, machine.reset)."""
        return self.sim.powered()

    def start(self):
        self.sim.start("power_on", "power on (drill)")
        return self.sim.proc.pid

    def cut(self, how="kill"):
        """Power lost now; returns a note for the event log when there is one to make."""
        if how not in self.cuts:
            raise ValueError("the board's power cuts are %s, not %r" % (", ".join(self.cuts), how))
        if not self.running():
            return None
        if how == "kill":
            self.sim.power_cut()
            return None
        self.sim.cut_at_next_write()
        end = time.monotonic() + 20.0
        while time.monotonic() < end and self.running():
            time.sleep(0.02)
        if self.running():  # no write to the flash for 20 s: the board was idle
            self.sim.power_cut()
            return "no flash write within 20 s: cut by a kill instead"
        torn = [x for x in self.sim.lines[-20:] if x.startswith("SIM power cut at flash write")]
        return torn[-1][4:] if torn else None

    def stop(self, timeout=30.0):
        """A board has no clean stop: its power goes (the store survives that by design)."""
        if self.running():
            self.sim.power_cut()
        return None

    def exit_code(self):
        return None if self.sim.proc is None else self.sim.proc.poll()

    def export(self, data_dir):
        """The board's /data off its flash into data_dir (the store under data_dir/queue)."""
        self.sim.copy_out(data_dir, "/data")

    def close(self):
        self.sim.stop()
