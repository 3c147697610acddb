"""Reconnecting fast without a storm (issue 15, point 5): a silent link is noticed by its
missing PUBACKs, not 1.5 keepalives later; while nothing answers the agent only probes, and once
a broker answers again it connects within a probe period plus the spread, however long the
outage was (the full-jitter backoff alone had grown to minutes by then)."""

import asyncio
import socket
import threading
import time

from hil.broker import Broker
from hil.net import free_port
from hil.upstream import Upstream
from tests.host.uplink_rig import PREFIX, SITE, Agent, broker_cfg, until, uplink_cfg


class Relay:
    """A TCP relay to a broker that can go silent: `freeze()` stops forwarding both ways (the
    sockets stay open, nothing is closed or reset: a cut far away) and stops accepting."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.host = "127.0.0.1"
        self.port = free_port()
        self.frozen = threading.Event()
        self.srv = socket.create_server((self.host, self.port))
        self.srv.settimeout(0.2)
        self.stop = threading.Event()
        self.conns = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop.is_set():
            if self.frozen.is_set():
                time.sleep(0.05)
                continue
            try:
                c, _ = self.srv.accept()
            except OSError:
                continue
            if self.frozen.is_set():
                continue  # accepted just as the link died: never answered
            u = socket.create_connection(self.target)
            self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, a, b):
        a.settimeout(0.2)
        while not self.stop.is_set():
            try:
                data = a.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            while self.frozen.is_set() and not self.stop.is_set():
                time.sleep(0.05)  # held: a dead link delivers nothing, and says nothing
            try:
                b.sendall(data)
            except OSError:
                return

    def freeze(self):
        self.frozen.set()
        self.srv.close()  # new connections find nothing listening

    def close(self):
        self.stop.set()
        for s in self.conns + [self.srv]:
            try:
                s.close()
            except OSError:
                pass


def test_silent_link_is_noticed_by_missing_pubacks_and_the_backup_takes_over():
    with Broker() as primary, Broker() as backup:
        relay = Relay(primary.port)
        up_b = Upstream(backup.host, backup.port, PREFIX, SITE).start()
        fibre = {"name": "fibre", "host": relay.host, "port": relay.port, "insecure": True}
        try:

            async def main():
                # keepalive 60: without the ack timeout the silence would last up to 90 s
                brokers = [fibre, broker_cfg(backup, "satellite")]
                cfg = uplink_cfg(brokers, keepalive=60, ack_timeout=2.0, probe_interval=0.5,
                                 reconnect_spread=1.0)  # fmt: skip
                agent = Agent(cfg)
                await agent.start()
                await until(lambda: agent.uplink.state()["connected"], 15, "connected", agent)
                assert "fibre" in agent.uplink.state()["broker"]
                relay.freeze()
                cut = time.monotonic()
                agent.raise_alarm()
                await until(lambda: len(up_b.alarm_events) >= 1, 30, "the alarm via the backup",
                            agent)  # fmt: skip
                took = time.monotonic() - cut
                await agent.stop()
                return agent, took

            agent, took = asyncio.run(main())
        finally:
            up_b.stop()
            relay.close()
        text = agent.log_text()
        assert "no PUBACK within 2s: the link is presumed dead" in text
        # ack timeout 2 s + a probe round + spread up to 1 s + connect: well under the 30 s,
        # and far under the 90 s a keepalive of 60 would take (generous for a loaded machine).
        assert took < 20.0, took


def test_after_a_long_outage_the_return_is_found_by_probes_within_seconds():
    with Broker() as broker:
        up = Upstream(broker.host, broker.port, PREFIX, SITE).start()

        async def main():
            # The full-jitter backoff alone: base 2, cap 300; after 40 s of failures its
            # ceiling is minutes. Probes every 0.5-1.5 s and a spread of 2 s find the return.
            cfg = uplink_cfg([broker_cfg(broker)], backoff_base=2.0, backoff_cap=300.0,
                             probe_interval=1.0, reconnect_spread=2.0,
                             connect_timeout=2)  # fmt: skip
            agent = Agent(cfg)
            await agent.start()
            await until(lambda: agent.uplink.state()["connected"], 15, "connected", agent)
            broker.halt()
            await until(lambda: "no broker answers; probing" in agent.log_text(), 30,
                        "probing", agent)  # fmt: skip
            await asyncio.sleep(8.0)
            probes_down = agent.uplink.state()["probes"]
            broker.restart()
            back = time.monotonic()
            await until(lambda: agent.uplink.state()["connected"], 30, "reconnected", agent)
            took = time.monotonic() - back
            await agent.stop()
            return agent, took, probes_down

        agent, took, probes_down = asyncio.run(main())
        up.stop()
    text = agent.log_text()
    assert "a broker answers again" in text
    # 8 s of outage at one probe per 0.5-1.5 s: several probes, and no full connect attempt
    # while nothing answered (a connect attempt logs "connecting").
    assert 4 <= probes_down <= 40, probes_down
    down_part = text.split("no broker answers; probing")[1].split("a broker answers again")[0]
    assert "connecting" not in down_part
    assert took < 12.0, took  # probe period 1.5 + spread 2 + connect, with room for load
