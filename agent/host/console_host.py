"""The console's host wiring: the facade hooks only the host can supply, the serial and socket
transports, and the `site-agent console` command.

    facade = make_facade(cfg, loop, queue, uplink, log, restart=stop_and_restart, config_path=p)
    service = await start_consoles(cfg, facade, log)   # per [console]; None when nothing is on
    ...
    await service.close()

CLI: `site-agent console [-c site.toml | --socket PATH]` attaches to the running agent;
`site-agent console --hash-pin [--iterations N]` asks for a PIN twice and prints the pin_hash
line for the config (nothing is stored).
"""

import asyncio
import json
import os
import ssl
import sys
import time

from agent.core.console import auth
from agent.core.console.facade import ConsoleFacade
from agent.core.errors import ConfigError
from agent.host.console_socket import SOCKET_NAME, SocketConsole, attach


def socket_path(cfg):
    return os.path.join(cfg.storage["dir"], SOCKET_NAME)


def make_facade(cfg, loop, queue, uplink, log, restart=None, config_path=None, clock=None):
    """A ConsoleFacade with the host's hooks. Pass it to uplink.attach() too, so MQTT commands
    and the console share one facade."""

    def check_config():
        return check_config_file(config_path or cfg.source)

    async def uplink_test(say):
        return await mqtt_probe(cfg.uplink, cfg.site["id"], say, live=uplink)

    return ConsoleFacade(cfg, loop, queue, uplink, clock, log, uplink_test=uplink_test,
                         check_config=check_config, restart=restart)  # fmt: skip


def check_config_file(path):
    """[(level, text)] for the config file on disk as it is now: what `site-agent check` says
    (the file, then what this machine must offer: configfile.preflight)."""
    from agent.host.configfile import load, preflight

    try:
        cfg = load(path)
    except ConfigError as e:
        return [("error", line) for line in e.errors]
    errors, warnings = preflight(cfg)
    if errors:
        return [("error", line) for line in errors]
    out = [("ok", "%s is valid: site %s, %d devices" % (path, cfg.site["id"], len(cfg.devices)))]
    return out + [("warning", w) for w in cfg.warnings + warnings]


class ConsoleService:
    def __init__(self, tty=None, sock=None, task=None):
        self.tty = tty
        self.sock = sock
        self.task = task

    async def close(self):
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.sock is not None:
            await self.sock.close()


async def start_consoles(cfg, facade, log, sock_path=None):
    """Start the serial console (console.enabled) and the socket console (console.socket) with one
    shared Access (lockout and the one-session lock hold across both). Returns a ConsoleService,
    or None when neither is on. A socket that cannot be made is logged, not fatal."""
    c = cfg.console
    if not c.get("enabled") and not c.get("socket", True):
        return None
    pin_hash = c.get("pin_hash")
    access = auth.Access(pin_hash, c["idle_timeout"])
    if pin_hash is None:
        log.warning("console", "no console.pin_hash: the console shows only help and status")

    def make_console(write, where):
        # The session (views, line editing) is imported when a technician first attaches.
        from agent.core.console.session import Console

        return Console(facade, access, write, where=where, log=log)

    service = ConsoleService()
    if c.get("enabled"):
        from agent.host.console_tty import TtyConsole  # termios: only with a serial console

        service.tty = TtyConsole(c["port"], c.get("baud", 115200), make_console, log)
        service.task = asyncio.create_task(service.tty.run())
    if c.get("socket", True):
        try:
            service.sock = await SocketConsole(sock_path or socket_path(cfg), make_console,
                                               log).start()  # fmt: skip
        except OSError as e:
            log.error("console", "socket console not started", error=str(e))
    return service


# --- uplink test ---------------------------------------------------------------------------


async def mqtt_probe(uplink_cfg, site_id, say, live=None, timeout=10.0):
    """Connect to every broker in order with the agent's settings (but another client id, so the
    live session is not kicked off) and publish one QoS 1 probe to the reply topic; say() each
    step, then one line per broker. True when every broker acknowledged its probe: a backup
    that fails is a failed test, even when the preferred broker answers."""
    from agent.core.uplink import contract
    from agent.host import mqtt_client

    if live is not None:
        st = live.state()
        if st.get("connected"):
            say("live uplink: connected to %s" % st.get("broker"))
        else:
            say("live uplink: down (%s)" % (st.get("last_error") or "not connected yet"))
    prefix = uplink_cfg.get("topic_prefix") or contract.default_prefix(
        uplink_cfg.get("contract", 1))
    topic = contract.topic(prefix, site_id, "reply")
    cid = (uplink_cfg.get("client_id") or site_id) + "-console-test"
    brokers = uplink_cfg["brokers"]
    results = []
    for i, b in enumerate(brokers):
        how = "PLAIN TEXT" if b.get("insecure") else "TLS"
        say("broker %d of %d: %s, %s" % (i + 1, len(brokers), mqtt_client.where(b), how))
        ok = await asyncio.to_thread(_probe_one, b, cid, topic, site_id, say, timeout)
        results.append(ok)
    for i, b in enumerate(brokers):
        verdict = "passed" if results[i] else "FAILED"
        say("broker %d %s: %s" % (i + 1, mqtt_client.where(b), verdict))
    return all(results)


def _probe_one(b, cid, topic, site_id, say, timeout):
    from agent.host import mqtt_client

    t0 = time.monotonic()

    def ms():
        return "%d ms" % ((time.monotonic() - t0) * 1000)

    try:
        client = mqtt_client.new_client(b, cid, timeout)
    except ValueError as e:
        say("  FAILED: TLS setup: %s" % e)
        return False
    if not b.get("insecure"):
        say("  TLS set up (CA %s%s)" % (b.get("ca_file") or "system store",
            ", client certificate" if b.get("cert_file") else ""))  # fmt: skip
    try:
        say("  connecting ...")
        client.connect(b["host"], b["port"], 30)
    except (OSError, ssl.SSLError, ValueError) as e:
        say("  FAILED to connect after %s: %s" % (ms(), mqtt_client.connect_reason(b, e, timeout)))
        return False
    got = {}
    client.on_connect = lambda c, u, f, rc, p=None: got.setdefault("connack", rc)
    client.on_publish = lambda c, u, mid, rc=None, p=None: got.setdefault("puback", rc)
    client.loop_start()
    try:
        end = time.monotonic() + timeout
        while "connack" not in got and time.monotonic() < end:
            time.sleep(0.02)
        rc = got.get("connack")
        if rc is None:
            say("  FAILED: no CONNACK within %gs" % timeout)
            return False
        if rc.is_failure:
            say("  FAILED: broker refused the connection: %s" % rc)
            return False
        say("  connected, CONNACK accepted (%s)" % ms())
        body = {"v": 1, "id": None, "ok": True, "cmd": "uplink_test",
                "result": {"probe": True, "site": site_id, "time": time.time()}}  # fmt: skip
        client.publish(topic, json.dumps(body).encode(), qos=1)
        say("  published a probe to %s (QoS 1)" % topic)
        while "puback" not in got and time.monotonic() < end:
            time.sleep(0.02)
        rc = got.get("puback")
        if "puback" not in got:
            say("  FAILED: no PUBACK within %gs" % timeout)
            return False
        if rc is not None and getattr(rc, "is_failure", False):
            say("  FAILED: broker refused the publish: %s (ACL?)" % rc)
            return False
        say("  PUBACK received (%s): the broker stored the probe" % ms())
        return True
    finally:
        client.disconnect()
        client.loop_stop()


# --- the command line ----------------------------------------------------------------------


def add_parser(sub):
    """Add `console` to site-agent's subcommands (sub: the argparse subparsers object)."""
    p = sub.add_parser("console", help="attach to the running agent's console (Unix socket)",
                       description="Attach this terminal to the running agent's console over "
                       "the Unix socket in its data directory: same commands and PIN login as "
                       "the serial console. Ctrl-] leaves. With --hash-pin, make a "
                       "pin_hash.")  # fmt: skip
    p.add_argument("-c", "--config", default=None,
                   help="site config (to find storage.dir); default as for run")  # fmt: skip
    p.add_argument("--socket", help="the console socket (default: <storage.dir>/console.sock)")
    p.add_argument("--hash-pin", action="store_true",
                   help="ask for a PIN twice and print the console.pin_hash value")  # fmt: skip
    p.add_argument("--iterations", type=int, default=auth.DEFAULT_ITERATIONS,
                   help="PBKDF2 iterations for --hash-pin (default %(default)s)")  # fmt: skip
    return p


def hash_pin(iterations, ask=None, out=sys.stdout):
    if ask is None:
        import getpass

        ask = getpass.getpass
    pin = ask("New console PIN (%d-%d characters): " % (auth.MIN_PIN, auth.MAX_PIN))
    if ask("Again: ") != pin:
        sys.stderr.write("site-agent console: the two PINs differ; nothing printed\n")
        return 2
    try:
        h = auth.make_hash(pin, iterations)
    except ConfigError as e:
        sys.stderr.write("site-agent console: %s\n" % e)
        return 2
    out.write('pin_hash = "%s"\n' % h)
    return 0


def cmd_console(args, log, default_config):
    """The body of `site-agent console`; returns the exit code."""
    if args.hash_pin:
        return hash_pin(args.iterations)
    path = args.socket
    if path is None:
        from agent.host.configfile import load

        path = socket_path(load(args.config or default_config))
    return attach(path)
