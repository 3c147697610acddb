"""The operations centre's side, in miniature: subscribe to a site's topics and collect what
arrives (used by the demo's live table and by end-to-end tests)."""

import threading
import time

import paho.mqtt.client as mqtt

from agent.core import contract


class Upstream:
    def __init__(self, host, port, prefix, site_id):
        self.host = host
        self.port = port
        self.filter = "%s/%s/#" % (prefix, site_id)
        self.lock = threading.Lock()
        self.latest = {}  # (device, metric) -> (record, arrival time)
        self.seqs = {}  # seq -> times received
        self.status = None
        self.batches = 0
        self.bad_payloads = 0
        self.connected = threading.Event()
        self.client = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                                  client_id="upstream-%d" % id(self))
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
            return
        if kind != "data":
            return
        try:
            body = contract.decode_batch(msg.payload)
        except ValueError:
            with self.lock:
                self.bad_payloads += 1
            return
        with self.lock:
            self.batches += 1
            for rec in body["readings"]:
                self.latest[(rec["device"], rec["metric"])] = (rec, now)
                self.seqs[rec["seq"]] = self.seqs.get(rec["seq"], 0) + 1

    def start(self, timeout=10):
        self.client.connect(self.host, self.port, 30)
        self.client.loop_start()
        if not self.connected.wait(timeout):
            self.stop()
            raise RuntimeError("upstream subscriber could not connect to %s:%s" % (self.host, self.port))
        return self

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
                raise TimeoutError("upstream did not see the expected readings; have %d series: %s"
                                   % (len(latest), sorted(latest)[:40]))
            time.sleep(0.1)
