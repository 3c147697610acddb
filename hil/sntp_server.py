"""A minimal SNTP server on loopback for the board's time tests (host only): answers every
client request (mode 3) with a server reply (mode 4, stratum 2) carrying the host's clock, or,
with `offset_s`, the host's clock shifted (to see that the board takes the server's time), or with
`now`, the time that function gives (a drill's accelerated site time)."""

import socket
import struct
import threading
import time

NTP_DELTA = 2208988800


def _ntp(t):
    sec = int(t)
    return struct.pack("!II", sec + NTP_DELTA, int((t - sec) * 4294967296.0) & 0xFFFFFFFF)


class SntpServer:
    def __init__(self, host="127.0.0.1", offset_s=0.0, now=None):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)  # fmt: skip
        self.sock.bind((host, 0))
        self.sock.settimeout(0.2)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.offset_s = offset_s
        self.now = now or time.time
        self.answered = 0
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop:
            try:
                data, peer = self.sock.recvfrom(512)
            except OSError:
                continue
            if len(data) < 48 or data[0] & 7 != 3:
                continue
            now = self.now() + self.offset_s
            reply = (bytes((0x24, 2, 6, 0xEC)) + bytes(8) + b"LOCL" + _ntp(now) + data[40:48]
                     + _ntp(now) + _ntp(now))  # fmt: skip
            self.sock.sendto(reply, peer)
            self.answered += 1

    def stop(self):
        self._stop = True
        self._thread.join(2)
        self.sock.close()
