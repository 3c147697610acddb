"""The fleet's HTTP side: the page (static files shipped in agent/fleet/static), its JSON API and
/metrics for Prometheus. Standard library only; read-only (GET and HEAD); no external resource
is ever referenced, so it works in a room with no internet.

    GET /                    the fleet page (table sorted by urgency, filter, map)
    GET /site/<id>           one site: current values, active alarms, the last day as a plot
    GET /static/<file>       the page's scripts and style
    GET /api/fleet?q=&area=&limit=   the table as JSON (most urgent first) + map points
    GET /api/site/<id>       one site as JSON, with its history
    GET /api/stats           the consumer's counters (messages, records by kind, duplicates...)
    GET /metrics             Prometheus text exposition (agent/fleet/exposition.py)
    GET /map-image           the operator's map image (--map-image), if given
    GET /healthz             "ok" while the consumer holds its broker connection, else 503
There are no users or roles (not this tool's job): bind it to a network the command room trusts.
"""

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from agent.fleet import exposition

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
         ".css": "text/css; charset=utf-8", ".png": "image/png", ".jpg": "image/jpeg",
         ".jpeg": "image/jpeg", ".svg": "image/svg+xml", ".webp": "image/webp"}  # fmt: skip
# Scripts and styles come from this server only, never inline, never from elsewhere.
CSP = ("default-src 'self'; img-src 'self' data:; script-src 'self'; style-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'")  # fmt: skip
DEFAULT_LIMIT = 500
CACHE_S = 1.0
MAX_LIMIT = 100000


class FleetServer:
    """Serves one Fleet. `status` is a callable giving {"connected", "broker", "share",
    "partition"}."""

    def __init__(self, fleet, host="127.0.0.1", port=8080, status=None, map_image=None,
                 map_bounds=None, log=None):  # fmt: skip
        self.fleet = fleet
        self.status = status or (lambda: {"connected": False})
        self.map_image = map_image
        self.map_bounds = map_bounds  # (south, west, north, east) of the image
        self.log = log
        handler = type("Handler", (_Handler,), {"app": self})
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self.thread = None
        self._cache = {}  # (query, area) -> (monotonic, now, rows)
        self.rows_cost = 0.0  # seconds the last pass over the fleet took
        self._cache_lock = threading.Lock()

    @property
    def port(self):
        return self.httpd.server_address[1]

    @property
    def url(self):
        host = self.httpd.server_address[0]
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%d/" % (host, self.port)

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="fleet-http",
                                       daemon=True)  # fmt: skip
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    # --- API bodies ---------------------------------------------------------------------------
    def rows(self, query=None, area=None, now=None):
        """Fleet.rows, shared by the requests of one second (many browsers and a Prometheus
        scraping at once cost one pass over the fleet, not one each)."""
        key = (query, area)
        mono = time.monotonic()
        with self._cache_lock:
            hit = self._cache.get(key)
            if now is None and hit is not None and mono - hit[0] < CACHE_S:
                return hit[1], hit[2]
        now = time.time() if now is None else now
        rows = self.fleet.rows(now, query, area)
        self.rows_cost = time.monotonic() - mono
        with self._cache_lock:
            if len(self._cache) > 64:
                self._cache.clear()
            self._cache[key] = (mono, now, rows)
        return now, rows

    def stats(self):
        with self.fleet.lock:
            counts = dict(self.fleet.counts)
            n = len(self.fleet.sites)
        return {"now": time.time(), "sites": n, "connected": self.status().get("connected"),
                "counts": counts}  # fmt: skip

    def fleet_json(self, query, area, limit, now=None):
        now, rows = self.rows(query, area, now)
        totals = {"sites": len(self.fleet.sites), "battery": 0, "offline": 0,
                  "backhaul_down": 0, "critical": 0, "major": 0, "unknown": 0}  # fmt: skip
        for r in rows:
            if r["unknown"]:
                totals["unknown"] += 1
            if r["silent"]:
                totals["offline"] += 1
            elif r["power"] == "battery":
                totals["battery"] += 1
            if not r["silent"] and r["backhaul"] == "down":
                totals["backhaul_down"] += 1
            if r["level"] in ("critical", "major"):
                totals[r["level"]] += 1
        points = [[r["id"], r["lat"], r["lon"], r["level"], r["name"] or r["id"]]
                  for r in rows if r["lat"] is not None and r["lon"] is not None]
        image = None
        if self.map_image and self.map_bounds:
            image = {"url": "/map-image", "bounds": list(self.map_bounds)}
        st = self.status()
        return {
            # The page asks again after refresh_s: 3 s, longer where a pass over the fleet is
            # dear (tens of thousands of sites), so that viewers cost at most ~5 % of a core.
            "refresh_s": max(3, int(round(self.rows_cost * 20))),
            "now": now, "connected": st.get("connected", False), "broker": st.get("broker"),
            "share": st.get("share"), "partition": st.get("partition"),
            "silent_after": self.fleet.silent_after,
            "totals": totals, "matched": len(rows), "limit": limit, "sites": rows[:limit],
            "areas": sorted(self.fleet.areas().items()), "map": {"points": points,
                                                              "image": image},
        }  # fmt: skip

    def metrics_text(self, now=None):
        now, rows = self.rows(None, None, now)
        with self.fleet.lock:
            counts = dict(self.fleet.counts)
        return exposition.render(rows, counts, self.status().get("connected", False),
                                 len(self.fleet.sites))  # fmt: skip


class _Handler(BaseHTTPRequestHandler):
    app = None
    server_version = "site-agent-fleet"
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):  # requests are not worth a log line each
        pass

    def do_HEAD(self):
        self._route(head=True)

    def do_GET(self):
        self._route(head=False)

    def _route(self, head):
        try:
            url = urlsplit(self.path)
            path = url.path
            qs = parse_qs(url.query)
            if path in ("/", "/index.html"):
                return self._file("index.html", head)
            if path.startswith("/site/"):
                return self._file("site.html", head)
            if path.startswith("/static/"):
                return self._file(path[len("/static/") :], head)
            if path == "/api/fleet":
                limit = _int(qs.get("limit", [DEFAULT_LIMIT])[0], DEFAULT_LIMIT)
                body = self.app.fleet_json(qs.get("q", [""])[0].strip() or None,
                                           qs.get("area", [""])[0] or None,
                                           max(0, min(limit, MAX_LIMIT)))  # fmt: skip
                return self._json(body, head)
            if path.startswith("/api/site/"):
                site_id = unquote(path[len("/api/site/") :])
                body = self.app.fleet.detail(site_id, time.time())
                if body is None:
                    return self._send(404, "application/json",
                                      json.dumps({"error": "no site %r" % site_id}).encode(), head)
                return self._json(body, head)
            if path == "/api/stats":
                return self._json(self.app.stats(), head)
            if path == "/metrics":
                text = self.app.metrics_text().encode()
                return self._send(200, exposition.CONTENT_TYPE, text, head)
            if path == "/map-image" and self.app.map_image:
                return self._file(self.app.map_image, head, absolute=True)
            if path == "/healthz":
                ok = self.app.status().get("connected", False)
                return self._send(200 if ok else 503, "text/plain; charset=utf-8",
                                  b"ok\n" if ok else b"not connected to the broker\n", head)
            return self._send(404, "text/plain; charset=utf-8", b"not found\n", head)
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as e:  # a bug in one request must not take the server down
            if self.app.log:
                self.app.log.error("fleet", "request failed", path=self.path[:200], error=repr(e))
            try:
                return self._send(500, "text/plain; charset=utf-8", b"internal error\n", head)
            except OSError:
                return None

    def _file(self, name, head, absolute=False):
        if absolute:
            path = name
        else:
            # Only plain names from the static folder: no "..", no subfolders.
            if "/" in name or "\\" in name or name.startswith("."):
                return self._send(404, "text/plain; charset=utf-8", b"not found\n", head)
            path = os.path.join(STATIC, name)
        ext = os.path.splitext(path)[1].lower()
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            return self._send(404, "text/plain; charset=utf-8", b"not found\n", head)
        return self._send(200, TYPES.get(ext, "application/octet-stream"), data, head)

    def _json(self, body, head):
        data = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        return self._send(200, "application/json", data, head)

    def _send(self, code, ctype, data, head):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", CSP)
        self.end_headers()
        if not head:
            self.wfile.write(data)


def _int(v, default):
    try:
        return int(v)
    except (TypeError, ValueError):
        return default
