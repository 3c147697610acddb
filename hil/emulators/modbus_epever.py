"""EPEVER solar charge controllers on one RS-485 bus, as Modbus RTU slaves on a pty (host only).

    with EpeverEmulator(slaves=(1, 2), speed=60) as bus:   # one pty, one controller per slave id
        bus.unit(1).set_sun(0.0)           # night: no PV, the battery discharges into the load
        bus.set_fault("exception")         # or "bad_checksum", "bad_format", "silence", ...
        bus.unit(1).state                  # the true values now, to compare readings with
        bus.registers[(4, 0x9100)] = 7     # extra registers for custom-map tests

Model per controller: a 24 V lead-acid bank of `capacity_ah`; PV power = sun x pv_peak_w at
36 V; charge current = PV power / battery V (bulk below 95 % SOC, float above); the load draws
load_a. SOC moves with the net current; battery V = 24.0 + 2.4 x SOC/100 (+0.6 while charging).

Requests are framed by length (fc 3/4 requests are 8 bytes); an id nobody answers to, a bad CRC
or another function gets silence, as on a real bus. latency_s delays every reply (a slow
controller), so tests can catch two masters' frames interleaving.

Protocol faults beyond hil/emulators/base.py's: "bad_checksum" (CRC off by one), "bad_format"
(a well-framed reply one register short of the request), "exception" (exception 4, slave
device failure).

Behaviour options, for a line or a controller that is unreliable but not broken (each also a
flag of the command line, and an attribute that may be changed at run time):
    answer_every=2     answer only every second request (the others are lost on the line)
    missing=(0x3200,)  registers this model does not have: a request touching one gets
                       exception 2 (illegal data address), as for any unmapped register
"""

import threading
import time

from drivers.proto import modbus as mb
from hil.emulators.base import PtyEmulator
from hil.emulators.power import Battery, ModelTime


class EpeverUnit:
    def __init__(self, slave, soc=80.0, sun=0.5, load_a=2.0, capacity_ah=100.0, pv_peak_w=400.0):
        self.slave = slave
        self.battery = Battery(capacity_ah, soc)
        self.sun = float(sun)
        self.load_a = float(load_a)
        self.capacity_ah = capacity_ah
        self.pv_peak_w = pv_peak_w
        self.temperature = 28.5 + slave  # distinct per unit, so readings show which one answered

    def set_sun(self, fraction):
        self.sun = max(0.0, min(1.0, float(fraction)))

    def set_load(self, amps):
        self.load_a = float(amps)

    @property
    def soc(self):
        return self.battery.soc

    def advance(self, dt):
        s = self.values()
        self.battery.flow(s["charge_a"] - self.load_a, dt)

    def values(self):
        pv_w = self.sun * self.pv_peak_w
        pv_v = 36.0 if self.sun > 0 else 0.0
        bat_v = 24.0 + 2.4 * self.soc / 100.0
        charging = pv_w > 0 and self.soc < 100.0
        if charging:
            bat_v += 0.6
        charge_a = pv_w * 0.95 / bat_v if charging else 0.0
        if self.soc < 10.0:
            status = 2  # under-voltage
        else:
            status = 0
        return {
            "pv_v": round(pv_v, 2),
            "pv_a": round(pv_w / pv_v, 2) if pv_v else 0.0,
            "pv_w": round(pv_w, 2),
            "battery_v": round(bat_v, 2),
            "charge_a": round(charge_a, 2),
            "load_v": round(bat_v, 2),
            "load_a": round(self.load_a, 2),
            "battery_c": 25.0,
            "case_c": self.temperature,
            "soc": int(round(self.soc)),
            "battery_status": status,
            "charging": (1 if self.soc >= 95.0 else 2) if charging else 0,
            "net_a": round(charge_a - self.load_a, 2),
        }

    def registers(self):
        v = self.values()

        def u(x):
            return int(round(x * 100)) & 0xFFFF

        pv_w = int(round(v["pv_w"] * 100))
        net = int(round(v["net_a"] * 100)) & 0xFFFFFFFF
        return {
            0x3100: u(v["pv_v"]),
            0x3101: u(v["pv_a"]),
            0x3102: pv_w & 0xFFFF,
            0x3103: pv_w >> 16,
            0x3104: u(v["battery_v"]),
            0x3105: u(v["charge_a"]),
            0x310C: u(v["load_v"]),
            0x310D: u(v["load_a"]),
            0x3110: u(v["battery_c"]),
            0x3111: u(v["case_c"]),
            0x311A: v["soc"],
            0x3200: v["battery_status"],
            0x3201: (v["charging"] << 2) | 1,  # D0: running
            0x331B: net & 0xFFFF,
            0x331C: net >> 16,
        }


class EpeverEmulator(PtyEmulator):
    PROTOCOL_FAULTS = ("bad_checksum", "bad_format", "exception")

    def __init__(self, slaves=(1,), speed=1.0, latency_s=0.0, clock=time.monotonic,
                 answer_every=1, missing=(), **kw):  # fmt: skip
        PtyEmulator.__init__(self, **kw)
        self.answer_every = answer_every
        self.missing = set(missing)
        self.heard = 0  # requests addressed to one of our slaves
        self.dropped = 0  # of those, left unanswered by answer_every
        self.units = {s: EpeverUnit(s) for s in slaves}
        self.time = ModelTime(clock, speed)
        self.latency_s = latency_s
        self.clock = clock
        self.registers = {}  # (function, address) -> value: extra registers for any slave
        self.holding = {0x9000: 0, 0x9001: 200}  # battery type (user), capacity Ah
        self.collisions = 0  # requests that arrived while another was still unanswered

    def unit(self, slave):
        return self.units[slave]

    speed = property(lambda self: self.time.speed)

    def _advance(self):
        dt = self.time.step()
        if dt > 0:
            for u in self.units.values():
                u.advance(dt)

    def state(self, slave):
        with self._lock:
            self._advance()
            return self.units[slave].values()

    def split_requests(self, data):
        # Two frames read in one go means a master sent the second before the first was
        # answered: on a half-duplex RS-485 bus that is a collision. Counted for tests.
        frames = []
        while len(data) >= 8:
            frame = data[:8]
            if mb.crc16(frame[:6]) == frame[6] | (frame[7] << 8):
                frames.append(frame)
                data = data[8:]
            else:
                data = data[1:]  # noise on the bus: slide until a frame checks out
        if len(frames) > 1:
            self.collisions += len(frames) - 1
        return frames, data

    def reply_for(self, request):
        self._advance()
        slave, function = request[0], request[1]
        address = (request[2] << 8) | request[3]
        count = (request[4] << 8) | request[5]
        if slave not in self.units or function not in (3, 4):
            return None
        self.heard += 1
        if self.heard % self.answer_every:
            self.dropped += 1
            return None
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.fault == "exception":
            return mb.with_crc(bytes((slave, function | 0x80, 4)))
        table = self.units[slave].registers() if function == 4 else dict(self.holding)
        values = []
        for a in range(address, address + count):
            if a in self.missing:
                return mb.with_crc(bytes((slave, function | 0x80, 2)))  # illegal data address
            if (function, a) in self.registers:
                values.append(self.registers[(function, a)] & 0xFFFF)
            elif a in table:
                values.append(table[a])
            else:
                return mb.with_crc(bytes((slave, function | 0x80, 2)))  # illegal data address
        if self.fault == "bad_format":  # well framed, but one register short of the request
            values = values[:-1]
        body = bytes((slave, function, 2 * len(values)))
        for x in values:
            body += bytes((x >> 8, x & 0xFF))
        frame = mb.with_crc(body)
        if self.fault == "bad_checksum":
            frame = frame[:-1] + bytes(((frame[-1] + 1) & 0xFF,))
        return frame


def main(argv=None):
    import argparse
    import sys

    p = argparse.ArgumentParser(description="Run emulated EPEVER controllers on a pty.")
    p.add_argument("--slaves", default="1", help="comma-separated slave ids")
    p.add_argument("--speed", type=float, default=1.0)
    p.add_argument("--fault", default=None)
    p.add_argument("--answer-every", type=int, default=1, metavar="N",
                   help="answer only every Nth request (2: every other one is lost)")
    p.add_argument("--missing", default="", metavar="REGS",
                   help="comma-separated registers this model lacks (exception 2), e.g. 0x3200")
    p.add_argument("--latency", type=float, default=0.0, help="seconds before each reply")
    args = p.parse_args(argv)
    missing = [int(r, 0) for r in args.missing.split(",") if r]
    bus = EpeverEmulator(slaves=[int(s) for s in args.slaves.split(",")], speed=args.speed,
                         answer_every=args.answer_every, missing=missing,
                         latency_s=args.latency)  # fmt: skip
    if args.fault:
        bus.set_fault(args.fault)
    print(bus.start(), flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        bus.stop()
    sys.exit(0)


if __name__ == "__main__":
    main()
