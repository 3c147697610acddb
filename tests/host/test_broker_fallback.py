"""Without mosquitto the demo's broker is amqtt, in-process: it must carry the agent's data."""

import os
import subprocess
import sys

import paho.mqtt.client as mqtt

from hil.broker import Broker

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_in_process_amqtt_carries_qos1_and_retained(monkeypatch):
    monkeypatch.setenv("SITE_AGENT_BROKER", "amqtt")
    got = []
    with Broker() as b:
        assert b.kind == "amqtt" and b.proc is None  # in this process, no child
        c = mqtt.Client(callback_api_version=mqtt.CallbackAPIVersion.VERSION2)
        c.on_message = lambda cl, u, m: got.append((m.topic, m.payload, m.retain))
        c.connect(b.host, b.port)
        c.loop_start()
        c.publish("t/status", b"online", qos=1, retain=True).wait_for_publish(5)
        c.subscribe("t/#", qos=1)
        import time

        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        c.disconnect()
        c.loop_stop()
    assert got and got[0][:2] == ("t/status", b"online") and got[0][2]


def test_demo_runs_on_the_fallback_broker(tmp_path):
    env = dict(os.environ, SITE_AGENT_BROKER="amqtt", TMPDIR=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "agent.host.cli", "demo", "--duration", "12", "--plain"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    last = proc.stdout.rsplit("site-agent demo:", 1)[1]
    assert "agent status: online" in last and "battery.charge" in last, last[-1500:]
    assert os.listdir(tmp_path) == []
