"""A Victron battery monitor (BMV/SmartShunt) streaming VE.Direct text blocks on a pty (host only).

    with VeDirectEmulator(period_s=0.2, speed=60) as bmv:
        bmv.set_current(-12.0)        # discharging at 12 A: SOC and voltage fall
        bmv.set_fault("bad_checksum")
        bmv.state                     # the true values now

It talks without being asked: one block every period_s (real devices: 1 s), alternating, as a BMV
does, between the main block (V, I, P, CE, SOC, TTG, Alarm, AR ...) and a history block (H1..).
Bytes written to it are ignored (the text protocol has no requests), except under "echo".

Faults (the base's, read for a streaming device, plus protocol ones):
    silence       nothing is sent
    drip          each block goes out one byte per drip_s (slower than the blocks come)
    truncated     only the first half of each block is sent
    garbage       random bytes of a block's length instead of each block
    echo          nothing is sent; what is written comes back (a loopback or wrong-mode cable)
    bad_checksum  the checksum byte is off by one
    bad_format    the lines have a space where the tab belongs (checksum still right)
"""

import os
import select
import time

from drivers.proto import vedirect as vd
from hil.emulators.base import PtyEmulator
from hil.emulators.power import Battery, ModelTime


class VeDirectEmulator(PtyEmulator):
    PROTOCOL_FAULTS = ("bad_checksum", "bad_format")

    def __init__(self, period_s=1.0, soc=90.0, current=-2.5, capacity_ah=200.0, speed=1.0,
                 clock=time.monotonic, **kw):  # fmt: skip
        PtyEmulator.__init__(self, **kw)
        self.period_s = period_s
        self.battery = Battery(capacity_ah, soc)
        self.current = float(current)
        self.capacity_ah = capacity_ah
        self.consumed_ah = -(100.0 - soc) * capacity_ah / 100.0
        self.time = ModelTime(clock, speed)
        self.clock = clock
        self.sent_blocks = 0
        self._main_next = True

    def set_current(self, amps):
        with self._lock:
            self._advance()
            self.current = float(amps)

    def set_soc(self, percent):
        with self._lock:
            self._advance()
            self.battery.soc = float(percent)

    soc = property(lambda self: self.battery.soc)
    speed = property(lambda self: self.time.speed)

    def _advance(self):
        dt = self.time.step()
        if dt > 0:
            self.battery.flow(self.current, dt)
            self.consumed_ah = min(0.0, self.consumed_ah + self.current * dt / 3600.0)

    @property
    def state(self):
        with self._lock:
            self._advance()
            return self._state()

    def _state(self):
        volts = 24.0 + 2.6 * self.soc / 100.0 + 0.02 * self.current
        ttg = (
            -1
            if self.current >= 0
            else int(self.soc / 100.0 * self.capacity_ah / -self.current * 60)
        )
        low = self.soc < 20.0
        return {
            "voltage": round(volts, 3),
            "current": round(self.current, 3),
            "power": int(round(volts * self.current)),
            "consumed_ah": round(self.consumed_ah, 3),
            "soc": round(self.soc, 1),
            "ttg_min": ttg,
            "alarm": low,
            "alarm_reason": 4 if low else 0,
        }

    def main_block(self):
        s = self._state()
        return [
            ("PID", "0x203"),
            ("V", "%d" % round(s["voltage"] * 1000)),
            ("I", "%d" % round(s["current"] * 1000)),
            ("P", "%d" % s["power"]),
            ("CE", "%d" % round(s["consumed_ah"] * 1000)),
            ("SOC", "%d" % round(s["soc"] * 10)),
            ("TTG", "%d" % s["ttg_min"]),
            ("Alarm", "ON" if s["alarm"] else "OFF"),
            ("Relay", "OFF"),
            ("AR", "%d" % s["alarm_reason"]),
            ("BMV", "700"),
            ("FW", "0308"),
        ]

    def history_block(self):
        return [("H1", "-50000"), ("H2", "-12000"), ("H3", "0"), ("H4", "3"), ("H5", "0"),
                ("H6", "-420000"), ("H7", "21000"), ("H8", "28900"), ("H9", "86400")]  # fmt: skip

    def next_block(self):
        """The bytes of the next block as the fault mode has them, or None for nothing."""
        with self._lock:
            self._advance()
            pairs = self.main_block() if self._main_next else self.history_block()
            self._main_next = not self._main_next
            fault = self.fault
        if fault in ("silence", "echo"):
            return None
        if fault == "bad_format":
            body = b"".join(b"\r\n" + k.encode() + b" " + v.encode() for k, v in pairs) + vd.MARK
            return body + bytes(((-sum(body)) & 0xFF,))
        block = vd.block(pairs)
        if fault == "bad_checksum":
            return block[:-1] + bytes(((block[-1] + 1) & 0xFF,))
        if fault == "truncated":
            return block[: len(block) // 2]
        if fault == "garbage":
            return bytes(self._rng.randrange(256) for _ in range(len(block)))
        return block

    # A streaming device: the thread sends on a timer and only reads to drain (or echo).
    def _run(self):
        due = time.monotonic()
        while not self._stop:
            wait = max(0.0, due - time.monotonic())
            try:
                ready, _, _ = select.select([self._master, self._wake_r], [], [], wait)
            except (OSError, ValueError):
                return
            if self._stop:
                return
            if self._master in ready:
                try:
                    data = os.read(self._master, 4096)
                except OSError:
                    return
                self.requests += 1
                if self.fault == "echo":
                    self._write(data)
                continue
            if time.monotonic() < due:
                continue
            due += self.period_s
            block = self.next_block()
            if block is None:
                continue
            if self.fault == "drip":
                self._drip(block)
                due = time.monotonic()
            else:
                self._write(block)
            self.sent_blocks += 1
