"""The fleet's HTTP side as a browser or a script meets it: what it serves, what it refuses,
the operator's map image, and that the page references nothing outside the server."""

import json
import os
import re
import urllib.error
import urllib.request

import pytest

from agent.core.uplink import contract
from agent.fleet import decode
from agent.fleet.model import Fleet
from agent.fleet.server import STATIC, FleetServer

T0 = 1_790_000_000.0


@pytest.fixture
def server(tmp_path):
    f = Fleet()
    for sid, commune in (("qn-1", "Tịnh Kỳ"), ("hue-1", "Thuận Hòa")):
        body = contract.status_payload("online", time=T0, info={
            "name": "BTS " + commune, "location": {"commune": commune, "lat": 15.2, "lon": 108.8}})
        f.apply(sid, "status", decode.decode("status", body), now=T0)
    image = tmp_path / "province.png"
    image.write_bytes(b"\x89PNG\r\n\x1a\nnot really a png")
    srv = FleetServer(f, "127.0.0.1", 0, status=lambda: {"connected": False},
                      map_image=str(image), map_bounds=(14.5, 107.5, 16.5, 109.5)).start()
    yield srv
    srv.stop()


def get(srv, path, method="GET"):
    req = urllib.request.Request(srv.url + path.lstrip("/"), method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def test_pages_api_and_headers(server):
    code, headers, body = get(server, "/")
    assert code == 200 and b"/static/fleet.js" in body
    assert "script-src 'self'" in headers["Content-Security-Policy"]
    assert headers["Cache-Control"] == "no-store"
    code, _, body = get(server, "/site/qn-1")
    assert code == 200 and b"/static/site.js" in body
    code, _, body = get(server, "/api/fleet?q=thuan%20hoa&limit=abc")  # a bad limit: the default
    data = json.loads(body)
    assert [s["id"] for s in data["sites"]] == ["hue-1"] and data["totals"]["sites"] == 2
    assert data["map"]["image"] == {"url": "/map-image", "bounds": [14.5, 107.5, 16.5, 109.5]}
    assert data["refresh_s"] >= 3
    code, _, body = get(server, "/api/fleet?area=T%E1%BB%8Bnh%20K%E1%BB%B3")
    assert [s["id"] for s in json.loads(body)["sites"]] == ["qn-1"]
    code, _, body = get(server, "/api/site/qn-1")
    d = json.loads(body)
    assert code == 200 and d["name"] == "BTS Tịnh Kỳ" and len(d["history"]["charge"]) == 288
    code, headers, body = get(server, "/map-image")
    assert code == 200 and headers["Content-Type"] == "image/png" and body.startswith(b"\x89PNG")
    code, _, body = get(server, "/api/stats")
    assert json.loads(body)["sites"] == 2
    code, _, body = get(server, "/", method="HEAD")
    assert code == 200 and body == b""


def test_what_it_refuses(server):
    assert get(server, "/api/site/nope")[0] == 404
    assert get(server, "/static/../server.py")[0] == 404
    assert get(server, "/static/..%2fserver.py")[0] == 404
    assert get(server, "/static/.hidden")[0] == 404
    assert get(server, "/etc/passwd")[0] == 404
    code, _, body = get(server, "/healthz")
    assert code == 503 and b"not connected" in body  # status says disconnected


def test_the_page_references_nothing_outside_the_server():
    """No CDN, no web font, no external script or style: the command room may have no
    internet. Every URL in the static files is relative to the server."""
    for name in os.listdir(STATIC):
        with open(os.path.join(STATIC, name), encoding="utf-8") as f:
            text = f.read()
        assert not re.search(r"https?://", text), name
        assert "@import" not in text and "@font-face" not in text and "//cdn" not in text, name
        if name.endswith(".js"):
            assert "innerHTML" not in text and "eval(" not in text, name  # text only as text
