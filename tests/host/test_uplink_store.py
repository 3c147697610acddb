"""The uplink over the durable store and a real mosquitto (issue 12, points 2 and 4): an alarm
raised while the store cannot write goes upstream first, from memory, once; the retained state
right after a start carries the stored latest values with their seq, and again after the first
complete poll cycle."""

import asyncio
import errno

from agent.core.store.queue import LANE_ALARM
from agent.core.store.store import Store
from agent.host.queue_cli import fsync_file
from hil.broker import Broker
from hil.upstream import Upstream
from tests.host.uplink_rig import PREFIX, SITE, Agent, broker_cfg, until, uplink_cfg

from store_support import FailFs


def _alarm():
    return {"site": SITE, "device": "dev0", "metric": "battery.charge", "value": 5.0,
            "unit": "%", "time": 1.8e9, "quality": "good", "severity": "major",
            "alarm": "BATTERY_LOW/dev0/battery.charge", "event": "raise",
            "rule": "BATTERY_LOW"}  # fmt: skip


def test_an_alarm_raised_while_the_store_fails_goes_upstream_first_and_once(tmp_path):
    fs = FailFs(err=errno.ENOSPC)
    with Broker(persistence=True) as broker:
        up = Upstream(broker.host, broker.port, PREFIX, SITE, persistent=True,
                      client_id="ops-centre").start()  # fmt: skip
        broker.halt()  # the link is down: a backlog builds in the store

        async def main():
            queue = Store(str(tmp_path / "q"), 1 << 24, sync=fs.sync, fs=fs, thin_window=0)
            agent = Agent(uplink_cfg([broker_cfg(broker)], batch_max=10), queue=queue)
            await agent.start()
            await until(lambda: queue.confirmed_seq >= 20, 10, "a stored backlog", agent)
            fs.mode, fs.k = "from", fs.ops + 1  # from now on every write fails: disk full
            seq = queue.append(LANE_ALARM, _alarm())
            await until(lambda: agent.loop.store_error, 5, "the failing commit", agent)
            broker.restart()
            await until(lambda: seq in up.snapshot()[1], 15, "the alarm upstream", agent)
            fs.heal()
            await until(lambda: agent.loop.store_error is None, 10, "the store back", agent)
            target = queue.confirmed_seq
            await until(lambda: queue.stats()["delivered"]["routine"] >= target, 20,
                        "the backlog upstream", agent)  # fmt: skip
            await agent.stop()
            return agent, seq

        agent, seq = asyncio.run(main())
        up.stop()
        kinds = [a[0] for a in up.arrivals if a[0] not in ("status",)]
        assert kinds[0] == "alarm", kinds[:5]  # first, though it was never stored then
        assert up.alarm_events[0]["seq"] == seq
        assert up.snapshot()[1][seq] == 1  # written later, not sent again
        assert queue_has(agent.queue, seq)  # and it is on the medium now
        assert "store failed" in agent.log_text() and "store working again" in agent.log_text()


def queue_has(st, seq):
    from agent.core.store import codec

    for seg in st.files.segs[LANE_ALARM]:
        with open(seg.path, "rb") as f:
            buf = f.read()
        if any(s == seq for _, kind, s, _ in codec.scan(buf) if kind == codec.REC):
            return True
    return False


def test_the_retained_state_after_a_start_holds_the_stored_latest_values(tmp_path):
    path = str(tmp_path / "q")
    with Broker() as broker:

        async def first_run():
            queue = Store(path, 1 << 24, sync=fsync_file, thin_window=0)
            agent = Agent(uplink_cfg([broker_cfg(broker)]), queue=queue, interval=0.1)
            await agent.start(uplink=False)
            await until(lambda: len(queue.latest()) >= 5, 10, "stored values", agent)
            await agent.stop()
            queue.close()
            return {(r["device"], r["metric"]): r["seq"] for r in queue.latest()}

        stored = asyncio.run(first_run())
        up = Upstream(broker.host, broker.port, PREFIX, SITE).start()

        async def second_run():
            queue = Store(path, 1 << 24, sync=fsync_file, thin_window=0)
            agent = Agent(uplink_cfg([broker_cfg(broker)]), queue=queue, interval=3600)
            await agent.start(loop=False)  # connected before any poll of this run
            await until(lambda: up.states, 10, "the retained state", agent)
            agent.loop_task = asyncio.create_task(agent.loop.run())
            await until(lambda: len(up.states) >= 2, 10, "the state after a poll cycle", agent)
            await agent.stop()
            queue.close()

        asyncio.run(second_run())
        up.stop()
        first = {(r["device"], r["metric"]): r["seq"] for r in up.states[0]["readings"]}
        assert first == stored  # not {"readings": []}: what the store persisted
        second = up.states[1]["readings"]
        assert all(isinstance(r["seq"], int) for r in second)
        assert min(r["seq"] for r in second) > max(stored.values())  # this run's first cycle
