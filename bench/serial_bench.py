"""CPU per poll of each serial protocol on the host, and heap per poll under MicroPython.

    .venv/bin/python bench/serial_bench.py [--polls N]

Host: each driver polls a scripted in-memory transport (canned replies, no I/O), so the figure is
the driver and parser CPU of one poll (time.process_time over N polls), not the line's latency.
MicroPython: the same drivers and transports run inside the WebAssembly port (tests/mpy/run.mjs,
see docs/micropython.md); with the GC disabled, gc.mem_alloc() before and after N polls gives the
bytes allocated per poll (garbage the board's GC must later collect); the harness's HEAP line is
the live heap after the polls (modules + drivers + their state). Needs node and the package that
tests/mpy/install.sh installs.
"""

import argparse
import asyncio
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

# Shared by the host run and the MicroPython run (written into the module given to run.mjs).
COMMON = r'''
from drivers.proto import modbus as mb, pylontech as pp, vedirect as vd, voltronic as vp
from agent.core.errors import DeviceTimeout


class Scripted:
    """A transport answering from a table {request: reply}; streams for read_some."""

    def __init__(self, answers=None, stream=b""):
        self.answers = answers or {}
        self.stream = stream
        self.pos = 0
        self.buf = b""

    async def open(self, cfg):
        pass

    async def close(self):
        pass

    def reset_input(self):
        self.buf = b""

    async def request(self, data, terminator=b"\r", max_bytes=256, timeout=None):
        return self.answers[bytes(data)]

    async def send(self, data):
        self.buf = self.answers[bytes(data)]

    async def read_exact(self, n, timeout=None):
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def read_some(self, max_bytes=256, timeout=None):
        s = self.stream
        out = s[self.pos : self.pos + max_bytes]
        self.pos = (self.pos + max_bytes) % len(s)
        if not out:
            raise DeviceTimeout("end")
        return out


def setups():
    from drivers.megatec import MegatecDriver
    from drivers.modbus import ModbusDriver
    from drivers.pylontech import PylontechDriver
    from drivers.vedirect import VeDirectDriver
    from drivers.voltronic import VoltronicDriver

    out = {}
    q1 = {b"Q1\r": b"(215.0 195.0 230.0 014 49.0 2.27 30.0 00101000\r",
          b"F\r": b"#230.0 000 024.0 50.0\r", b"I\r": b"#NOT_A_LIVE_UPS  TESTING    TESTING   \r"}
    out["megatec"] = MegatecDriver({"id": "u"}, Scripted(q1))
    body = (b"(000.0 00.0 230.0 49.9 0161 0119 003 460 57.50 012 100 0069 0014 103.8 57.45"
            b" 00000 00110110 00 00 00856 010")
    qp = {vp.command(b"QPIGS"): body + vp.crc_bytes(body) + b"\r"}
    out["voltronic"] = VoltronicDriver({"id": "v"}, Scripted(qp))
    answers = {}
    for start, count in ((0x3100, 6), (0x310C, 2), (0x3110, 2), (0x311A, 1), (0x3200, 2),
                         (0x331B, 2)):
        regs = bytes((1, 4, 2 * count)) + bytes(i % 50 for i in range(2 * count))
        answers[mb.read_request(1, 4, start, count)] = mb.with_crc(regs)
    out["modbus"] = ModbusDriver({"id": "m", "modbus": {"slave": 1}}, Scripted(answers))
    main = vd.block((("PID", "0x203"), ("V", "26201"), ("I", "-1500"), ("P", "-39"),
                     ("CE", "-12345"), ("SOC", "876"), ("TTG", "480"), ("Alarm", "OFF"),
                     ("Relay", "OFF"), ("AR", "0"), ("BMV", "700"), ("FW", "0307")))
    hist = vd.block((("H1", "-50000"), ("H2", "-12000"), ("H3", "0"), ("H4", "3")))
    out["vedirect"] = VeDirectDriver({"id": "b"}, Scripted(stream=(hist + main) * 4))
    status = bytes((5, 0, 0, 0, 0, 0, 0, 0, 0, 14))
    alarms = pp.encode(2, 0, bytes((0, 2, 15)) + bytes(15) + status)
    py = {pp.request(2, 0x42): pp.GOLDEN_ANALOG, pp.request(2, 0x44): alarms}
    out["pylontech"] = PylontechDriver({"id": "p"}, Scripted(py))
    return out


async def polls(driver, n):
    for _ in range(n):
        r = await driver.poll(5)
        if not r.ok:
            raise RuntimeError("%s: %s" % (driver.id, r.error))
    return r
'''

MPY_MAIN = r"""
import gc
import mpy_runner
mpy_runner.install_asyncio_run()
import asyncio

N = %d
for name, d in sorted(setups().items()):
    asyncio.run(polls(d, 2))  # warm: sessions opened, F/I cached, caches filled
    gc.collect()
    gc.disable()
    before = gc.mem_alloc()
    asyncio.run(polls(d, N))
    per = (gc.mem_alloc() - before) // N
    gc.enable()
    gc.collect()
    print("MPY %%s %%d" %% (name, per))
"""


def host(n):
    ns = {}
    exec(compile(COMMON, "serial_bench_common", "exec"), ns)
    rows = []
    for name, d in sorted(ns["setups"]().items()):
        asyncio.run(ns["polls"](d, 2))

        async def timed(d=d):
            t0 = time.process_time()
            w0 = time.perf_counter()
            r = await ns["polls"](d, n)
            return time.process_time() - t0, time.perf_counter() - w0, len(r.samples)

        cpu, wall, samples = asyncio.run(timed())
        rows.append((name, cpu / n * 1e6, wall / n * 1e6, samples))
    return rows


def micropython(n):
    node = shutil.which("node")
    if not node:
        return None, "node is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        mod = Path(tmp) / "serial_heap_bench.py"
        mod.write_text(COMMON + MPY_MAIN % n)
        r = subprocess.run([node, str(REPO / "tests/mpy/run.mjs"), "import", str(mod)],
                           cwd=REPO, capture_output=True, text=True, check=False)  # fmt: skip
    per = dict((m, int(v)) for m, v in re.findall(r"^MPY (\S+) (\d+)$", r.stdout, re.M))
    live = re.search(r"^HEAP import:serial_heap_bench \S+ .* total=(\d+)", r.stdout, re.M)
    if not per:
        return None, r.stdout + r.stderr
    return (per, int(live.group(1)) if live else None), None


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--polls", type=int, default=2000)
    p.add_argument("--mpy-polls", type=int, default=50)
    args = p.parse_args(argv)
    rows = host(args.polls)
    print(
        "host (CPython %s), %d polls each, scripted transport:"
        % (sys.version.split()[0], args.polls)
    )
    print("%-10s %12s %12s %8s" % ("protocol", "CPU us/poll", "wall us/poll", "samples"))
    for name, cpu, wall, samples in rows:
        print("%-10s %12.1f %12.1f %8d" % (name, cpu, wall, samples))
    res, err = micropython(args.mpy_polls)
    if err:
        print("MicroPython: not measured:", err.strip()[:2000])
        return 1
    per, live = res
    print("MicroPython 1.27 (WebAssembly port, 32-bit), %d polls each:" % args.mpy_polls)
    print("%-10s %16s" % ("protocol", "bytes alloc/poll"))
    for name in sorted(per):
        print("%-10s %16d" % (name, per[name]))
    if live is not None:
        print("live heap after importing all five drivers and polling: %d B" % live)
    return 0


if __name__ == "__main__":
    sys.exit(main())
