"""MQTT uplink on paho-mqtt (host): several brokers in priority order, QoS 1 batches tied to the
queue, paced backlog, byte budgets, reconnect backoff and commands. Contract: docs/mqtt.md.

Threading: each connection ("session") is one paho client run by the asyncio loop
(mqtt_client.LoopDriver: no paho network thread; only the blocking connect runs in a thread of its
own, which ends with it). Paho callbacks are handed on with call_soon_threadsafe, so the queue,
the budgets and the session state are only touched from the asyncio thread. A new client is made
for every connection (clean session): redelivery is ours, from the queue, not paho's.
Invariants:
- what is sent, in what order and when a batch is acked to the queue is decided by the portable
  Outbox (agent/core/uplink/outbox.py), shared with the board's uplink; this module owns the
  paho connections. After any disconnect or broker switch the Outbox requeues what was in flight.
- data flows only after the broker acknowledged our birth message AND delivered it back to us on
  our own status topic (the echo). MQTT 3.1.1 brokers acknowledge a publish that an ACL silently
  drops, so the echo is what tells us our topics are writable; without it we keep the data.
- the backoff is reset only after a connect plus that first acknowledged (and echoed) publish,
  or when a probe finds a broker answering again after none did; full connection attempts
  (returns to the preferred broker included) never exceed max_connects_per_min.
- reconnecting (docs/mqtt.md): while no broker answers TCP (a cut link, a broker host down) the
  uplink only probes, every probe_interval x [0.5, 1.5) s, with a TCP connect and close (no TLS,
  no MQTT); the first broker to answer, in order of preference, gets a full connect after a
  delay uniform in [0, reconnect_spread]. A broker that answers TCP but refuses or drops the
  session is retried with the full-jitter backoff. A link whose oldest publish has waited
  ack_timeout s for its PUBACK is presumed dead (a silent cut is otherwise seen only after 1.5 x
  keepalive). On a backup broker the preferred one is probed the same way.
- no secret is ever passed to the log: broker lines name host:port and the broker's name only.
"""

import asyncio
import binascii
import os
import random
import ssl
import time

import paho.mqtt.client as mqtt

from agent import __version__
from agent.core import simtime
from agent.core.log import ERROR, INFO, WARNING
from agent.core.uplink import contract
from agent.core.uplink.backoff import Backoff, ByteBudget, ConnectLimiter, LinkWatch
from agent.core.uplink.outbox import Message, Outbox
from agent.host import mqtt_client

WINDOWS = {"hour": 3600.0, "day": 86400.0}


class _Session:
    """One connection to one broker. Stale callbacks (from a session already closed) are ignored
    by comparing the session object."""

    def __init__(self, idx, broker, client, where):
        self.idx = idx
        self.broker = broker
        self.client = client
        self.where = where
        self.connack = None  # None waiting, True accepted, or the refusal text
        self.alive = False
        self.ready = False  # birth acked and echoed: data may flow
        self.birth_acked = False
        self.echoed = False
        self.failed = None  # why the session must end (refused publish, lost link)
        self.inflight = {}  # mid -> Message
        self.nonce = binascii.hexlify(os.urandom(6)).decode()
        self.state_sent = False
        self.link = None  # mqtt_client.LoopDriver: paho on the asyncio loop, once connected


class MqttUplink:
    def __init__(self, uplink_cfg, site_id, queue, log, facade=None, rand=random.random,
                 site_info=None):  # fmt: skip
        self.cfg = uplink_cfg
        self.site_id = site_id
        self.site_info = site_info  # name, kind, location: in every status message
        self.queue = queue
        self.log = log
        self.brokers = list(uplink_cfg["brokers"])
        self.contract = uplink_cfg.get("contract", 1)
        self.prefix = uplink_cfg.get("topic_prefix") or contract.default_prefix(self.contract)
        self.fmt = uplink_cfg.get("format", "json")
        self.batch_max = uplink_cfg.get("batch_max", 100)
        self.keepalive = uplink_cfg.get("keepalive", 60)
        self.connect_timeout = float(uplink_cfg.get("connect_timeout", 15))
        self.echo_timeout = float(uplink_cfg.get("echo_timeout", 10))
        self.preferred_retry = float(uplink_cfg.get("preferred_retry", 300))
        self.rand = rand
        self.backoff = Backoff(
            rand, uplink_cfg.get("backoff_base", 2.0), uplink_cfg.get("backoff_cap", 300.0)
        )
        self.limiter = ConnectLimiter(uplink_cfg.get("max_connects_per_min", 6))
        self.watch = LinkWatch(rand, uplink_cfg.get("probe_interval", 4.0),
                               uplink_cfg.get("reconnect_spread", 8.0))  # fmt: skip
        self.ack_timeout = float(uplink_cfg.get("ack_timeout", 8))
        self.unreachable = False  # the last failure: no broker answered TCP (else it refused)
        self.probes = 0
        self.probe_failures = {}
        self.budgets = []
        for b in self.brokers:
            limit = b.get("budget_bytes", 0)
            self.budgets.append(ByteBudget(limit, WINDOWS.get(b.get("budget_window", "day"))))
        self.topics = {k: contract.topic(self.prefix, site_id, k) for k in contract.TOPIC_KINDS}
        self.out = Outbox(queue, site_id, self.topics, log, batch_max=self.batch_max,
                          rate_msgs=uplink_cfg.get("rate_msgs", 20),
                          rate_bytes=uplink_cfg.get("rate_bytes", 0), facade=facade,
                          contract_version=self.contract,
                          integrity=float(uplink_cfg.get("integrity_period", 600)),
                          wall=simtime.wall)  # fmt: skip
        self.session = None
        self.last_error = None
        self.confirmed_seq = None
        self._aloop = None
        self._wake = None
        self._next_idx = 0
        self._next_probe = None
        self._pref_probe = None  # the running probe of the preferred broker (a task)
        self._pref_ready = None  # it answered: monotonic() of the full attempt
        self._alarms_dirty = False
        self._drain_requested = False

    def attach(self, facade):
        """Give the uplink the AgentFacade: commands, retained state and active alarms use it."""
        self.out.attach(facade)

    @property
    def acked(self):
        return self.out.acked

    @property
    def remote(self):
        return self.out.remote

    @property
    def commands_dropped(self):
        return self.out.commands_dropped

    @property
    def budget_blocked(self):
        return self.out.budget_blocked

    # --- client setup -------------------------------------------------------------------------
    def _where(self, broker):
        return mqtt_client.where(broker)

    def _make_client(self, b, session_box):
        client = mqtt_client.new_client(
            b, self.cfg.get("client_id") or self.site_id, self.connect_timeout
        )
        client.will_set(
            self.topics["status"],
            contract.status_payload(contract.OFFLINE, "connection lost", info=self.site_info),
            qos=1,
            retain=True,
        )
        client.on_connect = lambda c, u, f, rc, p=None: self._call(
            self._on_connack, session_box[0], rc
        )
        client.on_disconnect = lambda c, u, f, rc, p=None: self._call(
            self._on_disconnect, session_box[0], str(rc)
        )
        client.on_publish = lambda c, u, mid, rc=None, p=None: self._call(
            self._on_puback, session_box[0], mid, rc
        )
        client.on_message = lambda c, u, msg: self._on_message(session_box[0], msg)
        return client

    def _call(self, fn, *args):
        try:
            self._aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the asyncio loop is closed: shutting down
            pass

    # --- callbacks (asyncio thread, except _on_message) ------------------------------------
    def _on_connack(self, s, rc):
        if rc.is_failure:
            s.connack = "broker refused the connection: %s" % rc
        else:
            s.connack = True
            s.alive = True
        self._wake.set()

    def _on_disconnect(self, s, reason):
        if s.alive and s.failed is None:
            s.failed = "link closed by the broker or the network (paho: %s)" % reason
        s.alive = False
        self._wake.set()

    def _on_puback(self, s, mid, rc):
        msg = s.inflight.get(mid)
        if msg is None:
            return
        if rc is not None and getattr(rc, "is_failure", False):
            # MQTT 5: the broker refused this publish (typically an ACL): keep the data.
            s.inflight.pop(mid, None)
            s.failed = "broker refused publish to %s: %s" % (msg.topic, rc)
            self.log.error(
                "uplink",
                "broker refused our publish; data kept in the queue (check the broker ACL)",
                broker=self._where(s.broker),
                topic=msg.topic,
                reason=str(rc),
            )
            self._wake.set()
            return
        if msg.kind == "birth":
            s.birth_acked = True
            s.inflight.pop(mid, None)
        else:
            self.out.on_puback(s, mid)
        self._wake.set()

    def _on_message(self, s, msg):
        # paho thread: only the bounded inbox and a wake-up are touched here.
        if msg.topic == self.topics["status"]:
            if s.nonce.encode() in msg.payload:
                self._call(self._on_echo, s)
            return
        if msg.topic != self.topics["cmd"]:
            return
        if self.out.command_in(bytes(msg.payload)):
            self._call(self._wake.set)

    def _on_echo(self, s):
        s.echoed = True
        self._wake.set()

    # --- commands ------------------------------------------------------------------------
    def _serve_commands(self, s):
        reply = None
        if s is not None and s.alive:
            def reply(answer):
                s.client.publish(self.topics["reply"], answer, qos=1)
        self.out.serve_commands(reply)

    # --- sending ---------------------------------------------------------------------------
    def notify(self, confirmed_seq=None):
        """Called by the loop after each commit: new records may be ready."""
        if confirmed_seq is not None and confirmed_seq != self.confirmed_seq:
            self.confirmed_seq = confirmed_seq
            self.log.debug("uplink", "stored", confirmed_seq=confirmed_seq)
        if self._wake is not None:
            self._wake.set()

    def _fmt(self):
        """Payload form for the current broker: its own `format`, else compact on a metered
        broker (one with a byte budget), else the uplink's `format`."""
        s = self.session
        if s is None:
            return self.fmt
        b = s.broker
        return b.get("format") or ("compact" if b.get("budget_bytes") else self.fmt)

    def alarms_changed(self):
        """Called by the loop after a commit when the active-alarm set changed: the retained
        set is published again (at once when connected, else with the state after the connect)."""
        self.out.alarms_changed()
        if self._wake is not None:
            self._wake.set()

    def state_changed(self):
        """Called by the loop after the first complete poll cycle: the retained state is
        published again from the stored latest values."""
        self.out.state_changed()
        if self._wake is not None:
            self._wake.set()

    def _publish(self, s, msg):
        info = s.client.publish(msg.topic, msg.payload, qos=1, retain=msg.retain)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            s.failed = "publish not accepted by the client: %s" % mqtt.error_string(info.rc)
            return None
        return info.mid

    def _pump(self, s):
        return self.out.pump(s, self.budgets[s.idx], lambda m: self._publish(s, m), self._fmt())

    # --- connections -----------------------------------------------------------------------
    async def _connect(self, idx):
        """One attempt at broker idx; returns a ready session or None (with last_error set)."""
        b = self.brokers[idx]
        box = [None]
        try:
            client = self._make_client(b, box)
        except (OSError, ssl.SSLError, ValueError) as e:  # a TLS file missing or unusable: named
            self.last_error = "TLS setup failed: %s" % e
            self.log.repeating(("uplink", "connect", idx), ERROR, "uplink", "cannot set up TLS",
                               broker=self._where(b), error=str(e))  # fmt: skip
            return None
        s = _Session(idx, b, client, self._where(b))
        box[0] = s
        self.limiter.record(time.monotonic())
        self.log.info("uplink", "connecting", broker=self._where(b))
        self.unreachable = False
        try:
            await mqtt_client.connect(client, b["host"], b["port"], self.keepalive)
        except (OSError, ssl.SSLError, ValueError) as e:
            # No TCP (a timeout, refused, no route): nothing answers there; TLS failures are
            # ssl.SSLError, an OSError too, but mean the broker did answer.
            self.unreachable = not isinstance(e, (ssl.SSLError, ValueError))
            return self._give_up(s, mqtt_client.connect_reason(b, e, self.connect_timeout))
        s.link = mqtt_client.LoopDriver(client, self._aloop)
        if not s.link.start():
            return await self._close(s, "link closed by the broker or the network during connect")
        deadline = time.monotonic() + self.connect_timeout
        while s.connack is None and time.monotonic() < deadline:
            await self._sleep(deadline - time.monotonic())
        if s.connack is not True:
            why = (
                s.connack or "no CONNACK within %gs (broker not answering)" % self.connect_timeout
            )
            return await self._close(s, why)
        client.subscribe([(self.topics["status"], 1), (self.topics["cmd"], 1)])
        birth = contract.status_payload(
            contract.ONLINE, version=__version__, session=s.nonce, time=simtime.wall(),
            info=self.site_info,
        )
        info = client.publish(self.topics["status"], birth, qos=1, retain=True)
        s.inflight[info.mid] = Message(self.topics["status"], birth, retain=True, kind="birth")
        s.inflight[info.mid].sent = time.monotonic()
        deadline = time.monotonic() + self.echo_timeout
        while not (s.birth_acked and s.echoed) and not s.failed and time.monotonic() < deadline:
            await self._sleep(deadline - time.monotonic())
        if not (s.birth_acked and s.echoed):
            why = s.failed or (
                "broker did not deliver our birth message back within %gs: an ACL probably "
                "denies %s/%s/#; data kept" % (self.echo_timeout, self.prefix, self.site_id)
            )
            return await self._close(s, why)
        s.ready = True
        self.backoff.reset()
        self.log.info("uplink", "connected", broker=self._where(b), protocol=b.get("protocol"))
        return s

    def _give_up(self, s, why):
        """The attempt failed for `why` (in words: DNS, TLS, refused, timeout): one line per
        broker, then a summary per window while it keeps failing (Log.repeating)."""
        self.last_error = why
        self.log.repeating(("uplink", "connect", s.idx), WARNING, "uplink",
                           "connection attempt failed", broker=self._where(s.broker),
                           reason=why)  # fmt: skip
        return None

    async def _close(self, s, why, goodbye=None):
        """End session s (requeueing whatever it had in flight). Returns None."""
        if goodbye and s.alive:
            info = s.client.publish(self.topics["status"], goodbye, qos=1, retain=True)
            end = time.monotonic() + 2
            while not info.is_published() and s.alive and time.monotonic() < end:
                await asyncio.sleep(0.05)
        s.alive = False
        s.ready = False
        if why is not None:
            self._give_up(s, why)
        if s.link is not None:
            await s.link.close()
        self.out.end_session(s)
        return None

    async def _sleep(self, seconds):
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives as the event fires, and run() then never stops.
        self._wake.clear()
        try:
            async with asyncio.timeout(max(0.0, min(seconds, 1.0))):
                await self._wake.wait()
        except TimeoutError:
            pass

    def drain(self):
        """Send the backlog now (a technician's `drain`): cut the current reconnect wait short.
        The cap on connection attempts per minute still holds: it protects the broker."""
        self._drain_requested = True
        if self._wake is not None:
            self._wake.set()

    async def _wait_for_attempt(self, delay):
        end = time.monotonic() + delay
        while True:
            now = time.monotonic()
            if self._drain_requested:
                self._drain_requested = False
                end = now
            wait = max(end - now, self.limiter.wait_time(now))
            if wait <= 0:
                return
            self._serve_commands(None)  # drop stale commands; no link to answer on
            await asyncio.sleep(min(wait, 1.0))

    async def _probe(self, b):
        """One cheap look at broker b: does anything accept TCP there? (No TLS, no MQTT.)
        Returns None when something does, else why not in words (DNS, refused, no answer, a
        TLS file missing: no attempt could succeed until a technician fixes it)."""
        self.probes += 1
        if not b.get("insecure"):
            for key, what in (("ca_file", "CA file"), ("cert_file", "client certificate"),
                              ("key_file", "client key")):  # fmt: skip
                path = b.get(key)
                if path and not os.path.isfile(path):
                    return "TLS setup failed: %s %s not found (uplink.brokers %s)" % (
                        what, path, key)
        try:
            async with asyncio.timeout(self.watch.every):
                _r, w = await asyncio.open_connection(b["host"], b["port"])
        except (OSError, TimeoutError) as e:
            return mqtt_client.connect_reason(b, e, self.watch.every)
        w.close()
        try:
            await w.wait_closed()
        except OSError:
            pass
        return None

    async def _probe_round(self):
        """Probe every broker at once; the index of the first to answer (among those answering
        together, the most preferred), or None when none does within the probe timeout. A dead
        preferred link costs no wait: a backup that answers first is taken, and the preferred
        broker is probed again from there (_probe_due). Why each broker did not answer is in
        self.probe_failures (index -> reason)."""
        tasks = [asyncio.ensure_future(self._probe(b)) for b in self.brokers]
        self.probe_failures = {}
        try:
            pending = set(tasks)
            while pending:
                _done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for idx, t in enumerate(tasks):
                    if t.done() and not t.cancelled() and t.exception() is None:
                        if t.result() is None:
                            return idx
                        self.probe_failures[idx] = t.result()
            return None
        finally:
            for t in tasks:
                t.cancel()

    async def _probe_until_answer(self, quiet=False):
        """While no broker answers TCP: probe them all every probe period. Returns the index of
        the broker that answered first."""
        if not quiet:
            self.log.warning("uplink", "no broker answers; probing", every_s=self.watch.every)
        while True:
            idx = await self._probe_round()
            if idx is not None:
                return idx
            delay = self.watch.probe_delay()
            # One line per broker and reason, then a count now and then (Log.repeating): a
            # round every few seconds. The reason is in the key: a change (DNS fixed, now
            # refused) is a new line.
            for i, why in sorted(self.probe_failures.items()):
                self.last_error = why
                self.log.repeating(("uplink", "connect", i, why), WARNING, "uplink",
                                   "connection attempt failed", broker=self._where(
                                       self.brokers[i]), reason=why,
                                   next_attempt_s=round(delay, 2))  # fmt: skip
            end = time.monotonic() + delay
            while time.monotonic() < end:
                if self._drain_requested:  # a technician's drain: probe again now
                    self._drain_requested = False
                    break
                self._serve_commands(None)  # drop stale commands; no link to answer on
                await asyncio.sleep(min(0.5, max(0.0, end - time.monotonic())))

    def _probe_due(self, s):
        """On a backup broker: probe the preferred one every probe period; once it answers, a
        full attempt after the spread (and after a failed attempt, preferred_retry later)."""
        if s.idx == 0 or len(self.brokers) < 2:
            return False
        now = time.monotonic()
        if self._pref_ready is not None:
            return now >= self._pref_ready and self.limiter.wait_time(now) == 0
        task = self._pref_probe
        if task is not None and task.done():
            self._pref_probe = None
            if not task.cancelled() and task.exception() is None and task.result():
                self._pref_ready = now + self.watch.arrival_delay()
        elif task is None and (self._next_probe is None or now >= self._next_probe):
            self._pref_probe = asyncio.ensure_future(self._probe(self.brokers[0]))
            self._next_probe = now + self.watch.probe_delay()
        return False

    def _cancel_pref_probe(self):
        if self._pref_probe is not None:
            self._pref_probe.cancel()
        self._pref_probe = None
        self._pref_ready = None

    def _acks_overdue(self, s):
        oldest = self.out.oldest_unacked(s)
        return oldest is not None and time.monotonic() - oldest > self.ack_timeout

    async def _serve(self, s):
        """Pump session s until it fails or a more preferred broker takes over."""
        self.session = s
        self.last_error = None
        self._next_probe = None
        self._cancel_pref_probe()
        while s.alive and not s.failed:
            self._serve_commands(s)
            wait = self._pump(s)
            if self._acks_overdue(s):
                s.failed = "no PUBACK within %gs: the link is presumed dead" % self.ack_timeout
                break
            if self._probe_due(s):
                self._pref_ready = None
                # After a failed attempt the preferred broker waits preferred_retry.
                self._next_probe = time.monotonic() + self.preferred_retry * (
                    0.5 + 0.5 * self.rand())
                better = await self._connect(0)
                if better is not None:
                    self.log.info("uplink", "returning to the preferred broker",
                                  broker=self._where(better.broker))  # fmt: skip
                    bye = contract.status_payload(contract.OFFLINE, "moved to preferred broker",
                                                 info=self.site_info)
                    await self._close(s, None, goodbye=bye)
                    self.session = better
                    return better
                continue
            await self._sleep(1.0 if wait is None else wait)
        why = s.failed or "disconnected"
        self.log.warning("uplink", "link lost; in-flight batches will be sent again",
                         broker=self._where(s.broker), reason=why)  # fmt: skip
        self._cancel_pref_probe()
        # A broker that refuses our publishes is there; anything else may be the link.
        self.unreachable = not why.startswith("broker refused")
        await self._close(s, None)
        self.last_error = why
        self.session = None
        return None

    async def run(self):
        self._aloop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        for b in self.brokers:
            if b.get("insecure"):
                self.log.warning(
                    "uplink",
                    "insecure = true: MQTT without TLS; readings and credentials cross the "
                    "network in clear text",
                    broker=self._where(b),
                )
        confirmed = getattr(self.queue, "confirmed_seq", None)
        self.log.info("uplink", "started", confirmed_seq=confirmed, brokers=len(self.brokers),
                      contract=self.contract, format=self.fmt)  # fmt: skip
        # At start: find a broker that answers before a full attempt (a dead preferred link
        # would otherwise hold the first attempt for connect_timeout). One that answers at once
        # is taken at once (a technician restarting the agent sees it online); if none does,
        # the agent probes and comes in spread, as after a loss.
        idx = await self._probe_round()
        delay = 0.0
        if idx is None:
            idx = await self._probe_until_answer()
            delay = self.watch.arrival_delay()
        self._next_idx = idx
        try:
            while True:
                await self._wait_for_attempt(delay)
                idx = self._next_idx
                s = await self._connect(idx)
                served = s is not None
                while s is not None:
                    s = await self._serve(s)
                if self.unreachable:
                    # Nothing answered: probe until a broker does, then come in spread.
                    self._next_idx = await self._probe_until_answer()
                    self.backoff.reset()
                    delay = self.watch.arrival_delay()
                    self.log.info("uplink", "a broker answers again", broker=self._where(
                        self.brokers[self._next_idx]), delay_s=round(delay, 2))  # fmt: skip
                    continue
                # Answered but refused or dropped us: back off (after a lost session, from the
                # preferred broker again; after a refused connect, the next broker).
                self._next_idx = 0 if served else (idx + 1) % len(self.brokers)
                delay = self.backoff.next_delay()
                self.log.repeating(("uplink", "next"), INFO, "uplink", "next attempt",
                                   broker=self._where(self.brokers[self._next_idx]),
                                   delay_s=round(delay, 2))  # fmt: skip
        finally:
            await self._shutdown()

    async def _shutdown(self):
        self._cancel_pref_probe()
        s = self.session
        self.session = None
        if s is not None and s.alive:
            bye = contract.status_payload(contract.OFFLINE, "agent stopped", info=self.site_info)
            await self._close(s, None, goodbye=bye)

    def state(self):
        s = self.session
        now = simtime.wall()
        out = {
            "connected": bool(s is not None and s.ready),
            "broker": self._where(s.broker) if s is not None else None,
            "inflight": len(s.inflight) if s is not None else 0,
            "last_error": self.last_error,
            "backoff_failures": self.backoff.failures,
            "probes": self.probes,
            "budgets": [bb.state(now) for bb in self.budgets],
        }
        out.update(self.out.state())
        return out
