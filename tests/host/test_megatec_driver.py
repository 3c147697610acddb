# MegatecDriver against a scripted transport: session caching, battery scaling, stale reasons.
# (Portable code; kept here until tests/mpy/portable.json copies drivers/megatec.py to the board.)
import asyncio

from agent.core.errors import DeviceTimeout
from drivers.megatec import MegatecDriver

Q1 = b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r"
F = b"#230.0 000 024.0 50.0\r"
I_ = b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r"


class Scripted:
    """A transport that answers each command from a table (bytes, an exception, or None)."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.sent = []
        self.opens = 0
        self.closes = 0
        self.cfg = None

    async def open(self, cfg):
        self.opens += 1
        self.cfg = cfg

    async def close(self):
        self.closes += 1

    async def request(self, data, terminator, max_bytes, timeout=None):
        self.sent.append(data)
        answer = self.answers.get(data)
        if isinstance(answer, Exception):
            raise answer
        if answer is None:
            raise DeviceTimeout("no reply within 1s")
        return answer


def poll(driver, budget=2.0):
    return asyncio.run(driver.poll(budget))


def values(result):
    return {m: v for m, v, _u in result.samples}


def test_first_poll_asks_q1_then_f_and_i_and_scales_per_cell_battery():
    t = Scripted({b"Q1\r": Q1, b"F\r": F, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "/dev/null", "baud": 2400}}, transport=t)
    r = poll(d)
    assert r.ok, r.error
    assert t.sent == [b"Q1\r", b"F\r", b"I\r"]
    v = values(r)
    assert v["battery.voltage"] == 27.24  # 2.27 V/cell x 12 (24 V rating)
    assert v["ups.status"] == "OL BOOST"
    assert v["ups.rating.battery_voltage"] == 24.0
    assert v["ups.mfr"] == "NOT_A_LIVE_UPS"
    assert r.raw["Q1"] == "(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\\r"
    assert t.cfg["dtr"] is True and t.cfg["rts"] is False  # NUT's cablepower "normal"
    assert t.cfg["baud"] == 2400
    assert d.info()["name"] == "megatec"


def test_later_polls_send_only_q1_until_the_port_is_reopened():
    t = Scripted({b"Q1\r": Q1, b"F\r": F, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    poll(d)
    t.sent.clear()
    r = poll(d)
    assert r.ok and t.sent == [b"Q1\r"]
    assert values(r)["ups.model"] == "TESTING"  # cached ratings and identity still reported
    # A failed poll closes the port; the next session asks F and I again.
    t.answers[b"Q1\r"] = None
    r = poll(d)
    assert not r.ok and r.error == "no reply within 1s"
    assert t.closes == 1
    t.answers[b"Q1\r"] = Q1
    t.sent.clear()
    r = poll(d)
    assert r.ok and t.sent == [b"Q1\r", b"F\r", b"I\r"] and t.opens == 2


def test_whole_battery_value_is_kept():
    q1 = b"(230.0 140.0 230.0 030 50.0 27.0 32.0 00001000\r"
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, Scripted({b"Q1\r": q1, b"F\r": F}))
    r = poll(d)
    assert values(r)["battery.voltage"] == 27.0


def test_ups_without_f_and_i_is_still_polled():
    # F echoed (unsupported), I silent: both noted, Q1 readings good, battery left as sent.
    t = Scripted({b"Q1\r": Q1, b"F\r": b"F\r"})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert r.ok, r.error
    v = values(r)
    assert v["battery.voltage"] == 2.27
    assert "ups.rating.voltage" not in v and "ups.mfr" not in v
    assert "echoed" in r.raw["notes"] and "I: no reply" in r.raw["notes"]
    t.sent.clear()
    assert poll(d).ok and t.sent == [b"Q1\r"]  # not asked again this session


def test_garbage_q1_is_stale_with_the_parse_reason():
    t = Scripted({b"Q1\r": b"(\x01\x02garbage\r", b"F\r": F, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert not r.ok
    assert r.error.startswith("Q1: byte 0x01 at offset 1")
    assert r.raw == {"Q1": "(\\x01\\x02garbage\\r"}


def test_without_a_transport_the_host_serial_port_is_used():
    d = MegatecDriver({"id": "ups", "serial": {"port": "/nonexistent/ttyUSB9"}})
    r = poll(d)
    assert not r.ok
    assert r.error.startswith("cannot open serial port /nonexistent/ttyUSB9")
