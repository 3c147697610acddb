"""Shared rig for the uplink tests: a real Loop polling counting drivers into a queue, the real
MqttUplink, an AgentFacade, and helpers to run them on one asyncio loop while a test watches."""

import asyncio
import time

from agent.core.config.validate import validate
from agent.core.facade import AgentFacade
from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import LANE_ALARM, MemoryQueue
from agent.host.uplink import MqttUplink

from counting import Counting  # noqa: F401 (tests import it from here too)

SITE = "bts-test-01"
PREFIX = "site-agent/v1"
PASSWORD = "pw-Zq8!secret-7731"


def broker_cfg(broker, name="primary", **kw):
    b = {"name": name, "host": broker.host, "port": broker.port, "insecure": True,
         "protocol": "3.1.1", "budget_bytes": 0, "budget_window": "day"}  # fmt: skip
    b.update(kw)
    return b


def uplink_cfg(brokers, **kw):
    u = {"client_id": SITE, "topic_prefix": PREFIX, "format": "json", "keepalive": 10,
         "batch_max": 20, "rate_msgs": 200, "rate_bytes": 0, "max_connects_per_min": 30,
         "brokers": brokers, "connect_timeout": 3, "echo_timeout": 3, "backoff_base": 0.2,
         "backoff_cap": 1.0, "preferred_retry": 2.0, "probe_interval": 0.5,
         "reconnect_spread": 0.5}  # fmt: skip
    u.update(kw)
    return u


class Agent:
    """Loop + queue + uplink + facade, started with `await agent.start()`."""

    def __init__(self, ucfg, devices=2, interval=0.2, queue=None, lines=None):
        self.lines = lines if lines is not None else []
        self.log = Log(write=self.lines.append, level=10)
        self.queue = queue or MemoryQueue()
        raw = {"site": {"id": SITE, "kind": "bts"}, "devices": [], "uplink": {
            "brokers": [{"host": "127.0.0.1", "insecure": True}]}}  # fmt: skip
        self.cfg = validate(raw)
        self.loop = Loop(SITE, self.queue, lambda: 0.0, self.log, commit_interval=0.1)
        self.drivers = {}
        for i in range(devices):
            dev = {"id": "dev%d" % i, "driver": "counting", "interval": interval, "timeout": 1,
                   "jitter": 0.0}  # fmt: skip
            self.drivers[dev["id"]] = Counting(dev)
            self.loop.add_device(dev, self.drivers[dev["id"]])
        self.uplink = MqttUplink(ucfg, SITE, self.queue, self.log)
        self.facade = AgentFacade(self.cfg, self.loop, self.queue, self.uplink, log=self.log)
        self.uplink.attach(self.facade)
        self.loop.listeners.append(self.uplink.notify)
        self.loop.cycle_listeners.append(self.uplink.state_changed)  # as agent/host/runner.py
        self.loop_task = None
        self.up_task = None

    async def start(self, loop=True, uplink=True):
        if loop:
            self.loop_task = asyncio.create_task(self.loop.run())
        if uplink:
            self.start_uplink()
        return self

    def start_uplink(self):
        self.up_task = asyncio.create_task(self.uplink.run())

    async def stop(self):
        self.loop.stop()
        if self.up_task is not None:
            self.up_task.cancel()
        tasks = [t for t in (self.loop_task, self.up_task) if t is not None]
        await asyncio.gather(*tasks, return_exceptions=True)

    def raise_alarm(self, n=1):
        for _ in range(n):
            self.queue.append(LANE_ALARM, {
                "site": SITE, "device": "dev0", "metric": "battery.charge", "value": 5.0,
                "unit": "%", "time": time.time(), "quality": "good",
                "alarm": "BATTERY_LOW/dev0/battery.charge", "event": "raise",
                "rule": "BATTERY_LOW", "severity": "major"})  # fmt: skip
        self.queue.commit()
        self.uplink.notify(self.queue.confirmed_seq)

    def log_text(self):
        return "\n".join(self.lines)


async def until(pred, timeout, what="condition", agent=None):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        await asyncio.sleep(0.05)
    tail = ("\nagent log:\n" + "\n".join(agent.lines[-40:])) if agent is not None else ""
    raise AssertionError("timed out after %gs waiting for %s%s" % (timeout, what, tail))
