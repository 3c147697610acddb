"""Network bring-up and supervision on the board (MicroPython's `network` module).

    net = Network(board["network"], cfg_network, log, network_mod=network, pin=machine.Pin)
    asyncio.create_task(net.run())     # connect, then watch the link forever
    net.up(); net.samples()            # link state and RSSI, for the agent's health readings

Wi-Fi: station mode; the access points of [[network.wifi]] are tried in the order written (the
first is preferred), only those a scan finds; each attempt waits up to connect_s for an address.
Ethernet: the board table's PHY (type, address, MDC, MDIO, power or clock-enable pin, RMII clock
pin and direction) is handed to network.LAN. Either way: DHCP unless network.address is set
(static IPv4 with gateway and DNS), the hostname from network.hostname, IPv6 autoconfiguration
where the firmware offers it (logged when it does not).
Supervision: every check_s the link is looked at; when it is down the agent logs it once and
reconnects with backoff and full jitter (agent/core/backoff.py), so a site whose router reboots
does not hammer it, and a board whose link never returns keeps trying at most every cap_s.
Nothing here raises out of run(): a firmware error becomes a log line and a retry.
"""

import asyncio

from agent.core.compat import monotonic
from agent.core.uplink.backoff import Backoff

_PHY_NAMES = {"LAN8720": "PHY_LAN8720", "LAN8710": "PHY_LAN8710", "IP101": "PHY_IP101",
              "RTL8201": "PHY_RTL8201", "DP83848": "PHY_DP83848", "KSZ8041": "PHY_KSZ8041",
              "KSZ8081": "PHY_KSZ8081"}  # fmt: skip


def _mask(bits):
    m = (0xFFFFFFFF << (32 - bits)) & 0xFFFFFFFF
    return "%d.%d.%d.%d" % (m >> 24, (m >> 16) & 255, (m >> 8) & 255, m & 255)


def static_ifconfig(net_cfg):
    """(ip, netmask, gateway, dns) from network.address "a.b.c.d/nn", or None for DHCP."""
    addr = net_cfg.get("address")
    if not addr:
        return None
    ip, _, bits = addr.partition("/")
    dns = net_cfg.get("dns") or [net_cfg.get("gateway")]
    return (ip, _mask(int(bits or 24)), net_cfg.get("gateway"), dns[0])


class Network:
    def __init__(self, board_net, net_cfg, log, network_mod, pin=None, rand=None,
                 mono=monotonic, connect_s=20.0, check_s=5.0, cap_s=120.0):  # fmt: skip
        import random

        self.board = board_net
        self.cfg = net_cfg or {}
        self.log = log
        self.nm = network_mod
        self.pin = pin
        self.mono = mono
        self.connect_s = connect_s
        self.check_s = check_s
        self.backoff = Backoff(rand or random.random, 2.0, cap_s)
        self.nic = None
        self.ssid = None  # access point in use (Wi-Fi)
        self.connects = 0
        self.losses = 0
        self.last_error = None
        self.ipv6 = None  # True/False once tried; None when not asked for
        self._was_up = False

    # --- state ---------------------------------------------------------------------------
    def up(self):
        try:
            return bool(self.nic is not None and self.nic.isconnected())
        except Exception:
            return False

    def rssi(self):
        if self.nic is None or self.board["kind"] != "wifi" or not self.up():
            return None
        try:
            return int(self.nic.status("rssi"))
        except Exception:  # not every firmware reports it
            return None

    def samples(self):
        out = [("agent.net.link", self.up(), "")]
        r = self.rssi()
        if r is not None:
            out.append(("agent.net.rssi", r, "dBm"))
        return out

    def address(self):
        try:
            return self.nic.ifconfig()[0]
        except Exception:
            return None

    # --- bring-up ------------------------------------------------------------------------
    def _make_nic(self):
        b = self.board
        if b["kind"] == "wifi":
            nic = self.nm.WLAN(self.nm.STA_IF)
        else:
            Pin = self.pin
            nic = self.nm.LAN(
                mdc=Pin(b["mdc"]), mdio=Pin(b["mdio"]),
                power=Pin(b["power"]) if b.get("power") is not None else None,
                phy_type=getattr(self.nm, _PHY_NAMES[b["phy"]]), phy_addr=b["phy_addr"],
                ref_clk=Pin(b["ref_clk"]),
                ref_clk_mode=Pin.IN if b["ref_clk_mode"] == "in" else Pin.OUT,
            )  # fmt: skip
        if self.cfg.get("hostname"):
            try:
                self.nm.hostname(self.cfg["hostname"])
            except Exception as e:
                self.log.warning("net", "hostname not set", error=repr(e))
        nic.active(True)
        static = static_ifconfig(self.cfg)
        if static is not None:
            nic.ifconfig(static)
        if self.cfg.get("ipv6", True):
            try:
                nic.ipconfig(autoconf6=True)
                self.ipv6 = True
            except Exception:
                self.ipv6 = False
                self.log.info("net", "IPv6 autoconfiguration not offered by this firmware")
        return nic

    async def _wait_up(self):
        end = self.mono() + self.connect_s
        while self.mono() < end:
            if self.nic.isconnected():
                return True
            await asyncio.sleep(0.25)
        return False

    async def _connect_wifi(self):
        wanted = self.cfg.get("wifi") or []
        try:
            seen = {}
            for ap in self.nic.scan():
                name = ap[0].decode() if isinstance(ap[0], bytes) else ap[0]
                seen[name] = max(seen.get(name, -999), ap[3])
        except Exception as e:  # a failed scan: try every configured access point anyway
            self.log.warning("net", "Wi-Fi scan failed", error=repr(e))
            seen = None
        for ap in wanted:
            ssid = ap["ssid"]
            if seen is not None and ssid not in seen:
                continue
            self.log.info("net", "joining Wi-Fi", ssid=ssid,
                          rssi=seen.get(ssid) if seen else None)  # fmt: skip
            try:
                self.nic.connect(ssid, ap.get("password"))
            except Exception as e:
                self.last_error = "%s: %r" % (ssid, e)
                continue
            if await self._wait_up():
                self.ssid = ssid
                return True
            self.last_error = "%s: no address within %gs" % (ssid, self.connect_s)
            try:
                self.nic.disconnect()
            except Exception:
                pass
        if seen is not None and not any(ap["ssid"] in seen for ap in wanted):
            self.last_error = "none of the configured access points is in range (%s)" % (
                ", ".join(ap["ssid"] for ap in wanted))
        return False

    async def connect_once(self):
        """One round of attempts; True when the link is up with an address."""
        try:
            if self.nic is None:
                self.nic = self._make_nic()
            if self.board["kind"] == "wifi":
                ok = await self._connect_wifi()
            else:
                ok = await self._wait_up()
                if not ok:
                    self.last_error = "no Ethernet link or DHCP lease within %gs" % self.connect_s
        except Exception as e:  # a firmware error (bad PHY settings, driver failure)
            self.last_error = repr(e)
            ok = False
        if ok:
            self.connects += 1
            self.backoff.reset()
            self.log.info("net", "link up", kind=self.board["kind"], address=self.address(),
                          ssid=self.ssid, rssi=self.rssi())  # fmt: skip
        return ok

    async def run(self):
        """Connect, then supervise forever."""
        while True:
            if self.up():
                self._was_up = True
                await asyncio.sleep(self.check_s)
                continue
            if self._was_up:
                self._was_up = False
                self.losses += 1
                self.log.warning("net", "link down; reconnecting", kind=self.board["kind"])
            if await self.connect_once():
                self._was_up = True
                continue
            delay = self.backoff.next_delay()
            self.log.warning("net", "no link", reason=self.last_error, retry_s=round(delay, 1))
            await asyncio.sleep(max(delay, 1.0))
