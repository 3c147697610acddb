"""The board's uplink (agent/board/uplink.py, MQTT on asyncio streams) holds the same contract as
the host's paho uplink: the host's own uplink scenarios are run again with the board's uplink in
its place (CPython here, against real mosquitto; the same code runs under MicroPython in
tests/host/test_board_sim.py). Scenarios: outage and order, pacing, commands and floods, mutual
TLS with a password and no secret in the log, TLS failures, an ACL that drops our publishes,
failover and return, byte budgets, a broker that never answers or drops the link mid-packet."""

import asyncio
import ssl

import pytest

import tests.host.test_uplink_delivery as delivery
import tests.host.test_uplink_links as links
import tests.host.test_uplink_security as security
import tests.host.uplink_rig as rig
from agent.board.uplink import BoardUplink


def cpython_tls(broker):
    """The host's TLS settings (pinned CA, client certificate) as an ssl.SSLContext; the board's
    own factory (agent/board/tls.py) does the same with MicroPython's ssl and DER files."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=broker.get("ca_file"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.get("cert_file"):
        ctx.load_cert_chain(broker["cert_file"], broker.get("key_file"))
    return ctx, broker["host"]


class CPythonBoardUplink(BoardUplink):
    def __init__(self, ucfg, site_id, queue, log, facade=None):
        BoardUplink.__init__(self, ucfg, site_id, queue, log, tls=cpython_tls, facade=facade)


SCENARIOS = [
    (delivery, "test_outage_then_order_alarms_state_backlog_and_no_gaps"),
    (delivery, "test_backlog_is_paced_by_message_rate"),
    (delivery, "test_commands_over_mqtt_and_bad_payloads"),
    (delivery, "test_command_flood_does_not_stall_polling"),
    (security, "test_mutual_tls_with_password_delivers_and_logs_no_secret"),
    (security, "test_tls_failures_are_reported_and_data_kept"),
    (security, "test_acl_denying_our_topics_is_reported_and_data_kept"),
    (security, "test_insecure_broker_warns_at_every_start"),
    (links, "test_failover_to_backup_and_return_to_preferred"),
    (links, "test_budget_holds_routine_backlog_but_alarms_go"),
    # The two scripted broken brokers (links._broken) are below: the host test counts polls at
    # the moment of the second attempt, and this uplink reaches it sooner than paho's thread.
]


@pytest.mark.parametrize("module,name", SCENARIOS, ids=[n for _, n in SCENARIOS])
def test_board_uplink_passes_the_host_uplink_scenario(module, name, monkeypatch):
    monkeypatch.setattr(rig, "MqttUplink", CPythonBoardUplink)
    getattr(module, name)()


def _broken(mode):
    srv = links.ScriptedBroker(mode)
    try:

        async def main():
            b = {"name": "broken", "host": "127.0.0.1", "port": srv.port, "insecure": True}
            agent = rig.Agent(rig.uplink_cfg([b], connect_timeout=1.0), interval=0.1)
            agent.uplink = CPythonBoardUplink(agent.uplink.cfg, rig.SITE, agent.queue, agent.log)
            agent.uplink.attach(agent.facade)
            agent.loop.listeners[:] = [agent.uplink.notify]
            await agent.start()

            def polls():
                return sum(d.calls for d in agent.drivers.values())

            await rig.until(lambda: srv.accepted >= 2 and polls() >= 5, 15, "two attempts", agent)
            await agent.stop()
            return agent

        agent = asyncio.run(main())
    finally:
        srv.close()
    st = agent.queue.stats()
    assert st["confirmed_seq"] > 0 and sum(st["depth"].values()) == st["confirmed_seq"] + 1
    assert agent.uplink.acked == 0
    return agent.log_text()


def test_board_uplink_broker_that_never_answers_connect():
    text = _broken("silent")
    assert "no CONNACK within 1s (broker not answering)" in text, text[-2000:]


def test_board_uplink_broker_that_drops_the_link_mid_packet():
    text = _broken("cut")
    assert "link closed by the broker or the network" in text, text[-2000:]
