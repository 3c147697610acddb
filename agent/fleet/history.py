"""A site's last day of battery and power, in fixed time buckets: bounded, preallocated, and the
same whatever order the records arrive in.

Each bucket (default 5 minutes, 288 for a day) keeps the worst of what fell into it:
    charge     lowest site.battery_charge, in half percent (1 byte)
    voltage    lowest battery.voltage of the site's first battery device, in 10 mV (2 bytes)
    runtime    lowest site.runtime, in whole minutes (2 bytes)
    source     worst site.power_source: none < mains < unknown < solar < generator < battery
    backhaul   worst site.backhaul: none < up < unknown < degraded < down
Min and max do not care about order or repeats, so a duplicate changes nothing and a backlog
that arrives hours late fills its own buckets without disturbing newer ones: the plot after an
outage shows the outage. 7 bytes a bucket: 2,016 bytes of data for a day at 5 minutes (about
2.2 KB with the two containers), 22 MB for 10,000 sites, allocated on a site's first record.
A record newer than the newest bucket moves the window on (clearing what it passes over); one
older than the window, or with no time, is not kept here.
"""

from array import array

NONE8 = 255
NONE16 = 65535
SOURCES = ("", "mains", "unknown", "solar", "generator", "battery")
BACKHAULS = ("", "up", "unknown", "degraded", "down")
_SOURCE_CODE = {name: i for i, name in enumerate(SOURCES) if name}
_BACKHAUL_CODE = {name: i for i, name in enumerate(BACKHAULS) if name}
# Byte offsets of the one-byte fields inside a bucket's 3 bytes.
_CHARGE, _SOURCE, _BACKHAUL = 0, 1, 2
# Which records feed which field; battery.voltage is taken from one device (see Site).
FIELDS = ("site.battery_charge", "site.runtime", "site.power_source", "site.backhaul",
          "battery.voltage")  # fmt: skip


class History:
    __slots__ = ("step", "size", "head", "small", "wide")

    def __init__(self, step=300.0, size=288):
        self.step = float(step)
        self.size = int(size)
        self.head = None  # bucket number (time // step) of the newest bucket
        self.small = bytearray(bytes((NONE8, 0, 0)) * self.size)  # charge, source, backhaul
        self.wide = array("H", [NONE16]) * (2 * self.size)  # voltage, runtime

    def _slot(self, t):
        """Index of the bucket for time t, moving the window on if needed; None if too old."""
        b = int(t // self.step)
        if self.head is None:
            self.head = b
        elif b > self.head:
            for k in range(self.head + 1, min(b, self.head + self.size) + 1):
                self._clear(k % self.size)
            self.head = b
        elif b <= self.head - self.size:
            return None
        return b % self.size

    def _clear(self, i):
        self.small[3 * i + _CHARGE] = NONE8
        self.small[3 * i + _SOURCE] = 0
        self.small[3 * i + _BACKHAUL] = 0
        self.wide[2 * i] = NONE16
        self.wide[2 * i + 1] = NONE16

    def add(self, t, metric, value):
        """Fold one value at time t into its bucket. Values of the wrong type are ignored."""
        if metric == "site.power_source" or metric == "site.backhaul":
            table = _SOURCE_CODE if metric == "site.power_source" else _BACKHAUL_CODE
            code = table.get(value) if isinstance(value, str) else None
            if code is None:
                return
            i = self._slot(t)
            if i is not None:
                off = 3 * i + (_SOURCE if metric == "site.power_source" else _BACKHAUL)
                if code > self.small[off]:
                    self.small[off] = code
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            return
        if value in (float("inf"), float("-inf")):
            return
        if metric == "site.battery_charge":
            code = int(round(min(max(value, 0.0), 100.0) * 2))
            i = self._slot(t)
            if i is not None and code < self.small[3 * i + _CHARGE]:
                self.small[3 * i + _CHARGE] = code
        elif metric == "battery.voltage" or metric == "site.runtime":
            if metric == "battery.voltage":
                code, k = min(int(round(abs(value) * 100)), NONE16 - 1), 0
            else:
                code, k = min(int(round(max(value, 0) / 60.0)), NONE16 - 1), 1
            i = self._slot(t)
            if i is not None and code < self.wide[2 * i + k]:
                self.wide[2 * i + k] = code

    def series(self, now):
        """The day up to now, oldest bucket first: {"step", "start", "charge", "voltage",
        "runtime", "source", "backhaul"}; None where nothing was heard."""
        end = int(now // self.step)
        start = end - self.size + 1
        out = {"step": self.step, "start": start * self.step, "charge": [], "voltage": [],
               "runtime": [], "source": [], "backhaul": []}  # fmt: skip
        for b in range(start, end + 1):
            if self.head is None or b > self.head or b <= self.head - self.size:
                for k in ("charge", "voltage", "runtime", "source", "backhaul"):
                    out[k].append(None)
                continue
            i = b % self.size
            c = self.small[3 * i + _CHARGE]
            v, r = self.wide[2 * i], self.wide[2 * i + 1]
            out["charge"].append(None if c == NONE8 else c / 2.0)
            out["voltage"].append(None if v == NONE16 else v / 100.0)
            out["runtime"].append(None if r == NONE16 else r * 60)
            out["source"].append(SOURCES[self.small[3 * i + _SOURCE]] or None)
            out["backhaul"].append(BACKHAULS[self.small[3 * i + _BACKHAUL]] or None)
        return out
