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
from agent.core import simtime
from agent.core.clock import Clock, ClockFile, boot_id
from agent.core.errors import ConfigError, QueueError
from agent.core.monitor.pipeline import SiteMonitor
from agent.core.poll.loop import Loop
from agent.core.store.jsonfile import JsonFile
from agent.core.store.queue import MemoryQueue
from agent.host.console_host import make_facade, start_consoles
from agent.host.health import HealthDriver
from agent.host.timesync import ntp_synced
from agent.host.watchdog import Watchdog

EXIT_RESTART = 3  # run_agent's answer to a console `reboot`: start the agent again
HEALTH_DEVICE = "agent"  # the device id under which the agent reports its own health
CLOCK_CHECK_S = 60
STOP_GRACE_S = 2.0  # at stop, how long a connected uplink may take to empty the queue


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
                "%s: devices[%d].driver: driver %r cannot load: %s"
                % (cfg.source, i, dev["driver"], e)
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
    from agent.host.queue_cli import open_store, queue_dir

    st = cfg.storage
    path = queue_dir(st["dir"])
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise QueueError("storage.dir %s: cannot create: %s" % (path, e.strerror or e)) from e
    return open_store(path, int(st["budget_mb"] * 1024 * 1024), log=log, wall=simtime.wall)


def make_loop(cfg, queue, log, monitor=None, clock=None, on_pass=None):
    st = cfg.storage
    loop = Loop(
        cfg.site["id"],
        queue,
        random.random,
        log,
        mono=clock.mono if clock is not None else simtime.mono,
        wall=clock.now if clock is not None else simtime.wall,
        commit_interval=st.get("commit_interval", 5.0),
        commit_records=st.get("commit_records", 500),
        monitor=monitor,
        clock=clock,
        on_pass=on_pass,
        scale=simtime.SCALE,
    )
    for dev, drv in build_drivers(cfg):
        loop.add_device(dev, drv)
    return loop


async def _keep_time(clock, every_s=CLOCK_CHECK_S):
    """Trust the system clock once the kernel says NTP has synchronised it; persist how far this
    boot has run, so records of a boot that never got time can be dated later."""
    while True:
        if not clock.trusted() and ntp_synced():
            clock.trust(None, "ntp")
        clock.checkpoint()
        await asyncio.sleep(every_s)


async def run_agent(cfg, log, stop=None):
    """Run until `stop` (an asyncio.Event) is set or a signal arrives. Returns the exit code."""
    stop = stop or asyncio.Event()
    aloop = asyncio.get_running_loop()
    signalled = []  # a SIGTERM or SIGINT wins over a pending console restart

    def on_signal(signum):
        signalled.append(signum)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            aloop.add_signal_handler(sig, on_signal, sig)
        except (NotImplementedError, RuntimeError):
            pass
    for w in cfg.warnings:
        log.warning("config", w)
    data_dir = cfg.storage["dir"]
    queue = open_queue(cfg, log)
    if simtime.ACTIVE:
        log.warning("agent", simtime.describe())
    clock = Clock(boot_id(), mono=simtime.mono, wall=simtime.wall,
                  state=ClockFile(os.path.join(data_dir, "clock.json")), log=log)  # fmt: skip
    if cfg.site.get("clock") == "system" and not clock.trusted():
        clock.trust(None, "system")
    monitor = SiteMonitor(
        cfg.site["id"],
        cfg.site["kind"],
        clock,
        cfg.alarms,
        backhaul=cfg.site.get("backhaul"),
        banks={d["id"]: d["battery"] for d in cfg.devices if d.get("battery")},
        active_file=JsonFile(os.path.join(data_dir, "alarms.json")),
        log=log,
    )
    watchdog = Watchdog.from_env()
    loop = make_loop(cfg, queue, log, monitor, clock, watchdog.kick if watchdog else None)
    uplink = None
    if cfg.uplink:
        from agent.core.uplink.contract import site_info
        from agent.host.uplink import MqttUplink

        uplink = MqttUplink(cfg.uplink, cfg.site["id"], queue, log,
                            site_info=site_info(cfg.site))  # fmt: skip
    # The agent watches itself like any device: CPU, memory, disk, its queue and its uplink.
    health = {
        "id": HEALTH_DEVICE,
        "driver": "health",
        "interval": 60,
        "timeout": 10,
        "jitter": 0.1,
    }
    budget = int(cfg.storage["budget_mb"] * 1024 * 1024)
    loop.add_device(health, HealthDriver(health, data_dir, queue, uplink, clock, budget))
    restart_requested = []

    def restart():  # the console's `reboot`: let it answer, then stop and ask to be started again
        restart_requested.append(True)
        aloop.call_later(0.2, stop.set)

    # One facade for the console and MQTT commands, so both always mean the same thing.
    facade = make_facade(cfg, loop, queue, uplink, log, restart=restart, config_path=cfg.source,
                         clock=clock)  # fmt: skip
    facade.alarms = monitor.engine
    tasks = [asyncio.create_task(loop.run()), asyncio.create_task(_keep_time(clock))]
    if uplink is not None:
        # MQTT commands, the retained state and the active-alarm set go through the facade.
        uplink.attach(facade)
        loop.listeners.append(uplink.notify)
        loop.alarm_listeners.append(uplink.alarms_changed)
        loop.cycle_listeners.append(uplink.state_changed)
        tasks.append(asyncio.create_task(uplink.run()))
    if watchdog is not None:
        tasks.append(asyncio.create_task(watchdog.run()))
        watchdog.ready()
    console = await start_consoles(cfg, facade, log)
    log.info(
        "agent",
        "started",
        site=cfg.site["id"],
        devices=len(loop.drivers),
        pid=os.getpid(),
        data=data_dir,
        clock="trusted" if clock.trusted() else "untrusted",
    )
    stopper = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait(tasks + [stopper], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for t in done:
        if t is not stopper and not t.cancelled() and t.exception() is not None:
            log.error("agent", "task failed", error=repr(t.exception()))
            code = 1
    if console is not None:
        await console.close()
    if watchdog is not None:
        watchdog.stopping()
    loop.stop()
    await asyncio.gather(tasks[0], return_exceptions=True)
    if uplink is not None:
        # Give a connected uplink up to STOP_GRACE_S to send, and have acknowledged, what the
        # final commit confirmed; what it cannot send stays stored for the next start.
        uplink.notify()
        end = aloop.time() + STOP_GRACE_S
        await asyncio.sleep(0.2)
        while queue.depth() and uplink.state()["connected"] and aloop.time() < end:
            await asyncio.sleep(0.05)
    for t in tasks[1:]:
        t.cancel()
    await asyncio.gather(*tasks[1:], return_exceptions=True)
    stopper.cancel()
    clock.checkpoint()
    try:
        queue.close()
    except QueueError as e:  # what the medium could not take is named; the agent still stops
        log.error("queue", "store closed with records not stored", error=str(e))
    restart = bool(restart_requested) and not signalled and code == 0
    log.info("agent", "stopped", site=cfg.site["id"], restart=restart)
    return EXIT_RESTART if restart else code
