"""Uplink security against a real mosquitto: mutual TLS with generated certificates, password,
a broker ACL that denies the agent's topics, plain text only with a warning, and no secret in
any log line (issue 4, point 6)."""

import asyncio
import atexit
import os
import shutil
import tempfile

from hil.broker import Broker
from hil.pki import make_ca, make_pki
from hil.upstream import Upstream
from tests.host.uplink_rig import PASSWORD, PREFIX, SITE, Agent, broker_cfg, until, uplink_cfg


def _pki():
    d = tempfile.mkdtemp(prefix="uplink-pki-")
    atexit.register(shutil.rmtree, d, True)
    return d, make_pki(d, client_cn=SITE)


def _tls_broker(p, **kw):
    tls = {"ca_file": p["ca_file"], "cert_file": p["server_cert"], "key_file": p["server_key"]}
    return Broker(tls=tls, **kw)


def _secure(broker, p, **kw):
    opts = {"insecure": False, "ca_file": p["ca_file"], "cert_file": p["client_cert"],
            "key_file": p["client_key"]}  # fmt: skip
    opts.update(kw)
    return broker_cfg(broker, **opts)


def _ops_upstream(broker, p):
    """The operations centre's subscriber on the mutual-TLS broker, as user "ops"."""
    up = Upstream(broker.host, broker.port, PREFIX, SITE, tls={
        "ca_file": p["ca_file"], "cert_file": p["client_cert"],
        "key_file": p["client_key"]})  # fmt: skip
    up.client.username_pw_set("ops", "ops-pw")
    return up.start()


def _key_material(p):
    with open(p["client_key"]) as f:
        body = [ln for ln in f.read().splitlines() if ln and not ln.startswith("-----")]
    return body


def _no_secrets(agent, p):
    text = agent.log_text()
    assert PASSWORD not in text
    for line in _key_material(p):
        assert line not in text


def test_mutual_tls_with_password_delivers_and_logs_no_secret():
    d, p = _pki()
    with _tls_broker(p, passwords={"agent": PASSWORD, "ops": "ops-pw"}) as broker:
        up = _ops_upstream(broker, p)

        async def main():
            cfg = _secure(broker, p, username="agent", password=PASSWORD)
            agent = Agent(uplink_cfg([cfg]))
            await agent.start()
            await until(lambda: len(up.snapshot()[1]) >= 10, 15, "readings over TLS", agent)
            await agent.stop()
            return agent

        agent = asyncio.run(main())
        up.stop()
        _no_secrets(agent, p)
        assert "insecure" not in agent.log_text()


def test_tls_failures_are_reported_and_data_kept():
    d, p = _pki()
    rogue = os.path.join(d, "rogue")
    make_ca(rogue)
    cases = {
        # No client certificate: the broker requires one.
        "no client cert": lambda b: broker_cfg(b, insecure=False, ca_file=p["ca_file"]),
        # Pinned CA is another CA: the broker's certificate must not be trusted.
        "wrong CA": lambda b: _secure(b, p, ca_file=os.path.join(rogue, "ca.pem")),
        # Right certificates, wrong password.
        "bad password": lambda b: _secure(b, p, username="agent", password=PASSWORD + "x"),
    }
    with _tls_broker(p, passwords={"agent": PASSWORD}) as broker:
        for name, make in cases.items():

            async def main(make=make, name=name):
                agent = Agent(uplink_cfg([make(broker)]))
                await agent.start()
                await until(lambda: agent.uplink.backoff.failures >= 2, 15, name, agent)
                await until(lambda: agent.queue.confirmed_seq >= 5, 5, "polling", agent)
                await agent.stop()
                return agent

            agent = asyncio.run(main())
            text = agent.log_text()
            assert "connection attempt failed" in text, (name, text[-2000:])
            assert agent.uplink.acked == 0
            st = agent.queue.stats()
            assert st["depth"]["routine"] == st["confirmed_seq"] + 1  # all kept
            _no_secrets(agent, p)
            if name == "bad password":
                assert "refused the connection" in text
            if name == "wrong CA":
                assert "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify" in text


ACL = """user ops
topic readwrite #

user agent
topic read site-agent/v1/+/cmd
topic write site-agent/v1/other-site/#
"""


def test_acl_denying_our_topics_is_reported_and_data_kept():
    for protocol in ("3.1.1", "5"):
        with Broker(acl=ACL, passwords={"agent": PASSWORD, "ops": "o"}) as broker:

            async def main(protocol=protocol, broker=broker):
                cfg = broker_cfg(broker, username="agent", password=PASSWORD, protocol=protocol)
                agent = Agent(uplink_cfg([cfg]))
                await agent.start()
                await until(lambda: agent.uplink.backoff.failures >= 2, 20, "ACL denial", agent)
                await agent.stop()
                return agent

            agent = asyncio.run(main())
            text = agent.log_text()
            assert "ACL" in text, text[-2000:]
            assert agent.uplink.acked == 0
            st = agent.queue.stats()
            assert st["confirmed_seq"] > 0
            assert st["depth"]["routine"] == st["confirmed_seq"] + 1
            assert PASSWORD not in text


def test_insecure_broker_warns_at_every_start():
    with Broker() as broker:
        for _ in range(2):

            async def main():
                agent = Agent(uplink_cfg([broker_cfg(broker, password=PASSWORD, username="u")]))
                await agent.start()
                await asyncio.sleep(0.3)
                await agent.stop()
                return agent

            agent = asyncio.run(main())
            warn = [ln for ln in agent.lines if "WARNING" in ln and "insecure = true" in ln]
            assert len(warn) == 1
            assert PASSWORD not in agent.log_text()


def test_a_backlog_drains_over_tls_without_gaps():
    """A backlog of several hundred records goes out over mutual TLS in bursts of batches, with
    paho driven from the asyncio loop (mqtt_client.LoopDriver): every seq arrives, none stays."""
    d, p = _pki()
    with _tls_broker(p, passwords={"agent": PASSWORD, "ops": "ops-pw"}) as broker:
        up = _ops_upstream(broker, p)

        async def main():
            cfg = _secure(broker, p, username="agent", password=PASSWORD)
            agent = Agent(uplink_cfg([cfg], batch_max=5, rate_msgs=1000), interval=0.01)
            await agent.start(uplink=False)
            await until(lambda: agent.queue.confirmed_seq >= 600, 20, "a backlog", agent)
            agent.loop.stop()  # a fixed backlog: all of it must go
            await agent.loop_task
            agent.start_uplink()

            def drained():
                st = agent.queue.stats()
                seqs = up.snapshot()[1]
                return (sum(st["depth"].values()) == 0
                        and all(s in seqs for s in range(st["confirmed_seq"] + 1)))  # fmt: skip

            await until(drained, 30, "the backlog upstream", agent)
            await agent.stop()
            return agent

        agent = asyncio.run(main())
        up.stop()
        _no_secrets(agent, p)
        assert agent.uplink.acked >= 120
