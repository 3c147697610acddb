"""The uplink's decisions that are not the wire (portable): the [uplink] settings, which broker
to try next and when, when to probe, when a session is dead, and what the status messages say.
The board's uplink (agent/board/uplink.py) is driven by it; the host's (agent/host/uplink.py)
holds the same rules inline for now and can call it block by block (docs/mqtt.md is the prose):

    links = Links(cfg.uplink, site_id, random.random, site_info=contract.site_info(cfg.site))
    idx = await links.probe_round()          # the first broker answering TCP, or None
    delay = links.after_attempt(idx, served) # None: no broker answers, probe until one does
    delay = links.arrived(idx)               # a probe found broker idx: the spread, then connect
    if links.preferred(s.idx, now, mono, wake): ...  # on a backup: probes; True: connect now
    why = links.dead(oldest_unacked, last_rx, now)
    await links.drive(connect, serve, pause, log)   # the whole reconnect loop

Invariants (docs/mqtt.md "Delivery"):
- two regimes: while no broker answers TCP (`unreachable`) only probes, a TCP connect and close
  (no TLS, no MQTT) every probe_interval x [0.5, 1.5) s, and the first broker to answer gets a
  full attempt after a delay uniform in [0, reconnect_spread] with the backoff started afresh;
  a broker that answers but refuses or drops the session is retried with the full-jitter
  backoff (reset by the caller only after a connect and an acknowledged, echoed birth).
- on a backup broker the preferred one is probed every probe period; once it answers, a full
  attempt after the spread (the caller checks max_connects_per_min); after that attempt the
  next probe waits preferred_retry x [0.5, 1).
- a session is dead when its oldest publish has waited ack_timeout s for its PUBACK, or nothing
  came from the broker for 1.5 keepalives.
- status messages (birth, last will, goodbye) carry the site's name, kind and location.
Times are monotonic seconds the caller passes in; the probes are the only I/O here.
"""

import asyncio

from agent.core.compat import wait_for
from agent.core.errors import os_reason
from agent.core.log import INFO, WARNING
from agent.core.uplink import contract
from agent.core.uplink.backoff import Backoff, ByteBudget, ConnectLimiter, LinkWatch

WINDOWS = {"hour": 3600.0, "day": 86400.0}


class Links:
    def __init__(self, cfg, site_id, rand, site_info=None, site_mono=None):
        # site_mono: the site's monotonic clock, which keeps byte-budget windows their true
        # length when the wall clock steps (backoff.ByteBudget); None: the wall clock alone.
        self.cfg = cfg
        self.site_id = site_id
        self.rand = rand
        self.info = site_info  # name, kind, location: in every status message
        self.brokers = list(cfg["brokers"])
        self.contract = cfg.get("contract", 1)
        self.prefix = cfg.get("topic_prefix") or contract.default_prefix(self.contract)
        self.fmt = cfg.get("format", "json")
        self.integrity = float(cfg.get("integrity_period", 600))
        self.keepalive = cfg.get("keepalive", 60)
        self.connect_timeout = float(cfg.get("connect_timeout", 15))
        self.echo_timeout = float(cfg.get("echo_timeout", 10))
        self.preferred_retry = float(cfg.get("preferred_retry", 300))
        self.ack_timeout = float(cfg.get("ack_timeout", 8))
        self.backoff = Backoff(rand, cfg.get("backoff_base", 2.0), cfg.get("backoff_cap", 300.0))
        self.limiter = ConnectLimiter(cfg.get("max_connects_per_min", 6))
        self.watch = LinkWatch(rand, cfg.get("probe_interval", 4.0),
                               cfg.get("reconnect_spread", 8.0))  # fmt: skip
        self.budgets = [ByteBudget(b.get("budget_bytes", 0), WINDOWS.get(b.get("budget_window",
                        "day")), site_mono) for b in self.brokers]  # fmt: skip
        self.topics = {}
        for k in contract.TOPIC_KINDS:
            self.topics[k] = contract.topic(self.prefix, site_id, k)
        self.unreachable = False  # the last failure: no broker answered TCP (else it refused)
        self.next_idx = 0  # the broker of the next full attempt
        self.probes = 0
        self.probe_failures = {}  # the last probe round: broker index -> why it did not answer
        self.last_error = None  # why the last attempt or probe failed (uplink state)
        self._next_probe = None  # on a backup: when the preferred broker is probed next
        self._pref_ready = None  # ... it answered: when the full attempt is due
        self._pref_probe = None  # ... the probe running now (a task)
        self._pref_gen = 0  # which probe is current (a cancelled one may end after a new one)

    @staticmethod
    def where(b):
        return "%s (%s:%s)" % (b.get("name") or b["host"], b["host"], b["port"])

    def fmt_for(self, broker):
        """Payload form for a broker: its own `format`, else compact on a metered broker (one
        with a byte budget), else the uplink's `format`."""
        if broker is None:
            return self.fmt
        return broker.get("format") or ("compact" if broker.get("budget_bytes") else self.fmt)

    # --- status messages -------------------------------------------------------------------------
    def birth(self, version, session, time):
        return contract.status_payload(contract.ONLINE, version=version, session=session,
                                       time=time, info=self.info)  # fmt: skip

    def offline(self, reason):
        """The last will ("connection lost") and the goodbyes ("agent stopped", "moved to
        preferred broker")."""
        return contract.status_payload(contract.OFFLINE, reason, info=self.info)

    def echo_missing(self):
        return ("broker did not deliver our birth message back within %gs: an ACL probably "
                "denies %s/%s/#; data kept" % (self.echo_timeout, self.prefix, self.site_id))

    # --- which broker next, and when ---------------------------------------------------------
    def lost(self, why):
        """A served session ended for `why`: a broker that refuses our publishes is there;
        anything else may be the link (probe before the next attempt)."""
        self.unreachable = not why.startswith("broker refused")

    def after_attempt(self, idx, served):
        """An attempt at broker idx failed, or the sessions it led to ended (served). Returns
        the seconds before the next full attempt at self.next_idx, or None when nothing
        answered: probe until a broker does, then arrived()."""
        if self.unreachable:
            return None
        # Answered but refused or dropped us: back off (after a lost session, from the
        # preferred broker again; after a refused connect, the next broker).
        self.next_idx = 0 if served else (idx + 1) % len(self.brokers)
        return self.backoff.next_delay()

    def arrived(self, idx, outage=True):
        """A probe found broker idx answering. Returns the seconds before the full attempt:
        after an outage the spread (and the backoff starts afresh); none at start when a broker
        answered the first round (a technician restarting the agent sees it online at once)."""
        self.next_idx = idx
        self.unreachable = False
        if not outage:
            return 0.0
        self.backoff.reset()
        return self.watch.arrival_delay()

    def serving(self):
        """A session is served from now (or none, at its end): the preferred broker's probes
        start afresh."""
        t = self._pref_probe
        self._pref_probe = None
        self._pref_gen += 1
        if t is not None:
            t.cancel()
        self._next_probe = None
        self._pref_ready = None

    def preferred(self, idx, now, mono, wake):
        """On a backup broker (idx > 0): True when a full attempt at the preferred broker is due
        now (the next probe then waits preferred_retry); else it may start a probe of it (a
        task, wake() when it ends; answered: the attempt after the spread)."""
        if idx == 0 or len(self.brokers) < 2:
            return False
        if self._pref_ready is not None:
            if now < self._pref_ready or self.limiter.wait_time(now) > 0:
                return False
            self._pref_ready = None
            self._next_probe = now + self.preferred_retry * (0.5 + 0.5 * self.rand())
            return True
        if self._pref_probe is None and (self._next_probe is None or now >= self._next_probe):
            self._next_probe = now + self.watch.probe_delay()
            self._pref_gen += 1
            self._pref_probe = asyncio.create_task(self._probe_preferred(self._pref_gen, mono,
                                                                         wake))  # fmt: skip
        return False

    async def _probe_preferred(self, gen, mono, wake):
        ok = False
        try:
            ok = (await self.probe(self.brokers[0])) is None
        finally:
            if gen == self._pref_gen:
                self._pref_probe = None
                if ok:
                    self._pref_ready = mono() + self.watch.arrival_delay()
                wake()

    def next_due(self, now):
        """Seconds until preferred() may have something to do (for a sleep), or None."""
        if self._pref_ready is not None:
            return max(0.05, self._pref_ready - now, self.limiter.wait_time(now))
        t = self._next_probe
        return None if t is None else max(0.05, t - now)

    # --- when a session is dead --------------------------------------------------------------
    def dead(self, oldest_unacked, last_rx, now):
        """Why the session must end, or None: a publish unacknowledged for ack_timeout s (a
        silent cut, seen long before 1.5 keepalives), or no packet for 1.5 keepalives."""
        if oldest_unacked is not None and now - oldest_unacked > self.ack_timeout:
            return "no PUBACK within %gs: the link is presumed dead" % self.ack_timeout
        if last_rx is not None and now - last_rx > self.keepalive * 1.5:
            return "no packet from the broker in %ds (keepalive %ds)" % (now - last_rx,
                                                                          self.keepalive)
        return None

    def ping_due(self, last_tx, now):
        return now - last_tx >= self.keepalive / 2.0

    # --- probes: a TCP connect and close, no TLS, no MQTT ----------------------------------------
    async def probe(self, b):
        """One cheap look at broker b: None when something accepts TCP there within a probe
        period, else why not in words (DNS, refused, no answer, a TLS file missing: no attempt
        could succeed until a technician fixes it)."""
        self.probes += 1
        if not b.get("insecure"):
            for key, what in (("ca_file", "CA file"), ("cert_file", "client certificate"),
                              ("key_file", "client key")):  # fmt: skip
                path = b.get(key)
                if path and not _exists(path):
                    return "TLS setup failed: %s %s not found (uplink.brokers %s)" % (what,
                                                                                     path, key)
        try:
            r, w = await wait_for(asyncio.open_connection(b["host"], b["port"]), self.watch.every)
        except Exception as e:  # no route, refused, timed out, no address: not answering
            return _reason(b, e, self.watch.every)
        why = None
        try:
            # MicroPython's open_connection returns before a refused connect is known as such:
            # a read raises at once then; a listener sends nothing (a timeout) or closes.
            await wait_for(r.read(1), 0.05)
        except asyncio.TimeoutError:
            pass
        except Exception as e:
            why = _reason(b, e, self.watch.every)
        try:
            w.close()
            await w.wait_closed()
        except Exception:
            pass
        return why

    async def probe_round(self):
        """Probe every broker at once: the index of the first to answer (among those answering
        together, the most preferred), or None when none does; why each did not is in
        self.probe_failures (index -> reason). A dead preferred link costs no wait: a backup
        that answers first is taken, and the preferred one probed from there."""
        n = len(self.brokers)
        res = [False] * n  # False: still probing; None: answered; text: why not
        ev = asyncio.Event()

        async def one(i):
            why = "probe cancelled"
            try:
                why = await self.probe(self.brokers[i])
            finally:
                res[i] = why
                ev.set()

        tasks = [asyncio.create_task(one(i)) for i in range(n)]
        try:
            while True:
                for i in range(n):
                    if res[i] is None:
                        return i
                if False not in res:
                    self.probe_failures = dict(enumerate(res))
                    return None
                ev.clear()
                await ev.wait()
        finally:
            for i in range(n):
                if res[i] is False:
                    tasks[i].cancel()

    async def until_answer(self, pause, log, quiet=False):
        """While no broker answers TCP: probe them all every probe period; pause(seconds,
        False) waits (a technician's drain may cut it short). The index of the first to answer."""
        if not quiet:
            log.warning("uplink", "no broker answers; probing", every_s=self.watch.every)
        while True:
            await pause(0.0, False)
            idx = await self.probe_round()
            if idx is not None:
                return idx
            delay = self.watch.probe_delay()
            # One line per broker and reason, then a count now and then (Log.repeating): a
            # round every few seconds. The reason is in the key: a change (DNS fixed, now
            # refused) is a new line.
            for i in range(len(self.brokers)):
                why = self.probe_failures.get(i)
                if why:
                    self.last_error = why
                    log.repeating(("uplink", "connect", i, why), WARNING, "uplink",
                                  "connection attempt failed", broker=self.where(self.brokers[i]),
                                  reason=why, next_attempt_s=round(delay, 2))  # fmt: skip
            await pause(delay, False)

    async def drive(self, connect, serve, pause, log):
        """The reconnect loop, until cancelled: connect(idx) -> a ready session or None (setting
        `unreachable` when nothing answered TCP); serve(s) -> None when s ended (lost() called),
        or the session that took over; pause(seconds, limit) waits, for the connect limiter too
        when `limit`. At start a broker that answers at once is taken at once; if none does,
        probe and come in spread, as after a loss (a dead preferred link costs no timeout)."""
        await pause(0.0, False)
        idx = await self.probe_round()
        if idx is None:
            delay = self.arrived(await self.until_answer(pause, log))
        else:
            delay = self.arrived(idx, outage=False)
        while True:
            await pause(delay, True)
            idx = self.next_idx
            s = await connect(idx)
            served = s is not None
            while s is not None:
                s = await serve(s)
            delay = self.after_attempt(idx, served)
            if delay is None:
                delay = self.arrived(await self.until_answer(pause, log))
                log.info("uplink", "a broker answers again", broker=self.where(
                    self.brokers[self.next_idx]), delay_s=round(delay, 2))  # fmt: skip
                continue
            log.repeating(("uplink", "next"), INFO, "uplink", "next attempt",
                          broker=self.where(self.brokers[self.next_idx]),
                          delay_s=round(delay, 2))  # fmt: skip


def _exists(path):
    import os

    try:
        os.stat(path)
        return True
    except OSError:
        return False


def _reason(b, e, timeout):
    """Why a TCP connect to broker b failed, in words (portable: an errno, not an exception
    class; a negative one is the resolver's on both runtimes)."""
    if isinstance(e, asyncio.TimeoutError):
        return "no answer from %s:%s within %gs" % (b["host"], b["port"], timeout)
    code = getattr(e, "errno", None)
    if code is None and getattr(e, "args", None) and isinstance(e.args[0], int):
        code = e.args[0]
    if isinstance(code, int) and code < 0:
        return "cannot resolve the host name %s (DNS: %s)" % (b["host"], getattr(
            e, "strerror", None) or code)  # fmt: skip
    if code in (111, 61, 10061):  # ECONNREFUSED: Linux and lwIP, BSD, Windows
        return "connection refused: nothing listens on %s:%s" % (b["host"], b["port"])
    if isinstance(e, OSError):
        return os_reason(e)
    return str(e) or e.__class__.__name__
