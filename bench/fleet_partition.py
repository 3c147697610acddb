"""What it costs to split contract v2's data among fleet consumer instances without a shared
group (docs/fleet.md, "Scaling out"), on mosquitto:

1. client-side filtering: every instance subscribes to `<prefix>/+/data`, gets every v2 data
   message and drops, undecoded, those of sites outside its partition. Cost: the broker sends
   each message N times, and each instance receives and drops (N-1)/N of them. Measured: the
   CPU an instance spends per dropped message (paho's receive and the topic check), on the
   thread that receives them.
2. wildcard-free topic lists (what `site-agent fleet --partition I/N` does): each instance
   subscribes to `<prefix>/<site>/data` for the sites of its partition (learned from their
   retained status), so the broker sends it only those. Cost: one subscription per site
   (10,000 for a 10,000-site fleet, over the instances), the time to make them, the broker's
   memory for them, and a new site's first messages missed while its subscription is made (a
   v2 compact site's values unknown until its integrity refresh). Measured: subscribe time and
   broker RSS for --sites explicit filters.

    .venv/bin/python bench/fleet_partition.py [--sites 10000] [--messages 20000] [--rate 640]
"""

import argparse
import os
import sys
import threading
import time
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import paho.mqtt.client as mqtt  # noqa: E402
import psutil  # noqa: E402
from paho.mqtt.subscribeoptions import SubscribeOptions  # noqa: E402

from agent.core.uplink import compact2  # noqa: E402
from agent.fleet import decode  # noqa: E402
from hil.broker import Broker  # noqa: E402

PREFIX = "site-agent/v2"
BROKER_CONF = "max_queued_messages 1000000\nmax_queued_bytes 0\nmax_inflight_messages 100\n"


def client(port, name):
    c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=name,
                    protocol=mqtt.MQTTv5)  # fmt: skip
    c.max_inflight_messages_set(100)
    c.connect("127.0.0.1", port, 60)
    c.loop_start()
    return c


def stream_payload():
    """A typical v2 compact data message of a Wi-Fi point (30 s of its polls), as the agent's
    encoder makes it: what an instance receives and drops."""
    from hil.fleet import make_sites

    s = make_sites(1, bts_share=0.0, start=0.0, contract_version=2, fmt="compact")[0]
    s.connect_messages(0.0)
    out = []
    for t in range(1, 200):
        out += [p for k, p, _ in s.advance(float(t)) if k == "data"]
    return out[-1]


def drop_cost(port, n, partition=(0, 2)):
    """CPU per message an instance spends receiving and dropping messages of other partitions."""
    payload = stream_payload()
    sites = ["sim-wifi-%05d" % i for i in range(2000)]
    other = [s for s in sites if zlib.crc32(s.encode()) % partition[1] != partition[0]]
    got = {"n": 0, "t0": None, "t1": None}
    done = threading.Event()
    prefixes = decode.PREFIXES

    def on_message(c, u, msg):  # what Subscriber._on_message does before it decodes
        if got["t0"] is None:
            got["t0"] = time.thread_time()
        where = decode.split_topic(msg.topic, prefixes)
        if where is not None and where[2] == "data":
            if zlib.crc32(where[1].encode()) % partition[1] != partition[0]:
                got["n"] += 1
        if got["n"] == n:
            got["t1"] = time.thread_time()
            done.set()

    sub = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id="drop",
                      protocol=mqtt.MQTTv5)  # fmt: skip
    ready = threading.Event()
    sub.on_message = on_message
    sub.on_subscribe = lambda *a: ready.set()
    sub.connect("127.0.0.1", port, 60)
    sub.loop_start()
    sub.subscribe(PREFIX + "/+/data", options=SubscribeOptions(qos=1))
    ready.wait(10)
    pub = client(port, "pub")
    for i in range(n):
        info = pub.publish("%s/%s/data" % (PREFIX, other[i % len(other)]), payload, qos=1)
        if i % 500 == 499:
            info.wait_for_publish(30)
    done.wait(300)
    cpu = got["t1"] - got["t0"]
    for c in (pub, sub):
        c.disconnect()
        c.loop_stop()
    return cpu / max(1, got["n"] - 1), len(payload)


def subscribe_cost(broker, port, sites):
    """Time and broker memory for `sites` explicit data-topic subscriptions of one client."""
    ps = psutil.Process(broker.proc.pid)
    rss0 = ps.memory_info().rss
    c = client(port, "explicit")
    acked = threading.Event()
    pending = {}
    lock = threading.Lock()

    def on_subscribe(cl, u, mid, rcs, props=None):
        with lock:
            pending.pop(mid, None)
            if not pending:
                acked.set()

    c.on_subscribe = on_subscribe
    t = time.perf_counter()
    cpu0 = sum(ps.cpu_times()[:2])
    names = ["%s/site-%05d/data" % (PREFIX, i) for i in range(sites)]
    with lock:
        for i in range(0, sites, 100):  # 100 filters a SUBSCRIBE packet
            rc, mid = c.subscribe([(f, SubscribeOptions(qos=1)) for f in names[i : i + 100]])
            pending[mid] = True
    acked.wait(300)
    dt = time.perf_counter() - t
    cpu = sum(ps.cpu_times()[:2]) - cpu0
    time.sleep(1)
    rss1 = ps.memory_info().rss
    c.disconnect()
    c.loop_stop()
    return dt, cpu, rss1 - rss0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sites", type=int, default=10000)
    p.add_argument("--messages", type=int, default=20000)
    p.add_argument("--rate", type=float, default=640.0,
                   help="v2 data messages/s of the fleet (bench/fleet_consumer.py --contract 2 "
                   "at 10,000 sites: 640)")
    args = p.parse_args()
    assert compact2.MAGIC == decode.STREAM_MAGIC
    with Broker(require_mosquitto=True, extra_conf=BROKER_CONF) as broker:
        per_msg, size = drop_cost(broker.port, args.messages)
        print("client-side filtering: dropping a v2 compact data message of another partition "
              "(%d B) costs %.1f us of CPU on the receiving thread (paho and the topic check; "
              "%d messages)" % (size, per_msg * 1e6, args.messages))
        print("  at %.0f v2 messages/s, an instance of N drops (N-1)/N of them: %.1f %% of a "
              "core for N = 2, %.1f %% for N = 4 (growing with the fleet, not shrinking with N)"
              % (args.rate, 100 * per_msg * args.rate / 2,
                 100 * per_msg * args.rate * 3 / 4))  # fmt: skip
        dt, cpu, rss = subscribe_cost(broker, broker.port, args.sites)
        print("wildcard-free topic lists: %d explicit subscriptions took %.2f s (broker CPU "
              "%.2f s) and %.1f MB of broker memory (%.0f B each)"
              % (args.sites, dt, cpu, rss / 1e6, rss / args.sites))


if __name__ == "__main__":
    main()
