"""Readings -> site state -> alarm events, in one call per poll result (portable).

    mon = SiteMonitor(site_id, kind, clock, alarms_cfg, active_file=JsonFile(path))
    derived, events = mon.record(dev_id, ok, readings)   # from Loop._record, per poll result

`derived` are the site-state Readings (device "site") to record like any other; `events` are alarm
event dicts to append to the queue's alarm lane (each already stamped with time or boot + mono).
`mon.engine.active()` is the active set for the retained topic; `mon.take_changed()` says whether
it changed since the last call (publish it then).

Order inside record() is fixed, so the event sequence is deterministic: reachability first (this
poll's result), then the device's own readings, then the derived site readings.
Invariant: the active set is saved (JsonFile, atomically) whenever an event was emitted and only
then, so a restart neither re-raises active alarms nor wears flash on every reading.
"""

from agent.core.errors import os_reason
from agent.core.log import ERROR, INFO
from agent.core.monitor.alarms import AlarmEngine, rules_for
from agent.core.monitor.sitestate import SiteState


class SiteMonitor:
    def __init__(self, site_id, kind, clock, alarms_cfg=None, backhaul=None, active_file=None,
                 log=None, banks=None):  # fmt: skip
        self.clock = clock
        self.log = log
        self._save_failed = False  # the last save failed: say when one works again
        self.engine = AlarmEngine(site_id, rules_for(kind, alarms_cfg), clock, log)
        if backhaul:
            self.site = SiteState(site_id, clock, backhaul=backhaul, banks=banks)
        else:
            self.site = SiteState(site_id, clock, banks=banks)
        self.active_file = active_file
        self.pending = []  # events from restore(), handed out with the first record()
        if active_file is not None:
            self.pending = self.engine.restore(active_file.load())

    def record(self, device, ok, readings, at=None):
        """at: the clock's mono() when the readings were taken (None: now)."""
        events, self.pending = self.pending, []
        events.extend(self.engine.poll(device, ok))
        self.site.feed(readings, at)
        events.extend(self.engine.feed(readings))
        derived = self.site.readings(at)
        events.extend(self.engine.feed(derived))
        if events and self.active_file is not None:
            try:
                self.active_file.save(self.engine.snapshot())
                if self._save_failed and self.log is not None:
                    self.log.repeating(("alarm", "saved"), INFO, "alarm",
                                       "active alarms saved again")  # fmt: skip
                self._save_failed = False
            except OSError as e:  # alarms still flow; only restart memory is at risk
                self._save_failed = True
                if self.log is not None:
                    self.log.repeating(("alarm", "save"), ERROR, "alarm",
                                       "cannot save active alarms",
                                       error=os_reason(e))  # fmt: skip
        return derived, events

    def take_changed(self):
        changed = self.engine.changed
        self.engine.changed = False
        return changed
