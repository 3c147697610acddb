"""A delay line on a TUN device, for kernels without sch_netem (host only, run in a namespace).

    python -m hil.drill.delayline --dev dl0 --delay-ms 600 --loss-pct 2 --seed 1

Every packet the kernel routes into the device is held for delay_ms and written back (the
kernel then routes it on, see hil/drill/netlab.py), or dropped with probability loss_pct, drawn
from a seeded generator so a run's losses repeat. Rate limits are the kernel's (tc tbf on the
link's interfaces). Prints "ready" on stderr once attached; stops on SIGTERM.
"""

import argparse
import fcntl
import heapq
import os
import random
import select
import signal
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def run(fd, delay_s, loss, rng, stop):
    held = []  # (due, n, packet)
    n = 0
    while not stop:
        now = time.monotonic()
        while held and held[0][0] <= now:
            _due, _n, pkt = heapq.heappop(held)
            try:
                os.write(fd, pkt)
            except OSError:
                pass  # a packet the kernel will not take back is a lost packet
        wait = max(0.0, held[0][0] - now) if held else 0.5
        try:
            ready, _, _ = select.select([fd], [], [], wait)
        except InterruptedError:
            continue
        if not ready:
            continue
        try:
            pkt = os.read(fd, 65536)
        except OSError:
            continue
        if loss and rng.random() < loss:
            continue
        n += 1
        heapq.heappush(held, (time.monotonic() + delay_s, n, pkt))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dev", default="dl0")
    ap.add_argument("--delay-ms", type=float, default=0.0)
    ap.add_argument("--loss-pct", type=float, default=0.0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args(argv)
    fd = open_tun(a.dev)
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(True))
    sys.stderr.write("ready\n")
    sys.stderr.flush()
    run(fd, a.delay_ms / 1000.0, a.loss_pct / 100.0, random.Random(a.seed), stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
