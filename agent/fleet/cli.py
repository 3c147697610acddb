"""`site-agent fleet`: the operations centre's view of every site, from the contract's topics.

    site-agent fleet --broker mqtt.noc.example:8883 --ca-file ca.pem --listen 0.0.0.0:8080
    site-agent fleet --broker 127.0.0.1:1883 --insecure --once        # table, then exit

Exit codes: 0 ok (and on Ctrl-C / SIGTERM), 1 the broker could not be reached (--once) or the
server could not start, 2 bad usage.
"""

import json
import os
import signal
import sys
import threading
import time

ENV_PASSWORD = "SITE_AGENT_FLEET_PASSWORD"
SYNC_MAX_S = 600.0


def add_parser(sub):
    f = sub.add_parser(
        "fleet", help="the operations centre's view: every site, a web page, /metrics",
        description="Subscribe to every site's topics on a broker (retained status, alarms and "
        "state first, then the live stream), keep the fleet's current picture and serve it: a "
        "web page (no internet needed), /metrics for Prometheus, or --once a table.")
    f.add_argument("--broker", required=True, metavar="HOST[:PORT]",
                   help="the MQTT broker (port default 8883 with TLS, 1883 with --insecure); "
                   "IPv6 as [addr]:port")
    f.add_argument("--insecure", action="store_true",
                   help="plain-text MQTT, no TLS (only on a network you trust; warned at start)")
    f.add_argument("--ca-file", help="trust only this CA for the broker's certificate "
                   "(default: the system's CAs)")
    f.add_argument("--cert-file", help="client certificate (PEM) for mutual TLS")
    f.add_argument("--key-file", help="client certificate's key (PEM)")
    f.add_argument("--username", help="MQTT user name; the password is read from $%s or "
                   "--password-file" % ENV_PASSWORD)
    f.add_argument("--password-file", help="file holding the MQTT password (first line)")
    f.add_argument("--prefix", action="append", metavar="PREFIX",
                   help="a topic prefix to read; repeat for several (default: site-agent/v1 and "
                   "site-agent/v2, contract versions side by side)")
    f.add_argument("--share", metavar="GROUP", help="take a share of the live stream with the "
                   "other instances of GROUP (MQTT 5 shared subscription): alarm events, and "
                   "the data of prefixes ending in /v1; the retained topics are read in full by "
                   "every instance, and so is v2 data unless --partition or --share-all")
    f.add_argument("--partition", metavar="I/N",
                   help="of the data this instance reads in full (v2's, and all with no "
                   "--share), decode only the sites whose crc32(site id) mod N is I; run N "
                   "instances, 0/N to N-1/N")
    f.add_argument("--share-all", action="store_true",
                   help="with --share: share v2 data too; only on a broker that sends every "
                   "message of a topic to the same member (EMQX hash_topic): a round-robin one "
                   "such as mosquitto splits a site's compact stream between instances")
    f.add_argument("--mqtt", choices=("5", "3.1.1"), default="5",
                   help="MQTT protocol version (default 5; shared subscriptions need 5)")
    f.add_argument("--client-id", help="MQTT client id (default: site-agent-fleet-HOST-PID); "
                   "a fixed one lets a restart resume the session and what the broker queued")
    f.add_argument("--session-expiry", type=int, default=300, metavar="SECONDS",
                   help="MQTT 5 session expiry: the broker queues the live stream this long "
                   "while the consumer is away, so a reconnect loses nothing (default 300; 0: "
                   "a clean session on every connect)")
    f.add_argument("--listen", default="127.0.0.1:8080", metavar="HOST:PORT",
                   help="where to serve the page and /metrics (default %(default)s; port 0: "
                   "any free port)")
    f.add_argument("--silent-after", type=float, default=300.0, metavar="SECONDS",
                   help="a site not heard from for this long is marked silent (default 300)")
    f.add_argument("--history-step", type=float, default=300.0, metavar="SECONDS",
                   help="time resolution of each site's history (default 300)")
    f.add_argument("--history-hours", type=float, default=24.0,
                   help="how much history each site keeps (default 24)")
    f.add_argument("--map-image", help="a map image (PNG, JPEG, SVG) to draw the sites on")
    f.add_argument("--map-bounds", metavar="S,W,N,E",
                   help="the image's edges in decimal degrees: south,west,north,east")
    f.add_argument("--max-sites", type=int, default=100000,
                   help="ignore sites beyond this many (default %(default)s)")
    f.add_argument("--once", action="store_true",
                   help="print the fleet table (most urgent first) and exit")
    f.add_argument("--wait", type=float, default=35.0, metavar="SECONDS",
                   help="with --once: after the retained messages, listen until every online "
                   "site has sent live readings, at most this long (default 35: the example "
                   "configs' longest commit interval is 30 s)")
    f.add_argument("--json", action="store_true", help="with --once: JSON instead of a table")
    f.add_argument("-q", "--query", help="with --once: only sites whose id, name or place "
                   "contains these words")
    return f


class UsageError(Exception):
    pass


def parse_broker(text, insecure):
    host, port = text, None
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise UsageError("--broker %r: missing ]" % text) from None
        host, rest = text[1:end], text[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise UsageError("--broker %r: expected [addr]:port" % text)
            port = rest[1:]
    elif text.count(":") == 1:
        host, port = text.split(":")
    if not host:
        raise UsageError("--broker %r: no host" % text)
    if port is None:
        return host, 1883 if insecure else 8883
    try:
        port = int(port)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise UsageError("--broker %r: port must be 1-65535" % text)
    return host, port


def parse_listen(text):
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    try:
        port = int(port)
    except ValueError:
        raise UsageError("--listen %r: expected HOST:PORT" % text) from None
    if not 0 <= port < 65536:
        raise UsageError("--listen %r: port must be 0-65535" % text)
    return host, port


def parse_partition(text):
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise UsageError("--partition %r: expected I/N, e.g. 0/3" % text) from None
    if not (n >= 1 and 0 <= i < n):
        raise UsageError("--partition %r: need N >= 1 and 0 <= I < N" % text)
    return i, n


def parse_bounds(text):
    try:
        s, w, n, e = (float(x) for x in text.split(","))
    except ValueError:
        raise UsageError(
            "--map-bounds %r: expected four numbers south,west,north,east" % text) from None
    if not (-90 <= s < n <= 90 and -180 <= w < e <= 180):
        raise UsageError("--map-bounds %r: need -90 <= south < north <= 90 and "
                         "-180 <= west < east <= 180" % text)
    return s, w, n, e


def cmd_fleet(args, log):
    try:
        host, port = parse_broker(args.broker, args.insecure)
        listen = parse_listen(args.listen)
        bounds = parse_bounds(args.map_bounds) if args.map_bounds else None
        if bool(args.map_image) != bool(bounds):
            raise UsageError("--map-image and --map-bounds go together")
        if args.map_image and not os.path.isfile(args.map_image):
            raise UsageError("--map-image %s: no such file" % args.map_image)
        if args.share and args.mqtt != "5":
            raise UsageError("--share needs --mqtt 5")
        if args.share and ("/" in args.share or "+" in args.share or "#" in args.share):
            raise UsageError("--share %r: a group name cannot contain /, + or #" % args.share)
        if args.share_all and not args.share:
            raise UsageError("--share-all goes with --share")
        partition = parse_partition(args.partition) if args.partition else None
        if partition and args.share_all:
            raise UsageError("--partition and --share-all: with --share-all no data is read in "
                             "full, so there is nothing to partition")
        if args.history_step < 1 or args.history_hours <= 0:
            raise UsageError("--history-step must be >= 1 and --history-hours > 0")
        password = _password(args)
    except UsageError as e:
        sys.stderr.write("site-agent fleet: %s\n" % e)
        return 2
    tls = None
    if args.insecure:
        log.warning("fleet", "PLAIN TEXT MQTT (--insecure): readings and credentials cross the "
                    "network unencrypted", broker="%s:%d" % (host, port))
    else:
        tls = {"ca_file": args.ca_file, "cert_file": args.cert_file, "key_file": args.key_file}
    from agent.fleet import decode

    prefixes = args.prefix or list(decode.PREFIXES)
    mqtt = {"prefix": prefixes, "tls": tls, "username": args.username, "password": password,
            "client_id": args.client_id, "protocol": args.mqtt, "share_all": args.share_all,
            "partition": partition, "session_expiry": max(0, args.session_expiry)}  # fmt: skip
    unshared = [p for p in prefixes if not (args.share_all or p.endswith("/v1"))]
    if args.share and unshared and not partition:
        log.warning("fleet", "--share: the data of these prefixes is read in full by every "
                    "instance, as contract v2's compact stream must reach one instance whole; "
                    "give each instance --partition I/N to split it (or --share-all on a broker "
                    "that keeps a topic on one member)", prefixes=",".join(unshared))
    if args.once:
        from agent.fleet.model import Fleet
        from agent.fleet.subscriber import Subscriber

        fleet = Fleet(silent_after=args.silent_after, max_sites=args.max_sites, log=log)
        return _once(args, fleet, Subscriber(fleet, host, port, share=args.share, log=log,
                                             **mqtt))  # fmt: skip
    from agent.fleet.app import FleetApp

    try:
        app = FleetApp(host, port, listen, share=args.share, silent_after=args.silent_after,
                       history_step=args.history_step, history_hours=args.history_hours,
                       max_sites=args.max_sites, map_image=args.map_image, map_bounds=bounds,
                       log=log, **mqtt)  # fmt: skip
    except OSError as e:
        log.error("fleet", "cannot serve the page", listen=args.listen, error=str(e))
        return 1
    return _serve(args, app, listen, log)


def _password(args):
    if args.password_file:
        try:
            with open(args.password_file) as f:
                return f.readline().rstrip("\r\n")
        except OSError as e:
            raise UsageError("--password-file: %s" % e) from None
    return os.environ.get(ENV_PASSWORD) or None


def _once(args, fleet, sub):
    from agent.fleet import text

    sub.start()
    try:
        start = time.monotonic()
        # A script wants an answer: a broker that refuses us twice, or that has not taken our
        # subscriptions within --wait plus 10 s, is a failure (exit 1). The retained messages
        # then take what they take (tens of seconds for tens of thousands of sites), up to
        # SYNC_MAX_S.
        deadline = start + args.wait + 10.0
        synced = False
        while time.monotonic() < deadline and sub.connect_failures < 2:
            if sub.live_subscribed.is_set():
                synced = sub.wait_synced(SYNC_MAX_S)
                break
            time.sleep(0.05)
        if not synced:
            why = sub.last_error or "no answer from the broker"
            sys.stderr.write("site-agent fleet: %s:%s: %s\n" % (sub.host, sub.port, why))
            return 1
        # A site's retained state is as of its last connect, which may be days ago: wait until
        # every site that is online has spoken live once (its newest values), or --wait.
        since = time.time()
        end = start + args.wait
        waiting = _not_heard_live(fleet, since)
        while waiting and time.monotonic() < end:
            time.sleep(0.1)
            waiting = _not_heard_live(fleet, since)
        now = time.time()
        rows = fleet.rows(now, args.query)
    finally:
        sub.stop()
    if args.json:
        sys.stdout.write(json.dumps({"now": now, "sites": rows}, indent=1) + "\n")
    else:
        sys.stdout.write(text.table(rows))
        sys.stderr.write("%d sites; %d records, %d duplicates dropped, %d bad messages\n" % (
            len(rows), fleet.counts["records"], fleet.counts["duplicates"],
            fleet.counts["bad_messages"]))
    if waiting:
        sys.stderr.write("%d online site(s) sent nothing in %gs; their values are from their "
                         "retained state (as of their last connect): %s\n"
                         % (len(waiting), args.wait, " ".join(sorted(waiting)[:20])))
    unknown = sorted(r["id"] for r in rows if r.get("unknown"))
    if unknown:
        sys.stderr.write("%d site(s) have values unknown (for some perhaps only the battery "
                         "voltage, which the table leaves out): this one-shot view joined "
                         "their contract v2 compact streams mid-way, which send a value only "
                         "when it moves; a running `site-agent fleet` knows them within the "
                         "sites' integrity period (uplink.integrity_period, 600 s by default): "
                         "%s\n" % (len(unknown), " ".join(unknown[:20])))
    return 0


def _not_heard_live(fleet, since):
    """Sites that are not offline and have sent no live message since `since`."""
    with fleet.lock:
        return [s.id for s in fleet.sites.values()
                if s.status != "offline" and (s.last_msg is None or s.last_msg < since)]


def _serve(args, app, listen, log):
    if listen[0] not in ("127.0.0.1", "::1", "localhost"):
        log.warning("fleet", "the page and /metrics are open to anyone who can reach this "
                    "address (no users or passwords): bind it to a trusted network only",
                    listen=args.listen)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *a: stop.set())
    app.start()
    log.info("fleet", "serving the fleet page", url=app.url, metrics=app.url + "metrics")
    sys.stdout.write("fleet page: %s\n" % app.url)
    sys.stdout.flush()
    try:
        while not stop.wait(1.0):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        app.stop()
    return 0
