"""MQTT command dispatcher through a real AgentFacade, Loop and MemoryQueue (portable)."""

import asyncio
import json

from agent.core.config.validate import validate
from agent.core.facade import AgentFacade
from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from agent.core.uplink.commands import MAX_BYTES, Remote

from counting import Counting as _Counting
from support import raises, run

SECRET = "hunter2-do-not-leak"


def Counting(device):
    return _Counting(device, lambda calls: [("battery.charge", 90.0 + calls, "%")])


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def make(clock=None, burst=10, devices=(), drivers=None):
    raw = {
        "site": {"id": "bts-7", "kind": "bts"},
        "devices": [
            {"id": "ups", "driver": "megatec", "serial": {"port": "/dev/ttyUSB0"}},
            {"id": "ups2", "driver": "megatec", "serial": {"port": "/dev/ttyUSB1"}},
        ],
        "uplink": {"brokers": [{"host": "127.0.0.1", "ca_file": "/ca.pem", "username": "u",
                                "password": SECRET}]},
    }  # fmt: skip
    raw["devices"] += list(devices)
    cfg = validate(raw, drivers=drivers)
    log = Log(write=lambda s: None)
    q = MemoryQueue()
    loop = Loop("bts-7", q, lambda: 0.0, log, commit_interval=0.02)
    drvs = {}
    for d in cfg.devices:
        dev = {"id": d["id"], "driver": "counting", "interval": 3600, "timeout": 1, "jitter": 0.0}
        drvs[d["id"]] = Counting(dev)
        loop.add_device(dev, drvs[d["id"]])
    facade = AgentFacade(cfg, loop, q, log=log)
    remote = Remote(facade, burst=burst, clock=clock or Clock())
    return remote, loop, drvs


def call(remote, body):
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    out = remote.handle(raw)
    return None if out is None else json.loads(out)


def test_ping_echoes_correlation_id():
    r, _, _ = make()
    rep = call(r, {"id": "abc-1", "cmd": "ping"})
    assert rep["ok"] and rep["id"] == "abc-1" and rep["v"] == 1 and rep["result"]["pong"]
    rep = call(r, {"id": 7, "cmd": "ping", "args": None})
    assert rep["ok"] and rep["id"] == 7


def test_config_reply_has_no_secret():
    r, _, _ = make()
    out = r.handle(b'{"id":"c","cmd":"config"}')
    assert SECRET.encode() not in out
    rep = json.loads(out)
    assert rep["ok"] and rep["result"]["uplink"]["brokers"][0]["password"] == "<secret>"


class FreeOptions:
    """A driver without an OPTIONS table: its options pass unchecked and count as secrets."""

    OPTIONS = None

    def __init__(self, device):
        pass


def test_config_reply_hides_options_the_driver_does_not_declare_public():
    import drivers

    def lookup(name):
        return FreeOptions if name == "voltronic" else drivers.load(name)

    devices = [
        {"id": "inv", "driver": "voltronic", "serial": {"port": "/dev/ttyUSB3"},
         "options": {"passwd": "inv-pass-1", "auth": "inv-auth-2", "token": "inv-token-3"}},
        {"id": "bms", "driver": "pylontech", "serial": {"port": "/dev/ttyUSB4"},
         "options": {"address": 3}},
    ]  # fmt: skip
    r, _, _ = make(devices=devices, drivers=lookup)
    out = r.handle(b'{"id":"c","cmd":"config"}')
    for secret in (b"inv-pass-1", b"inv-auth-2", b"inv-token-3"):
        assert secret not in out
    devs = {d["id"]: d for d in json.loads(out)["result"]["devices"]}
    assert devs["inv"]["options"] == {"passwd": "<secret>", "auth": "<secret>",
                                      "token": "<secret>"}  # fmt: skip
    assert devs["bms"]["options"] == {"address": 3}  # declared public by the driver


def test_set_interval_changes_only_that_device():
    r, loop, _ = make()
    rep = call(r, {"id": "s", "cmd": "set_interval", "args": {"device": "ups", "seconds": 15}})
    assert rep["ok"] and rep["result"] == {"device": "ups", "interval": 15.0, "until": "restart"}
    assert loop.sched.state("ups").interval == 15.0
    assert loop.sched.state("ups2").interval == 3600


def test_bad_requests_change_nothing():
    r, loop, _ = make(burst=100)
    cases = [
        ({"id": "a", "cmd": "reboot"}, "unknown_command"),
        ({"id": "a", "cmd": 5}, "unknown_command"),
        ({"cmd": "ping"}, "malformed"),
        ({"id": "x" * 65, "cmd": "ping"}, "malformed"),
        ([1, 2], "malformed"),
        ({"id": "a", "cmd": "set_interval", "args": {"device": "ups", "seconds": 0}}, "bad_args"),
        ({"id": "a", "cmd": "set_interval", "args": {"device": "ups", "seconds": "9"}},
         "bad_args"),
        ({"id": "a", "cmd": "set_interval", "args": {"device": "ups", "seconds": True}},
         "bad_args"),
        ({"id": "a", "cmd": "set_interval", "args": {"seconds": 9}}, "bad_args"),
        ({"id": "a", "cmd": "set_interval", "args": {"device": "nope", "seconds": 9}},
         "unknown_device"),
        ({"id": "a", "cmd": "poll_now", "args": {"device": "nope"}}, "unknown_device"),
        ({"id": "a", "cmd": "poll_now", "args": [1]}, "bad_args"),
        (b'{"id":"a","cmd":"pi', "malformed"),
        (b"", "malformed"),
        (b'{"id":"a","cmd":"ping"}\xff', "not_utf8"),
        (b"\xc3\x28", "not_utf8"),
        (b" " * (MAX_BYTES + 1), "oversized"),
    ]  # fmt: skip
    for body, code in cases:
        rep = call(r, body)
        assert rep["ok"] is False and rep["error"]["code"] == code, (body, rep)
        assert rep["error"]["message"]
    for dev in ("ups", "ups2"):
        st = loop.sched.state(dev)
        assert st.interval == 3600 and st.polls == 0


def test_truncated_request_keeps_id_out_of_reply():
    r, _, _ = make()
    rep = call(r, b'{"id":"k1","cmd":"ping"')
    assert rep["id"] is None and rep["error"]["code"] == "malformed"


def test_poll_now_and_readings_through_the_loop():
    r, loop, drvs = make()

    async def go():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(0.05)  # first polls at start
        before = drvs["ups"].calls
        rep = call(r, {"id": "p", "cmd": "poll_now", "args": {"device": "ups"}})
        assert rep["ok"] and rep["result"] == {"scheduled": "ups"}
        await asyncio.sleep(0.1)
        after = drvs["ups"].calls
        rep2 = call(r, {"id": "r", "cmd": "readings", "args": {"device": "ups"}})
        rep3 = call(r, {"id": "q", "cmd": "queue_stats"})
        loop.stop()
        await task
        return before, after, rep2, rep3

    before, after, rep2, rep3 = run(go())
    assert after == before + 1, (before, after)
    metrics = sorted(x["metric"] for x in rep2["result"])
    assert metrics == ["agent.device.stale", "battery.charge"], metrics
    assert all(x["device"] == "ups" for x in rep2["result"])
    assert rep3["ok"] and rep3["result"]["depth"]["routine"] >= 3


def test_flood_is_refused_then_dropped_and_recovers():
    clock = Clock()
    r, loop, _ = make(clock)
    replies = [call(r, {"id": str(i), "cmd": "ping"}) for i in range(1000)]
    ok = [x for x in replies if x is not None and x["ok"]]
    refused = [x for x in replies if x is not None and not x["ok"]]
    dropped = [x for x in replies if x is None]
    assert len(ok) == 10, len(ok)  # the burst
    assert 1 <= len(refused) <= 5 and refused[0]["error"]["code"] == "rate_limited"
    assert len(dropped) == 1000 - len(ok) - len(refused)
    assert r.counts["dropped"] == len(dropped)
    clock.t += 1.0  # a second later, commands are served again
    assert call(r, {"id": "z", "cmd": "ping"})["ok"]


def test_bug_behind_the_facade_becomes_internal_error():
    r, _, _ = make()

    def broken(args):
        raise RuntimeError("boom")

    r.commands["ping"] = broken
    rep = call(r, {"id": "b", "cmd": "ping"})
    assert rep["error"]["code"] == "internal" and "boom" in rep["error"]["message"]


def test_set_interval_is_logged_with_who_and_where_and_obeys_the_config():
    r, loop, _ = make()
    lines = []
    r.facade.log.write = lines.append
    rep = call(r, {"id": "op-7", "cmd": "set_interval", "args": {"device": "ups", "seconds": 20}})
    assert rep["ok"]
    assert any("command: interval changed by=\"mqtt request 'op-7'\" device=ups interval=20.0 "
               "was=3600.0 where=\"command topic\"" in x for x in lines), lines  # fmt: skip
    for bad, why in ((1, "poll budget of ups"), (1e300, "from 1 to 86400")):
        args = {"device": "ups", "seconds": bad}
        rep = call(r, {"id": "x", "cmd": "set_interval", "args": args})
        assert not rep["ok"] and rep["error"]["code"] == "bad_args", rep
        assert why in rep["error"]["message"], rep
    # NaN is not JSON (MicroPython's json refuses it); a facade caller can still pass one.
    err = raises(ValueError, r.facade.set_interval, "ups", float("nan"))
    assert "expected a number from 1 to 86400, got nan" in str(err)
    assert loop.sched.state("ups").interval == 20.0


def test_site_is_a_device_for_readings_and_poll_now():
    r, loop, drvs = make()
    rep = call(r, {"id": "p", "cmd": "poll_now", "args": {"device": "site"}})
    assert rep["ok"] and rep["result"] == {"scheduled": "site"}, rep
    rep = call(r, {"id": "r", "cmd": "readings", "args": {"device": "site"}})
    assert rep["ok"] and rep["result"] == [], rep  # no monitor here: no derived readings yet
    rep = call(r, {"id": "s", "cmd": "status"})
    assert rep["ok"] and rep["result"]["site_state"]["power_source"] is None
