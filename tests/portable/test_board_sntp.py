# SNTP (agent/board/sntp.py): the request's bytes, and which replies are believed.
import struct

from agent.board import sntp
from agent.core.errors import ParseError

from support import raises, run

NOW = 1796000000.25


def _reply(sent_ts, t, mode=4, vn=4, li=0, stratum=2):
    sec, frac = sntp._to_ntp(t)
    first = (li << 6) | (vn << 3) | mode
    stamp = struct.pack("!II", sec, frac)
    return bytes((first, stratum, 6, 0xEC)) + bytes(20) + sent_ts + stamp * 2


def test_request_is_a_v4_client_packet_carrying_our_transmit_time():
    pkt, ts = sntp.request(NOW)
    assert len(pkt) == 48 and pkt[0] == 0x23 and pkt[40:] == ts
    assert sntp._from_ntp(*struct.unpack("!II", ts)) == NOW


def test_parse_takes_server_time_plus_half_the_round_trip():
    _, ts = sntp.request(1000.0)
    t = sntp.parse(_reply(ts, NOW), ts, 5.0, 5.2)
    assert abs(t - (NOW + 0.1)) < 1e-3


def test_replies_that_must_not_be_believed():
    _, ts = sntp.request(1000.0)
    _, other = sntp.request(2000.0)
    assert "originate" in str(raises(ParseError, sntp.parse, _reply(other, NOW), ts, 0, 0))
    raises(ParseError, sntp.parse, _reply(ts, NOW, mode=3), ts, 0, 0)
    raises(ParseError, sntp.parse, _reply(ts, NOW, li=3), ts, 0, 0)
    raises(ParseError, sntp.parse, _reply(ts, NOW, stratum=0), ts, 0, 0)
    raises(ParseError, sntp.parse, _reply(ts, NOW)[:47], ts, 0, 0)


def test_server_names_with_ports():
    assert sntp.host_port("pool.ntp.org") == ("pool.ntp.org", 123)
    assert sntp.host_port("192.0.2.1:1123") == ("192.0.2.1", 1123)
    assert sntp.host_port("[2001:db8::1]:1123") == ("2001:db8::1", 1123)
    assert sntp.host_port("2001:db8::1") == ("2001:db8::1", 123)


class Udp:
    def __init__(self, make_reply):
        self.make_reply = make_reply
        self.reply = None

    async def send(self, data):
        self.reply = self.make_reply(data[40:48])

    async def recv(self, timeout):
        r, self.reply = self.reply, None
        return r

    def close(self):
        pass


class Clock:
    def __init__(self):
        self.t = None

    def trusted(self):
        return self.t is not None

    def trust(self, t, source):
        self.t = (t, source)
        return True


class Log:
    def __init__(self):
        self.lines = []

    def info(self, *a, **k):
        self.lines.append(a)

    warning = info


def test_keeper_trusts_the_clock_from_the_first_server_that_answers():
    async def dead(host, port):
        return Udp(lambda ts: None)

    async def good(host, port):
        return Udp(lambda ts: _reply(ts, NOW))

    async def opener(host, port):
        return await (dead if host == "a" else good)(host, port)

    clock = Clock()
    keeper = sntp.TimeKeeper(clock, ["a", "b:1123"], opener, Log(), lambda: 1.0, lambda: 5.0)
    assert run(keeper.sync_once()) is True
    assert abs(clock.t[0] - NOW) < 1e-3 and clock.t[1] == "sntp"
    assert "a:" in keeper.last_error and keeper.syncs == 1
