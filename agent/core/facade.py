"""What the agent can be asked and told, in one place (portable).

The technician's console and the MQTT command topic both work through this object, so the two
always agree on what a command means. Every method returns plain data (dicts, lists, numbers,
strings) that can be printed or encoded as JSON; nothing here returns a secret.
"""

from agent import __version__
from agent.core.compat import monotonic, wall_time

SITE_DEVICE = "site"  # the derived site state's device id (agent/core/monitor/sitestate.py)


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
            "site_state": self.site_state(),
        }

    def site_state(self):
        """What the site itself is doing, from the derived readings of device "site"
        (agent/core/monitor/sitestate.py): {"power_source", "on_battery_s", "runtime_s",
        "runtime_estimated", "battery_charge", "backhaul"}, each None until known. A runtime
        left over from an earlier state (the derived set no longer has it) is not reported."""
        latest = self.loop.latest

        def get(metric):
            return latest.get((SITE_DEVICE, metric))

        source = get("site.power_source")
        runtime = get("site.runtime")
        if runtime is not None and source is not None and runtime.time != source.time:
            runtime = None  # stamped by an earlier poll: no longer part of the site state
        out = {}
        for key, r in (("power_source", source), ("on_battery_s", get("site.on_battery_s")),
                       ("runtime_s", runtime), ("battery_charge", get("site.battery_charge")),
                       ("backhaul", get("site.backhaul"))):  # fmt: skip
            out[key] = r.value if r is not None else None
        est = get("site.runtime_estimated")
        out["runtime_estimated"] = est.value if est is not None and runtime is not None else None
        return out

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
        """A polled device, or "site", the device the derived site state reports under."""
        return dev_id in self.loop.drivers or dev_id == SITE_DEVICE

    def poll_now(self, dev_id=None):
        """Schedule an immediate poll of one device (or all: None, or "site", whose state comes
        from every device); raises KeyError for an unknown id."""
        if dev_id == SITE_DEVICE:
            dev_id = None
        if dev_id is not None and dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        self.loop.poll_now(dev_id)

    async def poll_device(self, dev_id):
        """Poll one device now and return {"ok", "error", "samples", "raw", "duration"}. A poll
        of the device already running is waited for, not doubled. "site" polls every device
        and returns the derived site readings as its samples."""
        if dev_id == SITE_DEVICE:
            return await self._poll_site()
        if dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        res = await self.loop.poll_fresh(dev_id)
        return {
            "ok": res.ok,
            "error": res.error,
            "samples": [list(s) for s in res.samples],
            "raw": res.raw,
            "duration": res.duration,
        }

    async def _poll_site(self):
        import asyncio

        started = monotonic()
        ids = list(self.loop.drivers)
        results = await asyncio.gather(*[self.loop.poll_fresh(d) for d in ids])
        stale = [d for d, r in zip(ids, results) if not r.ok]
        samples = [[r.metric, r.value, r.unit] for r in self._site_readings()]
        return {
            "ok": not stale,
            "error": ("stale: " + ", ".join(stale)) if stale else None,
            "samples": samples,
            "raw": {"devices polled": len(ids), "stale": ", ".join(stale) or "none"},
            "duration": monotonic() - started,
        }

    def _site_readings(self):
        return [self.loop.latest[k] for k in sorted(self.loop.latest) if k[0] == SITE_DEVICE]

    def set_interval(self, dev_id, seconds, by="?", where="?"):
        """Change a device's poll interval until restart, under the config's own rules: the
        range of [[devices]] interval, and more than the device's poll budget (its timeout).
        Logged with who asked and from where. Raises KeyError / ValueError."""
        if dev_id not in self.loop.drivers:
            raise KeyError(dev_id)
        from agent.core.config.checker import Checker
        from agent.core.config.tables import DEVICE

        seconds = float(seconds)
        ck = Checker("interval", None, None)
        ck.value(seconds, dict(DEVICE)["interval"], ())
        if ck.errors:
            raise ValueError("interval: " + ck.errors[0].split(": ", 2)[-1])
        st = self.loop.sched.state(dev_id)
        if not seconds > st.budget:
            raise ValueError(
                "interval: expected more than the poll budget of %s (timeout %gs), got %g"
                % (dev_id, st.budget, seconds)
            )
        was = st.interval
        self.loop.set_interval(dev_id, seconds)
        self.changed("interval changed", by, where, device=dev_id, interval=seconds, was=was)
        return seconds

    def changed(self, what, by, where, **kv):
        """One log line for a change a person made from outside (console or MQTT command)."""
        if self.log is not None:
            self.log.info("command", what, by=by, where=where, **kv)

    def log_tail(self, n=20):
        return self.log.tail(n) if self.log is not None else []
