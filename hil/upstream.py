"""The operations centre's side, in miniature: subscribe to a site's topics and collect what
arrives (used by the demo's live table and by end-to-end tests)."""

import json
import threading
import time

import paho.mqtt.client as mqtt

from agent.core.uplink import contract


class Upstream:
    """Subscribes to <prefix>/<site>/#. Batches of either contract version in either form (JSON
    or compact) are decoded with contract.decode (the v2 compact stream with this subscriber's
    own state); `seqs` counts every record seq seen (data and alarm), `arrivals` lists (topic
    kind, batch kind, record count, bytes) in arrival order, `replies` the decoded command
    replies, `unresolved` the v2 stream readings it could not rebuild (joined mid-stream).
    `tls` is {ca_file, cert_file, key_file}; `persistent` keeps the subscription (and what is
    queued for it) across a disconnect or a restart of a persistent broker."""

    def __init__(self, host, port, prefix, site_id, tls=None, persistent=False, client_id=None):
        self.host = host
        self.port = port
        self.prefix = prefix
        self.site_id = site_id
        self.filter = "%s/%s/#" % (prefix, site_id)
        self.lock = threading.Lock()
        self.arrivals = []
        self.replies = []
        self.retained = {}  # topic kind -> last payload (status, state, alarms)
        self.states = []  # every state payload received, decoded, in arrival order
        self.alarm_events = []  # every alarm event record received, in arrival order
        self.latest = {}  # (device, metric) -> (record, arrival time)
        self.seqs = {}  # seq -> times received
        self.status = None
        self.batches = 0
        self.bad_payloads = 0
        self.ctx = {}  # contract.decode's state for this site (v2 compact stream)
        self.unresolved = []
        self.series = None  # the v2 series table, decoded
        self.connected = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or "upstream-%d" % id(self),
                                  clean_session=not persistent)  # fmt: skip
        self.client.reconnect_delay_set(0.2, 1)
        if tls:
            import ssl

            ctx = ssl.create_default_context(cafile=tls["ca_file"])
            if tls.get("cert_file"):
                ctx.load_cert_chain(tls["cert_file"], tls.get("key_file"))
            self.client.tls_set_context(ctx)
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message

    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        client.subscribe(self.filter, qos=1)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        kind = msg.topic.rsplit("/", 1)[-1]
        now = time.time()
        if kind == "status":
            with self.lock:
                self.status = msg.payload.decode(errors="replace")
        if kind in ("status", "state", "alarms"):
            with self.lock:
                self.retained[kind] = bytes(msg.payload)
                self.arrivals.append((kind, kind, 0, len(msg.payload)))
                if kind == "state" and msg.payload:
                    try:
                        self.states.append(contract.decode_batch(msg.payload))
                    except ValueError:
                        self.bad_payloads += 1
        if kind == "reply":
            try:
                rep = json.loads(msg.payload)
            except ValueError:
                rep = {"undecodable": bytes(msg.payload)}
            with self.lock:
                self.replies.append(rep)
            return
        if kind not in ("data", "alarm", "series"):
            return
        try:
            body = contract.decode(kind, bytes(msg.payload), self.ctx, self.site_id)
        except ValueError:
            with self.lock:
                self.bad_payloads += 1
            return
        if kind == "series":
            with self.lock:
                self.series = body
            return
        with self.lock:
            self.unresolved += body.get("unresolved", ())
            self.batches += 1
            self.arrivals.append((kind, body["kind"], len(body["readings"]), len(msg.payload)))
            for rec in body["readings"]:
                if kind == "alarm":
                    self.alarm_events.append(rec)
                if kind == "data":
                    self.latest[(rec["device"], rec["metric"])] = (rec, now)
                self.seqs[rec["seq"]] = self.seqs.get(rec["seq"], 0) + 1

    def start(self, timeout=10):
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise RuntimeError(
                "upstream subscriber could not connect to %s:%s" % (self.host, self.port)
            )
        return self

    def send(self, kind, payload, qos=1):
        """Publish to <prefix>/<site>/<kind> (commands: kind "cmd")."""
        topic = "%s/%s/%s" % (self.prefix, self.site_id, kind)
        return self.client.publish(topic, payload, qos=qos)

    def stop(self):
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self):
        with self.lock:
            return dict(self.latest), dict(self.seqs), self.status, self.batches

    def wait_for(self, predicate, timeout):
        """Wait until predicate(latest) is true; returns the latest table (raises on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            latest = self.snapshot()[0]
            if predicate(latest):
                return latest
            if time.monotonic() > deadline:
                raise TimeoutError(
                    "upstream did not see the expected readings; have %d series: %s"
                    % (len(latest), sorted(latest)[:40])
                )
            time.sleep(0.1)
