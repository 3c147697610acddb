"""Assemble and run the agent on the host: config -> drivers, queue, loop, uplink; signals.

`run_agent` is the daemon's body: it polls until SIGTERM or SIGINT, then stops the loop (running
polls are cancelled, drivers closed, the queue committed), says goodbye to the broker and closes
the store. Nothing here decides policy; it only wires the portable core to host adapters.
"""

import asyncio
import os
import random
import signal

import drivers
from agent.core.errors import ConfigError, QueueError
from agent.core.loop import Loop
from agent.core.queue import MemoryQueue


def build_drivers(cfg):
    """[(device, driver)] for the enabled devices; raises ConfigError for an unknown driver."""
    out = []
    errors = []
    for i, dev in enumerate(cfg.devices):
        if not dev.get("enabled", True):
            continue
        try:
            cls = drivers.load(dev["driver"])
        except KeyError:
            errors.append(
                "%s: devices[%d].driver: no driver %r in this build (have: %s)"
                % (cfg.source, i, dev["driver"], ", ".join(drivers.names()))
            )
            continue
        except ImportError as e:
            errors.append(
                "%s: devices[%d].driver: driver %r cannot load: %s" % (cfg.source, i, dev["driver"], e)
            )
            continue
        out.append((dev, cls(dev)))
    if errors:
        raise ConfigError(errors)
    return out


def open_queue(cfg, log, volatile=False):
    """The durable store in storage.dir (created if missing), or a volatile queue for one-shot
    polls. Raises QueueError when the directory cannot be used."""
    if volatile:
        return MemoryQueue()
    from agent.host.queue_cli import open_store

    st = cfg.storage
    path = st["dir"]
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise QueueError("storage.dir %s: cannot create: %s" % (path, e.strerror or e))
    return open_store(path, int(st["budget_mb"] * 1024 * 1024), log=lambda msg: log.info("queue", msg))


def make_loop(cfg, queue, log):
    st = cfg.storage
    loop = Loop(
        cfg.site["id"],
        queue,
        random.random,
        log,
        commit_interval=st.get("commit_interval", 5.0),
        commit_records=st.get("commit_records", 500),
    )
    for dev, drv in build_drivers(cfg):
        loop.add_device(dev, drv)
    return loop


async def run_agent(cfg, log, stop=None):
    """Run until `stop` (an asyncio.Event) is set or a signal arrives. Returns the exit code."""
    stop = stop or asyncio.Event()
    aloop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            aloop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):
            pass
    for w in cfg.warnings:
        log.warning("config", w)
    queue = open_queue(cfg, log)
    loop = make_loop(cfg, queue, log)
    uplink = None
    tasks = [asyncio.create_task(loop.run())]
    if cfg.uplink:
        from agent.host.uplink import MqttUplink

        from agent.core.facade import AgentFacade

        uplink = MqttUplink(cfg.uplink, cfg.site["id"], queue, log)
        # MQTT commands, the retained state and the active-alarm set go through the facade.
        uplink.attach(AgentFacade(cfg, loop, queue, uplink, log=log))
        loop.listeners.append(uplink.notify)
        tasks.append(asyncio.create_task(uplink.run()))
    log.info(
        "agent",
        "started",
        site=cfg.site["id"],
        devices=len(loop.drivers),
        pid=os.getpid(),
        data=cfg.storage.get("dir"),
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(tasks + [stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in done:
        if t is not stopper and t.exception() is not None:
            log.error("agent", "task failed", error=repr(t.exception()))
            code = 1
    loop.stop()
    await asyncio.gather(tasks[0], return_exceptions=True)
    if uplink is not None:
        # Give the uplink a moment to send what the final commit confirmed.
        uplink.notify()
        await asyncio.sleep(0.2)
        tasks[1].cancel()
        await asyncio.gather(tasks[1], return_exceptions=True)
    stopper.cancel()
    queue.close()
    log.info("agent", "stopped", site=cfg.site["id"])
    return code
