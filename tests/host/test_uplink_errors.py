"""`uplink test` checks every broker, and uplink and export errors name the thing (issue 12,
points 5 and 15): a missing CA file names the file; TLS and DNS failures name the broker and the
next attempt; an export that cannot be written says what to do, not Python's errno text."""

import asyncio

import pytest

from agent.core.console.facade import ConsoleFacade
from agent.core.errors import QueueError
from agent.core.store.queue import LANE_ROUTINE
from agent.host import queue_cli
from agent.host.cli import main as cli_main
from agent.host.console_host import mqtt_probe
from hil.broker import Broker
from hil.net import free_port
from tests.host.uplink_rig import SITE, Agent, broker_cfg, until, uplink_cfg


def _probe(brokers):
    said = []
    ok = asyncio.run(mqtt_probe(uplink_cfg(brokers), SITE, said.append, timeout=5))
    return ok, "\n".join(said)


def test_uplink_test_checks_every_broker_in_order():
    with Broker() as primary, Broker() as backup:
        ok, text = _probe([broker_cfg(primary, "terrestrial"), broker_cfg(backup, "satellite")])
        assert ok, text
        assert text.index("broker 1 of 2: terrestrial") < text.index("broker 2 of 2: satellite")
        assert text.count("PUBACK received") == 2
        # The backup is down: the preferred broker answering must not hide it.
        backup.halt()
        ok, text = _probe([broker_cfg(primary, "terrestrial"), broker_cfg(backup, "satellite")])
        assert not ok, text
        assert "broker 2 of 2: satellite" in text and "PUBACK received" in text
        assert "broker 1 terrestrial (127.0.0.1:%d): passed" % primary.port in text
        assert "broker 2 satellite (127.0.0.1:%d): FAILED" % backup.port in text
        assert "connection refused: nothing listens on 127.0.0.1:%d" % backup.port in text


def test_a_missing_ca_file_is_named_by_the_probe_and_the_live_uplink(tmp_path):
    missing = str(tmp_path / "etc" / "ca.pem")
    b = {"name": "primary", "host": "127.0.0.1", "port": free_port(), "insecure": False,
         "ca_file": missing, "protocol": "3.1.1"}  # fmt: skip
    ok, text = _probe([b])
    assert not ok and "CA file %s not found" % missing in text, text

    async def main():
        agent = Agent(uplink_cfg([b]), devices=1)
        await agent.start()
        await until(lambda: agent.uplink.probes >= 3, 30, "failed attempts", agent)
        await agent.stop()
        return agent

    agent = asyncio.run(main())
    lines = [ln for ln in agent.lines if "connection attempt failed" in ln]
    assert len(lines) == 1, lines  # one line for the state, not one per attempt
    assert "CA file %s not found" % missing in lines[0]
    assert 'broker="primary (127.0.0.1:%d)"' % b["port"] in lines[0]
    assert "next_attempt_s=" in lines[0] and "[Errno" not in lines[0]


def test_a_dns_failure_names_the_broker_and_the_next_attempt():
    b = {"name": "satellite", "host": "no-such-broker.invalid", "port": 8883, "insecure": True,
         "protocol": "3.1.1"}  # fmt: skip

    async def main():
        agent = Agent(uplink_cfg([b]), devices=1)
        await agent.start()
        await until(lambda: agent.uplink.probes >= 2, 30, "failed attempts", agent)
        await agent.stop()
        return agent

    agent = asyncio.run(main())
    line = [ln for ln in agent.lines if "connection attempt failed" in ln][0]
    assert "cannot resolve the host name no-such-broker.invalid (DNS" in line, line
    assert "satellite (no-such-broker.invalid:8883)" in line and "next_attempt_s=" in line


def _store_with_backlog(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    st = queue_cli.open_store(queue_cli.queue_dir(str(data)), 1 << 20)
    st.append(LANE_ROUTINE, {"site": SITE, "device": "d", "metric": "m", "value": 1,
                             "unit": "", "time": 1.0, "quality": "good"})  # fmt: skip
    st.commit()
    return data, st


def test_export_errors_say_what_to_do(tmp_path, capsys):
    data, st = _store_with_backlog(tmp_path)
    missing = str(tmp_path / "media" / "usb" / "backlog.jsonl")  # the stick is not mounted

    class Cfg:
        uplink = None
        site = {"id": SITE}
        warnings = []

    with pytest.raises(QueueError) as e:
        ConsoleFacade(Cfg(), None, st).export(missing)  # the console's `export`
    text = str(e.value)
    assert "the folder does not exist: is the USB stick mounted" in text, text
    assert missing in text and "[Errno" not in text and "No such file" not in text
    st.close()
    for target, hint in ((missing, "the folder does not exist: is the USB stick mounted"),
                         (str(tmp_path), "that is a folder: give a file name")):  # fmt: skip
        code = cli_main(["queue", "export", str(data), target])  # `site-agent queue export`
        err = capsys.readouterr().err
        assert code != 0 and hint in err, err
        assert "[Errno" not in err and "Traceback" not in err, err
