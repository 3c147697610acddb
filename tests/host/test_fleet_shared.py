"""Scaling out: several `site-agent fleet` instances share the live stream with an MQTT 5 shared
subscription, and each keeps the full picture from the retained topics. Against real mosquitto.
"""

import socket
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
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
        # Nothing counted twice. The first batch's PUBACK may not have left when the link was
        # cut (paho acks after the callback): then the broker redelivers it under QoS 1 and the
        # fleet must take it as a duplicate, not as data (seen once in CI under load).
        assert fleet.counts["duplicates"] in (0, 10), fleet.counts
        sub.stop()
        pub.disconnect()
        pub.loop_stop()


def test_two_consumers_in_one_process_with_default_ids_keep_their_own_sessions():
    """The default client id is the host's and the process's; a second consumer in the same
    process (a test, the screenshots' late view) must not take the first one's session away
    (the broker ends the older connection of an id, and the two would take turns)."""
    from agent.core.log import Log
    from agent.core.uplink import contract

    with Broker(require_mosquitto=True) as b:
        lines = []
        fleets = [Fleet(), Fleet()]
        subs = []
        pub = None
        try:
            for f in fleets:
                subs.append(Subscriber(f, "127.0.0.1", b.port, log=Log(write=lines.append)))
                assert subs[-1].start().wait_synced(30), subs[-1].last_error
            pub, _, _ = client5(b.port, "pub")
            for first in range(1, 31, 10):  # over a few seconds: paho retries after 1 s
                recs = [{"site": "s1", "device": "site", "metric": "site.battery_charge",
                         "value": 50, "unit": "%", "time": time.time(), "quality": "good",
                         "seq": first + i} for i in range(10)]  # fmt: skip
                pub.publish("site-agent/v1/s1/data", contract.encode_batch("s1", first, recs,
                            "data"), qos=1).wait_for_publish(10)  # fmt: skip
                time.sleep(1.5)
            for f in fleets:
                wait(lambda f=f: f.counts["records_data"] == 30, what="every batch, each")
            assert all(s.connected for s in subs)
            assert not [x for x in lines if "lost the broker" in x], lines
        finally:
            for s in subs:
                s.stop()
            if pub is not None:
                pub.disconnect()
                pub.loop_stop()


def test_mosquitto_gives_a_shared_group_its_messages_in_strict_turn_whatever_the_topic():
    """What mosquitto (2.0, src/subs.c subs__shared_process) does with a shared group, and why
    contract v2's compact stream must not go through one there: every message matching the
    group's filter goes to the member at the head of the group's list, which then moves to its
    end. The turn is the group's, across topics: one site's consecutive messages go to
    whichever member's turn it is, so with a few sites publishing, each member gets some of
    every site's stream, with gaps. A member that is away with a session kept (clean start off)
    keeps its turn: its messages are queued for it, not given to the other member."""
    with Broker(require_mosquitto=True) as b:
        pub, _, _ = client5(b.port, "pub")
        members = []
        for name in ("noc-a", "noc-b"):
            c, got, ready = client5(b.port, name)
            c.subscribe("$share/noc/site-agent/v2/+/data", options=SubscribeOptions(qos=1))
            assert ready.wait(10)
            members.append((c, got))

        def publish(topics):
            for i, site in enumerate(topics):
                pub.publish("site-agent/v2/%s/data" % site, b"%d" % i, qos=1).wait_for_publish(10)
            n = len(topics)
            wait(lambda: sum(len(g) for _, g in members) == n, what="%d messages" % n)
            got = [[int(p) for _, p, _ in g] for _, g in members]
            for _, g in members:
                del g[:]
            return got

        # One site: its messages alternate between the members.
        a, bb = publish(["s1"] * 12)
        assert sorted(a + bb) == list(range(12)) and len(a) == len(bb) == 6
        assert {x % 2 for x in a} != {x % 2 for x in bb} and len({x % 2 for x in a}) == 1
        # Two sites, irregularly interleaved: each site's stream is split between the members.
        order = ["s1", "s1", "s2", "s1", "s2", "s2", "s2", "s1", "s1", "s1"]
        a, bb = publish(order)
        for site in ("s1", "s2"):
            idx = {i for i, s in enumerate(order) if s == site}
            assert idx & set(a) and idx & set(bb)  # both members got some of each site
        # noc-b leaves (session expiry 0: its subscription goes); noc-kept joins and goes
        # away with its session kept for 300 s: its turn stays, its share is queued for it.
        c, _ = members[1]
        c.disconnect()
        c.loop_stop()
        kept = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                           client_id="noc-kept", protocol=mqtt.MQTTv5)  # fmt: skip
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        got_kept = []
        ready = threading.Event()
        kept.on_message = lambda cl, u, msg: got_kept.append(int(msg.payload))
        kept.on_subscribe = lambda cl, u, mid, rcs, props=None: ready.set()
        kept.connect("127.0.0.1", b.port, 30, clean_start=False, properties=props)
        kept.loop_start()
        kept.subscribe("$share/noc/site-agent/v2/+/data", options=SubscribeOptions(qos=1))
        assert ready.wait(10)
        kept.disconnect()
        kept.loop_stop()
        time.sleep(0.5)
        for i in range(10):
            pub.publish("site-agent/v2/s1/data", b"%d" % i, qos=1).wait_for_publish(10)
        a_got = members[0][1]
        wait(lambda: len(a_got) == 5, what="noc-a's half")
        time.sleep(0.5)
        assert len(a_got) == 5  # the other half waits for noc-kept, not given to noc-a
        kept.reconnect()
        kept.loop_start()
        wait(lambda: len(got_kept) == 5, what="noc-kept's queued half on its return")
        assert sorted([int(p) for _, p, _ in a_got] + got_kept) == list(range(10))
        kept.disconnect()
        kept.loop_stop()
        for cl in (pub, members[0][0]):
            cl.disconnect()
            cl.loop_stop()


def fast_sites(n, seed, **kw):
    sites = make_sites(n, seed=seed, bts_share=0.5, **kw)
    for s in sites:  # faster than life, so that the test takes seconds
        s.commit_s = 1.0
        for d in s.devices:
            d.interval = 2.0
    return sites


def test_a_shared_group_on_mosquitto_leaves_each_member_gaps_in_every_v2_compact_stream():
    """Why --share keeps v2 data out of the group (unless --share-all on a broker that keeps a
    topic on one member): forced through mosquitto's group, each member decodes only part of
    every site's stream, and cannot rebuild what the parts it missed carried."""
    with Broker(require_mosquitto=True) as b:
        fleets = [Fleet(), Fleet(), Fleet()]
        subs = [Subscriber(fleets[0], "127.0.0.1", b.port, share="noc", share_all=True,
                           client_id="noc-a"),
                Subscriber(fleets[1], "127.0.0.1", b.port, share="noc", share_all=True,
                           client_id="noc-b"),
                Subscriber(fleets[2], "127.0.0.1", b.port, client_id="whole")]  # fmt: skip
        for sub in subs:
            sub.start()
        for sub in subs:
            assert sub.wait_synced(30), sub.last_error
        sim = FleetSim("127.0.0.1", b.port, fast_sites(6, 13, contract_version=2,
                                                        fmt="compact")).start()  # fmt: skip
        try:
            wait(lambda: all(f.counts["records_unresolved"] > 100 for f in fleets[:2]), 60,
                 "both members to meet readings they cannot rebuild")  # fmt: skip
        finally:
            sim.stop()
        assert fleets[2].counts["records_unresolved"] == 0 and fleets[2].counts["records_data"]
        for sub in subs:
            sub.stop()


def test_partitioned_instances_each_decode_whole_streams_and_share_the_v1_ones():
    """Two instances, `--share noc --partition 0/2` and `1/2`, and an unshared one, on v1 and
    v2 sites (JSON and compact). v1 data goes through the group (each member a part); each
    instance subscribes to the v2 data of its partition's sites, one topic each, and decodes
    them whole: nothing unresolved, every v2 site's records on exactly one member, as many as
    the unshared instance has, and no other site's data sent to it."""
    with Broker(require_mosquitto=True) as b:
        fleets = [Fleet(), Fleet(), Fleet()]
        subs = [Subscriber(fleets[0], "127.0.0.1", b.port, share="noc", partition=(0, 2),
                           client_id="noc-a"),
                Subscriber(fleets[1], "127.0.0.1", b.port, share="noc", partition=(1, 2),
                           client_id="noc-b"),
                Subscriber(fleets[2], "127.0.0.1", b.port, client_id="whole")]  # fmt: skip
        sites = fast_sites(12, 17)
        for i, s in enumerate(sites):
            s.use_contract(1 if i < 4 else 2, None if i < 8 else "compact")
        # The sites were installed before the consumers started: their retained statuses are
        # there (an instance learns its sites from them, and subscribes to their data before
        # they speak again; a new site's first messages could come before that).
        pub, _, _ = client5(b.port, "installer")
        for s in sites:
            pub.publish("%s/%s/status" % (s.prefix, s.id), s.will("agent stopped"), qos=1,
                        retain=True).wait_for_publish(10)  # fmt: skip
        pub.disconnect()
        pub.loop_stop()
        for sub in subs:
            sub.start()
        for sub in subs:
            assert sub.wait_synced(30), sub.last_error
        v1 = [s.id for s in sites if s.contract == 1]
        v2 = [s.id for s in sites if s.contract == 2]
        owners = {sid: subs[0].owner(sid) for sid in v2}
        assert set(owners.values()) == {0, 1}  # both partitions have sites
        sim = FleetSim("127.0.0.1", b.port, sites).start()
        try:
            wait(lambda: all(f.counts["records_data"] > 500 for f in fleets), 60, "data")
        finally:
            sim.stop()
        per_site = lambda f, sid: f.sites[sid].records if sid in f.sites else 0  # noqa: E731
        whole = fleets[2]

        def live(f, sid):  # records less the retained state's, which every instance reads
            return per_site(f, sid) - len(sim.site(sid).latest)

        def settled():
            return all(live(fleets[owners[sid]], sid) == live(whole, sid) for sid in v2) and \
                sum(live(f, sid) for f in fleets[:2] for sid in v1) == sum(
                    live(whole, sid) for sid in v1)  # fmt: skip

        wait(settled, 60, "every record to reach the instances")
        sent = sum(s.sent for s in sites)
        assert whole.counts["records_data"] + whole.counts["records_alarm"] == sent
        for i, f in enumerate(fleets[:2]):
            assert len(f.sites) == 12 and f.counts["records_unresolved"] == 0
            assert f.counts["messages_elsewhere"] == 0  # the broker sent only its sites'
            assert subs[i]._site_subs == {("site-agent/v2", sid) for sid in v2
                                          if owners[sid] == i}  # fmt: skip
            for sid in v2:
                site = f.sites[sid]
                if owners[sid] == i:
                    assert site.elsewhere is None and site.records == whole.sites[sid].records
                else:
                    # Known from its retained state and status, its live data left to the
                    # other instance.
                    assert site.elsewhere == owners[sid] and site.ctx is None
                    assert site.records == len(sim.site(sid).latest)  # the state's, once
            # A share of the v1 sites' data (which member gets a message is the group's turn).
            assert 0 < sum(live(f, sid) for sid in v1) < sum(live(whole, sid) for sid in v1)
        for sub in subs:
            sub.stop()
