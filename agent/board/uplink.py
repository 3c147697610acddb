"""The board's MQTT uplink on asyncio streams (portable; the board's, also run on CPython in
tests). Contract: docs/mqtt.md, the host's (agent/host/uplink.py), decided by the same code:
what goes out, in what order, the window and the acks are agent/core/uplink/outbox.py; which
broker next, probes, reconnects, a dead session and the status messages are links.py. Only the
transport differs: agent/board/mqtt.py on asyncio streams instead of paho.

    up = BoardUplink(cfg.uplink, site_id, queue, log, tls=make_context,   # tls(broker) ->
                     site_info=contract.site_info(cfg.site))              # (ctx, server name)
    up.attach(facade); loop.listeners.append(up.notify)
    loop.alarm_listeners.append(up.alarms_changed); loop.cycle_listeners.append(up.state_changed)
    task = asyncio.create_task(up.run())

Invariants (the host's): data flows only after the broker acknowledged our birth AND delivered
it back on our status topic (an ACL that silently drops our publishes keeps the data here); the
backoff is reset only after that, or when a probe finds a broker after none answered; no secret
reaches the log (brokers are named by name and host:port). Board specifics: MQTT 3.1.1 only;
every wait is bounded (connect, CONNACK, echo, each send); no attempt or probe while the
network is down (link_up); progress_age() tells the watchdog how long the uplink task has gone
without progress, so a wedged uplink ends in a reset.
"""

import asyncio
import binascii
import os
import random

from agent import __version__
from agent.board import mqtt
from agent.core.compat import monotonic, wait_for, wall_time
from agent.core.log import ERROR, WARNING
from agent.core.uplink.links import Links
from agent.core.uplink.outbox import Message, Outbox


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
                 mono=monotonic, wall=wall_time, link_up=None, site_info=None,
                 site_mono=None):  # fmt: skip
        # mono: machine time (timeouts, pacing); wall and site_mono (default mono): the site's
        # clocks (budget windows, payload times), which run faster in a drill.
        self.links = lk = Links(uplink_cfg, site_id, rand, site_info, site_mono or mono)
        self.cfg = uplink_cfg
        self.site_id = site_id
        self.queue = queue
        self.log = log
        self.tls = tls
        self.link_up = link_up  # None, or fn() -> bool: no attempt while the network is down
        self.mono = mono
        self.wall = wall
        self.brokers = lk.brokers
        self.prefix = lk.prefix
        self.topics = lk.topics
        self.backoff = lk.backoff
        self.budgets = lk.budgets
        self.send_timeout = max(lk.connect_timeout, 10.0)
        self.out = Outbox(queue, site_id, lk.topics, log, batch_max=uplink_cfg.get("batch_max",
                          100), rate_msgs=uplink_cfg.get("rate_msgs", 20),
                          rate_bytes=uplink_cfg.get("rate_bytes", 0), facade=facade,
                          contract_version=lk.contract, integrity=lk.integrity, mono=mono,
                          wall=wall)  # fmt: skip
        self.session = None
        self.confirmed_seq = None
        self.beat = mono()  # last time the uplink task made progress (the watchdog's check)
        self._wake = None
        self._drain_requested = False
        self._tls = {}  # broker index -> (context, server name)

    def attach(self, facade):
        """Commands, the retained state and active alarms work through the AgentFacade."""
        self.out.attach(facade)

    def __getattr__(self, name):  # the counters the host's uplink has (console, tests)
        if name in ("acked", "remote", "commands_dropped", "budget_blocked"):
            return getattr(self.out, name)
        if name == "probes":
            return self.links.probes
        raise AttributeError(name)

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
            "broker": self.links.where(s.broker) if s is not None else None,
            "inflight": len(s.inflight) if s is not None else 0,
            "last_error": self.links.last_error,
            "backoff_failures": self.backoff.failures,
            "probes": self.links.probes,
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

    async def _send(self, s, data=None):
        """Write a whole packet (None: what put() queued) within send_timeout."""
        try:
            if data is not None:
                s.conn.put(data)
            await wait_for(s.conn.flush(), self.send_timeout)
            s.last_tx = self.mono()
        except asyncio.TimeoutError:
            s.failed = "send blocked for %gs (link stalled)" % self.send_timeout
        except mqtt.MqttError as e:
            if s.failed is None:
                s.failed = "link closed by the broker or the network (%s)" % e

    # --- what goes out -------------------------------------------------------------------------
    def _fmt(self):
        return self.links.fmt_for(self.session.broker if self.session is not None else None)

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
        await self._send(s)
        self.beat = self.mono()
        return wait

    # --- connections -----------------------------------------------------------------------
    def _give_up(self, idx, why):
        """The attempt failed for `why`: one line per broker, then a summary per window while it
        keeps failing (Log.repeating)."""
        self.links.last_error = why
        self.log.repeating(("uplink", "connect", idx), WARNING, "uplink",
                           "connection attempt failed", broker=self.links.where(
                               self.brokers[idx]), reason=why)  # fmt: skip
        return None

    async def _connect(self, idx):
        """One attempt at broker idx; returns a ready session or None (with last_error set, and
        links.unreachable when nothing answered TCP there)."""
        lk = self.links
        b = self.brokers[idx]
        lk.limiter.record(self.mono())
        lk.unreachable = False
        self.log.info("uplink", "connecting", broker=lk.where(b))
        ctx = sni = None
        if not b.get("insecure"):
            try:
                # One context per broker for the uplink's life: certificates are parsed once,
                # not at every reconnect (heap churn on a board, CPU on a slow chip).
                if idx not in self._tls:
                    self._tls[idx] = self.tls(b)
                ctx, sni = self._tls[idx]
            except Exception as e:  # a missing or bad certificate file: say which, keep data
                self.log.repeating(("uplink", "connect", idx), ERROR, "uplink",
                                   "cannot set up TLS", broker=lk.where(b), error=str(e))
                return self._give_up(idx, "TLS setup failed: %s" % (e,))
        will = (self.topics["status"], lk.offline("connection lost"), 1, True)
        conn = None
        try:
            conn = await mqtt.MqttConn.open(b["host"], b["port"], ctx, sni, lk.connect_timeout)
            rc = await conn.connect(self.cfg.get("client_id") or self.site_id, lk.keepalive,
                                    will, b.get("username"), b.get("password"),
                                    lk.connect_timeout)  # fmt: skip
        except mqtt.MqttError as e:
            sent = conn is not None and conn.connect_sent
            if conn is not None:
                conn.close()
            # CONNECT never went out: no TCP, or TLS refused? (MicroPython's streams report a
            # refused connect only at the first write.) A probe tells the two apart.
            why = None if sent else await lk.probe(b)
            lk.unreachable = why is not None
            return self._give_up(idx, why or str(e))
        self.beat = self.mono()
        if rc != 0:
            conn.close()
            return self._give_up(idx, "broker refused the connection: %s"
                                 % mqtt.CONNACK_TEXT.get(rc, "code %d" % rc))  # fmt: skip
        s = _Session(idx, b, conn, self.mono(), lk.where(b))
        s.reader = asyncio.create_task(self._reader(s))
        await self._send(s, mqtt.subscribe_packet(conn.next_pid(),
                         [(self.topics["status"], 1), (self.topics["cmd"], 1)]))  # fmt: skip
        birth = lk.birth(__version__, s.nonce, self.wall())
        pid = conn.next_pid()
        s.inflight[pid] = Message(self.topics["status"], birth, retain=True, kind="birth")
        await self._send(s, mqtt.publish_packet(self.topics["status"], birth, 1, True, pid))
        deadline = self.mono() + lk.echo_timeout
        while not (s.birth_acked and s.echoed) and not s.failed and s.alive:
            if self.mono() >= deadline:
                break
            await self._sleep(deadline - self.mono())
        if not (s.birth_acked and s.echoed):
            why = s.failed or lk.echo_missing()
            await self._close(s, None)
            return self._give_up(idx, why)
        s.ready = True
        self.backoff.reset()
        self.log.info("uplink", "connected", broker=lk.where(b), protocol="3.1.1")
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
                await wait_for(s.conn.send(mqtt.DISCONNECT_PACKET), 2)
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
            self._give_up(s.idx, why)
        self.out.end_session(s)
        return None

    async def _sleep(self, seconds):
        self._wake.clear()
        try:  # compat.wait_for: CPython 3.11's asyncio.wait_for can swallow a cancellation
            await wait_for(self._wake.wait(), max(0.0, min(seconds, 1.0)))
        except asyncio.TimeoutError:
            pass
        self.beat = self.mono()

    async def _pause(self, delay, limit=True):
        """Wait `delay` s (and for the connect limiter, and the network), serving nothing: the
        commands that arrive meanwhile are dropped (stale once a link returns). A technician's
        drain cuts the delay short; the limiter still holds (it protects the broker)."""
        end = self.mono() + delay
        while True:
            now = self.mono()
            self.beat = now
            if self._drain_requested:
                self._drain_requested = False
                end = now
            wait = max(end - now, self.links.limiter.wait_time(now) if limit else 0.0)
            if wait <= 0 and (self.link_up is None or self.link_up()):
                return
            self.out.serve_commands(None)
            await asyncio.sleep(min(max(wait, 0.2), 1.0))

    async def _serve(self, s):
        """Pump session s until it fails or a more preferred broker takes over."""
        lk = self.links
        self.session = s
        lk.last_error = None
        lk.serving()
        while s.alive and not s.failed:
            now = self.mono()
            self.beat = now
            self._serve_commands(s)
            wait = await self._pump(s)
            why = lk.dead(self.out.oldest_unacked(s), s.last_rx, self.mono())
            if why is not None:
                s.failed = why
                break
            if lk.ping_due(s.last_tx, now):
                await self._send(s, mqtt.PINGREQ_PACKET)
            if lk.preferred(s.idx, now, self.mono, self._set_wake):
                better = await self._connect(0)
                if better is not None:
                    self.log.info("uplink", "returning to the preferred broker",
                                  broker=lk.where(better.broker))  # fmt: skip
                    await self._close(s, None, goodbye=lk.offline("moved to preferred broker"))
                    self.session = better
                    return better
                continue
            due = lk.next_due(now)
            await self._sleep(min(1.0 if wait is None else wait, 1.0 if due is None else due))
        why = s.failed or "disconnected"
        self.log.warning("uplink", "link lost; in-flight batches will be sent again",
                         broker=lk.where(s.broker), reason=why)  # fmt: skip
        lk.serving()
        lk.lost(why)
        await self._close(s, None)
        lk.last_error = why
        self.session = None
        return None

    async def run(self):
        lk = self.links
        self._wake = asyncio.Event()
        for b in self.brokers:
            if b.get("insecure"):
                self.log.warning("uplink", "insecure = true: MQTT without TLS; readings and "
                                 "credentials cross the network in clear text",
                                 broker=lk.where(b))  # fmt: skip
        self.log.info("uplink", "started", confirmed_seq=getattr(self.queue, "confirmed_seq",
                      None), brokers=len(self.brokers), contract=lk.contract,
                      format=lk.fmt)  # fmt: skip
        try:
            await lk.drive(self._connect, self._serve, self._pause, self.log)
        finally:
            lk.serving()
            s = self.session
            self.session = None
            if s is not None and s.alive:
                await self._close(s, None, goodbye=lk.offline("agent stopped"))
