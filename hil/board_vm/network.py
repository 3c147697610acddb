# A stand-in for the ESP32's `network` module, for the simulated board (runs INSIDE the
# MicroPython unix port). The VM's sockets are the host's loopback; this only models the link:
# WLAN scans the access points the sim config lists and joins one whose password matches; LAN
# comes up once active. While the file CFG["link_down_file"] exists, the link is down
# (isconnected() False), so the agent's supervision and reconnects are exercised.
import os
import time

from machine import CFG, HOST

STA_IF = 0
AP_IF = 1
PHY_LAN8720 = 1
PHY_LAN8710 = 0
PHY_IP101 = 2
PHY_RTL8201 = 3
PHY_DP83848 = 4
PHY_KSZ8041 = 5
PHY_KSZ8081 = 6
_hostname = "esp32"


def hostname(name=None):
    global _hostname
    if name is None:
        return _hostname
    _hostname = name


def _link_cut():
    path = CFG.get("link_down_file")
    if not path:
        return False
    try:
        os.stat(HOST + path)
        return True
    except OSError:
        return False


class _Nic:
    def __init__(self):
        self._active = False
        self._up_at = None
        self._static = None

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)

    def isconnected(self):
        return (self._up_at is not None and time.time() >= self._up_at and not _link_cut())

    def ifconfig(self, conf=None):
        if conf is not None:
            self._static = conf
            return None
        return self._static or ("127.0.0.1", "255.0.0.0", "127.0.0.1", "127.0.0.1")

    def ipconfig(self, **kw):
        return None

    def config(self, *a, **kw):
        return None


class WLAN(_Nic):
    def __init__(self, interface=STA_IF):
        _Nic.__init__(self)
        self.ssid = None

    def scan(self):
        out = []
        for ap in CFG.get("wifi_aps", []):
            out.append((ap["ssid"].encode(), b"\x00" * 6, 6, ap.get("rssi", -60), 3, False))
        return out

    def connect(self, ssid, password=None):
        for ap in CFG.get("wifi_aps", []):
            if ap["ssid"] == ssid and ap.get("password") == password:
                self.ssid = ssid
                self._up_at = time.time() + 0.2
                return
        self._up_at = None  # wrong password or not in range: never gets an address

    def disconnect(self):
        self._up_at = None

    def status(self, what=None):
        if what == "rssi":
            for ap in CFG.get("wifi_aps", []):
                if ap["ssid"] == self.ssid:
                    return ap.get("rssi", -60)
            raise OSError(5)
        return 1010 if self.isconnected() else 1000


class LAN(_Nic):
    def __init__(self, *a, **kw):
        _Nic.__init__(self)
        self.kw = kw

    def active(self, on=None):
        if on:
            self._up_at = time.time() + 0.2
        return _Nic.active(self, on)
