"""Reachability probes: does the free Wi-Fi reach the internet, measured rather than assumed.

A community-house Wi-Fi point's consumer router has no SNMP, so the agent tries what a visitor
does. One device is one probe (config `[devices.probe]`):

    kind = "tcp"   target, port   connect, then close; latency = connect time
    kind = "dns"   target         resolve the name; latency = time to the answer
                   server (opt.)  ask this resolver over UDP (port: its port, default 53)
    kind = "http"  url            GET the URL (http or https) and read the page (first
                                  MAX_BODY bytes); ok when the status is 2xx; latency = time to
                                  the last byte read

Readings (registry): probe.<name>.ok (bool), probe.<name>.latency (ms, only when ok: a failed
attempt has no round-trip time, and a made-up one would poison averages), probe.<name>.loss (%
of failed attempts over the last `window` polls, default 10). <name> is the section's `name`, else
the device id with "." made "_" (a metric name part cannot hold a dot).

Invariants:
- A failing probe is a reading, not a stale device: refused, timed out, NXDOMAIN, HTTP 500 all
  give ok=false and raise the loss. Each attempt has its own deadline (ATTEMPT_SHARE of the
  device timeout) that ends well inside the poll budget, so poll() never times the probe out.
  The device is stale only when the probe cannot run at all: a bad config (DeviceError from
  open(), with the reason), or a system resolver thread still stuck from an earlier poll.
- The reason of the last failure is in `raw` (the console's `poll <device>` shows it).

DNS, a trade-off: with no `server` the probe uses the system resolver (getaddrinfo in the event
loop's thread pool), which is what the agent's own uplink and the site's clients depend on
(resolv.conf, the router's forwarder, its cache). A thread cannot be cancelled, so a lookup past
its deadline is left to finish, counted as a failure, and no second lookup starts while it runs
(stale: "resolver stuck"): hung lookups cannot pile up threads. With `server`, the probe sends one
UDP query itself (drivers/proto/dns.py): cancellable, tests a given resolver (the router's, or
a public one upstream), and the same code can run on a board without getaddrinfo threads.
"""

import asyncio
import socket

from agent.core.compat import monotonic
from agent.core.errors import DeviceError, ParseError
from drivers.base import BETA, Driver
from drivers.proto import dns

INFO = {
    "name": "probe",
    "version": "0.1",
    "maturity": BETA,
    "transport": "tcp/udp",
    "description": "reachability probes: TCP connect, DNS resolution, HTTP(S) fetch",
}
KINDS = ("tcp", "dns", "http")
WINDOW = 10  # polls the loss share is taken over
ATTEMPT_SHARE = 0.8  # of the device timeout; the rest is margin before the poll budget ends
MAX_BODY = 65536  # bytes of the page read; enough to prove it loads, bounded on a metered link
MAX_HEADER_LINE = 8192


def _parse_url(url):
    """ "https://host:port/path" -> (tls, host, port, path); raises DeviceError."""
    for scheme, defaults in (("http://", (False, 80)), ("https://", (True, 443))):
        if url.startswith(scheme):
            tls, port = defaults
            rest = url[len(scheme) :]
            break
    else:
        raise DeviceError("probe url %r: not http:// or https://" % url)
    hostport, slash, path = rest.partition("/")
    path = slash + path if slash else "/"
    host = hostport
    if hostport.startswith("["):  # [v6]:port
        host, _, tail = hostport[1:].partition("]")
        if tail.startswith(":"):
            port = tail[1:]
    elif ":" in hostport:
        host, _, port = hostport.rpartition(":")
    try:
        port = int(port)
    except ValueError:
        raise DeviceError("probe url %r: bad port" % url) from None
    if not host or not 0 < port < 65536 or "@" in host:
        raise DeviceError("probe url %r: bad host or port" % url)
    return tls, host, port, path


class ProbeDriver(Driver):
    INFO = INFO

    def __init__(self, device, window=WINDOW):
        Driver.__init__(self, device)
        self.cfg = device.get("probe") or {}
        name = self.cfg.get("name") or str(self.id).replace(".", "_")
        self.prefix = "probe." + name
        self.attempt_s = float(device.get("timeout", 5)) * ATTEMPT_SHARE
        self.window = window
        self.history = []  # last `window` outcomes, True = success
        self.kind = None
        self._lookup = None  # a system-resolver future still running past its deadline
        self._qid = 0
        self.raw_status = None

    # --- Driver ----------------------------------------------------------------------------
    async def open(self):
        """Check the config; a probe that cannot run is the only way this device goes stale."""
        kind = self.cfg.get("kind")
        if kind not in KINDS:
            raise DeviceError("probe kind %r: expected one of %s" % (kind, ", ".join(KINDS)))
        if kind in ("tcp", "dns") and not self.cfg.get("target"):
            raise DeviceError("probe kind %s needs a target" % kind)
        if kind == "tcp" and not self.cfg.get("port"):
            raise DeviceError("probe kind tcp needs a port")
        if kind == "http":
            if not self.cfg.get("url"):
                raise DeviceError("probe kind http needs a url")
            self.url = _parse_url(self.cfg["url"])
        if kind == "dns":
            dns.encode_name(self.cfg["target"])  # ParseError (a DeviceError) for a bad name
        self.kind = kind

    async def read(self):
        if self._lookup is not None and not self._lookup.done():
            raise DeviceError("system resolver stuck: the lookup of an earlier poll still runs")
        self._lookup = None
        self.raw_status = None
        attempt = {"tcp": self._tcp, "dns": self._dns, "http": self._http}[self.kind]
        started = monotonic()
        error = None
        try:
            await asyncio.wait_for(attempt(), self.attempt_s)
        except asyncio.TimeoutError:
            error = "no answer within %gs" % self.attempt_s
        except (OSError, DeviceError, UnicodeError) as e:  # refused, unreachable, bad reply
            error = "%s: %s" % (e.__class__.__name__, e)
        latency_ms = (monotonic() - started) * 1000.0
        ok = error is None
        self.history.append(ok)
        del self.history[: -self.window]
        loss = 100.0 * self.history.count(False) / len(self.history)
        self.raw = {"kind": self.kind, "ok": ok, "error": error, "window": len(self.history)}
        if self.kind == "http":
            self.raw["status"] = self.raw_status
        out = [(self.prefix + ".ok", ok, "")]
        if ok:
            out.append((self.prefix + ".latency", round(latency_ms, 2), "ms"))
        out.append((self.prefix + ".loss", round(loss, 1), "%"))
        return out

    async def close(self):
        pass  # every attempt opens and closes its own socket

    # --- the attempts ----------------------------------------------------------------------
    async def _tcp(self):
        _reader, writer = await asyncio.open_connection(self.cfg["target"], self.cfg["port"])
        await _close(writer)

    async def _dns(self):
        if self.cfg.get("server"):
            await self._dns_udp(self.cfg["server"], self.cfg.get("port") or 53)
            return
        loop = asyncio.get_running_loop()
        fut = asyncio.ensure_future(
            loop.getaddrinfo(self.cfg["target"], None, type=socket.SOCK_STREAM)
        )
        self._lookup = fut
        fut.add_done_callback(_consume)
        # shield: a timeout cancels only our wait; the thread's result is collected when it ends
        infos = await asyncio.shield(fut)
        if not infos:
            raise DeviceError("resolver returned no address for %s" % self.cfg["target"])

    async def _dns_udp(self, server, port):
        loop = asyncio.get_running_loop()
        self._qid = (self._qid + 0x3D1B) & 0xFFFF  # ids differ from poll to poll
        packet = dns.query(self._qid, self.cfg["target"])
        family = socket.AF_INET6 if ":" in server else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, (server, int(port)))
            await loop.sock_sendall(sock, packet)
            while True:  # a stray datagram (late reply to an earlier poll) is skipped
                reply = await loop.sock_recv(sock, dns.MAX_MESSAGE + 1)
                try:
                    rcode, addrs = dns.parse_reply(reply, self._qid)
                except ParseError as e:
                    if "does not match" in str(e):
                        continue
                    raise
                break
        finally:
            sock.close()
        if rcode:
            raise DeviceError("resolver answered %s" % dns.RCODES.get(rcode, rcode))
        if not addrs:
            raise DeviceError("resolver gave no address for %s" % self.cfg["target"])

    async def _http(self):
        tls, host, port, path = self.url
        ssl_ctx = None
        if tls:
            import ssl  # host only; imported when a site has an https probe

            ssl_ctx = ssl.create_default_context()
        reader, writer = await asyncio.open_connection(
            host, port, ssl=ssl_ctx, server_hostname=host if tls else None
        )
        try:
            hosthdr = host if port == (443 if tls else 80) else "%s:%d" % (host, port)
            if ":" in host:
                hosthdr = (
                    "[%s]" % host if port == (443 if tls else 80) else "[%s]:%d" % (host, port)
                )
            writer.write(
                (
                    "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: site-agent-probe\r\n"
                    "Accept: */*\r\nConnection: close\r\n\r\n" % (path, hosthdr)
                ).encode()
            )
            await writer.drain()
            status_line = await reader.readline()
            parts = status_line.split(None, 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
                raise ParseError("not an HTTP status line: %r" % status_line[:60])
            status = int(parts[1])
            length = None
            while True:
                line = await reader.readline()
                if not line.endswith(b"\n") or len(line) > MAX_HEADER_LINE:
                    raise ParseError("HTTP headers cut short or over-long")
                if line in (b"\r\n", b"\n"):
                    break
                key, _, value = line.partition(b":")
                if key.strip().lower() == b"content-length" and value.strip().isdigit():
                    length = int(value.strip())
            want = MAX_BODY if length is None else min(length, MAX_BODY)
            got = 0
            while got < want:
                chunk = await reader.read(min(want - got, 16384))
                if not chunk:
                    break
                got += len(chunk)
            if length is not None and got < want:
                raise DeviceError("page cut short: %d of %d bytes" % (got, want))
        finally:
            await _close(writer)
        self.raw_status = status  # for the console's raw view
        if not 200 <= status < 300:
            # 3xx is not followed and counts as failure: at a fixed probe URL a redirect is
            # most often a captive portal or an ISP's block page, i.e. not the internet.
            raise DeviceError("HTTP status %d" % status)


def _consume(fut):
    # A late lookup's error is of no use once its poll has counted it; fetch it so asyncio does
    # not log "exception was never retrieved".
    if not fut.cancelled():
        fut.exception()


async def _close(writer):
    writer.close()
    try:
        await writer.wait_closed()
    except (OSError, AttributeError):
        pass
