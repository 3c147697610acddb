"""What the uplink sends, in what order, and when a batch counts as delivered (portable).

The MQTT client is the caller's (paho on the host, the board's own client on MicroPython); this
object decides everything that is not the wire, so the two uplinks cannot drift apart:

    out = Outbox(queue, site_id, topics, log, batch_max=100, facade=facade)
    wait = out.pump(session, budget, publish, fmt)    # while session.ready; publish(msg) -> mid
    out.on_puback(session, mid)                        # PUBACK with a success code
    out.end_session(session)                           # link lost or switched: requeue
    out.alarms_changed(); out.state_changed()          # publish a retained set again

A session is any object with `ready`, `failed` (None or why it must end), `inflight`
({mid: Message}), `state_sent` (False at connect) and `where` (broker name for the log).
Invariants:
- a batch is acked to the queue only after PUBACK for every message that carried it (a batch of
  alarms and routine records goes out as two messages); end_session() requeues whatever was in
  flight (duplicates, never gaps);
- at most `window` messages are in flight per session;
- order after each connect: alarm events, then the retained state and active-alarm set, then the
  backlog oldest first, paced by rate_msgs / rate_bytes; routine traffic never overdraws a
  broker's byte budget, alarms may (a message counts in the window it was published in and,
  when its PUBACK comes in a later one, in that one too: it crossed the meter in between).
  When the active-alarm set or the site's state (power source,
  backhaul: STATE_KEYS) changes on a session that has sent its state, the retained state and set
  go again, so what a centre holds retained is current (a state sent at connect, before the
  first poll, said "unknown" for hours: found by the drill).
- contract v2 in the compact form: each session has its own data stream (compact2.Stream, named
  by the session's nonce when it has one); a stream message counts as received by the consumer
  once it is published (Message.done), and the stream ends with the session, so what the
  encoder leaves out is always relative to messages of the same connection. The retained series
  table goes after every message that numbered new series or changed a static value.
- times (budget windows, payload times) come from `wall`: the site's wall clock.
- the retained state is the durable queue's latest stored record of every series
  (queue.latest()), each with the seq it was stored under: right after a start it holds what
  the store persisted, not an empty list (a volatile queue has no latest(): the loop's latest
  readings, with their seq, stand in). It is published at each connect and again on
  state_changed() (the loop calls it after the first complete poll cycle).
"""

from agent.core.compat import monotonic, wall_time
from agent.core.errors import QueueError
from agent.core.log import ERROR, INFO, WARNING
from agent.core.uplink import contract
from agent.core.uplink.backoff import TokenBucket
from agent.core.uplink.commands import Remote

WINDOW = 4  # messages in flight per session
STATE_KEYS = ("site.power_source", "site.backhaul")  # a change sends the retained state again
INBOX_MAX = 64  # command payloads waiting to be served; more are dropped and counted


class Message:
    __slots__ = ("topic", "payload", "retain", "urgent", "batch", "kind", "done", "sent", "paid")

    def __init__(self, topic, payload, retain=False, urgent=False, batch=None, kind=None,
                 done=None):  # fmt: skip
        self.topic = topic
        self.payload = payload
        self.retain = retain
        self.urgent = urgent
        self.batch = batch
        self.kind = kind
        self.done = done  # called once the message is handed to the client (stream state)
        self.sent = None  # monotonic() when published: how long it has waited for its PUBACK
        self.paid = None  # (budget, window, bytes) it was counted in when published


class Outbox:
    def __init__(self, queue, site_id, topics, log, batch_max=100, rate_msgs=20, rate_bytes=0,
                 facade=None, window=WINDOW, contract_version=1, integrity=600.0,
                 mono=monotonic, wall=wall_time):  # fmt: skip
        self.queue = queue
        self.wall = wall
        self.mono = mono  # the integrity period's clock
        self.version = contract_version
        self.integrity = integrity  # v2 compact: every series carried at least this often (s)
        self._stream = None  # v2 compact: the data stream of the current session
        self._stream_of = None  # ... and that session
        self._stream_ids = []  # the last few stream ids used
        self.site_id = site_id
        self.topics = topics
        self.log = log
        self.batch_max = batch_max
        self.window = window
        self.msg_rate = TokenBucket(rate_msgs, None, monotonic())
        self.byte_rate = TokenBucket(rate_bytes, max(rate_bytes, 1), monotonic())
        self.facade = None
        self.remote = None
        if facade is not None:
            self.attach(facade)
        self.published = 0
        self.acked = 0
        self.duplicates_possible = 0  # batches put back after a link loss
        self.last_publish = None
        self.budget_blocked = False
        self.commands_dropped = 0
        self._msgs = []  # messages ready to publish, in order
        self._parts = {}  # batch id -> messages of that batch not yet acked
        self._inbox = []  # command payloads (appended from any thread; list ops are atomic)
        self._alarms_dirty = False
        self._state_sig = None  # STATE_KEYS' values in the retained state last sent
        self._stored_at = None  # (confirmed_seq, STATE_KEYS' values stored at that seq)
        self._state_dirty = False

    def attach(self, facade):
        """Commands, the retained state and active alarms work through the AgentFacade."""
        self.facade = facade
        self.remote = Remote(facade, log=self.log)

    # --- what goes out ------------------------------------------------------------------------
    def alarms_changed(self):
        """The active-alarm set changed: publish the retained set again (at once when a session
        has sent its state, else with the state after the connect)."""
        self._alarms_dirty = True

    def state_changed(self):
        """The latest values changed as a whole (the first complete poll cycle after a start):
        publish the retained state again (at once when a session has sent its state)."""
        self._state_dirty = True

    def _state_msgs(self, fmt):
        if self.facade is None:
            return []
        readings = self._readings()
        self._state_sig = self._sig(readings)
        payload = contract.encode_batch(self.site_id, 0, readings, contract.KIND_STATE, fmt,
                                        self.version)  # fmt: skip
        alarms = contract.alarms_payload(self.site_id, self.facade.active_alarms(), self.wall())
        return [
            Message(self.topics["state"], payload, retain=True, urgent=True, kind="state"),
            Message(self.topics["alarms"], alarms, retain=True, urgent=True, kind="state"),
        ]

    def _resolve(self, records):
        """Give records stamped before the clock was trusted their estimated wall time now, at
        read-out (the store keeps them as they were made; see agent/core/clock.py)."""
        clock = self.facade.clock if self.facade is not None else None
        if clock is None:
            return records
        return [clock.resolve(r) for r in records]

    def _stream_for(self, s):
        """The v2 compact data stream of session s (a new one for a new session)."""
        if self._stream is None or self._stream_of is not s:
            from agent.core.uplink import compact2  # v2 compact only: a v1 board never loads it

            sid = _stream_id(s)
            if sid in self._stream_ids:  # never twice: a consumer would skip it as duplicates
                sid = _stream_id(None)
            self._stream_ids = self._stream_ids[-7:] + [sid]
            self._stream = compact2.Stream(sid, self.site_id, self.integrity)
            self._stream_of = s
        return self._stream

    def _series_msg(self, s, fmt):
        """The retained series table when the stream numbered new series or a static changed."""
        if self.version != 2 or fmt != contract.FORMAT_COMPACT:
            return False
        st = self._stream_for(s)
        if not st.table_dirty:
            return False
        payload, done = st.table_payload()
        self._msgs.append(Message(self.topics[contract.KIND_SERIES], payload, retain=True,
                                  urgent=True, kind="state", done=done))  # fmt: skip
        return True

    def _routine_payload(self, s, batch_id, routine, fmt):
        """(payload, done) of a batch's routine part in the session's form."""
        if self.version == 2 and fmt == contract.FORMAT_COMPACT:
            return self._stream_for(s).encode(batch_id, routine, self.mono())
        return contract.encode_batch(self.site_id, batch_id, routine, "data", fmt,
                                     self.version), None  # fmt: skip

    def _readings(self):
        """The state's records: the durable queue's latest stored ones (with their seq), so a
        state sent right after a start, or when the site's state changed (after the commit
        that stored it), says what is stored; a volatile queue: the loop's latest readings."""
        latest = getattr(self.queue, "latest", None)
        return self._resolve(latest()) if latest is not None else self.facade.readings()

    def _stored_sig(self):
        """_sig of what is stored now. A durable queue's latest values change only at a commit:
        they are looked at once per commit, not for every batch (a sort of every series of the
        site; at 100 devices that was most of the uplink's CPU). Values need no _resolve()."""
        latest = getattr(self.queue, "latest", None)
        if latest is None:
            return self._sig(self._readings())
        seq = self.queue.confirmed_seq
        if self._stored_at is None or self._stored_at[0] != seq:
            self._stored_at = (seq, self._sig(latest()))
        return self._stored_at[1]

    @staticmethod
    def _sig(readings):
        return tuple(r.get("value") for r in readings
                     if r.get("device") == "site" and r.get("metric") in STATE_KEYS)  # fmt: skip

    def _fill(self, s, fmt):
        """Move the next batch from the queue into the outbox, in contract order."""
        if not self._alarms_dirty and s.state_sent and self.facade is not None:
            if self._stored_sig() != self._state_sig:
                self._alarms_dirty = True  # the site's state changed: send it again
        if self._series_msg(s, fmt):
            return True
        if self._state_dirty and s.state_sent:
            self._state_dirty = False
            self._msgs.extend(self._state_msgs(fmt))  # the active-alarm set goes with it
            self._alarms_dirty = False
            return bool(self._msgs)
        if self._alarms_dirty and self.facade is not None:
            self._alarms_dirty = False
            if s.state_sent:  # else the state about to go out carries the new set anyway
                # The state with it: an alarm changes when the site's state does (mains lost
                # or back, a link down or up), and the retained state must say so too.
                self._msgs.extend(self._state_msgs(fmt))
                return True
        try:
            batch = self.queue.next_batch(self.batch_max)
        except QueueError as e:  # the medium fails reads too: the backlog waits, the link stays
            self.log.repeating(("uplink", "read"), ERROR, "uplink", "cannot read the queue",
                               error=str(e))  # fmt: skip
            return False
        if batch is None:
            if not s.state_sent:
                s.state_sent = True
                self._state_dirty = False  # this state is the fresh one
                self._msgs.extend(self._state_msgs(fmt))
                return bool(self._msgs)
            return False
        batch_id, records = batch
        records = self._resolve(records)
        alarms = [r for r in records if contract.is_alarm_record(r)]
        routine = [r for r in records if not contract.is_alarm_record(r)]
        parts = []
        if alarms:
            payload = contract.encode_batch(self.site_id, batch_id, alarms, "alarm", fmt,
                                            self.version)  # fmt: skip
            parts.append(Message(self.topics["alarm"], payload, urgent=True, batch=batch_id))
        if routine and not s.state_sent:
            s.state_sent = True
            self._state_dirty = False
            self._msgs.extend(parts)
            parts = []
            self._msgs.extend(self._state_msgs(fmt))
        if routine:
            payload, done = self._routine_payload(s, batch_id, routine, fmt)
            parts.append(Message(self.topics["data"], payload, batch=batch_id, done=done))
        self._parts[batch_id] = sum(1 for m in self._msgs if m.batch == batch_id) + len(parts)
        self._msgs.extend(parts)
        return True

    def pump(self, s, budget, publish, fmt):
        """Publish while the window, the pace and the budget allow. publish(msg) returns the
        message id, or None after setting s.failed. Returns seconds until it is worth trying
        again (None: wait for an event)."""
        while s.ready and not s.failed and len(s.inflight) < self.window:
            if not self._msgs and not self._fill(s, fmt):
                return None
            msg = self._msgs[0]
            nbytes = contract.publish_bytes(msg.topic, len(msg.payload))
            now = self.wall()
            if not budget.allows(now, nbytes, msg.urgent):
                self.budget_blocked = True
                self.log.repeating(("uplink", "budget"), WARNING, "uplink", "byte budget used "
                                   "up; routine backlog waits, alarms still go", broker=s.where,
                                   used=budget.used, limit=budget.limit)  # fmt: skip
                if not s.inflight:
                    # Give the routine batch back so that alarms arriving later are not stuck
                    # behind it; the queue reads alarms out first.
                    self._drop()
                    self.queue.requeue()
                return min(budget.reopens_in(now), 30.0)
            mono = monotonic()
            wait = max(self.msg_rate.wait_time(mono), self.byte_rate.wait_time(mono, nbytes))
            if wait > 0:
                return wait
            mid = publish(msg)
            if mid is None:
                return None
            self._msgs.pop(0)
            if msg.done is not None:
                msg.done()
            self.msg_rate.take(mono)
            self.byte_rate.take(mono, nbytes)
            msg.paid = (budget, budget.spend(now, nbytes), nbytes)
            msg.sent = mono
            s.inflight[mid] = msg
            self.published += 1
            if self.budget_blocked and not msg.urgent:
                self.budget_blocked = False
                self.log.repeating(("uplink", "budget", "open"), INFO, "uplink",
                                   "byte budget open again", broker=s.where)  # fmt: skip
        return None

    def on_puback(self, s, mid):
        """A successful PUBACK for message mid of session s. Returns the message (None if it
        was not in flight, e.g. from a session already closed)."""
        msg = s.inflight.pop(mid, None)
        if msg is not None and msg.paid is not None:
            msg.paid[0].acked(self.wall(), msg.paid[1], msg.paid[2])
            msg.paid = None
        if msg is None or msg.batch is None:
            return msg
        left = self._parts.get(msg.batch, 0) - 1
        if left <= 0:
            self._parts.pop(msg.batch, None)
            self.queue.ack(msg.batch)
            self.acked += 1
            self.last_publish = self.wall()
            if self.acked == 1:  # the line tools/flash.py waits for after a deploy
                self.log.info("uplink", "first batch acknowledged", broker=s.where)
        else:
            self._parts[msg.batch] = left
        return msg

    def _drop(self):
        self._msgs = []
        self._parts = {}

    def end_session(self, s):
        """Session s is over: whatever it had in flight or waiting is read out again."""
        if s.inflight or self._parts or self._msgs:
            self.duplicates_possible += len(self._parts)
        s.inflight.clear()
        self._drop()
        self.queue.requeue()
        if self._stream_of is s:  # its next session starts a new stream: nothing assumed received
            self._stream = None
            self._stream_of = None

    # --- commands -------------------------------------------------------------------------
    def command_in(self, payload):
        """A payload on the command topic (any thread). False if the inbox was full."""
        if len(self._inbox) >= INBOX_MAX:
            self.commands_dropped += 1
            return False
        self._inbox.append(payload)
        return True

    def serve_commands(self, reply):
        """Answer waiting commands; reply(payload) publishes on the reply topic, or is None
        when there is no link (the commands are then dropped: stale by the time one returns)."""
        n = 0
        while self._inbox and n < INBOX_MAX:
            payload = self._inbox.pop(0)
            n += 1
            if self.remote is None:
                continue
            answer = self.remote.handle(payload)
            if answer is None:
                continue
            if answer.find(b'"ok":false') >= 0:
                self.log.warning("uplink", "command refused",
                                 reply=answer[:160].decode("utf-8", "replace"))  # fmt: skip
            if reply is not None:
                reply(answer)

    def oldest_unacked(self, s):
        """monotonic() when the oldest message still waiting for its PUBACK went out, or None."""
        sent = [m.sent for m in s.inflight.values() if m.sent is not None]
        return min(sent) if sent else None

    def state(self):
        return {
            "published": self.published,
            "acked": self.acked,
            "last_publish": self.last_publish,
            "budget_blocked": self.budget_blocked,
            "commands": dict(self.remote.counts) if self.remote is not None else None,
            "commands_dropped": self.commands_dropped,
        }


def _stream_id(s):
    """6 bytes naming a session's stream: its nonce (the birth's "session"), else random."""
    nonce = getattr(s, "nonce", None)
    if isinstance(nonce, str) and len(nonce) == 12:
        try:
            return bytes([int(nonce[i : i + 2], 16) for i in range(0, 12, 2)])
        except ValueError:
            pass
    import os

    try:
        return os.urandom(6)
    except (AttributeError, NotImplementedError):
        import random

        return bytes([random.getrandbits(8) for _ in range(6)])
