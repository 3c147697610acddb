"""`site-agent demo`: a simulated BTS site, the real agent against it, and a live table of what
arrives at the broker; beside it a handful of generated sites (one in a typhoon) and the fleet
page (`site-agent fleet`, docs/fleet.md) showing them all. Ctrl-C (or --duration) stops
everything that was started."""

import os
import signal
import subprocess
import sys
import time

from agent.core.console import fmt

REFRESH_S = 1.0
FLEET_SITES = 5  # generated sites beside the demo site; the first one is in a typhoon
# What a person watching the site wants first; everything else is counted ("+N more").
HEADLINE = (
    "site.power_source", "site.runtime", "site.backhaul",
    "ups.status", "battery.charge", "battery.runtime", "battery.voltage", "battery.current",
    "input.voltage", "ups.load", "solar.power", "charger.status", "dc.voltage",
    "rectifier.current", "device.uptime", "router.cpu", "router.memory",
    "agent.queue.depth", "agent.uplink.connected",
)


def run_demo(args, log):
    from hil.proc import die_with_parent
    from hil.site import SimulatedSite
    from hil.upstream import Upstream

    # A closed terminal (SIGHUP) or a polite kill (SIGTERM) stops the demo like Ctrl-C does, so
    # the cleanup below always runs.
    for sig in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, _interrupt)

    sys.stderr.write("starting the simulated site (broker, SNMP agents, serial UPS)...\n")
    site = SimulatedSite(keep_dir=args.keep)
    agent = None
    upstream = None
    sim = fleet = None
    interrupted = False
    try:
        site.start()
        upstream = Upstream("127.0.0.1", site.broker.port, site.prefix, site.site_id).start()
        agent_log = open(os.path.join(site.dir, "agent.log"), "w")
        agent = subprocess.Popen(
            [sys.executable, "-m", "agent.host.cli", "run", "-c", site.config_path],
            stdout=agent_log,
            stderr=agent_log,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        sim, fleet = start_fleet(site, getattr(args, "fleet_port", 8080))
        live = sys.stdout.isatty() and not args.plain
        started = time.monotonic()
        while args.duration is None or time.monotonic() - started < args.duration:
            if agent.poll() is not None:
                sys.stderr.write("the agent exited with %s; its log:\n%s\n"
                                 % (agent.returncode, _tail(agent_log.name, 30)))
                return 1
            render(site, upstream, agent_log.name, live, time.monotonic() - started,
                   args.all, fleet)
            time.sleep(REFRESH_S)
    except KeyboardInterrupt:
        interrupted = True
    finally:
        if agent is not None and agent.poll() is None:
            agent.send_signal(signal.SIGTERM)
            try:
                agent.wait(10)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        if upstream is not None:
            upstream.stop()
        if sim is not None:
            sim.stop()
        if fleet is not None:
            fleet.stop()
        site.stop()
    sys.stderr.write("demo stopped%s; everything it started has been stopped.\n"
                     % (" (Ctrl-C)" if interrupted else ""))
    return 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def start_fleet(site, port):
    """Generated sites speaking the contract on the demo's broker, and the fleet view of them
    all (the demo site included) on http://127.0.0.1:port/ (another port if that one is busy).
    The view's log goes to fleet.log in the demo's directory, not over the live table."""
    from agent.core.log import Log
    from agent.fleet.app import FleetApp
    from hil.fleet import FleetSim, make_sites

    sites = make_sites(FLEET_SITES, typhoon=1, prefix="gen")
    # A fleet moving to contract v2 site by site: the last two speak it, in its compact form
    # and in JSON.
    for s, form in zip(sites[-2:], ("compact", "json")):
        s.use_contract(2, form)
    logfile = open(os.path.join(site.dir, "fleet.log"), "a", buffering=1)
    log = Log(write=lambda line: logfile.write(line + "\n"))
    # A short, fine history so the typhoon shows on the site page within minutes.
    opts = {"history_step": 5.0, "history_hours": 1.0, "silent_after": 120.0, "log": log}
    try:
        app = FleetApp("127.0.0.1", site.broker.port, ("127.0.0.1", port), **opts)
    except OSError:
        app = FleetApp("127.0.0.1", site.broker.port, ("127.0.0.1", 0), **opts)
    app.start()
    # The view listens before the generated sites start, so that it reads their v2 compact
    # streams from their first message (one that joins later knows their values at their
    # integrity refresh).
    app.sub.wait_synced(10)
    try:
        return FleetSim("127.0.0.1", site.broker.port, sites).start(), app
    except BaseException:
        app.stop()
        raise


def render(site, upstream, agent_log, live, elapsed, show_all=False, fleet=None):
    latest, seqs, status, batches = upstream.snapshot()
    rows = table_rows(latest, time.time(), show_all)
    out = []
    if live:
        out.append("\x1b[H\x1b[2J")
    out.append("site-agent demo: site %s, broker 127.0.0.1:%d, running %.0fs (Ctrl-C stops)\n"
               % (site.site_id, site.broker.port, elapsed))
    if fleet is not None:
        out.append("fleet page: %s  (%d sites: this one and %d generated, one in a typhoon)\n"
                   % (fleet.url, len(fleet.fleet.sites), FLEET_SITES))
    out.append("agent status: %s   batches received: %d   readings: %d   highest seq: %s\n\n"
               % (_status_word(status), batches, sum(seqs.values()), max(seqs) if seqs else "-"))
    header = ["DEVICE", "METRIC", "VALUE", "UNIT", "QUALITY", "SEQ", "AGE"]
    out.append("\n".join(fmt.table(header, rows, width=fmt.UNLIMITED)) + "\n"
               if rows else "(waiting for the first readings to arrive upstream...)\n")
    out.append("\nlast agent log lines:\n" + _tail(agent_log, 4) + "\n")
    if not live:
        out.append("-" * 78 + "\n")
    sys.stdout.write("".join(out))
    sys.stdout.flush()


def table_rows(latest, now, show_all):
    """Rows for the live table: every series with show_all, else each device's headline metrics,
    its interfaces summarised in one row, and a count of the rest."""
    rows = []
    devices = sorted(set(d for d, _ in latest))
    for device in devices:
        series = sorted(m for d, m in latest if d == device)
        shown = series if show_all else [m for m in HEADLINE if m in series]
        for metric in shown:
            rec, arrived = latest[(device, metric)]
            rows.append((device, metric, fmt.value(rec["value"]), rec.get("unit") or "",
                         rec.get("quality", ""), rec["seq"], "%.0fs" % (now - arrived)))
        if show_all:
            continue
        opers = [m for m in series if m.startswith("if.") and m.endswith(".oper")]
        if opers:
            down = [m[3:-5] for m in opers if latest[(device, m)][0]["value"] != "up"]
            value = "%d up, %d down%s" % (len(opers) - len(down), len(down),
                                         (" (" + ", ".join(down) + ")") if down else "")
            newest = max(latest[(device, m)][0]["seq"] for m in opers)
            rows.append((device, "if.*.oper", value, "", "", newest, ""))
        rest = len(series) - len(shown) - len(opers)
        if rest > 0:
            rows.append((device, "(+%d more metrics)" % rest, "", "", "", "", ""))
    return rows


def _status_word(status):
    if not status:
        return "unknown"
    return "online" if '"online"' in status else "offline"


def _tail(path, n):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:]).rstrip()
    except OSError:
        return ""
