"""Time from SNTP (RFC 4330) over UDP, for a board without RTC (portable packet code).

    pkt, t1 = request(wall_now)                  # 48 bytes, our transmit time in NTP format
    t = parse(reply, t1, wall_sent, wall_now)    # the server's time now (Unix seconds)
    keeper = TimeKeeper(clock, servers, udp_open, log)   # asyncio task: sync, then every hour

A reply is believed only if it is a server reply (mode 4) of version 3 or 4, from a synchronised
server (leap indicator not 3, stratum 1-15), with a non-zero transmit time, and echoes our
transmit timestamp as its originate timestamp (RFC 4330 section 5: this is what stops a stale or
spoofed datagram). The time taken is the server's transmit time plus half the round trip. Until a
server answers, the agent keeps stamping readings with boot id + monotonic time (quality "est",
agent/core/clock.py); the first answer makes the clock trusted with source "sntp".
"""

import asyncio
import struct

from agent.core.errors import ParseError

NTP_DELTA = 2208988800  # seconds from 1900-01-01 (NTP era 0) to 1970-01-01
PORT = 123


def _to_ntp(t):
    sec = int(t)
    frac = int((t - sec) * 4294967296.0) & 0xFFFFFFFF
    return (sec + NTP_DELTA) & 0xFFFFFFFF, frac


def _from_ntp(sec, frac):
    return sec - NTP_DELTA + frac / 4294967296.0


def request(now):
    """(48-byte client request, its transmit timestamp as 8 bytes). `now`: any float seconds
    (the board's untrusted clock will do: it is only echoed back, never believed)."""
    sec, frac = _to_ntp(now)
    ts = struct.pack("!II", sec, frac)
    return b"\x23" + bytes(39) + ts, ts  # LI 0, VN 4, mode 3 (client)


def parse(reply, sent_ts, mono_sent, mono_now):
    """The server's time (Unix seconds) at mono_now; ParseError for anything unbelievable."""
    if len(reply) < 48:
        raise ParseError("SNTP reply of %d bytes (expected 48)" % len(reply))
    first, stratum = reply[0], reply[1]
    li, vn, mode = first >> 6, (first >> 3) & 7, first & 7
    if mode != 4 or vn not in (3, 4):
        raise ParseError("not an SNTP server reply (mode %d, version %d)" % (mode, vn))
    if li == 3 or not 1 <= stratum <= 15:
        raise ParseError("server not synchronised (leap %d, stratum %d)" % (li, stratum))
    if reply[24:32] != sent_ts:
        raise ParseError("reply does not answer our request (originate timestamp differs)")
    sec, frac = struct.unpack_from("!II", reply, 40)
    if sec == 0:
        raise ParseError("server sent no transmit time")
    rtt = max(0.0, mono_now - mono_sent)
    return _from_ntp(sec, frac) + rtt / 2.0


def host_port(server):
    """("pool.ntp.org", 123) from "pool.ntp.org"; "192.0.2.1:1123" and "[2001:db8::1]:1123" name
    another port."""
    if server.startswith("["):
        host, _, rest = server[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else PORT
    if server.count(":") == 1:
        host, _, port = server.partition(":")
        return host, int(port)
    return server, PORT


async def query(server, open_udp, mono, wall, timeout=3.0):
    """One SNTP exchange with `server`: the time now, or ParseError / DeviceError."""
    host, port = host_port(server)
    t = await open_udp(host, port)
    try:
        pkt, ts = request(wall())
        m0 = mono()
        await t.send(pkt)
        end = m0 + timeout
        while True:
            left = end - mono()
            reply = await t.recv(left) if left > 0 else None
            if reply is None:
                raise ParseError("no SNTP answer from %s within %gs" % (server, timeout))
            try:
                return parse(reply, ts, m0, mono())
            except ParseError:
                if mono() >= end:
                    raise
    finally:
        t.close()


class TimeKeeper:
    """Sync the clock from the first server that answers; retry every `retry_s` until one
    does, then every `every_s`. set_rtc(t), when given, also sets the board's RTC (log times)."""

    def __init__(self, clock, servers, open_udp, log, mono, wall, set_rtc=None, every_s=3600.0,
                 retry_s=30.0, link_up=None):  # fmt: skip
        self.clock = clock
        self.servers = list(servers)
        self.open_udp = open_udp
        self.log = log
        self.mono = mono
        self.wall = wall
        self.set_rtc = set_rtc
        self.every_s = every_s
        self.retry_s = retry_s
        self.syncs = 0
        self.last_error = None
        self.link_up = link_up  # None, or fn() -> bool: no query while the network is down

    async def sync_once(self):
        for server in self.servers:
            try:
                t = await query(server, self.open_udp, self.mono, self.wall)
            except Exception as e:  # a dead server, no route, a bad reply: try the next one
                self.last_error = "%s: %s" % (server, e)
                continue
            if self.set_rtc is not None:
                try:
                    self.set_rtc(t)
                except Exception:  # log times only; the clock below is what stamps readings
                    pass
            first = not self.clock.trusted()
            if self.clock.trust(t, "sntp"):
                self.syncs += 1
                if first:
                    self.log.info("clock", "set from SNTP", server=server)
                return True
        return False

    async def run(self):
        while True:
            while self.link_up is not None and not self.link_up():
                await asyncio.sleep(1)
            ok = await self.sync_once()
            if not ok and self.syncs == 0:
                self.log.warning("clock", "no SNTP answer yet; readings carry estimated times",
                                 error=self.last_error)  # fmt: skip
            await asyncio.sleep(self.every_s if ok else self.retry_s)
