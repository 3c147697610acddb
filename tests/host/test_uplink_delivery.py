"""Uplink against a real mosquitto: delivery tied to the queue, order and pace after an outage,
both payload forms, commands over MQTT (issue 4, points 1, 2, 3, 7, 9)."""

import asyncio
import json
import time

import paho.mqtt.client as mqtt

from hil.broker import Broker
from hil.upstream import Upstream
from tests.host.uplink_rig import PREFIX, SITE, Agent, broker_cfg, until, uplink_cfg


def _upstream(broker, **kw):
    return Upstream(broker.host, broker.port, PREFIX, SITE, **kw).start()


def _all_delivered(agent, up):
    def pred():
        st = agent.queue.stats()
        seqs = up.snapshot()[1]
        return (sum(st["depth"].values()) == 0 and st["confirmed_seq"] >= 0
                and all(s in seqs for s in range(st["confirmed_seq"] + 1)))  # fmt: skip

    return pred


def test_outage_then_order_alarms_state_backlog_and_no_gaps():
    for fmt in ("json", "compact"):
        with Broker(persistence=True) as broker:
            up = _upstream(broker, persistent=True, client_id="ops-centre-" + fmt)
            broker.halt()  # the link is down when the agent starts

            async def main(fmt=fmt, up=up, broker=broker):
                agent = Agent(uplink_cfg([broker_cfg(broker)], format=fmt, batch_max=5))
                await agent.start()
                await until(lambda: agent.queue.confirmed_seq >= 30, 10, "a backlog", agent)
                agent.raise_alarm(3)
                broker.restart()
                await until(_all_delivered(agent, up), 20, "every seq upstream", agent)
                await agent.stop()
                return agent

            agent = asyncio.run(main())
            latest, seqs, status, batches = up.snapshot()
            up.stop()
            assert all(n >= 1 for n in seqs.values())
            kinds = [a[0] for a in up.arrivals if a[0] != "status"]
            # Alarm events first, then the retained state and alarm set, then the backlog.
            assert kinds[0] == "alarm", kinds[:6]
            first_state = kinds.index("state")
            assert set(kinds[:first_state]) == {"alarm"}
            assert kinds[first_state + 1] == "alarms"
            assert set(kinds[first_state + 2 :]) <= {"data", "state", "alarms"}
            state = json.loads(up.retained["alarms"])
            assert state["site"] == SITE and state["alarms"] == []
            assert json.loads(status)["state"] == "offline"  # the goodbye
            assert agent.uplink.acked >= 1 and agent.uplink.state()["inflight"] == 0
            if fmt == "compact":
                assert up.retained["state"][:1] == b"\xc1"
            assert "connected" in agent.log_text()


def test_backlog_is_paced_by_message_rate():
    with Broker() as broker:
        up = _upstream(broker)

        async def main():
            agent = Agent(uplink_cfg([broker_cfg(broker)], batch_max=1, rate_msgs=10),
                          devices=1, interval=3600)  # fmt: skip
            await agent.start(uplink=False)
            for _ in range(40):
                agent.raise_alarm()
            t0 = time.monotonic()
            agent.start_uplink()
            await until(_all_delivered(agent, up), 20, "the paced backlog", agent)
            took = time.monotonic() - t0
            await agent.stop()
            return took

        took = asyncio.run(main())
        up.stop()
        # 40+ messages at 10/s with a burst of 10 cannot take less than ~3 s.
        assert took >= 2.9, took


def _cmd(up, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    up.send("cmd", raw).wait_for_publish(5)


def test_commands_over_mqtt_and_bad_payloads():
    with Broker() as broker:
        up = _upstream(broker)

        async def main():
            agent = Agent(uplink_cfg([broker_cfg(broker)]), interval=3600)
            await agent.start()
            await until(lambda: agent.uplink.state()["connected"], 10, "connect", agent)
            _cmd(up, {"id": "p1", "cmd": "ping"})
            _cmd(up, {"id": "s1", "cmd": "set_interval", "args": {"device": "dev1", "seconds": 7}})
            _cmd(up, {"id": "c1", "cmd": "config"})
            _cmd(up, {"id": "q1", "cmd": "queue_stats"})
            _cmd(up, {"id": "x1", "cmd": "reboot"})
            _cmd(up, b'{"id":"t1","cmd":"pi')  # truncated
            _cmd(up, b'{"id":"u1","cmd":"ping"}\xff\xfe')  # not UTF-8
            _cmd(up, b'{"id":"o1","cmd":"ping","pad":"' + b"x" * 10000 + b'"}')  # oversized
            await until(lambda: len(up.replies) >= 8, 10, "8 replies", agent)
            interval = agent.loop.sched.state("dev1").interval
            other = agent.loop.sched.state("dev0").interval
            await agent.stop()
            return agent, interval, other

        agent, interval, other = asyncio.run(main())
        up.stop()
        by_id = {r.get("id"): r for r in up.replies}
        assert by_id["p1"]["ok"] and by_id["p1"]["result"]["pong"]
        assert by_id["s1"]["ok"] and interval == 7.0 and other == 3600
        assert (
            by_id["c1"]["ok"]
            and "password" not in json.dumps(by_id["c1"])
            or by_id["c1"]["result"]["uplink"]["brokers"][0].get("password") in (None, "<secret>")
        )
        assert by_id["q1"]["ok"] and "depth" in by_id["q1"]["result"]
        assert by_id["x1"]["error"]["code"] == "unknown_command"
        codes = sorted(r["error"]["code"] for r in up.replies if r.get("id") is None)
        assert codes == ["malformed", "not_utf8", "oversized"], codes
        assert "command refused" in agent.log_text()


def test_command_flood_does_not_stall_polling():
    with Broker() as broker:
        up = _upstream(broker)

        async def main():
            agent = Agent(uplink_cfg([broker_cfg(broker)]), devices=1, interval=0.1)
            await agent.start()
            await until(lambda: agent.uplink.state()["connected"], 10, "connect", agent)
            before = agent.drivers["dev0"].calls
            t0 = time.monotonic()
            flood = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
            flood.connect(broker.host, broker.port)
            flood.loop_start()
            topic = "%s/%s/cmd" % (PREFIX, SITE)
            for i in range(3000):
                flood.publish(topic, json.dumps({"id": str(i), "cmd": "queue_stats"}), qos=0)
            await asyncio.sleep(2.0)
            polls = agent.drivers["dev0"].calls - before
            elapsed = time.monotonic() - t0
            await asyncio.sleep(1.5)
            _cmd(up, {"id": "after", "cmd": "ping"})
            await until(lambda: any(r.get("id") == "after" for r in up.replies), 10,
                        "a reply after the flood", agent)  # fmt: skip
            flood.disconnect()
            flood.loop_stop()
            await agent.stop()
            return agent, polls, elapsed

        agent, polls, elapsed = asyncio.run(main())
        up.stop()
        # Polling every 0.1 s went on during the flood (at least half the expected polls).
        assert polls >= elapsed / 0.1 / 2, (polls, elapsed)
        ok = [r for r in up.replies if r.get("ok")]
        limited = [r for r in up.replies if r.get("error", {}).get("code") == "rate_limited"]
        assert 10 <= len(ok) < 100, len(ok)
        assert len(limited) >= 1
        counts = agent.uplink.remote.counts
        # Most of the flood got no reply at all (no reply amplification).
    assert counts["dropped"] + agent.uplink.commands_dropped > 1000, counts


def test_the_uplink_runs_on_the_asyncio_loop_without_a_network_thread():
    """paho is driven from the asyncio loop (mqtt_client.LoopDriver): once connected and
    delivering, no thread is left besides those the test had (the connect's own thread ends with
    the connect; no paho loop thread, no executor thread)."""
    import threading

    with Broker() as broker:
        up = _upstream(broker)

        async def main():
            before = {t.ident for t in threading.enumerate()}
            agent = Agent(uplink_cfg([broker_cfg(broker)], keepalive=2))
            await agent.start()
            await until(lambda: agent.uplink.acked >= 3, 10, "batches acked", agent)
            await asyncio.sleep(3.0)  # past a keepalive: PINGREQ/PINGRESP through loop_misc
            await until(lambda: agent.uplink.acked >= 5, 10, "more batches acked", agent)
            extra = [t.name for t in threading.enumerate() if t.ident not in before]
            connected = agent.uplink.state()["connected"]
            await agent.stop()
            return extra, connected

        extra, connected = asyncio.run(main())
        up.stop()
    assert connected
    assert extra == []
