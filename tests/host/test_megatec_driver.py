# MegatecDriver against a scripted transport: session caching, battery scaling, stale reasons.
# (Portable code; kept here until tests/mpy/portable.json copies drivers/megatec.py to the board.)
import asyncio

from agent.core.errors import DeviceTimeout
from drivers.megatec import MegatecDriver

Q1 = b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r"
F = b"#230.0 000 024.0 50.0\r"
I_ = b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r"


class Scripted:
    """A line device: each command sent queues its answer from a table, read back line by line
    (bytes, possibly several lines; an exception to raise; None or absent for silence)."""

    def __init__(self, answers):
        self.answers = dict(answers)
        self.sent = []
        self.opens = 0
        self.closes = 0
        self.cfg = None
        self.pending = b""
        self.error = None

    async def open(self, cfg):
        self.opens += 1
        self.cfg = cfg

    async def close(self):
        self.closes += 1

    async def send(self, data):
        self.sent.append(data)
        answer = self.answers.get(data)
        self.pending, self.error = b"", None
        if isinstance(answer, Exception):
            self.error = answer
        elif answer is not None:
            self.pending = answer

    async def request(self, data, terminator, max_bytes, timeout=None):
        await self.send(data)
        return await self.read_until(terminator, max_bytes, timeout)

    async def read_until(self, terminator, max_bytes, timeout=None):
        if self.error is not None:
            raise self.error
        idx = self.pending.find(terminator)
        if idx < 0:
            self.pending = b""
            raise DeviceTimeout("no reply within 1s")
        line, self.pending = self.pending[: idx + 1], self.pending[idx + 1 :]
        return line


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


def test_ups_without_f_and_i_is_still_polled_but_its_battery_scale_is_unknown():
    # F echoed (unsupported), I silent: both noted, Q1 readings good. With no rating the
    # per-cell 2.27 V cannot be told from a whole battery: battery.voltage is not published
    # (it used to go out as 2.27 V, quality good); the value as sent is in the raw view.
    t = Scripted({b"Q1\r": Q1, b"F\r": b"F\r"})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert r.ok, r.error
    v = values(r)
    assert "battery.voltage" not in v
    assert v["ups.load"] == 14.0 and v["ups.status"] == "OL BOOST"
    assert r.raw["battery"].startswith("2.27 V as sent, not published: no rated battery voltage")
    assert "ups.rating.voltage" not in v and "ups.mfr" not in v
    assert "echoed" in r.raw["notes"] and "I: no reply" in r.raw["notes"]


def test_a_missed_f_is_asked_again_and_the_battery_waits_for_its_scale():
    # Issue 19 point 1: the single F of a session got no answer (a lost reply on a noisy line).
    # The battery voltage must not go out per cell as if it were the battery's.
    t = Scripted({b"Q1\r": Q1, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert r.ok and t.sent == [b"Q1\r", b"F\r", b"I\r"]
    assert "battery.voltage" not in values(r)
    t.answers[b"F\r"] = F  # the line is clean again
    t.sent.clear()
    r = poll(d)
    assert r.ok and t.sent == [b"Q1\r", b"F\r"]  # F again; I is known
    v = values(r)
    assert v["battery.voltage"] == 27.24 and v["ups.rating.battery_voltage"] == 24.0
    assert "notes" not in r.raw
    t.sent.clear()
    assert values(poll(d))["battery.voltage"] == 27.24 and t.sent == [b"Q1\r"]


def test_a_silent_f_is_asked_on_the_first_polls_then_every_tenth():
    t = Scripted({b"Q1\r": Q1, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    asked = []
    for n in range(1, 31):
        t.sent.clear()
        r = poll(d)
        assert r.ok and "battery.voltage" not in values(r)
        if b"F\r" in t.sent:
            asked.append(n)
    assert asked == [1, 2, 3, 10, 20, 30]


def test_the_configured_bank_voltage_gives_the_scale_when_f_never_answers():
    t = Scripted({b"Q1\r": Q1, b"F\r": b"F\r", b"I\r": I_})
    dev = {"id": "ups", "serial": {"port": "x"}, "battery": {"nominal_v": 24}}
    r = poll(MegatecDriver(dev, transport=t))
    assert r.ok and values(r)["battery.voltage"] == 27.24


def test_a_first_value_that_fits_no_multiplier_is_not_fixed_for_the_session():
    # A glitched first reading (100 V on a 24 V rating) used to fix x1 for the session, and every
    # later per-cell reading went out as the battery's voltage.
    glitch = b"(215.0 195.0 230.0 014 49.0 100.0 30.0 00101000\r"
    t = Scripted({b"Q1\r": glitch, b"F\r": F, b"I\r": I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert r.ok and "battery.voltage" not in values(r)
    assert "fits no multiplier of the 24 V rating" in r.raw["battery"]
    t.answers[b"Q1\r"] = Q1
    assert values(poll(d))["battery.voltage"] == 27.24


def test_a_missed_identity_is_asked_again():
    t = Scripted({b"Q1\r": Q1, b"F\r": F})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    assert "ups.mfr" not in values(poll(d))
    t.answers[b"I\r"] = I_
    assert values(poll(d))["ups.mfr"] == "NOT_A_LIVE_UPS"


def test_an_echoing_line_and_a_stray_lf_still_give_the_reply():
    # Issue 19 point 4: converters echo what they are sent, or put an LF before the reply.
    t = Scripted({b"Q1\r": b"Q1\r" + Q1, b"F\r": b"\n" + F, b"I\r": b"I\r\n" + I_})
    d = MegatecDriver({"id": "ups", "serial": {"port": "x"}}, transport=t)
    r = poll(d)
    assert r.ok, r.error
    v = values(r)
    assert v["battery.voltage"] == 27.24 and v["ups.mfr"] == "NOT_A_LIVE_UPS"
    assert "notes" not in r.raw
    t.answers[b"Q1\r"] = b"\n\r" + Q1  # an empty line, then the reply
    assert poll(d).ok
    t.answers[b"Q1\r"] = b"Q1\r"  # the echo alone: the command is not supported
    r = poll(d)
    assert not r.ok and r.error == "Q1: the UPS echoed the command (not supported by this model)"


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
