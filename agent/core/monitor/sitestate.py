"""Derived site state: power source, runtime left, backhaul, time on battery (portable).

    site = SiteState(site_id, clock, backhaul=("if.wan0.oper", "if.sat0.oper"))
    site.feed(readings)          # every device reading, as the loop records them
    derived = site.readings()    # Readings of device "site", to record and feed the alarm engine

Derived readings (device "site"):
    site.power_source   mains, battery, generator, solar, unknown
    site.on_battery_s   seconds since the site went on battery (0 otherwise)
    site.battery_charge   the lowest state of charge any device reports (not
                        battery.charge, so a device's battery rules do not fire twice)
    site.runtime        seconds left: the lowest runtime a device reports; otherwise estimated
                        from the discharge trend while on battery (see below)
    site.runtime_estimated   true when site.runtime is our estimate, not a device's
    site.backhaul       up, down, degraded, unknown

Runtime estimate: a least-squares line through the (time, charge) points since the site went on
battery (within `window_s`); runtime = (fitted charge now - floor) / discharge rate. The fitted
value, not the last reading, is the "now": a reading is rounded (whole percent, 10 mV per cell)
and near the end one rounding step is a large share of what is left. Without a charge reading
the battery voltage is used instead, down to the device's end-of-discharge voltage, in this order:
  1. learned: the voltage this device shut down at (status FSD) in an earlier discharge, taken
     from the fitted line at that moment (a single reading is 10 mV per cell coarse);
  2. `cutoff_cell_v` per cell if the site config gives it (cells = rated battery voltage / 2 V);
  3. NUT's guess for a Q1 UPS that does not say (nutdrv_qx, blazer): battery.voltage.low =
     104/120 of the rated battery voltage from F, 10.4 V per 12 V block (1.733 V per cell).
The LB flag is not used for the end point: it is the firmware's warning threshold, whose
distance to the cut-off differs by model; it already raises its own alarm.
No estimate before `min_span_s` of trend and a measurable fall (MIN_DROP_*): a fresh discharge
has a transfer sag, and whole-percent readings over a few minutes are mostly rounding. A bank
that falls less than that within the window (a hardened site's 20-hour bank falls 0.016 V per
cell an hour) is fitted on a longer trend instead: one point per COARSE_S since the site went on
battery (up to COARSE_POINTS) before the window, and every point in it (found by the typhoon
drill: such a site got no estimate at all; now within 3 % until its last half hour).
The long default window (two hours) and span (20 min) trade a slower answer to a load change for
an estimate that does not jump with every reading: with an hour, a 48 V plant read with +-0.05 V of
noise every 60 s gave an estimate past 10 % somewhere in the last half of a 5-hour discharge in
9.5 % of discharges, with two hours in 1.3 % (bench/runtime_noise.py, 1,500 runs each).
The method assumes the fall is near linear in time, as it is for lead-acid at UPS rates until the
last minutes; an end point off by d volts per cell shifts the estimate by d / (fall per second),
which is why the device's own is preferred.
Measured in tests/host/test_typhoon.py, every estimate made with at least 5 minutes left: the
Wi-Fi night (Megatec UPS, voltage trend) within 2.1 % of the time to shutdown, the BTS night
(emulated Eltek plant over SNMP, voltage trend with +-0.05 V noise) within 5.0 %.

Invariants: facts from a device that went stale are forgotten (not reused as if current);
nothing here raises on odd input: a value of the wrong type is ignored.
"""

from agent.core import readings as rd

DEVICE = "site"
SOLAR_MIN_W = 20.0  # below this the array is not what powers the site
CELL_NOMINAL_V = 2.0  # lead-acid nominal volts per cell, to count cells from a rated voltage
# End of discharge as a share of the rated battery voltage when nothing better is known: NUT's
# default battery.voltage.low for Q1 UPSes (nutdrv_qx / blazer "guesstimation").
CUTOFF_OF_RATED = 104.0 / 120.0
MAX_POINTS = 128
MEMO_MAX = 1024  # metric names remembered as backhaul or not (names come from devices)
COARSE_S = 600.0  # one point of the coarse trend per 10 minutes ...
COARSE_POINTS = 72  # ... for up to 12 hours
# The fitted fall over the trend must reach this before an estimate is made: a fall within the
# device's resolution (whole percent, 10 mV per cell) would give a runtime of noise.
MIN_DROP_PCT = 2.0
MIN_DROP_CELL_V = 0.02
CHARGE_METRIC = "site.battery_charge"
ESTIMATED_METRIC = "site.runtime_estimated"


def _num(v):
    return v if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def _matches(pattern, name):
    from agent.core.monitor.alarms import _matches as m

    return m(pattern, name)


class SiteState:
    def __init__(
        self,
        site_id,
        clock,
        backhaul=("probe.<name>.ok",),
        window_s=7200.0,
        min_span_s=1200.0,
        cutoff_cell_v=None,
        floor_pct=0.0,
        banks=None,
    ):
        self.site_id = site_id
        self.clock = clock
        self.backhaul = tuple(backhaul)  # metric patterns whose state is the backhaul's
        self.window_s = window_s
        self.min_span_s = min_span_s
        self.cutoff_cell_v = cutoff_cell_v  # configured end of discharge per cell, or None
        # device -> {"nominal_v", "cutoff_cell_v"} from the site config ([devices.battery]), for
        # devices that report neither (DC plants): what the device reports wins.
        self.banks = banks or {}
        # device -> whole-battery volts at which it shut down in an earlier discharge. Kept for
        # the life of this object; a runner may persist and restore it (plain dict of floats).
        self.cutoffs = {}
        self._shut = []  # devices seen shutting down in this discharge (learn once each)
        self.floor_pct = floor_pct
        self.facts = {}  # device -> {metric: value}, newest good values
        # The backhaul's part of facts (device -> {metric: value} of the metrics a backhaul
        # pattern matches), kept as facts are, so that backhaul_state() is not a scan of every
        # series of the site after every poll; _is_backhaul remembers which names match.
        self._backhaul = {}
        self._is_backhaul = {}
        # device -> (mains opinion, generator running, solar up, charge, runtime) from its facts,
        # worked out when the device's readings arrive: the derived readings are then a look at
        # one tuple per device, not at every device's facts after every poll.
        self._power = {}
        self.source = "unknown"
        self.battery_since = None  # monotonic time the site went on battery
        self.trend = {}  # device -> [(mono, charge or None, voltage or None)] while on battery
        self.coarse = {}  # device -> the same, one point per COARSE_S (slow discharges)

    # --- input ----------------------------------------------------------------------------
    def feed(self, readings, at=None):
        """at: the clock's mono() when the readings were taken (None: now)."""
        now = self.clock.mono() if at is None else at
        touched = []
        for r in readings:
            if not isinstance(r, rd.Reading):
                r = rd.Reading.from_dict(r)
            if r.device == DEVICE:
                continue
            if r.metric == "agent.device.stale":
                if r.value is True:
                    self.facts.pop(r.device, None)  # its trend points stay: they were true
                    self._backhaul.pop(r.device, None)
                    self._power.pop(r.device, None)
                continue
            if r.value is None or r.quality == rd.STALE:
                continue
            self.facts.setdefault(r.device, {})[r.metric] = r.value
            if self._backhaul_metric(r.metric):
                self._backhaul.setdefault(r.device, {})[r.metric] = r.value
            if r.device not in touched:
                touched.append(r.device)
        for dev in touched:
            f = self.facts.get(dev)
            if f is None:
                continue  # went stale later in the same list
            p = _num(f.get("solar.power"))
            self._power[dev] = (_mains(f), f.get("generator.running") is True,
                                p is not None and p >= SOLAR_MIN_W, _num(f.get("battery.charge")),
                                _num(f.get("battery.runtime")))  # fmt: skip
        self._update_source(now)
        if self.source == "battery":
            for dev in touched:
                f = self.facts[dev]
                c, v = _num(f.get("battery.charge")), _num(f.get("battery.voltage"))
                if c is None and v is None:
                    continue
                if _has_token(f.get("ups.status"), "FSD"):
                    # Shut down: the voltage from now on is not the discharge curve any more.
                    if dev not in self._shut:
                        self._shut.append(dev)
                        self._learn_cutoff(dev, now)
                    continue
                slow = self.coarse.setdefault(dev, [])
                if not slow or now - slow[-1][0] >= COARSE_S:
                    slow.append((now, c, v))
                    if len(slow) > COARSE_POINTS:
                        slow.pop(0)
                pts = self.trend.setdefault(dev, [])
                pts.append((now, c, v))
                while pts and (now - pts[0][0] > self.window_s or len(pts) > MAX_POINTS):
                    pts.pop(0)

    def _update_source(self, now):
        mains = None
        gen = solar = False
        for m, g, s, _c, _r in self._power.values():
            if m is False:
                mains = False
            elif m is True and mains is None:
                mains = True
            if g:
                gen = True
            if s:
                solar = True
        if mains is None:
            src = "unknown"
        elif mains:
            src = "mains"
        elif gen:
            src = "generator"
        elif solar:
            src = "solar"
        else:
            src = "battery"
        # "unknown" (the only device that knew went stale) keeps the battery clock and trend:
        # a serial glitch must not restart "time on battery" or the runtime estimate.
        if src == "battery" and self.battery_since is None:
            self.battery_since = now
            self.trend = {}
            self.coarse = {}
            self._shut = []
        elif src != "battery" and src != "unknown":
            self.battery_since = None
            self.trend = {}
            self.coarse = {}
            self._shut = []
        self.source = src

    def _learn_cutoff(self, dev, now):
        """Remember the voltage `dev` shut down at: the fitted discharge line, halfway between
        the last reading before the shutdown and the first one showing it (it fell in between)."""
        pts = [(p[0], p[2]) for p in self.trend.get(dev, ()) if p[2] is not None]
        if len(pts) < 3:
            return
        slope, icept = _fit(pts)
        if slope is None or slope >= 0:
            return
        at = (pts[-1][0] + now) / 2.0
        self.cutoffs[dev] = icept + slope * (at - pts[0][0])

    # --- output ---------------------------------------------------------------------------
    def runtime(self, at=None):
        """(seconds, estimated) or (None, None). An estimate is as of the trend's last point, or
        with `at` (a mono time: the loop gives the time of the poll the derived readings go out
        with) the trend's line carried on to `at`: they go out after every device's poll, not
        only the battery's, and must not repeat a value made a poll interval ago."""
        best = None
        for t in self._power.values():
            v = t[4]
            if v is not None and v >= 0 and (best is None or v < best):
                best = v
        if best is not None:
            return int(best), False
        for dev, pts in self.trend.items():
            f = self.facts.get(dev, {})
            est, end = self._estimate(dev, pts, f), pts[-1][0] if pts else None
            slow = self.coarse.get(dev)
            if est is None and slow and pts:
                # A slow discharge: the coarse trend before the window, then every point in it
                # (the newest minutes weigh in fully: the end of the line is what counts).
                est = self._estimate(dev, [p for p in slow if p[0] < pts[0][0]] + pts, f)
            if est is not None and at is not None and end is not None:
                est = max(0.0, est - max(0.0, at - end))
            if est is not None and (best is None or est < best):
                best = est
        if best is None:
            return None, None
        return int(best), True

    def _end_voltage(self, dev, rated):
        """Whole-battery volts at which `dev`'s discharge ends (see the module docstring)."""
        learned = _num(self.cutoffs.get(dev))
        if learned is not None:
            return learned
        cell = _num(self.banks.get(dev, {}).get("cutoff_cell_v")) or self.cutoff_cell_v
        if cell:
            return rated / CELL_NOMINAL_V * cell
        return rated * CUTOFF_OF_RATED

    def _estimate(self, dev, pts, f):
        if len(pts) < 3 or pts[-1][0] - pts[0][0] < self.min_span_s:
            return None
        if all(p[1] is not None for p in pts):
            level = [(p[0], p[1]) for p in pts]
            end = self.floor_pct
            min_drop = MIN_DROP_PCT
        else:
            rated = _num(f.get("ups.rating.battery_voltage"))
            if not rated:
                rated = _num(self.banks.get(dev, {}).get("nominal_v"))
            if not rated or rated <= 0 or any(p[2] is None for p in pts):
                return None
            level = [(p[0], p[2]) for p in pts]
            end = self._end_voltage(dev, rated)
            min_drop = rated / CELL_NOMINAL_V * MIN_DROP_CELL_V
        slope, icept = _fit(level)
        span = level[-1][0] - level[0][0]
        if slope is None or -slope * span < min_drop:
            return None  # not discharging measurably (yet): no honest estimate
        left = icept + slope * span - end  # the fitted level now, not the rounded last reading
        return max(0.0, left / -slope)

    def _backhaul_metric(self, metric):
        hit = self._is_backhaul.get(metric)
        if hit is None:
            hit = False
            for pat in self.backhaul:
                if _matches(pat, metric):
                    hit = True
                    break
            if len(self._is_backhaul) < MEMO_MAX:
                self._is_backhaul[metric] = hit
        return hit

    def backhaul_state(self):
        ups = downs = 0
        for f in self._backhaul.values():
            for v in f.values():
                if v is True or v == "up":
                    ups += 1
                else:
                    downs += 1
        if ups + downs == 0:
            return "unknown"
        if downs == 0:
            return "up"
        return "down" if ups == 0 else "degraded"

    def readings(self, at=None):
        """The derived readings as of mono time `at` (None: now), stamped with that time."""
        now = self.clock.now()
        q = rd.GOOD if now is not None else rd.EST_TIME
        mono = self.clock.mono()
        if at is not None:
            if now is not None:
                now -= mono - at
            mono = at
        on_batt = 0 if self.battery_since is None else int(mono - self.battery_since)
        out = [
            rd.Reading(self.site_id, DEVICE, "site.power_source", self.source, "", now, q),
            rd.Reading(self.site_id, DEVICE, "site.on_battery_s", on_batt, "s", now, q),
            rd.Reading(self.site_id, DEVICE, "site.backhaul", self.backhaul_state(), "", now, q),
        ]
        charge = None
        for t in self._power.values():
            c = t[3]
            if c is not None and (charge is None or c < charge):
                charge = c
        if charge is not None:
            out.append(rd.Reading(self.site_id, DEVICE, CHARGE_METRIC, charge, "%", now, q))
        secs, est = self.runtime(at)
        if secs is not None:
            out.append(rd.Reading(self.site_id, DEVICE, "site.runtime", secs, "s", now, q))
            out.append(rd.Reading(self.site_id, DEVICE, ESTIMATED_METRIC, est, "", now, q))
        return out


def _mains(f):
    """True, False or None (no opinion) from one device's facts."""
    v = f.get("mains.present")
    if v is True or v is False:
        return v
    v = f.get("plant.alarm.mains_lost")
    if v is True or v is False:
        return not v
    s = f.get("ups.status")
    if isinstance(s, str):
        tokens = s.split()
        if "OB" in tokens:
            return False
        if "OL" in tokens:
            return True
    s = f.get("output.source")
    if s == "battery":
        return False
    if s == "normal":
        return True
    return None


def _has_token(status, token):
    return isinstance(status, str) and token in status.split()


def _fit(points):
    """Least-squares slope and intercept of [(x, y)], or (None, None) when x does not vary."""
    n = len(points)
    x0 = points[0][0]  # shift x for precision (monotonic seconds can be large)
    sx = sy = sxx = sxy = 0.0
    for x, y in points:
        x -= x0
        sx += x
        sy += y
        sxx += x * x
        sxy += x * y
    d = n * sxx - sx * sx
    if d == 0:
        return None, None
    slope = (n * sxy - sx * sy) / d
    return slope, (sy - slope * sx) / n
