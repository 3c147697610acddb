"""Pylontech battery packs (US2000/US3000 family) on one RS-485 bus, on a pty (host only).

    with PylontechEmulator(addresses=(2, 3)) as bus:
        bus.pack(2).set_current(-25.0)    # discharging: SOC falls, cells sag
        bus.pack(2).cell_alarm = 5        # cell 5 reports "above limit"
        bus.set_fault("refused")          # or "bad_checksum", "bad_format", "silence", ...

Model per pack: 15 LFP cells, capacity_mah; cell mV = 3200 + 150 x SOC/100 (+ 20 while charging,
- 1 mV per A while discharging); 5 temperatures (BMS board first). Answers analog values (CID2
0x42) and alarms (0x44) for its own ADR; frames for other addresses get silence, as on a bus.

Protocol faults beyond hil/emulators/base.py's: "bad_checksum" (CHKSUM off by one),
"bad_format" (LENGTH with a wrong LCHKSUM, CHKSUM right), "refused" (RTN 0x91, internal
communication error).
"""

import time

from drivers.proto import pylontech as pp
from hil.emulators.base import PtyEmulator
from hil.emulators.power import Battery, ModelTime


class Pack:
    def __init__(self, adr, soc=70.0, current=0.0, capacity_mah=50000, cycles=132):
        self.adr = adr
        self.battery = Battery(capacity_mah / 1000.0, soc)
        self.current = float(current)
        self.capacity_mah = capacity_mah
        self.cycles = cycles
        self.cell_alarm = 0  # 1-based cell index reported "above limit", 0 for none

    def set_current(self, amps):
        self.current = float(amps)

    @property
    def soc(self):
        return self.battery.soc

    def advance(self, dt):
        self.battery.flow(self.current, dt)

    def values(self):
        mv = 3200 + 150 * self.soc / 100.0
        if self.current > 0:
            mv += 20
        else:
            mv += self.current  # 1 mV per A of discharge
        cells = [int(round(mv)) + (i % 3) for i in range(15)]
        temps = [25.0 + self.adr / 10.0, 22.0, 22.5, 23.0, 22.1]
        return {
            "cells_mv": cells,
            "temps_c": temps,
            "current": round(self.current, 1),
            "voltage_mv": sum(cells),
            "remaining_mah": int(self.capacity_mah * self.soc / 100.0),
            "total_mah": self.capacity_mah,
            "cycles": self.cycles,
            "soc": round(100.0 * int(self.capacity_mah * self.soc / 100.0) / self.capacity_mah, 1),
        }

    def analog_info(self):
        v = self.values()
        out = bytes((0x10, self.adr, len(v["cells_mv"])))
        for mv in v["cells_mv"]:
            out += bytes((mv >> 8, mv & 0xFF))
        out += bytes((len(v["temps_c"]),))
        for c in v["temps_c"]:
            k = int(round(c * 10)) + 2731
            out += bytes((k >> 8, k & 0xFF))
        cur = int(round(v["current"] * 10)) & 0xFFFF
        out += bytes((cur >> 8, cur & 0xFF))
        for x in (v["voltage_mv"], v["remaining_mah"]):
            out += bytes((x >> 8, x & 0xFF))
        out += bytes((2,))
        for x in (v["total_mah"], v["cycles"]):
            out += bytes((x >> 8, x & 0xFF))
        return out

    def alarm_info(self):
        cells = bytes(2 if i + 1 == self.cell_alarm else 0 for i in range(15))
        return (
            bytes((0x00, self.adr, 15))
            + cells
            + bytes((5, 0, 0, 0, 0, 0, 0, 0, 0, 0x0E, 0, 0, 0, 0))
        )


class PylontechEmulator(PtyEmulator):
    PROTOCOL_FAULTS = ("bad_checksum", "bad_format", "refused")

    def __init__(self, addresses=(2,), speed=1.0, clock=time.monotonic, **kw):
        PtyEmulator.__init__(self, **kw)
        self.packs = {a: Pack(a) for a in addresses}
        self.time = ModelTime(clock, speed)
        self.clock = clock

    def pack(self, adr):
        return self.packs[adr]

    def state(self, adr):
        with self._lock:
            self._advance()
            return self.packs[adr].values()

    speed = property(lambda self: self.time.speed)

    def _advance(self):
        dt = self.time.step()
        if dt > 0:
            for p in self.packs.values():
                p.advance(dt)

    def reply_for(self, request):
        self._advance()
        try:
            _ver, adr, _cid1, cid2, _info = pp.decode(request)
        except Exception:  # a garbled request on a bus gets no answer
            return None
        if adr not in self.packs:
            return None
        if self.fault == "refused":
            return pp.encode(adr, 0x91)
        if cid2 == pp.GET_ANALOG:
            frame = pp.encode(adr, 0, self.packs[adr].analog_info())
        elif cid2 == pp.GET_ALARMS:
            frame = pp.encode(adr, 0, self.packs[adr].alarm_info())
        else:
            return pp.encode(adr, 4)  # CID2 invalid
        if self.fault == "bad_checksum":
            last = frame[-2]
            frame = frame[:-2] + (b"0" if last != 0x30 else b"1") + b"\r"
        elif self.fault == "bad_format":
            body = frame[1:-5]
            length = (int(body[8:12], 16) + 0x1000) & 0xFFFF  # LCHKSUM off by one
            body = body[:8] + (b"%04X" % length) + body[12:]
            frame = b"~" + body + (b"%04X" % pp.checksum(body)) + b"\r"
        return frame
