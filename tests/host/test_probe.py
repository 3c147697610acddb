"""ProbeDriver on loopback: real sockets, a real HTTP server (http.server in a thread) and a real
UDP DNS responder written here from RFC 1035 (not with the codec under test)."""

import asyncio
import http.server
import os
import socket
import struct
import threading
import time

import pytest

from agent.core import registry
from agent.core.config.validate import validate
from agent.host.configfile import parse
from drivers import load
from drivers.probe import ProbeDriver

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def poll(driver, times=1, budget=5):
    async def go():
        return [await driver.poll(budget) for _ in range(times)]

    return asyncio.run(go())


def as_dict(result):
    return {m: v for m, v, _u in result.samples}


def dev(timeout=1.0, **probe):
    return {"id": "p", "timeout": timeout, "probe": probe}


# --- TCP ----------------------------------------------------------------------------------------
def closed_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens now: connect is refused
    return port


def test_tcp_listening_port_is_ok_with_latency():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    try:
        (r,) = poll(ProbeDriver(dev(kind="tcp", target="127.0.0.1", port=srv.getsockname()[1])))
    finally:
        srv.close()
    assert r.ok, r.error
    s = as_dict(r)
    assert s["probe.p.ok"] is True
    assert 0 < s["probe.p.latency"] < 1000
    assert s["probe.p.loss"] == 0.0
    for metric, _v, unit in r.samples:
        assert registry.is_known(metric) and unit == registry.unit_of(metric), metric


def test_tcp_closed_port_is_a_failed_reading_not_a_stale_device():
    d = ProbeDriver(dev(kind="tcp", target="127.0.0.1", port=closed_port(), name="gateway"))
    (r,) = poll(d)
    assert r.ok, r.error  # the device (the probe) works; what it measured is a failure
    assert as_dict(r) == {"probe.gateway.ok": False, "probe.gateway.loss": 100.0}
    assert "refused" in d.raw["error"].lower() or "Connect" in d.raw["error"], d.raw


# --- loss over the window -----------------------------------------------------------------------
def test_loss_is_the_share_of_failures_over_the_last_window_polls():
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    port = srv.getsockname()[1]
    d = ProbeDriver(dev(kind="tcp", target="127.0.0.1", port=port), window=4)

    async def go():
        losses = []
        for up in (True, True, False, True, False, False, False, True):
            d.cfg["port"] = port if up else closed_port()
            r = await d.poll(5)
            assert r.ok, r.error
            losses.append(as_dict(r)["probe.p.loss"])
        return losses

    try:
        losses = asyncio.run(go())
    finally:
        srv.close()
    # window of 4: [T]=0, [TT]=0, [TTF]=33.3, [TTFT]=25, [TFTF]=50, [FTFF]=75, [TFFF]=75, [FFFT]=75
    assert losses == [0.0, 0.0, 33.3, 25.0, 50.0, 75.0, 75.0, 75.0]


# --- HTTP ---------------------------------------------------------------------------------------
class Handler(http.server.BaseHTTPRequestHandler):
    hang_s = 3.0

    def do_GET(self):  # noqa: N802 (http.server's name)
        if self.path == "/hang":
            time.sleep(self.hang_s)  # longer than the probe's attempt deadline
        code = {"/ok": 200, "/fail": 500, "/moved": 302}.get(self.path, 404)
        body = b"<html>hello from the village</html>" * (50 if code == 200 else 1)
        self.send_response(code)
        if code == 302:
            self.send_header("Location", "http://portal.invalid/login")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def web():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


def test_http_200_is_ok(web):
    d = ProbeDriver(dev(kind="http", url=web + "/ok", name="web"))
    (r,) = poll(d)
    s = as_dict(r)
    assert r.ok and s["probe.web.ok"] is True and s["probe.web.loss"] == 0.0, (r, d.raw)
    assert s["probe.web.latency"] > 0
    assert d.raw["status"] == 200


def test_http_500_and_a_redirect_are_failures(web):
    for path, status in (("/fail", 500), ("/moved", 302)):
        d = ProbeDriver(dev(kind="http", url=web + path, name="web"))
        (r,) = poll(d)
        assert r.ok, r.error
        assert as_dict(r) == {"probe.web.ok": False, "probe.web.loss": 100.0}
        assert d.raw["status"] == status and ("HTTP status %d" % status) in d.raw["error"]


def test_http_hanging_server_fails_within_the_attempt_deadline(web):
    d = ProbeDriver(dev(timeout=1.0, kind="http", url=web + "/hang", name="web"))
    t0 = time.monotonic()
    (r,) = poll(d, budget=1.0)
    took = time.monotonic() - t0
    assert r.ok, r.error  # a reading, not "no answer within the budget"
    assert as_dict(r) == {"probe.web.ok": False, "probe.web.loss": 100.0}
    assert "no answer within 0.8s" in d.raw["error"]
    assert took < 2.5  # bounded by the attempt deadline, not by the 3 s the server sleeps


def test_http_connection_refused_is_a_failure():
    d = ProbeDriver(dev(kind="http", url="http://127.0.0.1:%d/" % closed_port()))
    (r,) = poll(d)
    assert r.ok and as_dict(r)["probe.p.ok"] is False


# --- DNS ----------------------------------------------------------------------------------------
ZONE = {"ok.test": bytes([192, 0, 2, 7])}


def _qname(msg, pos):
    labels = []
    while msg[pos]:
        n = msg[pos]
        labels.append(msg[pos + 1 : pos + 1 + n].decode())
        pos += 1 + n
    return ".".join(labels), pos + 1


def dns_responder(sock, stop):
    """ok.test -> A 192.0.2.7; silent.test -> no reply; anything else -> NXDOMAIN. A reply to
    stale.test carries a wrong id first (a late reply to another query), then the right one."""
    sock.settimeout(0.1)
    while not stop.is_set():
        try:
            msg, addr = sock.recvfrom(512)
        except OSError:
            continue
        qid = struct.unpack(">H", msg[:2])[0]
        name, end = _qname(msg, 12)
        question = msg[12 : end + 4]
        if name == "silent.test":
            continue
        if name in ZONE or name == "stale.test":
            answer = b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 60, 4) + ZONE.get(name, b"\1\2\3\4")
            header = struct.pack(">HHHHHH", qid, 0x8180, 1, 1, 0, 0)
            if name == "stale.test":
                sock.sendto(struct.pack(">H", qid ^ 1) + header[2:] + question + answer, addr)
            sock.sendto(header + question + answer, addr)
        else:
            sock.sendto(struct.pack(">HHHHHH", qid, 0x8183, 1, 0, 0, 0) + question, addr)


@pytest.fixture(scope="module")
def resolver():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    stop = threading.Event()
    t = threading.Thread(target=dns_responder, args=(sock, stop), daemon=True)
    t.start()
    yield sock.getsockname()[1]
    stop.set()
    t.join(2)
    sock.close()


def dns_dev(port, target):
    return dev(kind="dns", target=target, server="127.0.0.1", port=port, name="dns")


def test_dns_udp_answer_is_ok(resolver):
    (r,) = poll(ProbeDriver(dns_dev(resolver, "ok.test")))
    s = as_dict(r)
    assert s["probe.dns.ok"] is True and s["probe.dns.latency"] > 0 and s["probe.dns.loss"] == 0


def test_dns_nxdomain_and_silence_are_failures(resolver):
    d = ProbeDriver(dns_dev(resolver, "nowhere.test"))
    (r,) = poll(d)
    assert as_dict(r) == {"probe.dns.ok": False, "probe.dns.loss": 100.0}
    assert "NXDOMAIN" in d.raw["error"]
    d = ProbeDriver(dns_dev(resolver, "silent.test"))
    (r,) = poll(d)
    assert r.ok and as_dict(r)["probe.dns.ok"] is False
    assert "no answer" in d.raw["error"]


def test_dns_reply_with_a_wrong_id_is_skipped(resolver):
    (r,) = poll(ProbeDriver(dns_dev(resolver, "stale.test")))
    assert as_dict(r)["probe.dns.ok"] is True


def test_dns_system_resolver_localhost():
    # No server: the system resolver (getaddrinfo in a thread). "localhost" resolves on any host
    # without a network; a name under .invalid (RFC 6761) never does.
    (r,) = poll(ProbeDriver(dev(timeout=3, kind="dns", target="localhost")))
    assert as_dict(r)["probe.p.ok"] is True
    d = ProbeDriver(dev(timeout=3, kind="dns", target="no-such-host.invalid"))
    (r,) = poll(d)
    assert r.ok and as_dict(r)["probe.p.ok"] is False, d.raw


# --- config -------------------------------------------------------------------------------------
def test_bad_config_is_the_only_stale_case():
    for probe in (
        {"kind": "ping", "target": "127.0.0.1"},
        {"kind": "tcp", "target": "127.0.0.1"},
        {"kind": "dns"},
        {"kind": "http", "url": "ftp://x/"},
        {"kind": "http", "url": "http://host:notaport/"},
        {"kind": "dns", "target": "a..b"},
    ):
        (r,) = poll(ProbeDriver(dev(**probe)))
        assert not r.ok and r.samples == [], probe
        assert "probe" in r.error or "DNS name" in r.error, r.error


def test_registered_and_the_community_wifi_examples_construct():
    assert load("probe") is ProbeDriver
    path = os.path.join(ROOT, "config", "community-wifi.toml")
    pin = "2468" * 2  # any secret the example reads from a file or env gets a plausible value
    cfg = validate(parse(path), source=path, getenv=lambda k: "s3cret-" + k,
                   read_file=lambda f: pin + "\n")  # fmt: skip
    probes = [d for d in cfg.devices if d["driver"] == "probe"]
    assert len(probes) == 3
    names = []
    for d in probes:
        drv = load(d["driver"])(d)
        asyncio.run(drv.open())  # the config check only: no network touched
        names.append(drv.prefix)
    assert names == ["probe.gateway", "probe.dns", "probe.web"]
