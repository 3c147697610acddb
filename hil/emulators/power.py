"""The state model every emulator shares (host only): model time, a battery, and site power.

    t = ModelTime(clock=time.monotonic, speed=60)   # speed: model seconds per real second
    dt = t.step()                                     # model seconds since the last step, >= 0

    bank = Battery(capacity_ah=210.0)                 # state of charge in percent, 100 = full
    bank.flow(-42.0, dt)                              # amps in (negative: out) for dt seconds
    bank.seconds_to_empty(42.0)                       # at 42 A out

    site = SitePower(bank, low_pct=20.0, latch=True)  # mains, on battery, low, cut-off
    site.set_mains(False)
    site.step(dt, load_a=42.0, charge_a=21.0)         # discharges or charges, cuts off at 0 %
    site.power_state(load_a=42.0)                     # the dict the drill compares readings with

What the emulators have in common, and only that: every model advances by model time taken from
a clock (injected, so a test steps a fake clock, and a drill runs it accelerated), every battery
moves its charge with a current and stays within 0-100 %, and the devices that sit on a site's
mains (a DC plant, a UPS, a hybrid inverter) go through the same states: on mains (charging), on
battery (discharging at the load), low battery, cut off at empty. What each device puts on the
wire (voltages, flags, registers) stays in its own module.

Cut-off: `latch=True` is a plant's low-voltage disconnect, which reconnects only when mains
returns (the battery recovering its voltage with no load does not reconnect it); `latch=False`
is a UPS whose output is off while it is on battery and empty, and on again whenever there is
charge or mains.

power_state() keys (the drill's truth, hil/drill): mains, on_battery (mains lost and the load
still carried), discharging (charge falling), soc (percent), low_battery (on battery below
low_pct), cut_off, runtime_left (seconds to the cut-off at the present load; None unless on
battery).
"""

import time


class ModelTime:
    """Model seconds elapsed between steps: (clock() difference) x speed, never negative."""

    def __init__(self, clock=time.monotonic, speed=1.0):
        self.clock = clock
        self.speed = speed
        self.last = clock()

    def step(self):
        now = self.clock()
        dt = (now - self.last) * self.speed
        self.last = now
        return dt if dt > 0 else 0.0


class Battery:
    """A bank of capacity_ah whose charge (percent) moves with the current through it."""

    def __init__(self, capacity_ah, soc=100.0):
        self.capacity_ah = float(capacity_ah)
        self.soc = float(soc)

    def flow(self, amps, dt):
        """amps into the bank (negative: out of it) for dt seconds; the charge stays in 0-100."""
        soc = self.soc + 100.0 * amps * dt / 3600.0 / self.capacity_ah
        self.soc = max(0.0, min(100.0, soc))

    def seconds_to_empty(self, amps_out):
        if amps_out <= 0:
            return None
        return self.soc / 100.0 * self.capacity_ah / amps_out * 3600.0


class SitePower:
    """Mains plus a battery: on mains the caller's charge current goes in; with mains lost the
    load comes out until the charge is gone, and then the load is cut off."""

    def __init__(self, battery, low_pct=20.0, latch=True):
        self.battery = battery
        self.low_pct = low_pct
        self.latch = latch
        self.mains = True
        self._latched = False  # the LVD opened and waits for mains (latch=True only)

    def set_mains(self, on):
        self.mains = bool(on)
        if self.mains:
            self._latched = False  # the controller reconnects once the rectifiers are up

    @property
    def cut_off(self):
        if self.latch:
            return self._latched
        return not self.mains and self.battery.soc <= 0.0

    @property
    def on_battery(self):
        return not self.mains and not self.cut_off

    def step(self, dt, load_a, charge_a=0.0):
        """Advance dt model seconds at this load (A out on battery) and charge (A in on mains)."""
        if dt <= 0:
            return
        if self.mains:
            self.battery.flow(charge_a, dt)
        elif not self.cut_off:
            self.battery.flow(-load_a, dt)
            if self.latch and self.battery.soc <= 0.0:
                self._latched = True

    def runtime_left(self, load_a):
        return self.battery.seconds_to_empty(load_a) if self.on_battery else None

    def power_state(self, load_a):
        soc = self.battery.soc
        on_batt = self.on_battery
        return {
            "mains": self.mains,
            "on_battery": on_batt,
            "discharging": on_batt and load_a > 0,
            "soc": soc,
            "low_battery": on_batt and soc < self.low_pct,
            "cut_off": self.cut_off,
            "runtime_left": self.runtime_left(load_a),
        }
