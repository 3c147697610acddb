"""The board's uplink (agent/board/uplink.py, MQTT on asyncio streams) holds the same contract as
the host's paho uplink: the host's own uplink scenarios are run again with the board's uplink in
its place (CPython here, against real mosquitto; the same code runs under MicroPython in
tests/host/test_board_sim.py). Scenarios: outage and order, pacing, commands and floods, mutual
TLS with a password and no secret in the log, TLS failures, an ACL that drops our publishes,
failover and return, byte budgets, a broker that never answers or drops the link mid-packet, a
silent link noticed by its missing PUBACKs, a long outage found by probes. And parity: contract
v2 (JSON and the compact stream) through a broker outage, run once by the host's uplink and once
by the board's, read by the fleet decoder (contract.decode) with nothing lost or unresolved, and
the two streams alike in every way a consumer can see (topics, forms, keys, retained set)."""

import asyncio
import inspect
import json
import ssl
import time

import pytest

import tests.host.test_uplink_delivery as delivery
import tests.host.test_uplink_errors as errors
import tests.host.test_uplink_links as links
import tests.host.test_uplink_reconnect as reconnect
import tests.host.test_uplink_security as security
import tests.host.uplink_rig as rig
from agent.board.uplink import BoardUplink
from agent.core.uplink import contract
from agent.host.uplink import MqttUplink
from hil.broker import Broker
from hil.upstream import Upstream


def cpython_tls(broker):
    """The host's TLS settings (pinned CA, client certificate) as an ssl.SSLContext; the board's
    own factory (agent/board/tls.py) does the same with MicroPython's ssl and DER files."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=broker.get("ca_file"))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if broker.get("cert_file"):
        ctx.load_cert_chain(broker["cert_file"], broker.get("key_file"))
    return ctx, broker["host"]


class CPythonBoardUplink(BoardUplink):
    def __init__(self, ucfg, site_id, queue, log, facade=None, site_info=None):
        BoardUplink.__init__(self, ucfg, site_id, queue, log, tls=cpython_tls, facade=facade,
                             site_info=site_info)  # fmt: skip


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
    (reconnect, "test_silent_link_is_noticed_by_missing_pubacks_and_the_backup_takes_over"),
    (reconnect, "test_after_a_long_outage_the_return_is_found_by_probes_within_seconds"),
    (errors, "test_a_missing_ca_file_is_named_by_the_probe_and_the_live_uplink"),
    (errors, "test_a_dns_failure_names_the_broker_and_the_next_attempt"),
    # The two scripted broken brokers (links._broken) are below: the host test counts polls at
    # the moment of the second attempt, and this uplink reaches it sooner than paho's thread.
]


@pytest.mark.parametrize("module,name", SCENARIOS, ids=[n for _, n in SCENARIOS])
def test_board_uplink_passes_the_host_uplink_scenario(module, name, monkeypatch, tmp_path):
    monkeypatch.setattr(rig, "MqttUplink", CPythonBoardUplink)
    test = getattr(module, name)
    test(*([tmp_path] if "tmp_path" in inspect.signature(test).parameters else []))


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


# --- contract v2 and parity with the host ------------------------------------------------------
INFO = {"name": "Tinh Ky commune office BTS", "kind": "bts",
        "location": {"lat": 15.2463, "lon": 108.8069, "province": "Quang Ngai"}}  # fmt: skip
V2 = "site-agent/v2"


class Recorder(Upstream):
    """The fleet's view: every message as it arrived (topic kind, payload, retain flag), and the
    batches decoded by contract.decode with this subscriber's own context (Upstream)."""

    def __init__(self, *a, **kw):
        Upstream.__init__(self, *a, **kw)
        self.raw = []

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.raw.append((msg.topic.rsplit("/", 1)[-1], bytes(msg.payload)))
        Upstream._on_message(self, client, userdata, msg)


def _retained(broker):
    """The topics a consumer that starts now is given (retained), with their payloads."""
    got = {}
    late = Upstream(broker.host, broker.port, V2, rig.SITE, client_id="late-joiner")
    late.client.on_message = lambda c, u, m: got.__setitem__(m.topic.rsplit("/", 1)[-1],
                                                             bytes(m.payload))  # fmt: skip
    late.start()
    try:
        # The broker sends the retained set at once on subscribing: wait until it is quiet.
        end, n = time.monotonic() + 10, -1
        while time.monotonic() < end and ("status" not in got or n != len(got)):
            n = len(got)
            time.sleep(0.5)
    finally:
        late.stop()
    return got


def _form(kind, payload):
    """What tells a consumer which form a payload is: its first byte and, for the compact v2
    envelope, its form byte; the JSON form's "v"."""
    if payload[:1] == b"{":
        return ("json", json.loads(payload).get("v"))
    # v2 compact: a stream or a JSON body (bit 1); deflated or not (bit 0) is the encoder's
    # choice by size, so it is left out.
    return (payload[:1].hex(), payload[1] & 2 if payload[:1] == b"\xc2" else None)


def _keys(records):
    return sorted({tuple(sorted(r)) for r in records})


def _run_v2(cls, fmt, monkeypatch):
    """Contract 2 in form `fmt` through a broker outage with uplink class `cls`; what the fleet
    saw."""
    with Broker(persistence=True) as broker:
        rec = Recorder(broker.host, broker.port, V2, rig.SITE, persistent=True,
                       client_id="noc-" + fmt).start()  # fmt: skip

        class WithInfo(cls):
            def __init__(self, ucfg, site_id, queue, log, facade=None):
                cls.__init__(self, ucfg, site_id, queue, log, facade=facade, site_info=INFO)

        async def main():
            cfg = rig.uplink_cfg([rig.broker_cfg(broker)], contract=2, format=fmt, batch_max=5,
                                 topic_prefix=None, integrity_period=2)  # fmt: skip
            agent = rig.Agent(cfg)
            await agent.start()
            await rig.until(lambda: agent.uplink.acked >= 5, 20, "a first run", agent)
            agent.raise_alarm()
            await rig.until(lambda: len(rec.alarm_events) >= 1, 20, "the alarm", agent)
            broker.halt()
            await rig.until(lambda: "no broker answers; probing" in agent.log_text(), 30,
                            "probing", agent)  # fmt: skip
            seq = agent.queue.confirmed_seq
            await rig.until(lambda: agent.queue.confirmed_seq > seq + 20, 20, "polls", agent)
            broker.restart()
            await rig.until(delivery._all_delivered(agent, rec), 40, "every seq", agent)
            await agent.stop()
            return agent

        monkeypatch.setattr(rig, "MqttUplink", WithInfo)
        try:
            agent = asyncio.run(main())
            retained = _retained(broker)
        finally:
            rec.stop()
    text = agent.log_text()
    assert "a broker answers again" in text and "Traceback" not in text
    assert rec.bad_payloads == 0 and rec.unresolved == []
    assert all(n >= 1 for n in rec.seqs.values())
    shape = {"topics": sorted({k for k, _ in rec.raw}),
             "forms": sorted({(k, _form(k, p)) for k, p in rec.raw}),
             "records": {k: _keys(r for a in rec.raw if a[0] == k for r in
                                  contract.decode(k, a[1], {}, rig.SITE).get("readings", ())
                                  if "seq" in r and r.get("seq") is not None)
                         for k in ("alarm", "state") if any(a[0] == k for a in rec.raw)},
             "retained": sorted(retained),
             "status": sorted({tuple(sorted(json.loads(p))) for k, p in rec.raw
                               if k == "status"})}  # fmt: skip
    return shape, rec, retained


@pytest.mark.parametrize("fmt", ["json", "compact"])
def test_contract_2_board_and_host_streams_are_alike_and_decoded(fmt, monkeypatch):
    host, _, _ = _run_v2(MqttUplink, fmt, monkeypatch)
    board, rec, retained = _run_v2(CPythonBoardUplink, fmt, monkeypatch)
    assert board == host, (board, host)
    # The birth and goodbye carry the site's name, kind and location; v2 topics.
    status = [json.loads(p) for k, p in rec.raw if k == "status"]
    assert {s["state"] for s in status} == {"online", "offline"}
    assert all(s["name"] == INFO["name"] and s["location"] == INFO["location"] for s in status)
    assert json.loads(retained["status"])["reason"] == "agent stopped"
    forms = {f for k, f in board["forms"] if k == "data"}
    if fmt == "compact":
        assert forms == {("c2", 0)}, forms  # the stream
        assert "series" in retained and contract.decode("series", retained["series"], {},
                                                        rig.SITE)["kind"] == "series"
    else:
        assert forms == {("json", 2)}, forms
        assert "series" not in retained
