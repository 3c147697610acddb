"""A Megatec Q1 UPS on a pseudo-terminal, driven by a small state model (host only).

    with MegatecEmulator(speed=60) as ups:      # speed: model seconds per real second
        path = ups.path                           # open this like /dev/ttyUSB0
        ups.set_mains(False)                      # utility fail: on battery, SOC starts falling
        ups.set_fault("at_fields")                # or "bad_format", "garbage", "drip", ... / None
        ups.state                                 # the true values now, to compare readings with

Model: a line-interactive (standby) UPS. On mains the output follows the input, with AVR boost
below 200 V (x1.15) and trim above 250 V (x0.87), both flagged by bit b5; the battery charges
towards full at 100 % per recharge_s. On battery the input reads 0, the inverter gives the rated
230 V, SOC falls at a rate set by the load (runtime_s at 100 % load, longer in proportion at lower
loads), the beeper sounds, b6 (battery low) is set below 20 %, and at 0 % the output drops and b1
(shutdown active) is set. Battery voltage follows SOC: on battery it falls in a straight line
from 2.10 V per cell (minus a load sag of 0.05 V at 100 % load) at full to the firmware's cut-off
`cutoff_cell_v` at empty, where the output drops; 2.15 + 0.10 x SOC while charging. It is reported
per cell or for the whole battery (battery_report="per_cell" as on-line units do, "whole" as
standby units do). SOC is the charge usable down to the cut-off at the present load.

Why these end points: a standby UPS has no charge counter; its firmware stops the inverter when
the battery voltage under load reaches a cut-off, so "empty" must be that voltage at every load
(the model used to end at 1.75 - 0.05 x load V, a cut-off that moved with the load and that no
firmware setting gave). The default cut-off is 104/120 of the rated battery voltage (10.4 V per
12 V block), what NUT's Q1 drivers assume for battery.voltage.low; lead-acid makers give 1.70 to
1.75 V per cell as the final voltage for discharges of 30 minutes to a few hours, the emulator's
range (runtime_s at 100 % load, 1800 s in the typhoon scenario; 100 minutes at 30 %). A real
curve is not straight: it sags at the transfer, runs nearly flat, and bends down over the last
10-15 % (the knee); this model keeps the straight line and says so (docs/alarms.md).

Line behaviour options (constructor keywords, attributes to change at run time, and flags of the
command line), for a UPS that is right but sits behind a real converter or a noisy cable:
    line_echo=True   every command comes back before the reply (a converter's local echo; with
                     no reply, the echo alone)
    stray_lf=True    an LF goes out before each reply (CR LF line endings out of step)
    answer_f=False   F gets no answer at all (a lost rating request, or a UPS without F)

Protocol faults, beyond the common ones of hil/emulators/base.py:
    "bad_format"  Q1 fields separated by commas (a reply of the right length that does not parse)
    "at_fields"   fields the UPS does not know are sent as "@": input fault V and temperature in
                  Q1, current in F, the model in I
"""

import sys
import threading
import time

from hil.emulators.base import PtyEmulator
from hil.emulators.power import Battery, ModelTime, SitePower

RATED_V = 230.0
RATED_HZ = 50.0
CUTOFF_OF_RATED = 104.0 / 120.0  # firmware cut-off as a share of the rated battery voltage


class MegatecEmulator(PtyEmulator):
    PROTOCOL_FAULTS = ("bad_format", "at_fields")

    def __init__(
        self,
        cells=12,
        battery_report="per_cell",
        load=30.0,
        soc=100.0,
        input_voltage=230.0,
        runtime_s=600.0,
        recharge_s=3600.0,
        temperature=32.0,
        speed=1.0,
        clock=time.monotonic,
        mfr="EMULATED",
        model="Q1-SIM",
        firmware="V0.1",
        cutoff_cell_v=None,
        line_echo=False,
        stray_lf=False,
        answer_f=True,
        **kw,
    ):
        PtyEmulator.__init__(self, **kw)
        self.line_echo = line_echo
        self.stray_lf = stray_lf
        self.answer_f = answer_f
        if battery_report not in ("per_cell", "whole"):
            raise ValueError("battery_report must be 'per_cell' or 'whole'")
        self.cells = cells
        # Volts per cell at which the firmware stops the inverter (the end of the runtime).
        self.cutoff_cell_v = 2.0 * CUTOFF_OF_RATED if cutoff_cell_v is None else cutoff_cell_v
        self.battery_report = battery_report
        self.runtime_s = runtime_s
        self.recharge_s = recharge_s
        self.clock = clock
        self.mfr, self.model, self.firmware = mfr, model, firmware
        self.time = ModelTime(clock, speed)
        # A standby UPS counts no amp-hours: its battery is one unit of charge, and currents are
        # in charges per hour (the load empties it in _runtime_full(), the charger fills it in
        # recharge_s). The output is off while empty on battery, back with charge or mains.
        self.power = SitePower(Battery(1.0, soc), low_pct=20.0, latch=False)
        self._load = float(load)
        self._vin = float(input_voltage)
        self._fault_v = 140.0  # input voltage at the last transfer to battery
        self._temp = float(temperature)
        self._test = False
        self._failed = False
        self._on_battery_since = None

    speed = property(lambda self: self.time.speed)
    _mains = property(lambda self: self.power.mains)
    _soc = property(lambda self: self.power.battery.soc)

    # --- the model ------------------------------------------------------------------------
    def _advance(self):
        """Move the model to now. Caller holds the lock."""
        self.power.step(
            self.time.step(), 3600.0 / self._runtime_full(), 3600.0 / self.recharge_s
        )

    def _runtime_full(self):
        """Seconds from full to empty at the present load."""
        # Runtime grows as the load shrinks (floor of 5 % so an idle UPS still drains).
        return self.runtime_s * 100.0 / max(self._load, 5.0)

    def set_mains(self, present):
        with self._lock:
            self._advance()
            if self._mains and not present:
                self._fault_v = 140.0 if self._vin > 160.0 else self._vin
                self._on_battery_since = self.clock()
            if present:
                self._on_battery_since = None
            self.power.set_mains(present)

    def set_load(self, percent):
        with self._lock:
            self._advance()
            self._load = float(percent)

    def set_input_voltage(self, volts):
        with self._lock:
            self._advance()
            self._vin = float(volts)

    def set_soc(self, percent):
        with self._lock:
            self._advance()
            self.power.battery.soc = float(percent)

    def set_flags(self, test=None, failed=None):
        with self._lock:
            if test is not None:
                self._test = bool(test)
            if failed is not None:
                self._failed = bool(failed)

    def power_state(self):
        """The shared model's view (hil/emulators/power.py): what the drill compares with."""
        with self._lock:
            self._advance()
            return self.power.power_state(3600.0 / self._runtime_full())

    @property
    def state(self):
        """The true values now (dict). battery_voltage is the whole battery; reported_battery
        the Q1 field as sent (per cell or whole); status the NUT tokens a driver should give."""
        with self._lock:
            self._advance()
            return self._state()

    def _state(self):
        soc = self._soc
        if self._mains:
            vin, freq = self._vin, RATED_HZ
            if vin < 200.0:
                vout, avr = round(vin * 1.15, 1), "BOOST"
            elif vin > 250.0:
                vout, avr = round(vin * 0.87, 1), "TRIM"
            else:
                vout, avr = vin, None
            cell = 2.25 if soc >= 100.0 else 2.15 + 0.10 * soc / 100.0
        else:
            vin, freq, avr = 0.0, 0.0, None
            vout = RATED_V if soc > 0.0 else 0.0
            full = 2.10 - 0.05 * self._load / 100.0
            cell = self.cutoff_cell_v + (full - self.cutoff_cell_v) * soc / 100.0
        cell = round(cell, 2)
        low = (not self._mains) and soc < 20.0
        shutdown = (not self._mains) and soc <= 0.0
        tokens = ["OB" if not self._mains else "OL"]
        if low:
            tokens.append("LB")
        if avr:
            tokens.append(avr)
        if self._test:
            tokens.append("TEST")
        if shutdown:
            tokens.append("FSD")
        if self._failed or shutdown:
            tokens.append("ALARM")
        whole = round(cell * self.cells, 2)
        reported = cell if self.battery_report == "per_cell" else round(whole, 1)
        return {
            "mains": self._mains,
            "on_battery": not self._mains,
            "input_voltage": vin,
            "input_fault_voltage": self._fault_v,
            "output_voltage": vout,
            "load": self._load,
            "frequency": freq,
            "soc": soc,
            "cell_voltage": cell,
            "battery_voltage": whole,
            "reported_battery": reported,
            "temperature": self._temp,
            "avr": avr,
            "low_battery": low,
            "shutdown": shutdown,
            "beeper": not self._mains,
            "test": self._test,
            "failed": self._failed,
            "status": " ".join(tokens),
            "rating_battery_voltage": 2.0 * self.cells,
            # seconds until the output drops at the present load (0 on mains: not discharging)
            "runtime_left": 0.0 if self._mains else soc / 100.0 * self._runtime_full(),
            "fault": self.fault,
            "requests": self.requests,
        }

    # --- the protocol ---------------------------------------------------------------------
    def reply_for(self, request):
        reply = self._reply(request)
        if reply is not None and self.stray_lf:
            reply = b"\n" + reply
        if self.line_echo:
            reply = request + (reply or b"")
        return reply

    def _reply(self, request):
        self._advance()
        command = request.strip()
        if command == b"Q1":
            return self._q1(self._state())
        if command == b"F":
            if not self.answer_f:
                return None
            current = "@@@" if self.fault == "at_fields" else "%03d" % 4
            return (
                "#%05.1f %s %05.1f %04.1f\r" % (RATED_V, current, 2.0 * self.cells, RATED_HZ)
            ).encode()
        if command == b"I":
            model = "@" * 10 if self.fault == "at_fields" else self.model
            return ("#%-15.15s %-10.10s %-10.10s\r" % (self.mfr, model, self.firmware)).encode()
        return request  # what a Megatec UPS does with a command it does not know

    def _q1(self, s):
        bits = "".join(
            "1" if b else "0"
            for b in (
                s["on_battery"],
                s["low_battery"],
                s["avr"] is not None,
                s["failed"],
                True,
                s["test"],
                s["shutdown"],
                s["beeper"],
            )
        )  # b3: standby (line-interactive) type
        if self.battery_report == "per_cell":
            batt = "%.2f" % s["reported_battery"]
        else:
            batt = "%04.1f" % s["reported_battery"]
        fields = [
            "%05.1f" % s["input_voltage"],
            "%05.1f" % s["input_fault_voltage"],
            "%05.1f" % s["output_voltage"],
            "%03d" % round(s["load"]),
            "%04.1f" % s["frequency"],
            batt,
            "%04.1f" % s["temperature"],
            bits,
        ]
        if self.fault == "at_fields":
            fields[1] = "@@@.@"
            fields[6] = "@@.@"
        sep = "," if self.fault == "bad_format" else " "
        return ("(" + sep.join(fields) + "\r").encode()


def main(argv=None):
    import argparse

    p = argparse.ArgumentParser(description="Run an emulated Megatec Q1 UPS on a pty.")
    p.add_argument("--mains", choices=("on", "off"), default="on")
    p.add_argument("--load", type=float, default=30.0)
    p.add_argument("--soc", type=float, default=100.0)
    p.add_argument("--speed", type=float, default=1.0, help="model seconds per real second")
    p.add_argument("--battery-report", choices=("per_cell", "whole"), default="per_cell")
    p.add_argument("--fault", default=None)
    p.add_argument("--line-echo", action="store_true", help="echo each command before the reply")
    p.add_argument("--stray-lf", action="store_true", help="send an LF before each reply")
    p.add_argument("--no-f", action="store_true", help="give no answer to F (ratings)")
    args = p.parse_args(argv)
    ups = MegatecEmulator(
        load=args.load, soc=args.soc, speed=args.speed, battery_report=args.battery_report,
        line_echo=args.line_echo, stray_lf=args.stray_lf, answer_f=not args.no_f,
    )
    ups.set_mains(args.mains == "on")
    if args.fault:
        ups.set_fault(args.fault)
    path = ups.start()
    print(path, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        ups.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
