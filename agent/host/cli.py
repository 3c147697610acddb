"""`site-agent`: the command line. Exit codes: 0 ok, 1 runtime failure, 2 bad usage or config."""

import argparse
import asyncio
import json
import os
import sys

from agent import __version__
from agent.core.console import fmt
from agent.core.errors import ConfigError, QueueError
from agent.core.log import DEBUG, ERROR, INFO, WARNING, Log
from agent.fleet.cli import add_parser as add_fleet_parser
from agent.fleet.cli import cmd_fleet
from agent.host.console_host import add_parser as add_console_parser
from agent.host.console_host import cmd_console

DEFAULT_CONFIG = os.environ.get("SITE_AGENT_CONFIG", "/etc/site-agent/site.toml")
LEVELS = {"debug": DEBUG, "info": INFO, "warning": WARNING, "error": ERROR}

EXIT_OK = 0
EXIT_RUNTIME = 1
EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits 2 already; keep its message on one line
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s\n" % (self.prog, message))


def _add_config(p):
    p.add_argument(
        "-c",
        "--config",
        default=DEFAULT_CONFIG,
        help="site config file (default: %(default)s, or $SITE_AGENT_CONFIG)",
    )


def build_parser():
    p = _Parser(
        prog="site-agent",
        description="Edge agent for telecom field sites: polls power, battery and router health "
        "over SNMP and serial, raises alarms and reports over MQTT with store-and-forward.",
    )
    p.add_argument("--version", action="version", version="site-agent " + __version__)
    p.add_argument("--log-level", choices=sorted(LEVELS), default="info", help="default: info")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    r = sub.add_parser("run", help="run the agent (the daemon)", description="Poll every device "
                       "on its schedule, store readings durably and send them upstream until "
                       "SIGTERM or SIGINT. Log lines go to stderr.")
    _add_config(r)

    c = sub.add_parser("check", help="validate a config and show what the agent would do",
                       description="Validate the site config and print the devices, schedule, "
                       "uplink and storage the agent would use. Exit 0 when valid, 2 when not.")
    _add_config(c)

    pl = sub.add_parser("poll", help="poll every device once and print the readings",
                        description="Poll each device once (or only --device) and print a table "
                        "of readings. Nothing is stored or sent. Exit 1 if any device failed.")
    _add_config(pl)
    pl.add_argument("-d", "--device", action="append", help="poll only this device (repeatable)")
    pl.add_argument("--json", action="store_true", help="print readings as JSON lines")

    d = sub.add_parser("demo", help="run a simulated BTS site and watch readings arrive upstream",
                       description="Start a simulated BTS site on loopback (SNMP agents serving "
                       "real device recordings, a Megatec UPS on a pseudo-terminal, an MQTT "
                       "broker), run the agent against it and show readings arriving at the "
                       "broker as a live table until Ctrl-C. Everything started is stopped.")
    d.add_argument("--duration", type=float, help="stop after this many seconds")
    d.add_argument("--plain", action="store_true",
                   help="print the table afresh each time instead of redrawing it in place")
    d.add_argument("--all", action="store_true",
                   help="show every metric, not only each device's headline values")
    d.add_argument("--fleet-port", type=int, default=8080, metavar="PORT",
                   help="serve the fleet page on 127.0.0.1:PORT (default 8080; another port "
                   "if it is busy)")
    d.add_argument("--keep", metavar="DIR", help="write the demo's config and data here and "
                   "keep them afterwards")

    add_console_parser(sub)
    add_fleet_parser(sub)

    q = sub.add_parser("queue", help="inspect a stopped agent's store",
                       description="Inspect the store in a data directory while the agent is "
                       "stopped.")
    qsub = q.add_subparsers(dest="queue_command", metavar="ACTION", parser_class=_Parser)
    qs = qsub.add_parser("stats", help="depth per lane, bytes, oldest and newest record")
    qs.add_argument("data_dir", help="the agent's data directory (storage.dir)")
    qs.add_argument("--json", action="store_true")
    qe = qsub.add_parser("export", help="write the backlog as JSON lines")
    qe.add_argument("data_dir", help="the agent's data directory (storage.dir)")
    qe.add_argument("out", help="output file (JSON lines), e.g. on a USB stick")
    return p


def _log(args):
    return Log(level=LEVELS[args.log_level])


def _load(path, machine=False):
    """The validated config; with machine=True also what this machine must offer to run it
    (configfile.preflight): errors raise ConfigError, warnings join cfg.warnings. `check` and
    `run` both load this way, so they accept the same configs."""
    from agent.host.configfile import load, preflight

    cfg = load(path)
    if machine:
        errors, warnings = preflight(cfg)
        if errors:
            raise ConfigError(errors)
        cfg.warnings.extend(warnings)
    return cfg


def cmd_check(args, log):
    cfg = _load(args.config, machine=True)
    out = sys.stdout
    site = cfg.site
    out.write("config %s is valid\n" % cfg.source)
    out.write("site %s (%s)%s\n" % (site["id"], site["kind"],
                                    (": " + site["name"]) if site.get("name") else ""))
    out.write("\ndevices (%d):\n" % len(cfg.devices))
    for dev in cfg.devices:
        out.write("  %-14s %-10s every %gs, budget %gs, jitter %d%%  %s%s\n" % (
            dev["id"], dev["driver"], dev["interval"], dev["timeout"], round(dev["jitter"] * 100),
            describe_connection(dev), "" if dev.get("enabled", True) else "  (disabled)"))
    if cfg.uplink:
        u = cfg.uplink
        out.write("\nuplink (contract %d, topic prefix %s):\n" % (u.get("contract", 1),
                                                                u.get("topic_prefix")))
        for i, b in enumerate(u["brokers"]):
            how = "PLAIN TEXT (insecure)" if b.get("insecure") else "TLS"
            name = b.get("name") or "broker"
            fmt = b.get("format") or ("compact" if b.get("budget_bytes") else u.get("format"))
            out.write("  %d. %s %s:%s %s, %s form\n" % (i + 1, name, b["host"], b["port"], how,
                                                       fmt or "json"))
    else:
        out.write("\nuplink: none (readings are stored only)\n")
    st = cfg.storage
    out.write("\nstorage: %s, budget %s MB, commit every %gs or %d readings\n" % (
        st.get("dir"), st.get("budget_mb"), st.get("commit_interval"), st.get("commit_records")))
    from agent.core.monitor.alarms import rules_for

    rules = rules_for(cfg.site["kind"], cfg.alarms)
    own = len(cfg.alarms.get("rules") or [])
    out.write("alarms: %d rules (%s defaults for %s sites, %d from this file)\n" % (
        len(rules), "with" if cfg.alarms.get("defaults", True) else "without", cfg.site["kind"],
        own))
    con = cfg.console
    out.write("console: serial %s, socket %s, %s\n" % (
        "%s at %d baud" % (con["port"], con.get("baud", 115200)) if con.get("enabled") else "off",
        "on" if con.get("socket", True) else "off",
        "PIN set" if con.get("pin_hash") else "no PIN: only help and status"))
    out.write("clock: %s\n" % ("trusted from the start (site.clock = system)"
                               if cfg.site.get("clock") == "system"
                               else "trusted once NTP has synchronised the system clock"))
    for w in cfg.warnings:
        out.write("WARNING: %s\n" % w)
    return EXIT_OK


def describe_connection(dev):
    if "snmp" in dev:
        s = dev["snmp"]
        return "snmp v%s %s:%s profile %s" % (s["version"], s["host"], s["port"], s["profile"])
    if "serial" in dev:
        s = dev["serial"]
        return "serial %s %s %d%s%d" % (s["port"], s["baud"], s["bytesize"], s["parity"],
                                        s["stopbits"])
    if "probe" in dev:
        p = dev["probe"]
        return "probe %s %s" % (p.get("kind"), p.get("target") or p.get("url"))
    return ""


def cmd_poll(args, log):
    from agent.host.runner import make_loop, open_queue

    cfg = _load(args.config)
    if args.device:
        known = set(d["id"] for d in cfg.devices)
        for d in args.device:
            if d not in known:
                have = ", ".join(sorted(known))
                raise ConfigError("%s: no device %r (have: %s)" % (cfg.source, d, have))
        cfg.devices = [d for d in cfg.devices if d["id"] in args.device]
    loop = make_loop(cfg, open_queue(cfg, log, volatile=True), log)
    results = asyncio.run(_poll_once(loop))
    failed = 0
    rows = []
    for dev_id, res in results.items():
        if not res.ok:
            failed += 1
        for metric, value, unit in res.samples:
            rows.append((dev_id, metric, value, unit))
    code = EXIT_RUNTIME if failed else EXIT_OK
    try:
        if args.json:
            for dev_id, metric, value, unit in rows:
                sys.stdout.write(json.dumps({"device": dev_id, "metric": metric, "value": value,
                                             "unit": unit}) + "\n")  # fmt: skip
        elif rows:  # no header over nothing: the stale reasons below say why
            table = fmt.table(["DEVICE", "METRIC", "VALUE", "UNIT"],
                              [(d, m, fmt.value(v), u) for d, m, v, u in rows],
                              width=fmt.UNLIMITED)  # fmt: skip
            sys.stdout.write("\n".join(table) + "\n")
        sys.stdout.flush()
    except BrokenPipeError:
        _reader_gone()  # the readings' reader stopped; the answer below still stands
    for dev_id, res in results.items():
        status = "ok, %d readings in %.2fs" % (len(res.samples), res.duration) if res.ok else \
            "STALE: " + res.error
        sys.stderr.write("%s: %s\n" % (dev_id, status))
    return code


async def _poll_once(loop):
    try:
        return await loop.poll_all()
    finally:
        for drv in loop.drivers.values():
            await drv._safe_close()


def cmd_run(args, log):
    from agent.host.runner import EXIT_RESTART, run_agent

    cfg = _load(args.config, machine=True)
    code = asyncio.run(run_agent(cfg, log))
    if code == EXIT_RESTART:
        if os.environ.get("INVOCATION_ID"):
            return EXIT_OK  # under systemd: Restart=always starts the agent again
        log.info("agent", "restarting", argv=" ".join(sys.argv[1:]))
        os.execv(sys.executable, [sys.executable, "-m", "agent.host.cli"] + sys.argv[1:])
    return code


def cmd_demo(args, log):
    from agent.host.demo import run_demo

    return run_demo(args, log)


def cmd_queue(args, log):
    from agent.host import queue_cli

    if args.queue_command and not os.path.isdir(queue_cli.queue_dir(args.data_dir)):
        sys.stderr.write("site-agent queue: %s: no queue here (give the agent's storage.dir)\n"
                         % args.data_dir)
        return EXIT_USAGE
    if args.queue_command == "stats":
        stats = queue_cli.stats(args.data_dir)
        if args.json:
            sys.stdout.write(json.dumps(stats, indent=2, sort_keys=True) + "\n")
        else:
            sys.stdout.write(queue_cli.format_stats(stats))
        return EXIT_OK
    if args.queue_command == "export":
        try:
            n = queue_cli.export(args.data_dir, args.out)
        except QueueError as e:
            sys.stderr.write("site-agent queue export: %s\n" % e)
            return EXIT_RUNTIME
        sys.stderr.write("exported %d records to %s\n" % (n, args.out))
        return EXIT_OK
    sys.stderr.write("site-agent queue: say stats or export (see site-agent queue --help)\n")
    return EXIT_USAGE


COMMANDS = {"run": cmd_run, "check": cmd_check, "poll": cmd_poll, "demo": cmd_demo,
            "queue": cmd_queue, "fleet": cmd_fleet,
            "console": lambda args, log: cmd_console(args, log, DEFAULT_CONFIG)}


def main(argv=None):
    try:
        return _main(argv)
    except BrokenPipeError:
        return _reader_gone()


def _reader_gone(code=EXIT_OK):
    """The reader of our output (`| head`, `| less`, `| grep -q`) stopped reading: that ends the
    output, not the command with an error. A stream whose pipe has no reader any more is pointed
    at /dev/null, so later writes and the interpreter's last flush at exit are quiet too; a
    stream still read (stderr on the terminal) keeps working. Returns `code`."""
    import select

    for stream in (sys.stdout, sys.stderr):
        try:
            fd = stream.fileno()
            poller = select.poll()
            poller.register(fd, select.POLLOUT)
            broken = any(ev & (select.POLLERR | select.POLLHUP) for _, ev in poller.poll(0))
            if broken:
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, fd)
                os.close(devnull)
        except (OSError, ValueError):
            pass
    return code


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    log = _log(args)
    try:
        return COMMANDS[args.command](args, log)
    except BrokenPipeError:
        raise  # main() ends quietly: the reader has gone
    except ConfigError as e:
        for line in e.errors:
            sys.stderr.write("config error: %s\n" % line)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_OK
    except Exception as e:  # last resort: one clear line, not a traceback, for field use
        log.error("agent", "failed", error="%s: %s" % (e.__class__.__name__, e))
        if args.log_level == "debug":
            raise
        return EXIT_RUNTIME


if __name__ == "__main__":
    sys.exit(main())
