"""The board's MQTT uplink on asyncio streams (portable code; the board's, also run on CPython in
tests): several brokers in priority order, QoS 1 batches tied to the queue, paced backlog, byte
budgets, reconnect backoff and commands. The contract is docs/mqtt.md, the same as the host's
(agent/host/uplink.py), and so is the code that decides it: what is sent, in what order, the
window and when a batch is acked are agent/core/uplink/outbox.py (Outbox), shared with the host;
topics and payloads contract.py and compact.py; pacing backoff.py; commands commands.py. Only
the transport differs: agent/board/mqtt.py on asyncio streams instead of paho's thread.

    up = BoardUplink(cfg.uplink, site_id, queue, log, tls=make_context)   # tls(broker) ->
    up.attach(facade)                                                     # (ctx, server name)
    loop.listeners.append(up.notify); loop.alarm_listeners.append(up.alarms_changed)
    loop.cycle_listeners.append(up.state_changed)
    task = asyncio.create_task(up.run())

Invariants (the host's, kept here line for line):
- a batch is acked to the queue only after PUBACK for every message that carried it; after any
  disconnect or broker switch queue.requeue() puts in-flight batches back (duplicates, never
  gaps); at most WINDOW messages of data are in flight.
- data flows only after the broker acknowledged our birth message AND delivered it back on our
  own status topic (the echo): an ACL that silently drops our publishes keeps the data here.
- the backoff is reset only after a connect plus that first acknowledged, echoed publish; never
  more than max_connects_per_min connection attempts, probes of the preferred broker included.
- after each connect: alarm events, then the retained state and active-alarm set, then the
  backlog oldest first, paced by rate_msgs / rate_bytes; routine traffic never overdraws a
  broker's byte budget, alarms may. A metered broker (budget_bytes > 0) gets the compact form
  unless it names its own format.
- no secret is passed to the log: broker lines name the broker and host:port only.
Board specifics: MQTT 3.1.1 only (the fit check refuses protocol "5" on a board); every wait is
bounded (connect, CONNACK, echo, each send) and `progress_age()` tells the watchdog how long the
uplink task has gone without making progress, so a wedged uplink ends in a reset.
"""

import asyncio
import binascii
import os
import random

from agent import __version__
from agent.board import mqtt
from agent.core.compat import monotonic, wall_time
from agent.core.uplink import contract
from agent.core.uplink.backoff import Backoff, ByteBudget, ConnectLimiter
from agent.core.uplink.outbox import Message, Outbox

WINDOWS = {"hour": 3600.0, "day": 86400.0}
# CPython 3.11's wait_for can swallow a cancellation that arrives as the event fires (run() then
# never stops); asyncio.timeout cannot. MicroPython has only wait_for, without that race.
_timeout = getattr(asyncio, "timeout", None)


class _Session:
    def __init__(self, idx, broker, conn, now, where):
        self.idx = idx
        self.broker = broker
        self.where = where
        self.conn = conn
        self.alive = True
        self.ready = False
        self.birth_acked = False
        self.echoed = False
        self.failed = None
        self.inflight = {}  # pid -> Message (data and state: the Outbox's; birth, goodbye)
        self.replies = {}  # pid -> topic of command replies (outside the window)
        self.nonce = binascii.hexlify(os.urandom(6)).decode()
        self.state_sent = False
        self.last_rx = now
        self.last_tx = now
        self.reader = None


class BoardUplink:
    def __init__(self, uplink_cfg, site_id, queue, log, tls=None, facade=None, rand=random.random,
                 mono=monotonic, wall=wall_time, link_up=None):  # fmt: skip
        self.cfg = uplink_cfg
        self.site_id = site_id
        self.queue = queue
        self.log = log
        self.tls = tls
        self.link_up = link_up  # None, or fn() -> bool: no attempt while the network is down
        self.rand = rand
        self.mono = mono
        self.wall = wall
        self.brokers = list(uplink_cfg["brokers"])
        self.prefix = uplink_cfg.get("topic_prefix", "site-agent/v1")
        self.fmt = uplink_cfg.get("format", "json")
        self.batch_max = uplink_cfg.get("batch_max", 100)
        self.keepalive = uplink_cfg.get("keepalive", 60)
        self.connect_timeout = float(uplink_cfg.get("connect_timeout", 15))
        self.echo_timeout = float(uplink_cfg.get("echo_timeout", 10))
        self.send_timeout = max(self.connect_timeout, 10.0)
        self.preferred_retry = float(uplink_cfg.get("preferred_retry", 300))
        self.backoff = Backoff(rand, uplink_cfg.get("backoff_base", 2.0),
                               uplink_cfg.get("backoff_cap", 300.0))  # fmt: skip
        self.limiter = ConnectLimiter(uplink_cfg.get("max_connects_per_min", 6))
        self.budgets = [ByteBudget(b.get("budget_bytes", 0), WINDOWS.get(b.get("budget_window",
                        "day"))) for b in self.brokers]  # fmt: skip
        self.topics = {}
        for k in contract.TOPIC_KINDS:
            self.topics[k] = contract.topic(self.prefix, site_id, k)
        self.out = Outbox(queue, site_id, self.topics, log, batch_max=self.batch_max,
                          rate_msgs=uplink_cfg.get("rate_msgs", 20),
                          rate_bytes=uplink_cfg.get("rate_bytes", 0), facade=facade)  # fmt: skip
        self.session = None
        self.last_error = None
        self.confirmed_seq = None
        self.beat = mono()  # last time the uplink task made progress (the watchdog's check)
        self._wake = None
        self._next_idx = 0
        self._next_probe = None
        self._drain_requested = False
        self._tls = {}  # broker index -> (context, server name)

    def attach(self, facade):
        """Commands, the retained state and active alarms work through the AgentFacade."""
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

    def _where(self, b):
        return "%s (%s:%s)" % (b.get("name") or b["host"], b["host"], b["port"])

    def progress_age(self):
        """Seconds since the uplink task last made progress."""
        return self.mono() - self.beat

    def _set_wake(self):
        if self._wake is not None:
            self._wake.set()

    # --- what the loop and the console call ----------------------------------------------
    def notify(self, confirmed_seq=None):
        """After each commit: new records may be ready."""
        if confirmed_seq is not None and confirmed_seq != self.confirmed_seq:
            self.confirmed_seq = confirmed_seq
            self.log.debug("uplink", "stored", confirmed_seq=confirmed_seq)
        self._set_wake()

    def alarms_changed(self):
        self.out.alarms_changed()
        self._set_wake()

    def state_changed(self):
        """The loop's first complete poll cycle: the retained state is published again."""
        self.out.state_changed()
        self._set_wake()

    def drain(self):
        self._drain_requested = True
        self._set_wake()

    def state(self):
        s = self.session
        now = self.wall()
        out = {
            "connected": bool(s is not None and s.ready),
            "broker": self._where(s.broker) if s is not None else None,
            "inflight": len(s.inflight) if s is not None else 0,
            "last_error": self.last_error,
            "backoff_failures": self.backoff.failures,
            "budgets": [bb.state(now) for bb in self.budgets],
        }
        out.update(self.out.state())
        return out

    # --- packets from the broker (the reader task) ------------------------------------------
    async def _reader(self, s):
        try:
            while s.alive:
                kind, flags, body = await s.conn.read()
                s.last_rx = self.mono()
                if kind == mqtt.PUBACK:
                    self._on_puback(s, mqtt.parse_pid(body))
                elif kind == mqtt.PUBLISH:
                    topic, payload, qos, pid, _ = mqtt.parse_publish(flags, body)
                    if qos:
                        await self._send(s, mqtt.puback_packet(pid))
                    self._on_message(s, topic, payload)
                elif kind == mqtt.SUBACK and body[2:3] == b"\x80":
                    s.failed = "broker refused our subscription (ACL?)"
                self._set_wake()
        except mqtt.MqttError as e:
            if s.alive and s.failed is None:
                s.failed = "link closed by the broker or the network (%s)" % e
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug here must end the session, not the uplink
            if s.failed is None:
                s.failed = "reader failed: %r" % (e,)
        s.alive = False
        self._set_wake()

    def _on_puback(self, s, pid):
        if s.replies.pop(pid, None) is not None:
            return
        msg = s.inflight.get(pid)
        if msg is not None and msg.kind == "birth":
            s.birth_acked = True
            s.inflight.pop(pid, None)
        elif msg is not None and msg.kind == "bye":
            s.inflight.pop(pid, None)
        else:
            self.out.on_puback(s, pid)
        self.beat = self.mono()

    def _on_message(self, s, topic, payload):
        if topic == self.topics["status"]:
            if s.nonce.encode() in payload:
                s.echoed = True
            return
        if topic == self.topics["cmd"]:
            self.out.command_in(payload)

    def _serve_commands(self, s):
        reply = None
        if s is not None and s.alive:
            def reply(answer):
                pid = s.conn.next_pid()
                s.replies[pid] = self.topics["reply"]
                try:
                    s.conn.put(mqtt.publish_packet(self.topics["reply"], answer, 1, False, pid))
                except mqtt.MqttError as e:
                    s.failed = "link closed by the broker or the network (%s)" % e
        self.out.serve_commands(reply)

    async def _send(self, s, data):
        try:
            await asyncio.wait_for(s.conn.send(data), self.send_timeout)
            s.last_tx = self.mono()
        except asyncio.TimeoutError:
            s.failed = "send blocked for %gs (link stalled)" % self.send_timeout
        except mqtt.MqttError as e:
            if s.failed is None:
                s.failed = "link closed by the broker or the network (%s)" % e

    # --- what goes out -------------------------------------------------------------------------
    def _fmt(self):
        s = self.session
        if s is None:
            return self.fmt
        b = s.broker
        return b.get("format") or ("compact" if b.get("budget_bytes") else self.fmt)

    def _publish(self, s, msg):
        """Queue one QoS 1 PUBLISH on the stream (written out by the next flush)."""
        pid = s.conn.next_pid()
        try:
            s.conn.put_publish(msg.topic, msg.payload, 1, msg.retain, pid)
        except mqtt.MqttError as e:
            s.failed = "link closed by the broker or the network (%s)" % e
            return None
        return pid

    async def _pump(self, s):
        wait = self.out.pump(s, self.budgets[s.idx], lambda m: self._publish(s, m), self._fmt())
        await self._flush(s)
        self.beat = self.mono()
        return wait

    async def _flush(self, s):
        try:
            await asyncio.wait_for(s.conn.flush(), self.send_timeout)
            s.last_tx = self.mono()
        except asyncio.TimeoutError:
            s.failed = "send blocked for %gs (link stalled)" % self.send_timeout
        except mqtt.MqttError as e:
            if s.failed is None:
                s.failed = "link closed by the broker or the network (%s)" % e

    # --- connections -----------------------------------------------------------------------
    def _give_up(self, b, why):
        self.last_error = why
        self.log.warning("uplink", "connection attempt failed", broker=self._where(b), reason=why)
        return None

    async def _connect(self, idx):
        """One attempt at broker idx; returns a ready session or None (with last_error set)."""
        b = self.brokers[idx]
        self.limiter.record(self.mono())
        self.log.info("uplink", "connecting", broker=self._where(b))
        ctx = sni = None
        if not b.get("insecure"):
            try:
                # One context per broker for the uplink's life: certificates are parsed once,
                # not at every reconnect (heap churn on a board, CPU on a slow chip).
                if idx not in self._tls:
                    self._tls[idx] = self.tls(b)
                ctx, sni = self._tls[idx]
            except Exception as e:  # a missing or bad certificate file: say which, keep data
                self.log.error("uplink", "cannot set up TLS", broker=self._where(b), error=str(e))
                return self._give_up(b, "TLS setup failed: %s" % (e,))
        will = (self.topics["status"], contract.status_payload(contract.OFFLINE,
                "connection lost"), 1, True)  # fmt: skip
        conn = None
        try:
            conn = await mqtt.MqttConn.open(b["host"], b["port"], ctx, sni, self.connect_timeout)
            rc = await conn.connect(self.cfg.get("client_id") or self.site_id, self.keepalive,
                                    will, b.get("username"), b.get("password"),
                                    self.connect_timeout)  # fmt: skip
        except mqtt.MqttError as e:
            if conn is not None:
                conn.close()
            return self._give_up(b, "connect failed: %s" % (e,))
        self.beat = self.mono()
        if rc != 0:
            conn.close()
            return self._give_up(b, "broker refused the connection: %s"
                                 % mqtt.CONNACK_TEXT.get(rc, "code %d" % rc))  # fmt: skip
        s = _Session(idx, b, conn, self.mono(), self._where(b))
        s.reader = asyncio.create_task(self._reader(s))
        await self._send(s, mqtt.subscribe_packet(conn.next_pid(),
                         [(self.topics["status"], 1), (self.topics["cmd"], 1)]))  # fmt: skip
        birth = contract.status_payload(contract.ONLINE, version=__version__, session=s.nonce,
                                        time=self.wall())  # fmt: skip
        pid = conn.next_pid()
        s.inflight[pid] = Message(self.topics["status"], birth, retain=True, kind="birth")
        await self._send(s, mqtt.publish_packet(self.topics["status"], birth, 1, True, pid))
        deadline = self.mono() + self.echo_timeout
        while not (s.birth_acked and s.echoed) and not s.failed and s.alive:
            if self.mono() >= deadline:
                break
            await self._sleep(deadline - self.mono())
        if not (s.birth_acked and s.echoed):
            why = s.failed or ("broker did not deliver our birth message back within %gs: an "
                               "ACL probably denies %s/%s/#; data kept"
                               % (self.echo_timeout, self.prefix, self.site_id))  # fmt: skip
            await self._close(s, None)
            return self._give_up(b, why)
        s.ready = True
        self.backoff.reset()
        self.log.info("uplink", "connected", broker=self._where(b), protocol="3.1.1")
        return s

    async def _close(self, s, why, goodbye=None):
        if goodbye and s.alive and not s.failed:
            pid = s.conn.next_pid()
            s.inflight[pid] = Message(self.topics["status"], goodbye, retain=True, kind="bye")
            await self._send(s, mqtt.publish_packet(self.topics["status"], goodbye, 1, True, pid))
            end = self.mono() + 2
            while pid in s.inflight and s.alive and self.mono() < end:
                await asyncio.sleep(0.05)
        if s.alive and not s.failed:
            try:
                await asyncio.wait_for(s.conn.send(mqtt.DISCONNECT_PACKET), 2)
            except Exception:  # the link may already be gone
                pass
        s.alive = False
        s.ready = False
        if s.reader is not None:
            s.reader.cancel()
            try:
                await s.reader
            except BaseException:
                pass
        s.conn.close()
        if why is not None:
            self._give_up(s.broker, why)
        self.out.end_session(s)
        return None

    async def _sleep(self, seconds):
        self._wake.clear()
        t = max(0.0, min(seconds, 1.0))
        if _timeout is not None:  # CPython: asyncio.timeout never swallows a cancellation
            try:
                async with _timeout(t):
                    await self._wake.wait()
            except TimeoutError:
                pass
        else:
            try:
                await asyncio.wait_for(self._wake.wait(), t)
            except asyncio.TimeoutError:
                pass
        self.beat = self.mono()

    async def _wait_for_attempt(self, delay):
        end = self.mono() + delay
        while True:
            now = self.mono()
            self.beat = now
            if self._drain_requested:
                self._drain_requested = False
                end = now
            wait = max(end - now, self.limiter.wait_time(now))
            if wait <= 0 and (self.link_up is None or self.link_up()):
                return
            wait = max(wait, 0.2)
            self.out.serve_commands(None)  # drop stale commands; no link to answer on
            await asyncio.sleep(min(wait, 1.0))

    def _probe_due(self, s):
        if s.idx == 0 or len(self.brokers) < 2:
            return False
        now = self.mono()
        if self._next_probe is None:
            self._next_probe = now + self.preferred_retry * (0.5 + 0.5 * self.rand())
        return now >= self._next_probe and self.limiter.wait_time(now) == 0

    def _keepalive_due(self, s):
        now = self.mono()
        if now - s.last_rx > self.keepalive * 1.5:
            s.failed = "no packet from the broker in %ds (keepalive %ds)" % (
                now - s.last_rx, self.keepalive)
            return False
        return now - s.last_tx >= self.keepalive / 2.0

    async def _serve(self, s):
        """Pump session s until it fails or a more preferred broker takes over."""
        self.session = s
        self.last_error = None
        self._next_probe = None
        while s.alive and not s.failed:
            self.beat = self.mono()
            self._serve_commands(s)
            wait = await self._pump(s)
            if self._keepalive_due(s):
                await self._send(s, mqtt.PINGREQ_PACKET)
            if self._probe_due(s):
                self._next_probe = None
                better = await self._connect(0)
                if better is not None:
                    self.log.info("uplink", "returning to the preferred broker",
                                  broker=self._where(better.broker))  # fmt: skip
                    bye = contract.status_payload(contract.OFFLINE, "moved to preferred broker")
                    await self._close(s, None, goodbye=bye)
                    self.session = better
                    return better
                continue
            await self._sleep(1.0 if wait is None else wait)
        why = s.failed or "disconnected"
        self.log.warning("uplink", "link lost; in-flight batches will be sent again",
                         broker=self._where(s.broker), reason=why)  # fmt: skip
        await self._close(s, None)
        self.last_error = why
        self.session = None
        return None

    async def run(self):
        self._wake = asyncio.Event()
        for b in self.brokers:
            if b.get("insecure"):
                self.log.warning("uplink", "insecure = true: MQTT without TLS; readings and "
                                 "credentials cross the network in clear text",
                                 broker=self._where(b))  # fmt: skip
        self.log.info("uplink", "started", confirmed_seq=getattr(self.queue, "confirmed_seq",
                      None), brokers=len(self.brokers), format=self.fmt)  # fmt: skip
        delay = 0.0
        try:
            while True:
                await self._wait_for_attempt(delay)
                idx = self._next_idx
                s = await self._connect(idx)
                while s is not None:
                    self._next_idx = 0
                    s = await self._serve(s)
                    delay = self.backoff.next_delay() if s is None else 0.0
                    if s is None:
                        break
                else:
                    self._next_idx = (idx + 1) % len(self.brokers)
                    delay = self.backoff.next_delay()
                    self.log.info("uplink", "next attempt", broker=self._where(
                        self.brokers[self._next_idx]), delay_s=round(delay, 2))  # fmt: skip
        finally:
            s = self.session
            self.session = None
            if s is not None and s.alive:
                bye = contract.status_payload(contract.OFFLINE, "agent stopped")
                await self._close(s, None, goodbye=bye)
