"""A reading: one value of one metric of one device at one site, at one time.

Drivers return *samples* (metric, value, unit); the runner stamps them into Readings with the site,
device, time and quality. The queue assigns `seq` when the reading is appended: a per-site number
that only increases, survives restarts and is never reused, so the operations centre can use
(site, seq) to drop duplicates.
"""

# Quality flags. A reading is GOOD when the device answered and the clock was trusted.
GOOD = "good"
STALE = "stale"  # the device did not answer; value is the last good one or None
EST_TIME = "est"  # the value is good but its time was estimated (clock not trusted when taken)

QUALITIES = (GOOD, STALE, EST_TIME)


class Reading:
    __slots__ = ("site", "device", "metric", "value", "unit", "time", "quality", "seq")

    def __init__(self, site, device, metric, value, unit="", time=None, quality=GOOD, seq=None):
        self.site = site
        self.device = device
        self.metric = metric
        self.value = value
        self.unit = unit
        self.time = time  # seconds since the Unix epoch, or None when no trusted time exists yet
        self.quality = quality
        self.seq = seq

    def to_dict(self):
        return {
            "site": self.site,
            "device": self.device,
            "metric": self.metric,
            "value": self.value,
            "unit": self.unit,
            "time": self.time,
            "quality": self.quality,
            "seq": self.seq,
        }

    @classmethod
    def from_dict(cls, d):
        return cls(
            d["site"],
            d["device"],
            d["metric"],
            d["value"],
            d.get("unit", ""),
            d.get("time"),
            d.get("quality", GOOD),
            d.get("seq"),
        )

    def key(self):
        """Identity of the series this reading belongs to."""
        return (self.device, self.metric)

    def __eq__(self, other):
        return isinstance(other, Reading) and self.to_dict() == other.to_dict()

    def __repr__(self):
        return "Reading(%s/%s %s=%r%s q=%s seq=%r)" % (
            self.site,
            self.device,
            self.metric,
            self.value,
            (" " + self.unit) if self.unit else "",
            self.quality,
            self.seq,
        )


def stamp(samples, site, device, now, quality=GOOD):
    """Turn a driver's samples [(metric, value, unit), ...] into Readings taken at `now`."""
    out = []
    for metric, value, unit in samples:
        out.append(Reading(site, device, metric, value, unit, now, quality))
    return out
