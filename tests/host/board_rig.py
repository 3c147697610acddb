"""The reference site, run by the simulated board (hil/board_sim.py): a Megatec UPS on a UART, a
UPS-MIB UPS and an IF-MIB router over SNMP (snmpsim recordings), an EPEVER solar controller over
Modbus RTU on an RS-485 UART, SNTP, and mosquitto with mutual TLS; an independent subscriber
(hil/upstream.py, its own client certificate session) sees what the operations centre would.

    with ReferenceSite(tmp_path) as site:
        site.boot(); site.sim.wait_for("agent: started")
        site.up.seqs ...; site.confirmed() ...
"""

import os
import re
import shutil

from firmware.build import build_image
from hil.board_sim import SimBoard
from hil.broker import Broker
from hil.emulators.megatec import MegatecEmulator
from hil.emulators.modbus_epever import EpeverEmulator
from hil.pki import make_pki
from hil.snmpsim import SnmpSim
from hil.sntp_server import SntpServer
from hil.upstream import Upstream

SITE = "sim-bts-01"
PREFIX = "site-agent/v1"
UPS_RECORDING = "UPS/eaton-93e-80"
ROUTER_RECORDING = "network/wifi/ubiquiti-m5"

TOML = """\
[site]
id = "{site}"
kind = "bts"
name = "Simulated board, reference site"
location = {{ lat = 15.2463, lon = 108.8069, commune = "Tinh Ky", province = "Quang Ngai" }}

[network]
ntp = ["127.0.0.1:{sntp}"]
[[network.wifi]]
ssid = "BTS-cabinet"
password = {{ file = "wifi.secret" }}

[defaults]
interval = {interval}
timeout = {timeout}

[[devices]]
id = "ups-serial"
driver = "megatec"
[devices.serial]
port = "{ups_uart}"
{solar}
[[devices]]
id = "ups-snmp"
driver = "snmp-lite"
[devices.snmp]
host = "127.0.0.1"
port = {snmp_port}
community = "{ups_rec}"
profile = "ups-mib"

[[devices]]
id = "router"
driver = "snmp-lite"
[devices.snmp]
host = "127.0.0.1"
port = {snmp_port}
community = "{router_rec}"
profile = "if-mib"

[uplink]
keepalive = 10
connect_timeout = 5
echo_timeout = 5
backoff_base = 0.5
backoff_cap = 3
max_connects_per_min = 30
rate_msgs = 200
{uplink_extra}
[[uplink.brokers]]
name = "noc"
host = "127.0.0.1"
port = {mqtt_port}
ca_file = "ca.pem"
cert_file = "client.pem"
key_file = "client.key"

[storage]
budget_mb = 1
commit_interval = 1
{extra}
"""

SOLAR = """
[[devices]]
id = "solar"
driver = "modbus"
[devices.serial]
port = "{uart}"
baud = 115200
[devices.modbus]
slave = 1
"""
_OPENED = re.compile(r"queue: opened confirmed_seq=(-?\d+) next_seq=(\d+)")
_STORED = re.compile(r"uplink: stored confirmed_seq=(\d+)")


class ReferenceSite:
    def __init__(self, work, board="esp32-s3-devkitc-n8r8", romfs=True, interval=3, extra="",
                 persistent=False, console=None, overrides=None, ups_uart="uart2",
                 solar_uart="uart1", uplink_extra="", prefix=PREFIX):  # fmt: skip
        self.work = str(work)
        self.board = board
        self.romfs = romfs
        self.interval = interval
        self.extra = extra
        self.persistent = persistent
        self.console = console
        self.overrides = overrides or {}
        self.ups_uart = ups_uart
        self.solar_uart = solar_uart  # None: no solar controller (a board with one free UART)
        self.uplink_extra = uplink_extra  # more keys of [uplink] (e.g. contract = 2)
        self.prefix = prefix  # the topic prefix the subscriber listens on
        self.parts = []
        self.sim = None
        self.up = None
        self.manifest = None

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    def _keep(self, part):
        self.parts.append(part)
        return part

    def start(self):
        conf = os.path.join(self.work, "conf")
        os.makedirs(conf, exist_ok=True)
        self.pki = make_pki(os.path.join(self.work, "pki"))
        for name, src in (("ca.pem", "ca_file"), ("client.pem", "client_cert"),
                          ("client.key", "client_key")):  # fmt: skip
            shutil.copy(self.pki[src], os.path.join(conf, name))
        with open(os.path.join(conf, "wifi.secret"), "w") as f:
            f.write("cabinet-wifi-pass")
        tls = {"ca_file": self.pki["ca_file"], "cert_file": self.pki["server_cert"],
               "key_file": self.pki["server_key"]}  # fmt: skip
        self.broker = self._keep(Broker(tls=tls, persistence=self.persistent).start())
        self.snmp = self._keep(SnmpSim([UPS_RECORDING, ROUTER_RECORDING]).start())
        self.megatec = self._keep(MegatecEmulator())
        mpath = self.megatec.start()
        self.epever = self._keep(EpeverEmulator(slaves=(1,)))
        epath = self.epever.start()
        self.sntp = self._keep(SntpServer().start())
        self.toml = os.path.join(conf, "site.toml")
        with open(self.toml, "w") as f:
            f.write(TOML.format(site=SITE, sntp=self.sntp.port, interval=self.interval,
                                timeout=min(2.5, self.interval * 0.75),
                                snmp_port=self.snmp.port,
                                ups_rec=self.snmp.community_for(UPS_RECORDING),
                                router_rec=self.snmp.community_for(ROUTER_RECORDING),
                                mqtt_port=self.broker.port, extra=self.extra,
                                uplink_extra=self.uplink_extra,
                                ups_uart=self.ups_uart,
                                solar=SOLAR.format(uart=self.solar_uart)
                                if self.solar_uart else ""))  # fmt: skip
        self.image = os.path.join(self.work, "image")
        self.manifest = build_image(self.toml, self.board, self.image)
        tls = {"ca_file": self.pki["ca_file"], "cert_file": self.pki["client_cert"],
               "key_file": self.pki["client_key"]}
        self.up = Upstream(self.broker.host, self.broker.port, self.prefix, SITE, tls=tls,
                           persistent=self.persistent, client_id="noc-observer")  # fmt: skip
        self.up.start()
        self.parts.append(self.up)
        self.sim = SimBoard(self.image, os.path.join(self.work, "board"),
                            uarts={self.ups_uart: mpath, (self.solar_uart or "-"): epath},
                            romfs=self.romfs,
                            console=self.console, board_overrides=self.overrides)  # fmt: skip
        self.sim.flash()
        return self

    def boot(self):
        self.sim.start()
        return self.sim

    def stop(self):
        if self.sim is not None:
            self.sim.stop()
        for part in reversed(self.parts):
            try:
                part.stop()
            except Exception:
                pass
        self.parts = []

    # --- what the board confirmed, from its own log ---------------------------------------
    def confirmed(self):
        """Every seq the board confirmed as stored: per boot, from the store's next_seq at open
        to the last confirmed_seq that boot logged (seqs are contiguous within a boot)."""
        out = set()
        first = None
        last = None
        for line in self.sim.lines:
            if line.startswith("SIM power on"):
                if first is not None and last is not None and last >= first:
                    out.update(range(first, last + 1))
                first = last = None
                continue
            m = _OPENED.search(line)
            if m:
                first = int(m.group(2))
                continue
            m = _STORED.search(line)
            if m and first is not None:
                last = int(m.group(1))
        if first is not None and last is not None and last >= first:
            out.update(range(first, last + 1))
        return out

    def missing(self):
        seen = self.up.snapshot()[1]
        return sorted(s for s in self.confirmed() if s not in seen)
