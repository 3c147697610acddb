"""MQTT uplink on paho-mqtt (host): pulls committed batches from the queue, publishes them at
QoS 1 and acknowledges each batch to the queue only on its PUBACK.

Threading: paho runs its network loop in its own thread; every paho callback is handed to the
asyncio loop with call_soon_threadsafe, so the queue is only ever touched from the asyncio thread.
Invariants: a batch is acked to the queue only after the broker's PUBACK for the message that
carried it; after a reconnect, every in-flight batch is read out again (duplicates, never gaps);
at most `window` batches are in flight.
"""

import asyncio
import ssl
import time

import paho.mqtt.client as mqtt

from agent import __version__
from agent.core import contract

WINDOW = 4


class MqttUplink:
    def __init__(self, uplink_cfg, site_id, queue, log):
        self.cfg = uplink_cfg
        self.site_id = site_id
        self.queue = queue
        self.log = log
        self.broker = uplink_cfg["brokers"][0]
        self.prefix = uplink_cfg.get("topic_prefix", "site-agent/v1")
        self.batch_max = uplink_cfg.get("batch_max", 100)
        self.connected = False
        self.last_publish = None  # wall time of the last acknowledged batch
        self.published = 0
        self.acked = 0
        self.last_error = None
        self._inflight = {}  # paho mid -> queue batch id
        self._aloop = None
        self._wake = None
        self._client = None

    # --- setup ----------------------------------------------------------------------------
    def _make_client(self):
        b = self.broker
        proto = mqtt.MQTTv5 if b.get("protocol") == "5" else mqtt.MQTTv311
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.cfg.get("client_id") or self.site_id,
            protocol=proto,
        )
        if not b.get("insecure"):
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=b.get("ca_file"))
            if b.get("cert_file"):
                ctx.load_cert_chain(b["cert_file"], b.get("key_file"))
            client.tls_set_context(ctx)
        if b.get("username"):
            client.username_pw_set(b["username"], b.get("password"))
        client.will_set(
            contract.topic(self.prefix, self.site_id, "status"),
            contract.status_payload("offline", "connection lost"),
            qos=1,
            retain=True,
        )
        client.reconnect_delay_set(1, 60)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_publish = self._on_publish
        return client

    def _call(self, fn, *args):
        try:
            self._aloop.call_soon_threadsafe(fn, *args)
        except RuntimeError:  # the asyncio loop is closed: shutting down
            pass

    # --- paho thread ----------------------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        self._call(self._connected, str(reason_code), not reason_code.is_failure)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        self._call(self._disconnected, str(reason_code))

    def _on_publish(self, client, userdata, mid, reason_code=None, properties=None):
        self._call(self._acked, mid)

    # --- asyncio thread -------------------------------------------------------------------
    def _connected(self, reason, ok):
        if not ok:
            self.last_error = "broker refused the connection: %s" % reason
            self.log.error("uplink", "connect refused", broker=self._where(), reason=reason)
            return
        self.connected = True
        self.last_error = None
        self.log.info("uplink", "connected", broker=self._where())
        self._inflight.clear()
        self.queue.requeue()
        self._client.publish(
            contract.topic(self.prefix, self.site_id, "status"),
            contract.status_payload("online", version=__version__),
            qos=1,
            retain=True,
        )
        self._wake.set()

    def _disconnected(self, reason):
        if self.connected:
            self.log.warning("uplink", "disconnected", broker=self._where(), reason=reason)
        self.connected = False
        self.last_error = "disconnected: %s" % reason

    def _acked(self, mid):
        batch_id = self._inflight.pop(mid, None)
        if batch_id is None:
            return  # the status message, or a batch from before a reconnect
        self.queue.ack(batch_id)
        self.acked += 1
        self.last_publish = time.time()
        self._wake.set()

    def _where(self):
        return "%s:%s" % (self.broker["host"], self.broker["port"])

    def notify(self, confirmed_seq=None):
        """Called by the loop after each commit: new records may be ready."""
        if self._wake is not None:
            self._aloop.call_soon(self._wake.set)

    def _pump(self):
        data_topic = contract.topic(self.prefix, self.site_id, "data")
        while self.connected and len(self._inflight) < WINDOW:
            batch = self.queue.next_batch(self.batch_max)
            if batch is None:
                return
            batch_id, records = batch
            payload = contract.encode_batch(self.site_id, batch_id, records)
            info = self._client.publish(data_topic, payload, qos=1)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                # Not handed to paho: put the batch back; it goes out after the reconnect.
                self.queue.requeue()
                self._inflight.clear()
                return
            self._inflight[info.mid] = batch_id
            self.published += 1

    async def run(self):
        self._aloop = asyncio.get_running_loop()
        self._wake = asyncio.Event()
        self._client = self._make_client()
        b = self.broker
        if b.get("insecure"):
            self.log.warning(
                "uplink",
                "insecure = true: MQTT without TLS; readings and credentials cross the network "
                "in clear text",
                broker=self._where(),
            )
        self._client.connect_async(b["host"], b["port"], self.cfg.get("keepalive", 60))
        self._client.loop_start()
        try:
            while True:
                self._pump()
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), 1.0)
                except asyncio.TimeoutError:
                    pass
        finally:
            await self._shutdown()

    async def _shutdown(self):
        client = self._client
        if client is None:
            return
        if self.connected:
            info = client.publish(
                contract.topic(self.prefix, self.site_id, "status"),
                contract.status_payload("offline", "agent stopped"),
                qos=1,
                retain=True,
            )
            deadline = time.monotonic() + 2
            while not info.is_published() and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
        client.disconnect()
        client.loop_stop()
        self.connected = False

    def state(self):
        return {
            "connected": self.connected,
            "broker": self._where(),
            "published": self.published,
            "acked": self.acked,
            "inflight": len(self._inflight),
            "last_publish": self.last_publish,
            "last_error": self.last_error,
        }
