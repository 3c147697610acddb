"""Safe mode (MicroPython): the console and a status message upstream, nothing else.

Entered (firmware/main.py) when the safe-mode button is held in the boot window, when the boot
record shows a boot loop, or when /site.json does not validate. No driver, store, alarm engine
or poll loop runs, so whatever crashed the agent cannot crash this. What runs:
- the log on the REPL UART: SAFE MODE and every reason (each config error on its own line);
- the console, on console.port when the config names one, else on the REPL UART: `status`
  shows SAFE MODE and the reasons in the site line, `log` the lines above, `reboot` leaves;
- the network and, when the config (or, if it does not validate, its readable uplink part)
  names brokers, a retained status on <prefix>/<site>/status:
      {"v": 1, "state": "safe", "name", "kind", "location", "reason": "...", "agent": version,
       "boot": n, "reset": cause}
  with the site's name, kind and location as the birth has them (from the unvalidated [site]
  table when the config does not validate, only what has the contract's shape) and the usual
  last will (with them too), kept up with keepalive pings and reconnected with backoff;
- the watchdog, fed by this module's own loop.
After a boot loop, safe mode lasts retry_s (an hour) and then resets to try the agent again
(the boot record was cleared, so it takes a new loop to come back here): an unattended site
retries on its own. After the button or a bad config it stays until a reset or a new image.
"""

import asyncio
import json

from agent import __version__
from agent.core.compat import monotonic, wall_time
from agent.core.uplink import contract
from agent.core.uplink.backoff import Backoff, ConnectLimiter

SAFE = "safe"


def _resolve(node):
    """A copy of a raw config node with { "file": path } secrets read (best effort)."""
    if isinstance(node, dict):
        if len(node) == 1 and "file" in node:
            try:
                with open(node["file"]) as f:
                    return f.read()
            except OSError:
                return None
        return {k: _resolve(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_resolve(v) for v in node]
    return node


def _raw_info(site):
    """site_info() of an unvalidated [site] table: only the shapes the contract allows (a text
    name and kind, a table of text or numbers for the location), anything else left out."""
    info = {}
    for k in ("name", "kind"):
        if isinstance(site.get(k), str):
            info[k] = site[k]
    loc = site.get("location")
    if isinstance(loc, dict):
        info["location"] = {k: v for k, v in loc.items() if isinstance(v, (str, int, float))}
    return contract.site_info(info)


def raw_parts():
    """(site id, uplink table, network table, site info) read from /site.json without
    validating it."""
    try:
        with open("/site.json") as f:
            raw = json.load(f)
    except (OSError, ValueError):
        return None, None, None, {}
    if not isinstance(raw, dict):
        return None, None, None, {}
    site = raw.get("site") if isinstance(raw.get("site"), dict) else {}
    up = _resolve(raw.get("uplink")) if isinstance(raw.get("uplink"), dict) else None
    if up is not None:
        brokers = []
        for b in up.get("brokers") or []:
            if isinstance(b, dict) and isinstance(b.get("host"), str):
                b.setdefault("port", 1883 if b.get("insecure") else 8883)
                brokers.append(b)
        up["brokers"] = brokers
        if not brokers:
            up = None
    net = _resolve(raw.get("network")) if isinstance(raw.get("network"), dict) else None
    sid = site.get("id") if isinstance(site.get("id"), str) else None
    return sid, up, net, _raw_info(site)


class SafeFacade:
    """What the console may ask in safe mode (the console's calls, answered honestly)."""

    def __init__(self, cfg, site_id, reasons, errors, board, boot, log, restart):
        self.cfg = cfg
        self.site_id = site_id or "?"
        self.reasons = reasons
        self.errors = errors
        self.board = board
        self.boot = boot
        self.log = log
        self.loop = None
        self.clock = None
        self.uplink = None
        self._restart = restart
        self.started = monotonic()
        self.link = None  # SafeStatus, for the uplink line

    def status(self):
        up = self.link.state() if self.link is not None else None
        return {"site": self.site_id, "kind": self.cfg.site["kind"] if self.cfg else "?",
                "name": "SAFE MODE: " + "; ".join(self.reasons), "version": __version__,
                "uptime_s": int(monotonic() - self.started), "time": wall_time(),
                "clock": {"trusted": False, "source": None}, "devices": 0, "stale": [],
                "uplink": up, "store_error": None, "active_alarms": [], "last_poll": None,
                "safe_mode": self.reasons}  # fmt: skip

    def devices(self):
        return []

    def readings(self, device=None):
        return []

    def active_alarms(self):
        return []

    def queue_stats(self):
        return {"depth": {}, "note": "safe mode: the store is not opened"}

    def queue_depth(self):
        return 0

    def config_redacted(self):
        return self.cfg.redacted() if self.cfg is not None else {"errors": self.errors}

    def config_check(self):
        if not self.errors:
            return [("ok", "/site.json is valid")]
        return [("error", e) for e in self.errors]

    def has_device(self, dev_id):
        return False

    def poll_now(self, dev_id=None):
        raise KeyError(dev_id)

    async def poll_device(self, dev_id):
        raise KeyError(dev_id)

    def set_interval(self, dev_id, seconds):
        raise KeyError(dev_id)

    def log_tail(self, n=20):
        return self.log.tail(n)

    def uplink_state(self):
        return self.link.state() if self.link is not None else None

    def version_info(self):
        return {"version": __version__, "runtime": "MicroPython (safe mode)"}

    async def uplink_test(self, say):
        st = self.uplink_state()
        say("safe mode: status link %s" % ("up" if st and st["connected"] else "down"))
        return bool(st and st["connected"])

    def drain(self):
        return {"depth": 0, "connected": None}

    def export(self, path):
        from agent.core.errors import QueueError

        raise QueueError("safe mode: the store is not opened")

    def restart(self):
        self._restart()


class SafeStatus:
    """Keeps one retained "safe" status on the first broker that takes it."""

    def __init__(self, uplink, site_id, body, log, tls, info=None):
        self.cfg = uplink
        self.site_id = site_id
        self.body = body
        self.info = info  # the site's name, kind and location: in the will too, as the agent's
        self.log = log
        self.tls = tls
        self.connected = False
        self.last_error = None
        self.beat = monotonic()
        version = uplink.get("contract")  # not validated: a bad value means version 1
        version = version if version in contract.VERSIONS else 1
        prefix = uplink.get("topic_prefix") or contract.default_prefix(version)
        self.topic = contract.topic(prefix, site_id, "status")

    def state(self):
        return {"connected": self.connected, "broker": None, "last_error": self.last_error,
                "last_publish": None}  # fmt: skip

    async def _session(self, b):
        from agent.board import mqtt

        ctx = sni = None
        if not b.get("insecure"):
            ctx, sni = self.tls(b)
        keepalive = int(self.cfg.get("keepalive") or 60)
        will = (self.topic, contract.status_payload(contract.OFFLINE, "connection lost",
                                                   info=self.info), 1, True)  # fmt: skip
        conn = await mqtt.MqttConn.open(b["host"], b["port"], ctx, sni, 15)
        try:
            rc = await conn.connect(self.cfg.get("client_id") or self.site_id, keepalive, will,
                                    b.get("username"), b.get("password"), 15)  # fmt: skip
            if rc:
                raise mqtt.MqttError("broker refused the connection: code %d" % rc)
            pid = conn.next_pid()
            await conn.send(mqtt.publish_packet(self.topic, self.body, 1, True, pid))
            while True:
                kind, _, body = await asyncio.wait_for(conn.read(), keepalive * 1.5)
                if kind == mqtt.PUBACK:
                    break
            self.connected = True
            self.log.info("safe", "status published", topic=self.topic)
            while True:
                self.beat = monotonic()
                await asyncio.sleep(keepalive / 2)
                await conn.send(mqtt.PINGREQ_PACKET)
                await asyncio.wait_for(conn.read(), keepalive)
        finally:
            self.connected = False
            conn.close()

    async def run(self):
        import random

        backoff = Backoff(random.random, 2.0, 300.0)
        limiter = ConnectLimiter(int(self.cfg.get("max_connects_per_min") or 6))
        i = 0
        while True:
            b = self.cfg["brokers"][i % len(self.cfg["brokers"])]
            i += 1
            wait = limiter.wait_time(monotonic())
            if wait > 0:
                await asyncio.sleep(wait)
            limiter.record(monotonic())
            try:
                await self._session(b)
            except Exception as e:  # any failure: say it and try again later
                self.last_error = "%s: %s" % (b.get("name") or b["host"], e)
                self.log.warning("safe", "status link down", error=self.last_error)
            await asyncio.sleep(backoff.next_delay())
            self.beat = monotonic()


async def run(reasons, cfg, errors, board, boot, log, machine, network_mod, retry_s=None):
    from agent.board.wdt import Watchdog

    log.error("agent", "SAFE MODE: only the console and a status message run",
              reason="; ".join(reasons))  # fmt: skip
    for e in errors[:20]:
        log.error("config", e)
    sid, raw_up, raw_net, info = raw_parts()
    if cfg is not None:
        sid, up, net = cfg.site["id"], cfg.uplink, getattr(cfg, "network", None)
        info = contract.site_info(cfg.site)
    else:
        up, net = raw_up, raw_net

    def restart():
        async def later():
            await asyncio.sleep(0.5)
            machine.reset()

        log.warning("agent", "reset requested by the technician (leaving safe mode)")
        asyncio.create_task(later())

    facade = SafeFacade(cfg, sid, reasons, errors, board, boot, log, restart)
    tasks = []
    if network_mod is not None:
        from agent.board.net import Network

        netw = Network(board["network"], net or {}, log, network_mod, pin=machine.Pin)
        tasks.append(asyncio.create_task(netw.run()))
    if up and sid:
        from agent.board.tls import make_context

        body = {"v": contract.CONTRACT_VERSION, "state": SAFE}
        body.update(info)  # what the birth says about the site (docs/mqtt.md)
        body.update({"reason": "; ".join(reasons), "agent": __version__, "boot": boot["count"],
                     "reset": boot["cause"]})  # fmt: skip
        facade.link = SafeStatus(up, sid, json.dumps(body).encode(), log, make_context, info)
        tasks.append(asyncio.create_task(facade.link.run()))
    else:
        log.warning("safe", "no usable [uplink] in the config: no status upstream")
    tasks.append(asyncio.create_task(_console(cfg, facade, board, log)))
    dog = Watchdog(machine.WDT, board.get("wdt_s", 60), log)
    dog.start()
    started = monotonic()
    while True:
        dog.kick()
        dog.feed_once()
        if retry_s is not None and monotonic() - started > retry_s:
            log.warning("agent", "leaving safe mode to try the agent again", after_s=retry_s)
            machine.reset()
        await asyncio.sleep(dog.timeout_s / 4)


async def _console(cfg, facade, board, log):
    from agent.board import uart as board_uart
    from agent.board.console_uart import UartConsole
    from agent.core.console import auth
    from agent.core.console.session import Console

    board_uart.configure(board.get("uarts") or {})
    c = cfg.console if cfg is not None else {}
    port = c.get("port") if c.get("enabled") else board.get("repl_uart", "uart0")
    access = auth.Access(c.get("pin_hash"), c.get("idle_timeout", 300))

    def new_console(write, where):
        return Console(facade, access, write, where=where, log=log)

    con = UartConsole(port, c.get("baud", 115200), new_console, log)
    if port == board.get("repl_uart"):
        from firmware.hw import StdioUart

        con._open = StdioUart
    await con.run()
