"""Assemble and run the agent on a board: the board's counterpart of agent/host/runner.py.

    await run_agent(cfg, board, boot, log, machine, network_mod, led)

Same pieces as the host, wired to board adapters: the durable store on littlefs (/data/queue,
flush is the sync), the clock with its anchors (/data/clock.json) and SNTP, the alarm engine and
site state (SiteMonitor, active set in /data/alarms.json), the poll loop with only the site's
drivers (UART pins from the board table, UDP for snmp-lite), the agent's own health as device
"agent", the MQTT uplink on asyncio streams, the console on a UART, the network supervisor, the
status LED and the hardware watchdog. Runs until the board loses power; a console `reboot`
resets the board.

Site time: a board has no environment, so it runs on its own clocks. The simulated board in a
HIL drill (hil/drill/board.py) has one: with SITE_AGENT_TIME_SCALE set there, the parts that run
on site time on the Pi (agent/core/simtime.py, docs/drill.md) run on it here too: the clock's
monotonic and wall sources, the poll loop's scale, the store's counter records, the uplink's
budget windows before SNTP, and the SNTP resync interval (an hour of site time); an SNTP server
answering with site time (the drill's) then makes the clock trusted as on a board.
"""

import asyncio
import gc
import random

from agent.board import uart as board_uart
from agent.board.health import BoardHealthDriver
from agent.board.wdt import Watchdog
from agent.core.clock import Clock, ClockFile, boot_id
from agent.core.compat import monotonic, wall_time
from agent.core.monitor.pipeline import SiteMonitor
from agent.core.poll.loop import Loop
from agent.core.store.fsio import OsFs
from agent.core.store.jsonfile import JsonFile
from agent.core.store.store import Store

DATA = "/data"
# What a board does not do that the Pi does (docs/board.md has the same list as a table); said
# once at every start, so a technician reading the log knows.
LIMITS = ("SNMP v1/v2c only (snmp-lite; v3 needs the Pi)", "MQTT 3.1.1 only",
          "no TCP/DNS/HTTP probes", "no Unix-socket console", "health without CPU, disk, RSS",
          "uplink batches of at most %d records")  # fmt: skip
# spread_first: the board's health device keeps a jittered first poll (0-6 s): polled at
# once it would read the board before Wi-Fi and SNTP are up (every other device polls at once).
HEALTH = {"id": "agent", "driver": "health", "interval": 60, "timeout": 10, "jitter": 0.1,
          "spread_first": True}  # fmt: skip
BATCH_MAX = 25  # records per uplink message on a board (the table's batch_max may change it)
UPLINK_STALL_S = 240  # the watchdog resets a board whose uplink made no progress this long
# Store sizes for a board: small read and write buffers (the host's are 16 and 64 KB).
STORE_KW = {"read_chunk": 1024, "flush_bytes": 4096, "max_pending": 16384, "seq_lease": 256}


def site_time():
    """agent.core.simtime when the environment asks for accelerated site time (the simulated
    board in a HIL drill), else None: a board has no os.getenv, so it never imports it."""
    try:
        from os import getenv
    except ImportError:
        return None
    if not getenv("SITE_AGENT_TIME_SCALE"):
        return None
    from agent.core import simtime

    return simtime


def open_store(cfg, log, wall=wall_time):
    fs = OsFs()
    fs.mkdir(DATA)
    budget = int(cfg.storage["budget_mb"] * 1024 * 1024)
    return Store(DATA + "/queue", budget, sync=None, fs=fs, wall=wall,
                 log=lambda msg: log.info("queue", msg), **STORE_KW)  # fmt: skip


def build_loop(cfg, queue, log, monitor, clock, on_pass, scale=1.0):
    import drivers

    st = cfg.storage
    loop = Loop(cfg.site["id"], queue, random.random, log, mono=clock.mono, wall=clock.now,
                commit_interval=st.get("commit_interval", 5.0),
                commit_records=st.get("commit_records", 500), monitor=monitor, clock=clock,
                on_pass=on_pass, scale=scale)  # fmt: skip
    for dev in cfg.devices:
        if dev.get("enabled", True):
            loop.add_device(dev, drivers.load(dev["driver"])(dev))
    return loop


def make_console(cfg, facade, log, board, machine):
    from agent.board.console_uart import UartConsole
    from agent.core.console import auth
    from agent.core.console.session import Console

    c = cfg.console
    access = auth.Access(c.get("pin_hash"), c.get("idle_timeout", 300))
    if c.get("pin_hash") is None:
        log.warning("console", "no console.pin_hash: the console shows only help and status")

    def new_console(write, where):
        return Console(facade, access, write, where=where, log=log)

    con = UartConsole(c["port"], c.get("baud", 115200), new_console, log)
    if c["port"] == board.get("repl_uart"):
        from firmware.hw import StdioUart

        con._open = StdioUart  # the REPL's UART is stdin/stdout; the log shares it
    return con


async def _checkpoint(clock, boot_rec, every_s=60.0):
    started = monotonic()
    while True:
        await asyncio.sleep(min(every_s, boot_rec.ran_step) if boot_rec else every_s)
        if boot_rec is not None:
            boot_rec.ran(monotonic() - started)
        clock.checkpoint()


async def run_agent(cfg, board, boot, log, machine, network_mod, led, boot_rec=None):
    from agent.board.net import Network
    from agent.board.udp import open_udp

    for w in cfg.warnings:
        log.warning("config", w)
    sim = site_time()
    mono, wall, scale = monotonic, wall_time, 1.0  # the site's clocks: the board's own
    if sim is not None:
        mono, wall, scale = sim.mono, sim.wall, sim.SCALE
        log.warning("agent", sim.describe())
    board_uart.configure(board["uarts"])
    batch = board.get("batch_max", BATCH_MAX)
    tasks = []
    net = Network(board["network"], getattr(cfg, "network", None) or {}, log, network_mod,
                  pin=machine.Pin)  # fmt: skip
    tasks.append(asyncio.create_task(net.run()))
    queue = open_store(cfg, log, wall)
    log.info("queue", "opened", next_seq=queue.stats()["next_seq"],
             confirmed_seq=queue.confirmed_seq)  # fmt: skip
    clock = Clock(boot_id(), mono=mono, wall=wall, state=ClockFile(DATA + "/clock.json"),
                  log=log)  # fmt: skip
    monitor = SiteMonitor(cfg.site["id"], cfg.site["kind"], clock, cfg.alarms,
                          backhaul=cfg.site.get("backhaul"),
                          banks={d["id"]: d["battery"] for d in cfg.devices if d.get("battery")},
                          active_file=JsonFile(DATA + "/alarms.json"), log=log)  # fmt: skip
    dog = Watchdog(machine.WDT, board.get("wdt_s", 60), log)
    loop = build_loop(cfg, queue, log, monitor, clock, dog.kick, scale)
    dog.poke = loop.wake  # a pass on demand: the loop may sleep a whole commit interval
    for dev in cfg.devices:
        if dev.get("driver") == "snmp-lite":
            loop.drivers[dev["id"]].factory = open_udp
    uplink = None
    if cfg.uplink:
        from agent.board.tls import make_context
        from agent.board.uplink import BoardUplink
        from agent.core.uplink.contract import site_info

        # Batches are the board's peak heap during a backlog drain (records read, decoded and
        # encoded at once): at most the board's batch_max per message.
        ucfg = dict(cfg.uplink)
        ucfg["batch_max"] = min(ucfg.get("batch_max", 100), batch)
        uplink = BoardUplink(ucfg, cfg.site["id"], queue, log, tls=make_context,
                             mono=monotonic, wall=lambda: clock.now() or wall(),
                             site_mono=mono, link_up=net.up,
                             site_info=site_info(cfg.site))  # fmt: skip
        dog.watch("uplink", uplink.progress_age, UPLINK_STALL_S)
    budget = int(cfg.storage["budget_mb"] * 1024 * 1024)
    health = dict(HEALTH, interval=board.get("health_s", HEALTH["interval"]))
    loop.add_device(health, BoardHealthDriver(health, queue, uplink, clock, budget, boot["count"],
                                              net))  # fmt: skip
    async def uplink_test(say):
        st = uplink.state() if uplink is not None else None
        say("live uplink: %s" % ("connected to %s" % st["broker"] if st and st["connected"]
                                 else "down (%s)" % (st or {}).get("last_error")))  # fmt: skip
        return bool(st and st["connected"])

    if cfg.console.get("enabled"):  # the console's modules cost RAM: only when it is on
        from agent.core.console.facade import ConsoleFacade

        facade = ConsoleFacade(cfg, loop, queue, uplink, clock, log, uplink_test=uplink_test,
                               restart=lambda: _reset_soon(machine, log))  # fmt: skip
    else:
        from agent.core.facade import AgentFacade

        facade = AgentFacade(cfg, loop, queue, uplink, clock, log)
    facade.alarms = monitor.engine
    if cfg.site.get("clock") == "system":
        log.warning("clock", 'site.clock = "system" means nothing on a board without RTC; '
                    "waiting for SNTP")  # fmt: skip
    ntp = (getattr(cfg, "network", None) or {}).get("ntp", ["pool.ntp.org"])
    if ntp:
        from agent.board.sntp import TimeKeeper

        # The exchange is timed on machine time (a round trip takes real milliseconds); the
        # resync interval is an hour of the site's time.
        keeper = TimeKeeper(clock, ntp, open_udp, log, monotonic, wall_time,
                            every_s=3600.0 / scale,
                            set_rtc=lambda t: _set_rtc(machine, t), link_up=net.up)  # fmt: skip
        tasks.append(asyncio.create_task(keeper.run()))
    tasks.append(asyncio.create_task(loop.run()))
    if uplink is not None:
        uplink.attach(facade)
        loop.listeners.append(uplink.notify)
        loop.alarm_listeners.append(uplink.alarms_changed)
        loop.cycle_listeners.append(uplink.state_changed)
        tasks.append(asyncio.create_task(uplink.run()))
        led.extra = lambda: uplink.state()["connected"]
    if cfg.console.get("enabled"):
        tasks.append(asyncio.create_task(make_console(cfg, facade, log, board, machine).run()))
    tasks.append(asyncio.create_task(_checkpoint(clock, boot_rec)))
    dog.start()
    tasks.append(asyncio.create_task(dog.run()))
    led.pattern = "run"
    log.info("agent", "board limits", limits="; ".join(LIMITS) % batch)
    gc.collect()
    log.info("agent", "started", site=cfg.site["id"], devices=len(loop.drivers) - 1,
             board=board.get("name"), reset=boot["cause"], boots=boot["count"],
             heap_free=gc.mem_free(), clock="trusted" if clock.trusted() else "untrusted")
    while True:
        await asyncio.sleep(5)
        for t in tasks:
            if t.done():  # every task runs forever; one that ended is a bug: reset
                try:
                    await t
                except BaseException as e:
                    raise RuntimeError("a task of the agent ended: %r" % (e,)) from None
                raise RuntimeError("a task of the agent ended")


def _set_rtc(machine, t):
    from firmware.hw import set_rtc

    set_rtc(machine, t)


def _reset_soon(machine, log):
    async def later():
        await asyncio.sleep(0.5)
        machine.reset()

    log.warning("agent", "reset requested by the technician")
    asyncio.create_task(later())
