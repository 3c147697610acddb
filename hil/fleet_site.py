"""Simulated sites that speak the contract (docs/mqtt.md), for the fleet view's demo, tests and
load generator: what a real agent would publish, built with the contract's own encoder.

A SimSite has devices polled on their intervals (the series and rates of the example configs,
config/bts-hardened.toml and config/community-wifi.toml), the derived site.* readings after each
poll, alarm events on state changes, a per-site seq that only increases, and a commit interval
that groups readings into batches. Its state (mains, battery, backhaul, clock) is set by hand or
by a scenario (Typhoon). While it is "silent" (link lost) its records pile up as a backlog; when
the link returns it sends, like the agent: alarm events first, then the retained state and alarm
set, then the backlog oldest first, then live data.

Contract 1 or 2 (`contract`, topic prefix site-agent/v1 or /v2), JSON or compact (`fmt`), all
encoded by the agent's own contract module: v2 compact data goes on a compact2.Stream, one per
connection (a new session id at every connect, as the agent's uplink does), each message
counted as received once published, and the retained series table after every message that
numbered new series (agent/core/uplink/outbox.py does the same for the real agent).

This is a model of the agent's output, not the agent: the real agent against emulated devices is
hil/site.py. Values other than power, battery and backhaul are plausible constants with jitter.
"""

import random

from agent.core.uplink import compact2, contract

# Real communes and wards of central Vietnam, where typhoons land (approximate centres, WGS 84).
PLACES = (
    ("Tinh Ky", "Quang Ngai", 15.2463, 108.8069), ("Binh Chau", "Quang Ngai", 15.2260, 108.8740),
    ("Nghia Lo", "Quang Ngai", 15.1230, 108.8090), ("Duc Pho", "Quang Ngai", 14.8110, 108.9560),
    ("Tam Ky", "Quang Nam", 15.5736, 108.4740), ("Hoi An", "Quang Nam", 15.8801, 108.3380),
    ("Tam Hai", "Quang Nam", 15.4720, 108.6530), ("Thanh Khe", "Da Nang", 16.0640, 108.1870),
    ("Son Tra", "Da Nang", 16.1060, 108.2520), ("Hoa Vang", "Da Nang", 15.9870, 108.0460),
    ("Phu Mau", "Thua Thien Hue", 16.5010, 107.5870), ("Thuan An", "Thua Thien Hue", 16.5570,
                                                        107.6440),
    ("Phu Loc", "Thua Thien Hue", 16.2630, 107.8730), ("Dong Ha", "Quang Tri", 16.8160,
                                                       107.1000),
    ("Vinh Linh", "Quang Tri", 17.0310, 107.0020), ("Dong Hoi", "Quang Binh", 17.4690,
                                                    106.6220),
    ("Ky Anh", "Ha Tinh", 18.0680, 106.2960), ("Quy Nhon", "Binh Dinh", 13.7760, 109.2230),
)  # fmt: skip

PREFIX = "site-agent/v1"  # contract 1; contract.default_prefix(version) in general


def _j(rnd, base, spread):
    return round(base * (1 + rnd.uniform(-spread, spread)), 2)


class Device:
    __slots__ = ("id", "interval", "role", "next")

    def __init__(self, dev_id, interval, role):
        self.id = dev_id
        self.interval = float(interval)
        self.role = role
        self.next = 0.0


# (device id, interval s, role): the devices of the example configs.
BTS_DEVICES = (("dc-plant", 15, "plant"), ("ac-ups", 30, "ups"), ("router", 60, "router"),
               ("solar-mppt", 30, "solar"), ("li-bms", 30, "bms"), ("agent", 60, "agent"))
WIFI_DEVICES = (("ups", 30, "megatec"), ("router", 60, "router"), ("gw-tcp", 60, "probe:gateway"),
                ("dns", 60, "probe:dns"), ("web", 300, "probe:web"), ("agent", 60, "agent"))
COMMIT_S = {"bts": 5.0, "wifi": 30.0}
FORMAT = {"bts": contract.FORMAT_JSON, "wifi": contract.FORMAT_COMPACT}
BATCH_MAX = {"bts": 100, "wifi": 50}


class SimSite:
    def __init__(self, site_id, kind="bts", name=None, place=None, rnd=None, fmt=None,
                 start=0.0, seq0=1000, clock_est=False, contract_version=1,
                 integrity=600.0):  # fmt: skip
        self.id = site_id
        self.kind = kind
        self.rnd = rnd or random.Random(site_id)
        place = place or self.rnd.choice(PLACES)
        self.location = {"lat": round(place[2] + self.rnd.uniform(-0.03, 0.03), 4),
                         "lon": round(place[3] + self.rnd.uniform(-0.03, 0.03), 4),
                         "commune": place[0], "province": place[1]}  # fmt: skip
        label = "commune office BTS" if kind == "bts" else "community house Wi-Fi"
        self.name = name or "%s %s" % (place[0], label)
        self.fmt = fmt or FORMAT[kind]
        self.contract = contract_version
        self.prefix = contract.default_prefix(contract_version)
        self.integrity = integrity  # v2 compact: every series carried at least this often
        self.stream = None  # v2 compact: the data stream of the current connection
        self.commit_s = COMMIT_S[kind]
        self.batch_max = BATCH_MAX[kind]
        self.devices = [Device(*d) for d in (BTS_DEVICES if kind == "bts" else WIFI_DEVICES)]
        for d in self.devices:
            d.next = start + self.rnd.uniform(0, d.interval)
        self.next_commit = start + self.rnd.uniform(0, self.commit_s)
        self.seq = seq0
        self.batch = 0
        self.sent = 0  # records handed out in data and alarm batches
        self.last_sent = None  # the newest record time in them
        self.session = "%012x" % self.rnd.getrandbits(48)  # a new one at every connect
        # State that scenarios change.
        self.mains = True
        self.charge = 100.0
        self.full_runtime_s = 4 * 3600.0 if kind == "bts" else 2 * 3600.0
        self.drain_s = self.full_runtime_s  # seconds from full to empty on battery
        self.backhaul = "up"
        self.on_battery_since = None
        self.clock_est = clock_est
        self.silent = False
        # Output waiting to go: records not yet committed, then committed batches.
        self.pending = []
        self.pending_alarms = []
        self.backlog = []  # committed routine records not yet sent (while silent)
        self.backlog_alarms = []
        self.active = {}  # alarm id -> raise event
        self.latest = {}  # (device, metric) -> record: what the retained state holds
        self.scenario = None
        self.last_poll = start

    # --- readings ---------------------------------------------------------------------------
    def _rec(self, device, metric, value, unit, now, latest=True):
        rec = {"site": self.id, "device": device, "metric": metric, "value": value, "unit": unit,
               "time": round(now, 3), "quality": "est" if self.clock_est else "good",
               "seq": self.seq}  # fmt: skip
        self.seq += 1
        if latest:
            self.latest[(device, metric)] = rec
        return rec

    def runtime_s(self):
        return max(0.0, self.charge / 100.0 * self.drain_s)

    def _samples(self, dev, now):
        r = self.rnd
        on_batt = not self.mains
        if dev.role == "plant":
            v = 53.5 if not on_batt else 44.0 + 8.0 * self.charge / 100.0
            out = [("dc.voltage", _j(r, v, 0.002), "V"), ("dc.current", _j(r, 41.0, 0.03), "A"),
                   ("battery.voltage", _j(r, v, 0.002), "V"),
                   ("battery.current", -41.0 if on_batt else _j(r, 1.2, 0.2), "A"),
                   ("battery.temperature", _j(r, 31.0, 0.02), "C"),
                   ("rectifier.current", 0.0 if on_batt else _j(r, 42.0, 0.03), "A"),
                   ("rectifier.count", 4, ""), ("rectifier.utilisation", 0.0 if on_batt else 35.0,
                                                 "%"),
                   ("plant.alarm.mains_lost", on_batt, ""),
                   ("plant.alarm.rectifier_major", False, ""), ("battery.lvd", "connected", ""),
                   ("dc.status", "major" if on_batt else "normal", ""), ("dc.mode", "float", "")]
            for i in range(1, 5):
                out.append(("rectifier.%d.status" % i, "alarm" if on_batt else "normal", ""))
                out.append(("rectifier.%d.current" % i, 0.0 if on_batt else _j(r, 10.5, 0.05),
                            "A"))
            return out
        if dev.role in ("ups", "megatec"):
            status = "OB DISCHRG" if on_batt else "OL"
            out = [("input.voltage", 0.0 if on_batt else _j(r, 228.0, 0.01), "V"),
                   ("output.voltage", _j(r, 230.0, 0.005), "V"),
                   ("ups.load", _j(r, 34.0, 0.05), "%"), ("ups.status", status, ""),
                   ("input.frequency", 0.0 if on_batt else 50.0, "Hz"),
                   ("ups.temperature", _j(r, 35.0, 0.03), "C")]
            if dev.role == "ups":
                out += [("battery.charge", round(self.charge), "%"),
                        ("battery.runtime", int(self.runtime_s()), "s"),
                        ("battery.voltage", round(24.0 + 3.2 * self.charge / 100.0, 2), "V"),
                        ("output.source", "battery" if on_batt else "normal", ""),
                        ("output.frequency", 50.0, "Hz"), ("output.current", _j(r, 3.1, 0.05),
                                                           "A"),
                        ("output.power", _j(r, 680.0, 0.05), "W"),
                        ("battery.status", "low" if self.charge < 30 else "normal", ""),
                        ("battery.temperature", _j(r, 30.0, 0.03), "C")]
            else:
                out += [("battery.voltage", round(22.0 + 5.2 * self.charge / 100.0, 2), "V"),
                        ("input.voltage.fault", _j(r, 180.0, 0.05), "V"),
                        ("ups.beeper", True, ""), ("ups.rating.battery_voltage", 24.0, "V")]
            return out
        if dev.role == "router":
            wan = "up" if self.backhaul == "up" else "down"
            sat = "down" if self.backhaul == "down" else "up"
            return [("router.cpu", _j(r, 12.0, 0.3), "%"), ("router.memory", _j(r, 41.0, 0.05),
                                                             "%"),
                    ("router.uptime", int(now) % 864000, "s"), ("if.wan0.oper", wan, ""),
                    ("if.wan0.in_bps", _j(r, 2.1e6, 0.3) if wan == "up" else 0.0, "bit/s"),
                    ("if.wan0.out_bps", _j(r, 4.5e5, 0.3) if wan == "up" else 0.0, "bit/s"),
                    ("if.sat0.oper", sat, ""), ("if.sat0.in_bps", _j(r, 1.0e4, 0.3), "bit/s"),
                    ("if.sat0.out_bps", _j(r, 4.0e3, 0.3), "bit/s"), ("if.lan0.oper", "up", ""),
                    ("if.lan0.in_bps", _j(r, 3.0e5, 0.3), "bit/s"),
                    ("if.lan0.out_bps", _j(r, 2.0e6, 0.3), "bit/s")]
        if dev.role == "solar":
            return [("solar.voltage", _j(r, 38.0, 0.1), "V"), ("solar.current", _j(r, 4.0, 0.2),
                                                                "A"),
                    ("solar.power", _j(r, 15.0, 0.2), "W"), ("charger.current", _j(r, 0.3, 0.2),
                                                             "A"),
                    ("charger.status", "float", ""), ("load.voltage", _j(r, 53.0, 0.01), "V"),
                    ("load.current", _j(r, 0.2, 0.2), "A"), ("device.temperature", 33.0, "C"),
                    ("battery.voltage", _j(r, 53.2, 0.002), "V"),
                    ("battery.charge", round(self.charge), "%"),
                    ("battery.temperature", _j(r, 30.5, 0.02), "C"),
                    ("battery.current", _j(r, 0.3, 0.2), "A")]
        if dev.role == "bms":
            out = [("battery.voltage", round(49.0 + 4.0 * self.charge / 100.0, 2), "V"),
                   ("battery.current", -20.0 if on_batt else 1.0, "A"),
                   ("battery.charge", round(self.charge), "%"),
                   ("battery.temperature", _j(r, 29.0, 0.02), "C"), ("battery.cycles", 211, ""),
                   ("battery.status", "normal", ""), ("battery.alarm", "", "")]
            for i in range(1, 17):
                out.append(("battery.cell.%d.voltage" % i, _j(r, 3.32, 0.003), "V"))
            return out
        if dev.role == "agent":
            return [("agent.cpu", _j(r, 4.0, 0.3), "%"), ("agent.memory", _j(r, 38.0, 0.02), "%"),
                    ("agent.rss", 31000000, "B"), ("agent.disk_used", 22.0, "%"),
                    ("agent.temperature", _j(r, 48.0, 0.05), "C"), ("agent.uptime", 86400, "s"),
                    ("agent.clock.trusted", not self.clock_est, ""),
                    ("agent.queue.depth", len(self.backlog), ""),
                    ("agent.queue.bytes", 150 * len(self.backlog), "B"),
                    ("agent.queue.used", 0.1, "%"), ("agent.queue.thinned", 0, ""),
                    ("agent.queue.dropped", 0, ""), ("agent.uplink.connected", not self.silent,
                                                     "")]
        name = dev.role.split(":", 1)[1]
        ok = self.backhaul != "down"
        return [("probe.%s.ok" % name, ok, ""), ("probe.%s.latency" % name,
                                                 _j(r, 40.0, 0.3) if ok else None, "ms")]

    def _derived(self, now):
        src = "mains" if self.mains else "battery"
        on_b = 0 if self.on_battery_since is None else int(now - self.on_battery_since)
        out = [("site.power_source", src, ""), ("site.on_battery_s", on_b, "s"),
               ("site.backhaul", self.backhaul, "")]
        if self.kind == "bts":
            out.append(("site.battery_charge", round(self.charge), "%"))
            out.append(("site.runtime", int(self.runtime_s()), "s"))
            out.append(("site.runtime_estimated", False, ""))
        elif not self.mains and on_b >= 60:
            out.append(("site.runtime", int(self.runtime_s()), "s"))
            out.append(("site.runtime_estimated", True, ""))
        return out

    # --- time -------------------------------------------------------------------------------
    def advance(self, now):
        """Poll what is due, raise or clear alarms, commit when due. Returns the messages to
        publish now: [(kind, payload, retain)] (empty while silent)."""
        if self.scenario is not None:
            self.scenario.step(self, now)
        dt = max(0.0, now - self.last_poll)
        self.last_poll = now
        if not self.mains:
            self.charge = max(0.0, self.charge - 100.0 * dt / self.drain_s)
        elif self.charge < 100.0:  # recharging takes about twice as long as the discharge
            self.charge = min(100.0, self.charge + 50.0 * dt / self.drain_s)
        for dev in self.devices:
            if now < dev.next:
                continue
            dev.next = now + dev.interval * (1 + self.rnd.uniform(-0.1, 0.1))
            for metric, value, unit in self._samples(dev, now):
                self.pending.append(self._rec(dev.id, metric, value, unit, now))
            for metric, value, unit in self._derived(now):
                self.pending.append(self._rec("site", metric, value, unit, now))
            self._alarms(now)
        if now < self.next_commit:
            return []
        self.next_commit = now + self.commit_s
        routine, alarms = self.pending, self.pending_alarms
        self.pending, self.pending_alarms = [], []
        if self.silent:
            self.backlog.extend(routine)
            self.backlog_alarms.extend(alarms)
            return []
        out = []
        if alarms:
            out += self._batch(alarms, "alarm", now)
        for i in range(0, len(routine), self.batch_max):
            out += self._batch(routine[i : i + self.batch_max], "data", now)
        if alarms:
            out.append(("alarms", self.alarms_payload(now), True))
        return out

    def use_contract(self, version, fmt=None):
        """Speak contract `version` (1 or 2) in form `fmt` from the next connect on."""
        self.contract = version
        self.prefix = contract.default_prefix(version)
        if fmt is not None:
            self.fmt = fmt
        self.stream = None

    def next_refresh(self, device="site"):
        """v2 compact: when the stream next carries the device's readings in full (its
        integrity refresh, at its first poll from then on), in the sites' clock; None before
        the stream carried any."""
        st = self.stream
        if st is None:
            return None
        last = [st.values[i][1] for i, ser in enumerate(st.series)
                if st.devices[ser[0]] == device and i in st.values and ser[3] != "static"]
        return min(last) + self.integrity if last else None

    def _batch(self, records, kind, now):
        """The messages of one batch: [(kind, payload, retain)]. v2 compact data goes on the
        connection's stream, followed by the retained series table when it numbered new
        series (or a static value changed)."""
        self.batch += 1
        self.sent += len(records)  # data and alarm batches only (the state goes elsewhere)
        newest = max(r["time"] for r in records)
        if self.last_sent is None or newest > self.last_sent:
            self.last_sent = newest
        if kind != "data" or self.contract != 2 or self.fmt != contract.FORMAT_COMPACT:
            return [(kind, contract.encode_batch(self.id, self.batch, records, kind, self.fmt,
                                                 self.contract), False)]  # fmt: skip
        if self.stream is None:
            self.stream = compact2.Stream(bytes.fromhex(self.session), self.id, self.integrity)
        payload, done = self.stream.encode(self.batch, records, now)
        done()  # published at once: the consumer's picture moves with it
        out = [("data", payload, False)]
        if self.stream.table_dirty:
            table, done = self.stream.table_payload()
            done()
            out.append(("series", table, True))
        return out

    def _alarms(self, now):
        want = {}
        if not self.mains:
            if self.kind == "bts":
                want["MAINS_LOST/dc-plant/plant.alarm.mains_lost"] = ("MAINS_LOST", "major")
            else:
                want["UPS_ON_BATTERY/ups/ups.status"] = ("UPS_ON_BATTERY", "major")
            known = self.kind == "bts" or self.on_battery_since is not None
            if self.runtime_s() < 900 and known:
                want["RUNTIME_LOW/site/site.runtime"] = ("RUNTIME_LOW", "critical")
        if self.kind == "bts" and self.charge < 30:
            want["BATTERY_LOW/li-bms/battery.charge"] = ("BATTERY_LOW", "major")
        if self.backhaul == "down":
            want["BACKHAUL_DOWN/site/site.backhaul"] = ("BACKHAUL_DOWN", "critical")
        for aid, (rule, sev) in want.items():
            if aid not in self.active:
                self.active[aid] = self._event(aid, rule, sev, "raise", now)
        for aid in [a for a in self.active if a not in want]:
            ev = self.active.pop(aid)
            self._event(aid, ev["rule"], ev["severity"], "clear", now)

    def _event(self, aid, rule, severity, event, now):
        _, device, metric = aid.split("/", 2)
        ev = self._rec(device, metric, None, "", now, latest=False)
        ev.update({"alarm": aid, "event": event, "rule": rule, "severity": severity,
                   "first_seen": round(now, 3), "last_seen": round(now, 3)})  # fmt: skip
        self.pending_alarms.append(ev)
        return ev

    # --- the retained messages --------------------------------------------------------------
    def birth(self, now):
        return contract.status_payload(contract.ONLINE, version="sim", session=self.session,
                                       time=round(now, 3), info=self.info())  # fmt: skip

    def will(self, reason="connection lost"):
        return contract.status_payload(contract.OFFLINE, reason, info=self.info())

    def info(self):
        return contract.site_info({"name": self.name, "kind": self.kind,
                                   "location": self.location})  # fmt: skip

    def state_payload(self):
        records = sorted(self.latest.values(), key=lambda r: r["seq"])
        return contract.encode_batch(self.id, 0, records, contract.KIND_STATE, self.fmt,
                                     self.contract)  # fmt: skip

    def alarms_payload(self, now):
        active = [self.active[a] for a in sorted(self.active)]
        return contract.alarms_payload(self.id, active, round(now, 3))

    def connect_messages(self, now):
        """What the agent sends after a (re)connect, in the contract's order: the birth (a new
        session, so a new v2 compact stream), alarm events first, the retained state and alarm
        set, then the backlog oldest first."""
        self.session = "%012x" % self.rnd.getrandbits(48)
        self.stream = None
        out = [("status", self.birth(now), True)]
        alarms, self.backlog_alarms = self.backlog_alarms, []
        if alarms:
            out += self._batch(alarms, "alarm", now)
        out.append(("state", self.state_payload(), True))
        out.append(("alarms", self.alarms_payload(now), True))
        backlog, self.backlog = self.backlog, []
        for i in range(0, len(backlog), self.batch_max):
            out += self._batch(backlog[i : i + self.batch_max], "data", now)
        return out


class Typhoon:
    """Mains fails `start_s` after the first step; the battery drains over `drain_s`; the
    backhaul degrades (fibre cut, satellite up) at `degrade_s` and goes down at `down_s` after
    the cut; when the battery is at `silent_at` % the site goes silent (its link dies: last will)
    and stays so for `silent_s`; then mains and the link return and it sends its backlog.
    `repeat` starts it over `repeat_s` after the return. Times in seconds of real time."""

    def __init__(self, start_s=20.0, drain_s=300.0, degrade_s=60.0, down_s=None, silent_at=8.0,
                 silent_s=60.0, repeat=True, repeat_s=90.0):  # fmt: skip
        self.start_s = start_s
        self.drain_s = drain_s
        self.degrade_s = degrade_s
        self.down_s = down_s
        self.silent_at = silent_at
        self.silent_s = silent_s
        self.repeat = repeat
        self.repeat_s = repeat_s
        self.t0 = None
        self.phase = "calm"
        self.silent_since = None
        self.events = []  # (time, phase) for whoever watches

    def step(self, site, now):
        if self.t0 is None:
            self.t0 = now
        t = now - self.t0
        if self.phase == "calm" and t >= self.start_s:
            site.mains = False
            site.on_battery_since = now
            site.drain_s = self.drain_s
            self._to("on battery", now)
        if self.phase == "on battery":
            cut = now - site.on_battery_since
            if self.down_s is not None and cut >= self.down_s:
                site.backhaul = "down"
            elif cut >= self.degrade_s:
                site.backhaul = "degraded"
            if site.charge <= self.silent_at:
                site.silent = True
                self.silent_since = now
                self._to("silent", now)
        elif self.phase == "silent" and now - self.silent_since >= self.silent_s:
            site.mains = True
            site.on_battery_since = None
            site.backhaul = "up"
            site.charge = max(site.charge, 20.0)
            site.silent = False
            self._to("back", now)
        elif self.phase == "back" and self.repeat and now - self.events[-1][0] >= self.repeat_s:
            self.t0 = now - self.start_s + 5.0
            site.charge = 100.0
            self._to("calm", now)

    def _to(self, phase, now):
        self.phase = phase
        self.events.append((now, phase))
