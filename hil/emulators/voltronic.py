"""A Voltronic/Axpert hybrid inverter on a pty, answering QPIGS from a small model (host only).

    with VoltronicEmulator(speed=60) as inv:
        inv.set_grid(False); inv.set_sun(0.8); inv.set_fault("bad_checksum")
        inv.state     # the true values now

Model: a 48 V battery of capacity_ah. On grid the output follows the grid and the charger puts
charge_a in (until full); off grid the inverter makes 230 V 50 Hz and the battery supplies the
load minus what PV gives. Battery V = 48 + 6 x SOC/100 (+1 V while charging).

Protocol faults beyond hil/emulators/base.py's: "bad_checksum" (CRC bytes off by one),
"bad_format" (fields separated by commas), "nak" (the inverter answers "(NAK").
Unknown commands get "(NAK" + CRC, as real inverters do.
"""

import time

from drivers.proto import voltronic as vp
from hil.emulators.base import PtyEmulator
from hil.emulators.power import Battery, ModelTime, SitePower


class VoltronicEmulator(PtyEmulator):
    PROTOCOL_FAULTS = ("bad_checksum", "bad_format", "nak")

    def __init__(
        self, soc=80.0, load_w=600.0, speed=1.0, capacity_ah=100.0, clock=time.monotonic, **kw
    ):
        PtyEmulator.__init__(self, **kw)
        self.load_w = float(load_w)
        self.sun = 0.0
        self.pv_peak_w = 3000.0
        self.capacity_ah = capacity_ah
        self.clock = clock
        self.time = ModelTime(clock, speed)
        # The grid is the site's mains; off grid the battery carries the load less what PV
        # gives (a negative load: PV surplus charges it).
        self.power = SitePower(Battery(capacity_ah, soc), low_pct=20.0, latch=False)

    soc = property(lambda self: self.power.battery.soc)
    grid = property(lambda self: self.power.mains)
    speed = property(lambda self: self.time.speed)

    def set_grid(self, on):
        with self._lock:
            self._advance()
            self.power.set_mains(on)

    set_mains = set_grid  # the name every mains-fed emulator answers to (hil/drill)

    def power_state(self):
        with self._lock:
            self._advance()
            s = self._state()
            return self.power.power_state(s["discharge_a"] - s["charge_a"])

    def set_sun(self, fraction):
        with self._lock:
            self._advance()
            self.sun = float(fraction)

    def _advance(self):
        dt = self.time.step()
        if dt > 0:
            s = self._state()
            # The inverter never cuts off here: PV may recharge even an empty bank.
            self.power.battery.flow(s["charge_a"] - s["discharge_a"], dt)

    @property
    def state(self):
        with self._lock:
            self._advance()
            return self._state()

    def _state(self):
        pv_w = self.sun * self.pv_peak_w
        if self.grid:
            charge_a = 20.0 if self.soc < 100.0 else 0.0
            discharge_a = 0.0
        else:
            bat_w = self.load_w - pv_w
            charge_a = max(0.0, -bat_w) / 52.0 if self.soc < 100.0 else 0.0
            discharge_a = max(0.0, bat_w) / 50.0
        bat_v = 48.0 + 6.0 * self.soc / 100.0 + (1.0 if charge_a else 0.0)
        return {
            "grid_v": 230.0 if self.grid else 0.0,
            "grid_hz": 50.0 if self.grid else 0.0,
            "out_v": 230.0,
            "out_hz": 50.0,
            "out_va": int(self.load_w * 1.1),
            "out_w": int(self.load_w),
            "load": round(100.0 * self.load_w / 5000.0),
            "battery_v": round(bat_v, 2),
            "charge_a": round(charge_a),
            "soc": round(self.soc),
            "pv_a": round(pv_w / 250.0, 1) if pv_w else 0.0,
            "pv_v": 250.0 if pv_w else 0.0,
            "discharge_a": round(discharge_a),
            "pv_w": pv_w,
        }

    def reply_for(self, request):
        self._advance()
        body = request[:-3] if request.endswith(b"\r") and len(request) >= 3 else request
        if request[:-1] != vp.command(bytes(body))[:-1] or body != b"QPIGS" or self.fault == "nak":
            return self._frame(b"(NAK")
        s = self._state()
        bits = "00010110" if s["charge_a"] else "00010000"
        fields = [
            "%05.1f" % s["grid_v"], "%04.1f" % s["grid_hz"], "%05.1f" % s["out_v"],
            "%04.1f" % s["out_hz"], "%04d" % s["out_va"], "%04d" % s["out_w"],
            "%03d" % s["load"], "400", "%05.2f" % s["battery_v"], "%03d" % s["charge_a"],
            "%03d" % s["soc"], "0035", "%04.1f" % s["pv_a"], "%05.1f" % s["pv_v"],
            "%05.2f" % s["battery_v"], "%05d" % s["discharge_a"], bits, "00", "00",
            "%05d" % int(s["pv_w"]), "010",
        ]  # fmt: skip
        sep = "," if self.fault == "bad_format" else " "
        return self._frame(("(" + sep.join(fields)).encode())

    def _frame(self, payload):
        crc = vp.crc_bytes(payload)
        if self.fault == "bad_checksum":
            crc = bytes((crc[0], (crc[1] + 1) & 0xFF if crc[1] != 0x0C else 0x0E))
        return payload + crc + b"\r"
