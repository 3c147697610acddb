"""Publish as a fleet of simulated sites (hil/fleet_site.py) on a broker: the demo's generated
sites, the fleet view's tests and the 10,000-site load generator (bench/fleet_consumer.py).

    sim = FleetSim("127.0.0.1", port, make_sites(6, typhoon=1)).start()
    ...
    sim.stop()

`own_connections=True` (default): one MQTT connection per site, with the site's last will, so a
site going silent is seen exactly as the broker reports a real one (the will, published by the
broker when the connection dies without a DISCONNECT). `own_connections=False`: the sites share
`clients` connections (load generation: 10,000 connections would measure the broker, not the
consumer); status is still published per site, but silence then shows only by age.
"""

import heapq
import os
import random
import socket
import threading
import time

import paho.mqtt.client as mqtt

from hil.fleet_site import PLACES, SimSite, Typhoon


def make_sites(n, typhoon=0, seed=7, bts_share=0.3, start=None, clock_est=0, prefix="sim",
               contract_version=1, fmt=None, integrity=600.0):  # fmt: skip
    """n sites spread over PLACES; the first `typhoon` run a Typhoon scenario; the last
    `clock_est` have an untrusted clock (their records carry estimated times). They speak
    contract `contract_version` in form `fmt` (default: the example configs' form for the
    site's kind, JSON for a BTS and compact for a Wi-Fi point)."""
    rnd = random.Random(seed)
    start = time.time() if start is None else start
    sites = []
    for i in range(n):
        kind = "bts" if rnd.random() < bts_share else "wifi"
        if i < typhoon:
            kind = "bts"
        place = PLACES[i % len(PLACES)] if n <= len(PLACES) else rnd.choice(PLACES)
        site_id = "%s-%s-%05d" % (prefix, kind, i)
        s = SimSite(site_id, kind, place=place, rnd=random.Random(seed * 100003 + i),
                    start=start, seq0=1000 + i, clock_est=i >= n - clock_est, fmt=fmt,
                    contract_version=contract_version, integrity=integrity)  # fmt: skip
        if i < typhoon:
            s.scenario = Typhoon()
        sites.append(s)
    return sites


class FleetSim:
    def __init__(self, host, port, sites, prefix=None, own_connections=True, clients=4, qos=1,
                 tick=0.25):  # fmt: skip
        """prefix: the topic prefix of every site (default: each site's own, by its contract
        version)."""
        self.host = host
        self.port = port
        self.sites = list(sites)
        self.prefix = prefix
        self.own = own_connections
        self.nclients = clients
        self.qos = qos
        self.tick = tick
        self.clients = {}  # site id (own) or index (shared) -> paho client
        self.lock = threading.Lock()
        self.published = 0
        self._seq0 = {s.id: s.seq for s in self.sites}
        self.bytes = 0
        self.errors = []
        self._stop = threading.Event()
        self._thread = None
        self._was_silent = {}
        self._poked = []
        self._last_info = {}  # id(client) -> its newest publish (acked in order at QoS 1)
        self.paused = threading.Event()  # set: the sites publish nothing (time still passes)

    # --- connections ------------------------------------------------------------------------
    def _client(self, cid, will=None):
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2, client_id=cid,
                        protocol=mqtt.MQTTv311, clean_session=True)  # fmt: skip
        c.max_inflight_messages_set(200)
        if will is not None:
            c.will_set(will[0], will[1], qos=1, retain=True)
        c.connect(self.host, self.port, 30)
        c.loop_start()
        return c

    def _topic(self, site, kind):
        return "%s/%s/%s" % (self.prefix or site.prefix, site.id, kind)

    def _connect_site(self, site, now):
        self.clients[site.id] = self._client(
            "sim-%s-%d" % (site.id, int(now * 1000) % 100000),
            (self._topic(site, "status"), site.will()))

    def _drop_site(self, site):
        """The link dies without a DISCONNECT: the broker publishes the site's last will."""
        c = self.clients.pop(site.id, None)
        if c is None:
            return
        c.loop_stop()
        sock = c.socket()
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def _send(self, site, msgs):
        if not msgs:
            return
        c = self.clients.get(site.id) if self.own else self.clients[hash(site.id) % self.nclients]
        if c is None:
            return
        for kind, payload, retain in msgs:
            info = c.publish(self._topic(site, kind), payload, qos=self.qos, retain=retain)
            if info.rc != mqtt.MQTT_ERR_SUCCESS:
                self.errors.append("publish %s/%s: %s" % (site.id, kind, info.rc))
            self._last_info[id(c)] = info
            self.published += 1
            self.bytes += len(payload)

    # --- running ----------------------------------------------------------------------------
    def start(self, run=True, now=None):
        """Connect every site and publish what it sends at connect. run=False: no thread; the
        caller drives the sites' clock with step() (tests that need exact timing)."""
        now = time.time() if now is None else now
        if not self.own:
            for i in range(self.nclients):
                self.clients[i] = self._client("sim-fleet-%d-%d" % (i, int(now) % 100000))
        for site in self.sites:
            self._prime(site, now)
            if self.own:
                self._connect_site(site, now)
            self._send(site, site.connect_messages(now))
            self._was_silent[site.id] = False
        if run:
            self._thread = threading.Thread(target=self._run, name="fleet-sim", daemon=True)
            self._thread.start()
        return self

    def step(self, now):
        """Advance every site to time `now` (a clock the caller drives, start(run=False)) and
        publish what they send; then wait until the broker has every message."""
        for site in self.sites:
            self._advance(site, now)
        self.flush()

    def flush(self, timeout=30.0):
        for info in list(self._last_info.values()):
            info.wait_for_publish(timeout)

    @staticmethod
    def _prime(site, now):
        """Poll every device once before the link comes up, as an agent does when it starts:
        the first retained state then holds values, and the readings follow as backlog."""
        silent = site.silent
        site.silent = True
        for d in site.devices:
            d.next = min(d.next, now)
        site.next_commit = now
        site.advance(now)
        site.silent = silent
        # Agents start at different times: spread the next polls and commits over an interval.
        for d in site.devices:
            d.next = now + site.rnd.uniform(0, d.interval)
        site.next_commit = now + site.rnd.uniform(0, site.commit_s)

    def _run(self):
        # One heap entry per site is current (its time is due[i]); a poke adds another, and
        # whichever comes second finds its time stale and is dropped.
        due = [0.0] * len(self.sites)
        heap = [(0.0, i) for i in range(len(self.sites))]
        heapq.heapify(heap)
        while not self._stop.is_set():
            if self.paused.is_set():
                self._stop.wait(self.tick)
                continue
            now = time.time()
            with self.lock:
                poked, self._poked = self._poked, []
            for i in poked:
                due[i] = now
                heapq.heappush(heap, (now, i))
            while heap and heap[0][0] <= now:
                t, i = heapq.heappop(heap)
                if t != due[i]:
                    continue
                site = self.sites[i]
                try:
                    self._advance(site, now)
                except Exception as e:  # a sim bug must show, not hang the test
                    self.errors.append("%s: %r" % (site.id, e))
                nxt = min([d.next for d in site.devices] + [site.next_commit])
                if site.scenario is not None:
                    nxt = min(nxt, now + 1.0)
                due[i] = nxt
                heapq.heappush(heap, (nxt, i))
            wait = (heap[0][0] - time.time()) if heap else self.tick
            self._stop.wait(min(max(wait, 0.005), self.tick))

    def records_made(self):
        """Records (readings and alarm events) the sites have made so far."""
        return sum(s.seq - self._seq0[s.id] for s in self.sites)

    def records_sent(self):
        """Records the sites have published in data and alarm batches so far."""
        return sum(s.sent for s in self.sites)

    def _advance(self, site, now):
        msgs = site.advance(now)
        silent, was = site.silent, self._was_silent[site.id]
        if silent and not was:
            if self.own:
                self._drop_site(site)
            self._was_silent[site.id] = True
        elif was and not silent:
            if self.own:
                self._connect_site(site, now)
            self._send(site, site.connect_messages(now))
            self._was_silent[site.id] = False
        self._send(site, msgs)

    def site(self, site_id):
        for s in self.sites:
            if s.id == site_id:
                return s
        raise KeyError(site_id)

    def poke(self, site_id):
        """Have the site act on a change made from outside (mains, link) at the next tick."""
        i = self.sites.index(self.site(site_id))
        with self.lock:
            self._poked.append(i)

    def go_silent(self, site_id):
        """Cut a site's link now (its will goes out); its records pile up as a backlog."""
        self.site(site_id).silent = True
        self.poke(site_id)

    def come_back(self, site_id):
        """The link returns: birth, alarm events, retained state, then the backlog."""
        self.site(site_id).silent = False
        self.poke(site_id)

    def stop(self, goodbye=True):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)
        for key, c in list(self.clients.items()):
            try:
                last = self._last_info.get(id(c))
                if last is not None:  # what was handed to paho goes out before we hang up
                    last.wait_for_publish(30)
                if goodbye and self.own:
                    site = self.site(key)
                    c.publish(self._topic(site, "status"), site.will("agent stopped"), qos=1,
                              retain=True).wait_for_publish(2)  # fmt: skip
                c.disconnect()
                c.loop_stop()
            except Exception:
                pass
        self.clients.clear()


def main(argv=None):
    """`python -m hil.fleet --port 1883 --sites 10000`: publish as a fleet until SIGTERM or
    --duration, printing a JSON line of counters every --every seconds (bench/fleet_consumer.py
    reads them)."""
    import argparse
    import json
    import signal
    import sys

    p = argparse.ArgumentParser(prog="python -m hil.fleet", description=main.__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--sites", type=int, default=100)
    p.add_argument("--typhoon", type=int, default=0, help="this many sites in a typhoon")
    p.add_argument("--bts-share", type=float, default=0.3)
    p.add_argument("--prefix", default="sim", help="site id prefix (default sim)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--contract", type=int, choices=(1, 2), default=1,
                   help="contract version every site speaks (default 1)")
    p.add_argument("--form", choices=("kind", "json", "compact"), default="kind",
                   help="payload form: kind (default) is the example configs' (JSON for a BTS, "
                   "compact for a Wi-Fi point), or one form for every site")
    p.add_argument("--integrity", type=float, default=600.0,
                   help="v2 compact: the integrity period in seconds (default 600)")
    p.add_argument("--own-connections", action="store_true",
                   help="one connection per site, with its last will (not for thousands)")
    p.add_argument("--clients", type=int, default=4, help="shared connections (default 4)")
    p.add_argument("--announce", action="store_true",
                   help="only publish every site's retained status (an installed site whose "
                   "agent is stopped) and exit: consumers that start then know the fleet")
    p.add_argument("--duration", type=float)
    p.add_argument("--every", type=float, default=5.0)
    args = p.parse_args(argv)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *a: stop.set())
    sites = make_sites(args.sites, typhoon=args.typhoon, seed=args.seed,
                       bts_share=args.bts_share, prefix=args.prefix,
                       contract_version=args.contract,
                       fmt=None if args.form == "kind" else args.form,
                       integrity=args.integrity)  # fmt: skip
    if args.announce:
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
                        client_id="sim-announce-%d" % os.getpid(), protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(200)
        c.connect(args.host, args.port, 30)
        c.loop_start()
        for s in sites:
            info = c.publish("%s/%s/status" % (s.prefix, s.id), s.will("agent stopped"), qos=1,
                             retain=True)  # fmt: skip
        info.wait_for_publish(120)
        c.disconnect()
        c.loop_stop()
        return 0
    t0 = time.monotonic()
    sim = FleetSim(args.host, args.port, sites, own_connections=args.own_connections,
                   clients=args.clients).start()  # fmt: skip
    started = time.monotonic()

    def report(final=False):
        sys.stdout.write(json.dumps({"t": round(time.monotonic() - started, 3),
                                     "start_s": round(started - t0, 3),
                                     "published": sim.published, "bytes": sim.bytes,
                                     "records": sim.records_made(), "sent": sim.records_sent(),
                                     "errors": len(sim.errors),
                                     "final": final}) + "\n")  # fmt: skip
        sys.stdout.flush()

    report()
    while not stop.wait(args.every):
        report()
        if args.duration and time.monotonic() - started >= args.duration:
            break
    sim.stop(goodbye=False)
    report(final=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
