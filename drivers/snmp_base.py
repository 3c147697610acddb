"""What the two SNMP drivers share (portable): config, the poll's timing, profile detection and
re-detection, identification, and the checks on what a profile read. drivers/snmp.py (pysnmp,
v1/v2c/v3) and drivers/snmp_lite.py (the portable BER client, v1/v2c) differ only in how they
send requests; everything a user sees is decided here, so both behave the same.

Config (device["snmp"]): host, port (161), version, community, profile ("auto" or a name from
drivers.profiles), retries (1). device["timeout"] is the poll's budget: each request gets
1 + retries tries of try_timeout(timeout, retries) seconds (drivers/proto/snmp_client.py).

A subclass implements open() and close() and:
    await self.fetch(gets, walks, types) -> {oid: value}   GET the scalars, walk the columns,
                                                            BER tags into `types`

Identification (first poll, and every re-detection): one GET of sysDescr, sysObjectID, sysUpTime
and, with profile "auto", the AUTO probes. The next good poll carries it upstream as readings:
device.profile, device.identified, device.object_id, device.description; a remark says it in the
log and in `poll`. With "auto", identified means a device MIB answered; a device that answers
none of them is read through the generic "router" (or "system") view and reported as not
identified (NUT's "No supported device detected"), with its sysObjectID and sysDescr.

Re-detection ("auto" only): when sysUpTime goes back (the device rebooted), on the first poll
after the device did not answer, when the profile in use reads nothing, and, while the generic
view is in use, on every poll (the device-MIB probes ride along in the poll's GET: a UPS card
that answers MIB-II before its UPS-MIB while booting is picked up as soon as the UPS-MIB
answers). A change of profile is a warning remark.

A profile that reads nothing is not a good poll: DeviceError naming the profile and the device
(sysObjectID, sysDescr). A value of the wrong SNMP type is left out by the engine, counted in
`wrong_types`, and remarked on once per OID.
"""

from agent.core.compat import monotonic
from agent.core.errors import ConfigError, DeviceError, DeviceTimeout
from drivers import profiles
from drivers.base import Driver
from drivers.profiles import engine
from drivers.profiles.system import SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME
from drivers.proto.snmp_client import reserve, try_timeout, try_wait

IDENTITY = (SYS_DESCR, SYS_OBJECT_ID, SYS_UPTIME)
MAX_DESCR = 120  # characters of sysDescr kept in readings and messages


class SnmpBase(Driver):
    VERSIONS = ("1", "2c", "3")

    def __init__(self, device):
        Driver.__init__(self, device)
        cfg = device.get("snmp")
        if not isinstance(cfg, dict) or not cfg.get("host"):
            raise ConfigError("devices[%s].snmp.host: expected a host name, got nothing" % self.id)
        self.cfg = cfg
        self.host = cfg["host"]
        self.port = int(cfg.get("port", 161))
        self.version = str(cfg.get("version", "2c"))
        if self.version not in self.VERSIONS:
            raise ConfigError(
                "devices[%s].snmp.version: expected %s, got %r"
                % (self.id, " or ".join(self.VERSIONS), self.version)
            )
        self.retries = int(cfg.get("retries", 1))
        self.timeout = float(device.get("timeout", 2.0))  # the poll's budget
        self.try_s = try_timeout(self.timeout, self.retries)  # poll() sets it from its budget
        self.profile_name = cfg.get("profile", "auto")
        if self.profile_name != "auto" and self.profile_name not in profiles.PROFILES:
            raise ConfigError(
                "devices[%s].snmp.profile: unknown %r" % (self.id, self.profile_name)
            )
        self.auto = self.profile_name == "auto"
        self.where = "snmp %s:%d" % (self.host, self.port)
        self.chosen = None if self.auto else self.profile_name  # profile name in use
        self.profile = None if self.auto else profiles.lookup(self.profile_name)
        self.identified = not self.auto
        self.identity = {}  # what the last identification read: descr, object_id
        self.redetect = "first poll"  # why the next poll identifies the device, or None
        self.announce = False  # identification readings still to send
        self.last_uptime = None  # sysUpTime ticks of the last poll ("auto")
        self.state = {}  # the engine's memory between polls (counters, last uptime)
        self.wrong_types = 0  # values left out for their SNMP type, over the driver's life
        self._wrong_seen = {}
        self.requests = 0  # SNMP requests sent, for bench/ and the console
        self.deadline = None  # monotonic time by which the poll's tries must end
        self.poll_end = None  # monotonic time the poll's budget ends

    async def fetch(self, gets, walks, types):
        raise NotImplementedError

    def try_wait(self, tries_left):
        """Seconds the next try may wait (see snmp_client.try_wait)."""
        return try_wait(self.try_s, self.deadline, tries_left)

    # --- Driver ------------------------------------------------------------------------------
    async def poll(self, budget_s):
        # The tries share the device's timeout, or the caller's budget if that is shorter, and
        # end a reserve before it: the cause of a silence is ours to tell, not the base's "no
        # answer within".
        budget = min(budget_s, self.timeout)
        self.try_s = try_timeout(budget, self.retries)
        self.poll_end = monotonic() + budget
        self.deadline = self.poll_end - reserve(budget)
        return await Driver.poll(self, budget_s)

    async def read(self):
        try:
            return await self._read()
        except DeviceTimeout:
            self.redetect = "back after no answer"
            raise

    async def _read(self):
        if self.redetect:
            await self._identify(self.redetect)
        samples, values = await self._read_profile()
        if self.auto:
            reason = self._redetect_reason(samples, values)
            if reason:
                old = self.chosen
                await self._identify(reason)
                if self.chosen != old:
                    samples, values = await self._read_profile()
        if not samples:
            raise DeviceError(
                "%s: profile %s read nothing: the device answered none of its objects (%s)"
                % (self.where, self.chosen, self._who())
            )
        if self.announce:
            self.announce = False
            samples = samples + self._identity_samples()
        return samples

    # --- reading ------------------------------------------------------------------------------
    async def _read_profile(self):
        gets, walks = engine.plan(self.profile)
        if self.auto:
            gets = list(gets)
            extra = [SYS_UPTIME]
            if self.chosen in profiles.GENERIC:
                extra.extend(profiles.probes(generic=False))
            for oid in extra:
                if oid not in gets:
                    gets.append(oid)
        types = {}
        values = await self.fetch(gets, walks, types)
        self.raw = values
        samples = engine.evaluate(self.profile, values, self.state, monotonic(), types)
        self._count_wrong(self.state.get("wrong_type", ()))
        return samples, values

    def _redetect_reason(self, samples, values):
        """Why the device must be identified again now, or None."""
        ticks = values.get(SYS_UPTIME)
        last, self.last_uptime = self.last_uptime, ticks if isinstance(ticks, int) else None
        if isinstance(ticks, int) and isinstance(last, int) and ticks < last:
            return "the device rebooted (sysUpTime went back from %ds to %ds)" % (
                last // 100,
                ticks // 100,
            )
        if self.chosen in profiles.GENERIC:
            name, row = profiles.choose(values)
            if name is not None and name not in profiles.GENERIC:
                return "%s answers now" % row[2]
        if not samples:
            return "profile %s read nothing" % self.chosen
        return None

    def _count_wrong(self, wrong):
        for oid, metric, tag in wrong:
            self.wrong_types += 1
            if oid in self._wrong_seen:
                continue
            self._wrong_seen[oid] = True
            self.remark(
                "warning",
                "%s: %s (%s) answered %s, not the type its MIB defines: left out"
                % (self.where, oid, metric, engine.type_name(tag)),
            )

    # --- identification -----------------------------------------------------------------------
    async def _identify(self, reason):
        gets = list(IDENTITY)
        if self.auto:
            gets.extend(o for o in profiles.probes() if o not in gets)
        answers = await self.fetch(gets, (), {})
        self.redetect = None
        self.announce = True
        descr = engine.text(answers.get(SYS_DESCR, ""))[:MAX_DESCR]
        oid = answers.get(SYS_OBJECT_ID)
        self.identity = {"descr": descr, "object_id": oid if isinstance(oid, str) else ""}
        ticks = answers.get(SYS_UPTIME)
        if isinstance(ticks, int):
            self.last_uptime = ticks
        if not self.auto:
            self.remark("info", "%s: profile %s (configured); %s" % (self.where, self.chosen,
                                                                   self._who()))  # fmt: skip
            return
        name, row = profiles.choose(answers)
        if name is None:
            raise DeviceError(
                "%s: profile auto: the device answers none of the probes (%s)"
                % (self.where, self._who())
            )
        old = self.chosen
        self.chosen = name
        self.profile = profiles.lookup(name)
        self.identified = name not in profiles.GENERIC
        self.state = {}
        if old is not None and old != name:
            self.remark("warning", "%s: profile %s -> %s: %s" % (self.where, old, name, reason))
        elif old == name and reason != "first poll":
            self.remark("info", "%s: profile %s kept after re-detection: %s" % (self.where, name,
                                                                            reason))  # fmt: skip
        if old == name:
            return
        if self.identified:
            self.remark(
                "info",
                "%s: identified as %s (%s answered); %s" % (self.where, name, row[2], self._who()),
            )
        else:
            self.remark(
                "warning",
                "%s: no supported device detected: none of %s answered; %s; reading it as a "
                "generic SNMP device (profile %s). Set profile = \"router\" if it is one."
                % (self.where, profiles.KNOWN_MIBS, self._who(), name),
            )

    def _who(self):
        ident = self.identity
        if not ident:
            return "not identified yet"
        return "sysObjectID %s, sysDescr %r" % (
            ident.get("object_id") or "(none)",
            ident.get("descr", ""),
        )

    def _identity_samples(self):
        out = [
            ("device.profile", self.chosen, ""),
            ("device.identified", self.identified, ""),
        ]
        if self.identity.get("object_id"):
            out.append(("device.object_id", self.identity["object_id"], ""))
        if self.identity.get("descr"):
            out.append(("device.description", self.identity["descr"], ""))
        return out
