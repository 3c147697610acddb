"""Scaling out: several `site-agent fleet` instances share the live stream with an MQTT 5 shared
subscription, and each keeps the full picture from the retained topics. Against real mosquitto.
"""

import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.subscribeoptions import SubscribeOptions

from agent.fleet.model import Fleet
from agent.fleet.subscriber import Subscriber
from hil.broker import Broker
from hil.fleet import FleetSim, make_sites


def client5(port, name):
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                    protocol=mqtt.MQTTv5)  # fmt: skip
    got = []
    ready = threading.Event()
    c.on_message = lambda cl, u, msg: got.append((msg.topic, bytes(msg.payload), msg.retain))
    c.on_subscribe = lambda cl, u, mid, rcs, props=None: ready.set()
    c.connect("127.0.0.1", port, 30)
    c.loop_start()
    return c, got, ready


def wait(pred, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def test_what_mosquitto_does_with_a_shared_subscription():
    """Why the fleet subscribes to the retained topics directly and shares only the live stream.
    A live message on a shared subscription goes to one member of the group: shared, a site's
    new status or alarm set would reach one instance only. Retained messages on a new shared
    subscription differ by broker: MQTT 5.0 (3.3.1.3) sends them for a new non-shared
    subscription, VerneMQ sends none to a shared one, and mosquitto 2.0 sends one to every member
    as it subscribes (checked here). Direct subscriptions give every instance the same on all."""
    with Broker(require_mosquitto=True) as b:
        pub, _, _ = client5(b.port, "pub")
        pub.publish("site-agent/v1/s1/status", b"retained", qos=1,
                    retain=True).wait_for_publish(10)  # fmt: skip
        members = []
        for name in ("noc-a", "noc-b"):
            c, got, ready = client5(b.port, name)
            c.subscribe("$share/noc/site-agent/v1/+/status", options=SubscribeOptions(qos=1))
            assert ready.wait(10)
            members.append((c, got))
        direct, got_direct, ready_direct = client5(b.port, "direct")
        direct.subscribe("site-agent/v1/+/status", options=SubscribeOptions(qos=1))
        assert ready_direct.wait(10)
        for i in range(10):
            pub.publish("site-agent/v1/s%d/status" % i, b"live%d" % i, qos=1).wait_for_publish(10)
        wait(lambda: sum(1 for _, p, _ in got_direct if p.startswith(b"live")) == 10,
             what="the live messages at the direct subscriber")  # fmt: skip
        wait(lambda: sum(1 for _, got in members for _, p, _ in got if p.startswith(b"live"))
             == 10, what="the live messages at the group")  # fmt: skip
        live = [[p for _, p, _ in got if p.startswith(b"live")] for _, got in members]
        assert live[0] and live[1] and not set(live[0]) & set(live[1])  # each to one member
        for _, got in members:  # mosquitto: the retained message to each member, flagged
            assert ("site-agent/v1/s1/status", b"retained", True) in got
        assert ("site-agent/v1/s1/status", b"retained", True) in got_direct
        for c in [pub, direct] + [m[0] for m in members]:
            c.disconnect()
            c.loop_stop()


def test_instances_share_the_stream_and_each_keeps_the_full_picture():
    with Broker(require_mosquitto=True) as b:
        sites = make_sites(10, bts_share=1.0, seed=11)
        for s in sites:  # faster than life, so that the test takes seconds
            s.commit_s = 1.0
            for d in s.devices:
                d.interval = 2.0
        sim = FleetSim("127.0.0.1", b.port, sites).start()
        try:
            # Let the sites publish first: the instances must learn them from retained topics.
            # The live stream pauses while they subscribe, so all three hear the same stream.
            wait(lambda: all(s.latest for s in sites), 30, "every site's first poll")
            sim.paused.set()
            time.sleep(1.0)
            fleets = [Fleet(), Fleet(), Fleet()]
            subs = [Subscriber(fleets[0], "127.0.0.1", b.port, share="noc", client_id="noc-a"),
                    Subscriber(fleets[1], "127.0.0.1", b.port, share="noc", client_id="noc-b"),
                    Subscriber(fleets[2], "127.0.0.1", b.port, client_id="whole")]  # fmt: skip
            for sub in subs:
                sub.start()
            for sub in subs:
                assert sub.wait_synced(30), sub.last_error
            sent_before = sum(s.sent for s in sites)
            sim.paused.clear()
            for f in fleets:
                assert len(f.sites) == 10
                assert all(s.name and s.location.get("commune") for s in f.sites.values())
                assert f.counts["records_state"] > 0
            wait(lambda: all(f.counts["records_data"] >= 50 for f in fleets[:2]), 60,
                 "both instances to get a share of the data")  # fmt: skip
            # One site loses mains and then its link: every instance sees the alarm set and
            # the last will, whichever instance got the readings.
            sites[3].mains = False
            sites[3].on_battery_since = time.time()
            wait(lambda: all("MAINS_LOST/dc-plant/plant.alarm.mains_lost"
                             in f.sites[sites[3].id].alarms for f in fleets), 30,
                 "the alarm on every instance")  # fmt: skip
            sim.go_silent(sites[3].id)
            wait(lambda: all(f.sites[sites[3].id].status == "offline" for f in fleets), 30,
                 "the last will on every instance")  # fmt: skip
        finally:
            sim.stop()
        # The stream has stopped: once the unshared instance has every record the sites sent,
        # and the two shares add up to it, nothing went to both and nothing was lost.
        sent = sum(s.sent for s in sites) - sent_before
        totals = lambda: [f.counts["records_data"] + f.counts["records_alarm"] for f in fleets]  # noqa: E731
        wait(lambda: totals()[2] == sent and sum(totals()[:2]) == sent, 60,
             "every record sent (%d) to reach the instances" % sent)
        a, bb, whole = totals()
        assert a > 0 and bb > 0 and a + bb == whole == sent
        for sub in subs:
            sub.stop()


def test_a_reconnect_loses_nothing_the_broker_queued_meanwhile():
    """After a regional outage the backlog floods in, the consumer falls behind and its
    keepalive can give up. Its MQTT 5 session (clean start off, expiry 300 s) keeps what the
    broker queued while it was away."""
    from agent.core.uplink import contract

    def batch(first, n):
        recs = [{"site": "s1", "device": "site", "metric": "site.battery_charge", "value": 50,
                 "unit": "%", "time": time.time(), "quality": "good", "seq": first + i}
                for i in range(n)]  # fmt: skip
        return contract.encode_batch("s1", first, recs, "data")

    with Broker(require_mosquitto=True) as b:
        fleet = Fleet()
        sub = Subscriber(fleet, "127.0.0.1", b.port, client_id="noc-1").start()
        assert sub.wait_synced(30)
        pub, _, _ = client5(b.port, "pub")
        pub.publish("site-agent/v1/s1/data", batch(1, 10), qos=1).wait_for_publish(10)
        wait(lambda: fleet.counts["records_data"] == 10, what="the first batch")
        # The link dies under the consumer (shutdown wakes paho's select; a close might not).
        sub.client.socket().shutdown(socket.SHUT_RDWR)
        wait(lambda: not sub.connected, what="the consumer to notice")
        for first in range(11, 51, 10):  # published while it is away (it retries after 1 s)
            pub.publish("site-agent/v1/s1/data", batch(first, 10), qos=1).wait_for_publish(10)
        wait(lambda: sub.connected, what="the reconnect")
        wait(lambda: fleet.counts["records_data"] == 50, what="the batches queued meanwhile")
        assert fleet.counts["duplicates"] == 0
        sub.stop()
        pub.disconnect()
        pub.loop_stop()
