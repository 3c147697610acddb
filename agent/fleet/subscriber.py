"""Subscribe to the contract's topics for every site and feed the fleet model (paho-mqtt, MQTT 5).

Every prefix (default site-agent/v1 and site-agent/v2: contract versions side by side, a fleet
moves site by site) is read the same way. Order on every (re)connect: first the retained topics,
`<prefix>/+/status` of every prefix, then `/alarms`, `/state` and `/series` (the v2 compact
stream's series table) (the broker delivers their retained messages right after the SUBACK, in
that order: a site's status is known before its alarm set), and only once that SUBACK is in, the
live stream `<prefix>/+/data` and `<prefix>/+/alarm`.

Shared subscriptions (`share="group"`): the alarm events of every prefix, and the data of a
prefix ending in /v1, are subscribed as `$share/group/<prefix>/+/alarm` (and `/data`), so the
broker hands each message to one instance of the group; the retained topics stay direct
subscriptions on every instance. Shared, a site's new status or alarm set would reach one
instance only, and brokers differ on retained messages for a new shared subscription (MQTT 5.0,
3.3.1.3, sends them for non-shared ones; VerneMQ sends none to a shared one; mosquitto 2.0 sends
one to every member: tests/host/test_fleet_shared.py). Every instance thus knows every site, its
status and its active alarms (republished by the agent on every change), and takes its share of
the readings.

The data of contract v2 is not shared unless `share_all`: its compact form is a stream per site
connection in which a message carries only what moved since the one before, and a broker that
hands consecutive messages of one site to different members (mosquitto: strict round robin over
the group, message by message) leaves every member with gaps, and so with values it cannot
rebuild. Only a broker that sends every message of a topic to the same member (EMQX's
`hash_topic` strategy) may share it (`share_all`). Otherwise `partition=(i, n)` splits it by
site: this instance reads the data of the sites whose `crc32(site id) % n == i`
(decode.partition_of), subscribing to each one's `<prefix>/<site>/data` (wildcard-free) as it
learns of the site from its retained topics (their retained status comes first), in SUBSCRIBE
packets of up to SITE_SUBS_BATCH filters. A site first heard live (a new one) has its
subscription made at once, but what it publishes before the broker has it is missed here (a
v2 compact site's values are then unknown until its integrity refresh). The broker then sends
each instance its sites only (bench/fleet_partition.py: 10,000 such subscriptions take
mosquitto a fraction of a second and about 1 KB each; receiving and dropping the others would
cost each instance about 0.1 ms a message). A data message of another partition's site that
arrives anyway (a subscription kept in a resumed session from another partitioning) is dropped
undecoded and counted.

Threading: paho's network thread calls on_message, which decodes and applies under the fleet's
lock; nothing here blocks on the HTTP side. paho reconnects by itself (1 s to 30 s backoff); the
picture is kept across a reconnect and refreshed by the retained messages.

Session (MQTT 5): clean start off, with a session expiry (default 300 s), so a reconnect does not
lose what the broker queued meanwhile. That matters most when the consumer is busiest: after a
regional outage thousands of sites send their backlog at once, the consumer falls behind, and
the broker's PINGRESP waits behind the queued messages; should the keepalive give up, the
session keeps the queue. A clean stop ends the session (expiry 0 on DISCONNECT). A restart resumes
it only under the same client id (--client-id); the default id (host and pid) starts afresh.
"""

import itertools
import os
import socket
import ssl
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.fleet import decode

BAD_LOG_EVERY_S = 60.0  # at most one log line about undecodable messages per minute
SITE_SUBS_BATCH = 100  # per-site data filters in one SUBSCRIBE (partition)
SITE_SUBS_WAIT_S = 0.1  # how long a per-site filter may wait for others to fill its packet
_DEFAULT_IDS = itertools.count(1)  # consumers made in this process, for their default ids


class Subscriber:
    def __init__(self, fleet, host, port, prefix=decode.PREFIXES, share=None, tls=None,
                 username=None, password=None, client_id=None, protocol=5, keepalive=60,
                 session_expiry=300, log=None, share_all=False, partition=None):  # fmt: skip
        """prefix: a topic prefix or a list of them (default both contract versions')."""
        self.fleet = fleet
        self.host = host
        self.port = port
        prefixes = [prefix] if isinstance(prefix, str) else list(prefix)
        self.prefixes = tuple(dict.fromkeys(p.rstrip("/") for p in prefixes))
        self.prefix = self.prefixes[0]
        self.share = share
        self.share_all = bool(share and share_all)
        self.partition = partition  # (index, count): read only this share of unshared data
        self._site_subs = set()  # (prefix, site): data topics subscribed one by one (partition)
        self._pending = []  # ... filters waiting to go in a SUBSCRIBE
        self._pending_lock = threading.Lock()
        self._flush_timer = None
        if partition is not None:
            fleet.owner_of = self.owner_of
        self.log = log
        self.protocol = mqtt.MQTTv5 if str(protocol) == "5" else mqtt.MQTTv311
        self.connected = False
        self.retained_subscribed = threading.Event()
        self.live_subscribed = threading.Event()
        self.last_retained = None  # monotonic time of the last retained message
        self.last_error = None
        self.connect_failures = 0
        self._mids = {}
        self._stopping = False
        self._live_at = 0.0
        self._bad_logged = 0.0
        self._bad_since_log = 0
        # The default id is the host's and the process's, and the Nth consumer in one process
        # gets "-N" too: two clients with one id take the session from each other in turn.
        n = next(_DEFAULT_IDS)
        cid = client_id or "site-agent-fleet-%s-%d%s" % (
            socket.gethostname()[:20], os.getpid(), "-%d" % n if n > 1 else "")
        kwargs = {"callback_api_version": mqtt.CallbackAPIVersion.VERSION2, "client_id": cid,
                  "protocol": self.protocol}  # fmt: skip
        if self.protocol == mqtt.MQTTv311:
            kwargs["clean_session"] = True
        self.client = mqtt.Client(**kwargs)
        self.client.reconnect_delay_set(1, 30)
        if tls is not None:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=tls.get("ca_file"))
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            if tls.get("cert_file"):
                ctx.load_cert_chain(tls["cert_file"], tls.get("key_file"))
            self.client.tls_set_context(ctx)
        if username:
            self.client.username_pw_set(username, password)
        self.keepalive = keepalive
        self.session_expiry = int(session_expiry)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message

    # --- topics -------------------------------------------------------------------------------
    def retained_filters(self):
        return ["%s/+/%s" % (p, k) for k in decode.RETAINED_KINDS for p in self.prefixes]

    def data_shared(self, prefix):
        """Does the data of `prefix` come through the shared group (a part of it), rather than
        in full? Only contract v1's (a prefix ending in /v1), unless share_all: v2's compact
        stream must reach one instance whole (see the module's doc)."""
        return bool(self.share) and (self.share_all or prefix.endswith("/v1"))

    def partitioned(self, prefix):
        """Is the data of `prefix` read site by site, for this instance's partition only?"""
        return self.partition is not None and not self.data_shared(prefix)

    def live_filters(self):
        out = []
        for p in self.prefixes:
            for k in decode.LIVE_KINDS:
                if k == "data" and self.partitioned(p):
                    continue  # subscribed site by site (_want_data)
                f = "%s/+/%s" % (p, k)
                shared = self.share and (k != "data" or self.data_shared(p))
                out.append("$share/%s/%s" % (self.share, f) if shared else f)
        return out

    def owner(self, site):
        """The partition whose instance reads this site's unshared data."""
        return decode.partition_of(site, self.partition[1])

    def owner_of(self, site, prefix):
        """For the fleet: the partition that reads the site's data under `prefix`, when it is
        not this instance; None when it is (or when the data is not partitioned)."""
        if not self.partitioned(prefix):
            return None
        owner = self.owner(site)
        return None if owner == self.partition[0] else owner

    def _want_data(self, prefix, site, now=False):
        """A site of this partition: subscribe to its data topic (once). Batched while the
        retained messages pour in; at once (`now`) for a site first heard live, whose first
        data messages follow its birth closely: what comes before the SUBACK is missed."""
        if len(self._site_subs) >= self.fleet.max_sites:
            return
        self._site_subs.add((prefix, site))
        with self._pending_lock:
            self._pending.append("%s/%s/data" % (prefix, site))
            if now or len(self._pending) >= SITE_SUBS_BATCH:
                self._flush_locked()
            elif self._flush_timer is None:
                self._flush_timer = threading.Timer(SITE_SUBS_WAIT_S, self._flush)
                self._flush_timer.daemon = True
                self._flush_timer.start()

    def _flush(self):
        with self._pending_lock:
            self._flush_timer = None
            self._flush_locked()

    def _flush_locked(self):
        batch, self._pending = self._pending, []
        for i in range(0, len(batch), SITE_SUBS_BATCH):
            rc, mid = self.client.subscribe([(f, self._options())
                                             for f in batch[i : i + SITE_SUBS_BATCH]])
            self._mids[mid] = "sites"

    # --- lifecycle ----------------------------------------------------------------------------
    def start(self):
        if self.protocol == mqtt.MQTTv5 and self.session_expiry > 0:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = self.session_expiry
            self.client.connect_async(self.host, self.port, self.keepalive, clean_start=False,
                                      properties=props)  # fmt: skip
        else:
            self.client.connect_async(self.host, self.port, self.keepalive)
        self.client.loop_start()
        return self

    def stop(self):
        self._stopping = True
        with self._pending_lock:
            if self._flush_timer is not None:
                self._flush_timer.cancel()
        try:
            if self.protocol == mqtt.MQTTv5:
                props = Properties(PacketTypes.DISCONNECT)
                props.SessionExpiryInterval = 0  # we are done: the broker need keep nothing
                self.client.disconnect(properties=props)
            else:
                self.client.disconnect()
        finally:
            self.client.loop_stop()

    def wait_synced(self, timeout, quiet=1.0):
        """Wait until the retained messages have been delivered: the live stream is subscribed
        (with --partition, every site's data topic too) and no retained message came for
        `quiet` seconds. False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.live_subscribed.is_set() and not self._pending and \
                    "sites" not in self._mids.values():  # fmt: skip
                last = self.last_retained or 0.0
                if time.monotonic() - max(last, self._live_at) >= quiet:
                    return True
            time.sleep(0.05)
        return False

    # --- paho callbacks (network thread) ------------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties=None):
        if reason_code.is_failure:
            self.last_error = "broker refused the connection: %s" % reason_code
            if self.log:
                self.log.error("fleet", "broker refused the connection",
                               broker="%s:%s" % (self.host, self.port), reason=str(reason_code))
            return
        self.connected = True
        self.last_error = None
        self.connect_failures = 0
        if self.log:
            self.log.info("fleet", "connected", broker="%s:%s" % (self.host, self.port),
                          share=self.share or "-",
                          session="resumed" if flags.session_present else "new")  # fmt: skip
        self.retained_subscribed.clear()
        self.live_subscribed.clear()
        if not flags.session_present:  # the broker kept no subscription: the sites' again
            self._site_subs.clear()
            with self._pending_lock:
                self._pending = []
        subs = [(f, self._options()) for f in self.retained_filters()]
        rc, mid = client.subscribe(subs)
        self._mids[mid] = "retained"

    def _on_connect_fail(self, client, userdata):
        self.last_error = "cannot connect (refused, unreachable or TLS failed)"
        self.connect_failures += 1
        if self.log and self.connect_failures in (1, 10, 100):
            self.log.warning("fleet", "cannot connect to the broker; retrying",
                             broker="%s:%s" % (self.host, self.port),
                             attempts=self.connect_failures)  # fmt: skip

    def _options(self):
        if self.protocol == mqtt.MQTTv5:
            return SubscribeOptions(qos=1)
        return 1

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties=None):
        what = self._mids.pop(mid, None)
        bad = [str(rc) for rc in reason_codes if rc.is_failure]
        if bad and self.log:
            self.log.error("fleet", "broker refused a subscription (check its ACL)",
                           what=what, reasons=",".join(bad))  # fmt: skip
        if what == "retained":
            self.retained_subscribed.set()
            if self.fleet.started is None:
                self.fleet.started = time.time()
            self.last_retained = time.monotonic()
            rc, mid = client.subscribe([(f, self._options()) for f in self.live_filters()])
            self._mids[mid] = "live"
        elif what == "live":
            self._live_at = time.monotonic()
            self.live_subscribed.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties=None):
        was = self.connected
        self.connected = False
        if was and self.log and not self._stopping:
            self.log.warning("fleet", "lost the broker; reconnecting",
                             broker="%s:%s" % (self.host, self.port), reason=str(reason_code))

    def _on_message(self, client, userdata, msg):
        where = decode.split_topic(msg.topic, self.prefixes)
        if where is None:
            return
        prefix, site, kind = where
        now = time.time()
        if msg.retain:
            self.last_retained = time.monotonic()
        if self.partition is not None and self.partitioned(prefix):
            owner = self.owner(site)
            if owner != self.partition[0]:
                if kind == "data":  # not ours: dropped undecoded
                    self.fleet.elsewhere(site, owner, now)
                    return
                if kind == decode.SERIES:
                    return  # the stream is another instance's to decode: no context here
            elif (prefix, site) not in self._site_subs:
                self._want_data(prefix, site, now=not msg.retain)
        payload = msg.payload
        ctx = None
        if kind == decode.SERIES or decode.is_stream(payload):
            ctx = self.fleet.context(site)
            if ctx is None:
                return  # past --max-sites: Fleet.apply counts it
        try:
            body = decode.decode(kind, payload, ctx, site)
        except decode.DecodeError as e:
            self.fleet.bad_message(site, kind, str(e))
            self._note_bad(msg.topic, str(e))
            return
        except Exception as e:  # a decoder bug must not stop the subscription
            self.fleet.bad_message(site, kind, repr(e))
            self._note_bad(msg.topic, repr(e))
            return
        self.fleet.apply(site, kind, body, retained=bool(msg.retain), now=now, prefix=prefix)

    def _note_bad(self, topic, why):
        self._bad_since_log += 1
        mono = time.monotonic()
        if self.log and mono - self._bad_logged >= BAD_LOG_EVERY_S:
            self.log.warning("fleet", "message does not follow the contract; ignored",
                             topic=topic, error=why[:200], since_last_line=self._bad_since_log)
            self._bad_logged = mono
            self._bad_since_log = 0
