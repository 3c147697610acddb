"""Several brokers, byte budgets and bad networks (issue 4, points 4 and 9): failover to the
backup, return to the preferred broker, a metered budget under which routine waits and alarms go,
a scripted "broker" that never answers CONNECT and one that drops the link mid-packet."""

import asyncio
import socket
import threading

from hil.broker import Broker
from hil.net import free_port
from hil.upstream import Upstream
from tests.host.uplink_rig import PREFIX, SITE, Agent, broker_cfg, until, uplink_cfg


def test_failover_to_backup_and_return_to_preferred():
    with Broker() as primary, Broker() as backup:
        up_b = Upstream(backup.host, backup.port, PREFIX, SITE).start()
        primary.halt()

        async def main():
            cfg = uplink_cfg([broker_cfg(primary, "fibre"), broker_cfg(backup, "satellite")],
                             preferred_retry=1.0)  # fmt: skip
            agent = Agent(cfg)
            await agent.start()
            await until(lambda: len(up_b.snapshot()[1]) >= 5, 15, "data via the backup", agent)
            assert "satellite" in agent.uplink.state()["broker"]
            primary.restart()
            up_p = Upstream(primary.host, primary.port, PREFIX, SITE).start()
            await until(lambda: "fibre" in (agent.uplink.state()["broker"] or ""), 15,
                        "return to the preferred broker", agent)  # fmt: skip
            await until(lambda: len(up_p.snapshot()[1]) >= 3, 10, "data via the primary", agent)
            await agent.stop()
            up_p.stop()
            return agent

        agent = asyncio.run(main())
        up_b.stop()
        text = agent.log_text()
        assert "returning to the preferred broker" in text
        assert "moved to preferred broker" in (up_b.status or "")


def test_budget_holds_routine_backlog_but_alarms_go():
    with Broker() as broker:
        up = Upstream(broker.host, broker.port, PREFIX, SITE).start()

        async def main():
            cfg = uplink_cfg([broker_cfg(broker, "satellite", budget_bytes=3000,
                                         budget_window="hour")], batch_max=5)  # fmt: skip
            agent = Agent(cfg, interval=0.05)
            await agent.start()
            await until(lambda: agent.uplink.budget_blocked, 15, "budget exhausted", agent)
            await asyncio.sleep(0.5)
            data_before = sum(1 for a in up.arrivals if a[0] == "data")
            agent.raise_alarm(2)
            await until(lambda: any(a[0] == "alarm" for a in up.arrivals), 10, "alarm", agent)
            await asyncio.sleep(0.5)
            data_after = sum(1 for a in up.arrivals if a[0] == "data")
            used = agent.uplink.budgets[0].used
            depth = agent.queue.stats()["depth"]["routine"]
            await agent.stop()
            return agent, data_before, data_after, used, depth

        agent, before, after, used, depth = asyncio.run(main())
        up.stop()
        assert after == before  # routine waited
        assert used > 3000  # the alarm overdrew the budget; routine never does
        assert depth > 0  # the backlog is kept
        assert "byte budget used up" in agent.log_text()


class ScriptedBroker:
    """A TCP server on loopback that plays a broken broker: "silent" reads CONNECT and never
    answers; "cut" answers CONNACK, then sends half a PUBLISH packet and closes the link."""

    def __init__(self, mode):
        self.mode = mode
        self.port = free_port()
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.sock.listen(8)
        self.accepted = 0
        self.conns = []
        self.stop_flag = False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        self.sock.settimeout(0.2)
        while not self.stop_flag:
            try:
                c, _ = self.sock.accept()
            except OSError:
                continue
            self.conns.append(c)
            c.settimeout(2)
            try:
                first = c.recv(2)
                if not first:
                    continue  # the agent's link probe: a TCP connect and close, no MQTT
                assert first[:1] == b"\x10"  # CONNECT
                self.accepted += 1  # connection attempts, as MQTT sees them
                if self.mode == "cut":
                    c.sendall(b"\x20\x02\x00\x00")  # CONNACK accepted
                    # PUBLISH to a 20-byte topic announcing 100 bytes, cut after 7.
                    c.sendall(b"\x30\x64\x00\x14site-")
                    c.close()
            except OSError:
                pass

    def close(self):
        self.stop_flag = True
        self.sock.close()
        for c in self.conns:
            c.close()


def _broken(mode):
    srv = ScriptedBroker(mode)
    try:

        async def main():
            b = {"name": "broken", "host": "127.0.0.1", "port": srv.port, "insecure": True}
            agent = Agent(uplink_cfg([b], connect_timeout=1.0), interval=0.1)
            await agent.start()
            # Two attempts, and polling going on meanwhile (asserted below). Closing a session
            # no longer waits up to 1 s for paho's network thread (there is none), so the second
            # attempt can come after the test backoff's [0, 0.4] s, before 5 polls at 0.1 s.
            await until(lambda: srv.accepted >= 2 and sum(
                d.calls for d in agent.drivers.values()) >= 5, 15, "two attempts", agent)
            polls = sum(d.calls for d in agent.drivers.values())
            await agent.stop()
            return agent, polls

        agent, polls = asyncio.run(main())
    finally:
        srv.close()
    st = agent.queue.stats()
    assert polls >= 5  # polling went on
    assert st["confirmed_seq"] > 0 and sum(st["depth"].values()) == st["confirmed_seq"] + 1
    return agent.log_text()


def test_broker_that_never_answers_connect():
    text = _broken("silent")
    assert "no CONNACK within 1s (broker not answering)" in text, text[-2000:]


def test_broker_that_drops_the_link_mid_packet():
    text = _broken("cut")
    assert "link closed by the broker or the network" in text, text[-2000:]
