"""What the agent can be asked and told, in one place (portable).

The technician's console and the MQTT command topic both work through this object, so the two
always agree on what a command means. Every method returns plain data (dicts, lists, numbers,
strings) that can be printed or encoded as JSON; nothing here returns a secret.
"""

from agent import __version__
from agent.core.compat import monotonic, wall_time


class AgentFacade:
    def __init__(self, cfg, loop, queue, uplink=None, clock=None, log=None):
        self.cfg = cfg  # SiteConfig
        self.loop = loop  # agent.core.poll.loop.Loop
        self.queue = queue
        self.uplink = uplink  # has .state() -> dict, or None when there is no uplink
        self.clock = clock  # has .trusted() and .state() once agent.core.clock exists; else None
        self.log = log
        self.alarms = None  # the alarm engine, when configured: has .active() -> [dict]
        self.started = monotonic()

    def status(self):
        up = self.uplink.state() if self.uplink is not None else None
        stale = [d for d, st in self.loop.sched.devices.items() if st.stale]
        return {
            "site": self.cfg.site["id"],
            "kind": self.cfg.site["kind"],
            "version": __version__,
            "uptime_s": int(monotonic() - self.started),
            "time": wall_time(),
            "clock": self.clock.state() if self.clock is not None else "system",
            "devices": len(self.loop.drivers),
            "stale": stale,
            "uplink": up,
            "store_error": self.loop.store_error,
            "active_alarms": self.active_alarms(),
        }

    def devices(self):
        out = []
        now = monotonic()
        for dev_id in self.loop.sched.order:
            st = self.loop.sched.state(dev_id)
            drv = self.loop.drivers[dev_id]
            out.append({
                "id": dev_id,
                "driver": drv.info().get("name"),
                "interval": st.interval,
                "stale": st.stale,
                "reason": st.reason,
                "polls": st.polls,
                "errors": st.errors,
                "last_poll_ago": None if st.last_poll is None else now - st.last_poll,
                "last_ok_ago": None if st.last_ok is None else now - st.last_ok,
                "last_duration": st.last_duration,
                "running": st.running(),
            })
        return out

    def readings(self, device=None):
        out = []
        for key in sorted(self.loop.latest):
            if device is not None and key[0] != device:
                continue
            out.append(self.loop.latest[key].to_dict())
        return out

    def queue_stats(self):
        return self.queue.stats()

    def config_redacted(self):
        return self.cfg.redacted()

    def active_alarms(self):
        return self.alarms.active() if self.alarms is not None else []

    def has_device(self, dev_id):
        return dev_id in self.loop.drivers

    def poll_now(self, dev_id=None):
        """Schedule an immediate poll of one device (or all); raises KeyError for an unknown id."""
        if dev_id is not None and dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        self.loop.poll_now(dev_id)

    async def poll_device(self, dev_id):
        """Poll one device now and return {"ok", "error", "samples", "raw", "duration"}."""
        if dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        res = await self.loop.poll_device(dev_id)
        return {
            "ok": res.ok,
            "error": res.error,
            "samples": [list(s) for s in res.samples],
            "raw": res.raw,
            "duration": res.duration,
        }

    def set_interval(self, dev_id, seconds):
        """Change a device's poll interval until restart. Raises KeyError / ValueError."""
        if dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        seconds = float(seconds)
        if not (1.0 <= seconds <= 86400.0):
            raise ValueError("interval must be between 1 and 86400 seconds")
        self.loop.set_interval(dev_id, seconds)
        return seconds

    def log_tail(self, n=20):
        return self.log.tail(n) if self.log is not None else []
