"""An Eltek Smartpack -48 V DC plant on the SNMP agent, driven by a small state model (host only).

    plant = EltekPlant(capacity_ah=210.0, load_a=42.0, clock=fake.mono, speed=1.0)
    with plant:                        # SnmpAgent on 127.0.0.1, plant.port
        plant.set_mains(False)         # the feed fails; the bank carries the load
        plant.state                    # the true values now: soc, runtime_left, voltage, ...
        plant.power_state()            # the shared model's view (hil/emulators/power.py)

The model (advanced to clock() x speed at every request and every API call, so a test that steps
a fake clock sees the discharge it stepped):
- mains on: the rectifiers hold the bus at float_v and carry the load plus the battery's recharge
  (at most recharge_a, tapering to nothing at full); the battery current is positive.
- mains off: the bank carries the load: current -load_a, charge falls at load_a per hour over
  capacity_ah (constant current, so a straight line in time); the bus voltage falls in a straight
  line with charge from full_v at full to lvd_v at empty, where the low-voltage disconnect opens
  and the load is lost (battery current 0, LVD disconnected, lvd1_open). A real lead-acid curve
  is flat and bends down at the end (the knee); this model has no knee, so a voltage trend is
  exact on it: what it tests is the SNMP path and the timeline, not the estimator's fit.
- alarms .7.1.N: 11 AC mains lost; 4 battery voltage low minor below low_minor_v, 2 major below
  low_major_v; 8 LVD1 open; the rest stay 0 (no rectifier faults are modelled: a rectifier
  without input shows per-rectifier status "alarm", the plant alarm is mains lost).
Values are what the controller puts on the wire (ELTEK-DISTRIBUTED-MIB, shared/PROTOCOLS.md):
bus voltage 0.01 V (with noise_v of seeded jitter if asked), battery current whole A (signed),
rectifier current 0.1 A, mains V per phase.
The OIDs are those of drivers/profiles/eltek.py and hil/recordings/power/eltek-smartpack.snmprec.
"""

import random
import threading
import time

from drivers.proto import ber
from hil.emulators.power import Battery, ModelTime, SitePower
from hil.emulators.snmp_agent import SnmpAgent, SnmpDevice

E = "1.3.6.1.4.1.12148.9."
SYS_OBJECT_ID = "1.3.6.1.4.1.12148.9"
ALARM_IDS = (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 18)


class EltekPlant(SnmpDevice):
    def __init__(
        self,
        capacity_ah=210.0,
        load_a=42.0,
        rectifiers=3,
        float_v=54.0,
        full_v=51.0,
        lvd_v=41.6,
        low_minor_v=46.0,
        low_major_v=44.0,
        recharge_a=21.0,
        mains_v=230,
        clock=time.monotonic,
        community="public",
        slow_s=3.0,
        noise_v=0.0,
        seed=1,
        speed=1.0,
    ):
        self.load_a = float(load_a)
        self.rectifiers = rectifiers
        self.float_v = float_v
        self.full_v = full_v
        self.lvd_v = lvd_v
        self.low_minor_v = low_minor_v
        self.low_major_v = low_major_v
        self.recharge_a = recharge_a
        self.mains_v = mains_v
        self.clock = clock
        self.noise_v = noise_v  # uniform jitter on the bus voltage as read (a controller's ADC)
        self.seed = seed
        self.time = ModelTime(clock, speed)
        # The LVD latches: it reconnects only when mains (the rectifiers) returns.
        self.power = SitePower(Battery(capacity_ah), low_pct=0.0, latch=True)
        self._lock = threading.RLock()
        self.agent = SnmpAgent(self.table, community=community, slow_s=slow_s)

    # --- the model (start, stop, port, faults: SnmpDevice) ----------------------------------
    # The model's state, as attributes (the shared model in hil/emulators/power.py holds it).
    capacity_ah = property(lambda self: self.power.battery.capacity_ah)
    soc = property(lambda self: self.power.battery.soc)  # percent
    mains = property(lambda self: self.power.mains)
    lvd_open = property(lambda self: self.power.cut_off)

    def set_mains(self, on):
        with self._lock:
            self._advance()
            self.power.set_mains(on)

    def set_soc(self, soc):
        with self._lock:
            self._advance()
            self.power.battery.soc = max(0.0, min(100.0, float(soc)))

    def power_state(self):
        """The shared model's view (hil/emulators/power.py): what the drill compares with."""
        with self._lock:
            self._advance()
            return self.power.power_state(self.load_a)

    @property
    def state(self):
        """The true values now (not rounded as on the wire)."""
        with self._lock:
            self._advance()
            v = self._bus_v()
            left = self.power.runtime_left(self.load_a)
            return {
                "mains": self.mains,
                "soc": self.soc,
                "voltage": v,
                "battery_current": self._battery_a(),
                "lvd_open": self.lvd_open,
                "runtime_left": left,
            }

    # --- the model ----------------------------------------------------------------------------
    def _advance(self):
        self.power.step(self.time.step(), self.load_a, self._charge_a())

    def _charge_a(self):
        # Constant current to 80 %, then tapering linearly to nothing at full (the float stage).
        if self.soc >= 100.0:
            return 0.0
        if self.soc <= 80.0:
            return self.recharge_a
        return self.recharge_a * (100.0 - self.soc) / 20.0

    def _battery_a(self):
        if self.mains:
            return self._charge_a()
        return 0.0 if self.lvd_open else -self.load_a

    def _bus_v(self):
        if self.mains:
            return self.float_v
        return self.lvd_v + (self.full_v - self.lvd_v) * self.soc / 100.0

    def table(self):
        """{oid: (tag, value)} now: the agent calls this per request."""
        with self._lock:
            self._advance()
            v = self._bus_v()
            if self.noise_v:
                # The jitter is a function of the model's time, not a stream drawn per request:
                # a retried or repeated request at the same instant reads the same voltage, so a
                # run's readings do not depend on how many requests the client happened to send.
                rng = random.Random(self.seed * 1000003 + int(self.clock() * 1000))
                v += rng.uniform(-self.noise_v, self.noise_v)
            batt = self._battery_a()
            rect_a = self.load_a + batt if self.mains else 0.0
            per_rect = rect_a / self.rectifiers
            alarms = {
                2: v < self.low_major_v,
                4: v < self.low_minor_v,
                8: self.lvd_open,
                11: not self.mains,
            }
            phase_v = self.mains_v if self.mains else 0
            INT = ber.INTEGER
            t = {
                "1.3.6.1.2.1.1.1.0": (ber.OCTET_STRING, b"Eltek Smartpack (site-agent emulator)"),
                "1.3.6.1.2.1.1.2.0": (ber.OID, SYS_OBJECT_ID),
                "1.3.6.1.2.1.1.3.0": (ber.TIMETICKS, int(self.time.last * 100) % (1 << 32)),
                E + "2.2.0": (INT, 0),  # float
                E + "3.2.0": (INT, round(v * 100)),
                E + "3.3.0": (INT, round(batt)),
                E + "3.4.0": (INT, 25),
                E + "3.5.0": (INT, 0),
                E + "3.17.1.0": (INT, 1 if self.lvd_open else 0),
                E + "5.1.0": (INT, self.rectifiers),
                E + "5.3.0": (INT, round(rect_a * 10)),
                E + "5.4.0": (INT, round(100.0 * rect_a / (self.rectifiers * 50.0))),
                E + "6.1.0": (INT, phase_v),
                E + "6.2.0": (INT, phase_v),
                E + "6.3.0": (INT, phase_v),
            }
            for n in range(1, self.rectifiers + 1):
                t[E + "5.5.2.1.2.%d" % n] = (INT, 1 if self.mains else 2)
                t[E + "5.5.2.1.3.%d" % n] = (INT, round(per_rect * 10))
            for n in ALARM_IDS:
                t[E + "7.1.%d.0" % n] = (INT, 1 if alarms.get(n) else 0)
            return t
