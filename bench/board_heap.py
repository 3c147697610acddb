"""Heap of the board firmware on 32-bit MicroPython (the WebAssembly port, like the ESP32):
import cost of every module of a board image, the running reference site over 1,000 poll
cycles, and the peak during a backlog drain. Prints the figures; --write stores the per-module
costs and the per-device cost in firmware/costs.json (what the image builder's RAM check uses).

    .venv/bin/python bench/board_heap.py [--cycles 1000] [--write]

Reference site (docs/board.md): a Megatec UPS on a UART, a UPS-MIB UPS and an IF-MIB router over
SNMP (snmp-lite, tables from the snmpsim recordings the tests use), an EPEVER controller over
Modbus RTU, the agent's own health, the uplink (the board's Outbox and MQTT packet encoder; the
broker acknowledges every publish at once). Code is the image's .mpy files loaded into RAM
(what a stock ESP32 firmware does: it has no ROMFS) unless --source.
The figures are live bytes (gc.mem_alloc after a collection) minus the bench's own scaffolding
(fake UART peers and SNMP tables), so they are what the agent holds.
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from firmware import modules  # noqa: E402
from firmware.build import build_image  # noqa: E402
from hil.snmpsim import find_recording, read_snmprec  # noqa: E402

TOML = """
[site]
id = "bench-ref-01"
kind = "bts"
[network]
ntp = []
[[network.wifi]]
ssid = "bench"
password = "bench-pass-1"
[defaults]
interval = 30
timeout = 5
[[devices]]
id = "ups-serial"
driver = "megatec"
[devices.serial]
port = "uart2"
baud = 115200
[[devices]]
id = "solar"
driver = "modbus"
[devices.serial]
port = "uart1"
baud = 115200
[devices.modbus]
slave = 1
[[devices]]
id = "ups-snmp"
driver = "snmp-lite"
[devices.snmp]
host = "192.0.2.10"
community = "bench-community"
profile = "ups-mib"
[[devices]]
id = "router"
driver = "snmp-lite"
[devices.snmp]
host = "192.0.2.1"
community = "bench-community"
profile = "if-mib"
[uplink]
[[uplink.brokers]]
host = "192.0.2.50"
insecure = true
[storage]
budget_mb = 1
commit_interval = 5
"""
TAGS = {"2": 0x02, "4": 0x04, "6": 0x06, "64": 0x40, "65": 0x41, "66": 0x42, "67": 0x43,
        "70": 0x46}  # fmt: skip


def _recording(name, tmp):
    path = find_recording(name)
    if path.endswith(".bz2"):
        import bz2

        plain = os.path.join(tmp, os.path.basename(path)[:-4])
        with bz2.open(path, "rb") as src, open(plain, "wb") as dst:
            dst.write(src.read())
        path = plain
    return read_snmprec(path)


def mib(recording, prefixes, tmp):
    rows = []
    for oid, (tag, value) in _recording(recording, tmp).items():
        if tag not in TAGS or not any(oid.startswith(p) for p in prefixes):
            continue
        if tag in ("2", "65", "66", "67", "70"):
            try:
                value = int(value)
            except ValueError:
                continue
        rows.append([oid, TAGS[tag], value])
    return rows


def topo(mods):
    """Modules in an order where each one's imports come first."""
    out, seen = [], set()

    def visit(m):
        if m in seen:
            return
        seen.add(m)
        parts = m.split(".")
        for i in range(1, len(parts)):
            visit(".".join(parts[:i]))
        for dep in sorted(modules.imports_of(m)):
            if dep in mods:
                visit(dep)
        out.append(m)

    for m in mods:
        visit(m)
    return out


def run(cycles, source=False, extra=4):
    tmp = tempfile.mkdtemp(prefix="board-heap-")
    try:
        with open(os.path.join(tmp, "site.toml"), "w") as f:
            f.write(TOML)
        man = build_image(os.path.join(tmp, "site.toml"), "esp32-s3-devkitc-n8r8",
                          os.path.join(tmp, "image"))  # fmt: skip
        files = {}
        for entry in man["files"]:
            if entry["kind"] == "code" and source:
                continue
            files[entry["dest"]] = os.path.join(tmp, "image", entry["path"])
        if source:
            for m in man["modules"]:
                rel = modules.rel_source(m)
                files["/lib/" + rel] = os.path.join(REPO, rel)
        files["/bench/fake_machine.py"] = os.path.join(REPO, "tests", "portable",
                                                       "fake_machine.py")  # fmt: skip
        files["/bench/board_site.py"] = os.path.join(REPO, "bench", "mpy", "board_site.py")
        files["/bench/outbox_session.py"] = os.path.join(REPO, "tests", "portable",
                                                         "outbox_session.py")  # fmt: skip
        # The port has no socket module; agent/board/udp.py needs only its names at import.
        files["/bench/socket.py"] = os.path.join(REPO, "bench", "mpy", "socket.py")
        files["/runner/mpy_runner.py"] = os.path.join(REPO, "tests", "mpy", "mpy_runner.py")
        mibs = {"ups": mib("UPS/eaton-93e-80", ("1.3.6.1.2.1.1.", "1.3.6.1.2.1.33."), tmp),
                "router": mib("network/wifi/ubiquiti-m5", ("1.3.6.1.2.1.1.", "1.3.6.1.2.1.2.",
                                                          "1.3.6.1.2.1.31."), tmp)}  # fmt: skip
        with open(os.path.join(tmp, "mibs.json"), "w") as f:
            json.dump(mibs, f)
        files["/bench/mibs.json"] = os.path.join(tmp, "mibs.json")
        order = topo([m for m in man["modules"] if m != "firmware.safe"])
        steps = [["base", "import asyncio"]]
        steps += [["scaffold", "import mpy_runner; mpy_runner.install_asyncio_run()\n"
                   "import board_site; board_site.scaffold('/bench/mibs.json')"]]  # fmt: skip
        for m in order:
            steps.append(["import:" + m, "import " + m])
        steps.append(["setup", "board_site.setup()"])
        done = 0
        marks = [1, 10] + list(range(100, cycles + 1, 100))
        for mark in marks:
            steps.append(["cycle:%d" % mark, "board_site.cycles(%d)" % (mark - done)])
            done = mark
        steps.append(["ring", "print('RING', len(board_site.S['log'].ring), "
                      "sum(len(x) for x in board_site.S['log'].ring))"])  # fmt: skip
        steps.append(["outage:200", "board_site.cycles(200, connected=False)"])
        backlog = "print('BACKLOG', board_site.S['queue'].stats()['depth'])"
        steps.append(["backlog", backlog])
        for i in range(100):
            steps.append(["drain:%d" % i, "board_site.drain_step(1)"])
        steps.append(["drained", "board_site.S['acked'] += board_site.drain(); print('PEAK', "
                      "board_site.S['peak'], 'ACKED', board_site.S['acked'])"])  # fmt: skip
        steps.append(["after-drain:100", "board_site.cycles(100)"])
        for i in range(extra):
            steps.append(["extra:%d" % i, _extra_device(i)])
        steps.append(["extra:cycles", "board_site.cycles(20)"])
        path = ["/board", "/lib", "/bench", "/runner", ".frozen"]
        plan = {"files": files, "path": path, "steps": steps}
        with open(os.path.join(tmp, "plan.json"), "w") as f:
            json.dump(plan, f)
        r = subprocess.run(["node", os.path.join(REPO, "bench", "board_heap.mjs"),
                            os.path.join(tmp, "plan.json")], capture_output=True, text=True,
                           timeout=3600)  # fmt: skip
        if r.returncode != 0:
            raise SystemExit("board_heap.mjs failed:\n" + r.stdout[-4000:] + r.stderr[-2000:])
        return r.stdout, man
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _extra_device(i):
    """Python that adds one more Megatec device on its own fake UART (the per-device cost)."""
    return ("from drivers.megatec import MegatecDriver\n"
            "import fake_machine\n"
            "fake_machine.peer(%d).responder = lambda r: board_site.MEGATEC.get(bytes(r))\n"
            "fake_machine.peer(%d).latency_s = 0\n"
            "from agent.board import uart\n"
            "uart.PINS['uart%d'] = {'tx': 1, 'rx': 2}\n"
            "d = {'id': 'extra%d', 'driver': 'megatec', 'interval': 30, 'timeout': 5, "
            "'jitter': 0.1, 'serial': {'port': 'uart%d', 'baud': 115200}, 'options': {}}\n"
            "board_site.S['loop'].add_device(d, MegatecDriver(d))\n"
            "board_site.cycles(3)" % (10 + i, 10 + i, 10 + i, i, 10 + i))  # fmt: skip


def parse(out):
    heap = {}
    for line in out.splitlines():
        m = re.match(r"HEAP (\S+) (\d+)", line)
        if m:
            heap[m.group(1)] = int(m.group(2))
    peak = re.search(r"PEAK (\d+) ACKED (\d+)", out)
    backlog = re.search(r"BACKLOG (.*)", out)
    return heap, (int(peak.group(1)), int(peak.group(2))) if peak else None, (
        backlog.group(1) if backlog else None)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--source", action="store_true", help="import .py sources, not .mpy")
    ap.add_argument("--write", action="store_true", help="update firmware/costs.json")
    args = ap.parse_args()
    out, man = run(args.cycles, args.source)
    heap, peak, backlog = parse(out)
    kb = lambda b: "%.1f KB" % (b / 1024.0)  # noqa: E731
    scaffold = heap["scaffold"] - heap["base"]
    own = {}
    prev = heap["scaffold"]
    for key in [k for k in heap if k.startswith("import:")]:
        own[key[7:]] = heap[key] - prev
        prev = heap[key]
    imports = prev - heap["scaffold"]
    boot_only = [m for m in man["boot_only"]]
    freed = sum(own.get(m, 0) for m in boot_only)
    print("MicroPython WebAssembly port (32-bit), code from %s" % ("source" if args.source
                                                                 else ".mpy in RAM"))  # fmt: skip
    print("interpreter + asyncio:               %s" % kb(heap["base"]))
    print("bench scaffolding (subtracted):      %s" % kb(scaffold))
    print("all %d modules of the image:         %s (boot-only config: %s, freed after boot)"
          % (len(own), kb(imports), kb(freed)))  # fmt: skip
    for m, b in sorted(own.items(), key=lambda kv: -kv[1])[:12]:
        print("   %-34s %s" % (m, kb(b)))
    live = {k: heap[k] - scaffold for k in heap if k.startswith("cycle:")}
    c1, cn = "cycle:1", "cycle:%d" % args.cycles
    c100 = "cycle:100"
    print("running site, live after cycle 1:    %s" % kb(live[c1]))
    print("running site, live after cycle 100:  %s" % kb(live[c100]))
    print("running site, live after cycle %d: %s  (growth 100 -> %d: %+d B)"
          % (args.cycles, kb(live[cn]), args.cycles, live[cn] - live[c100]))  # fmt: skip
    marks = sorted((int(k[6:]), v) for k, v in live.items())
    print("   by cycle: " + ", ".join("%d: %.1f" % (c, v / 1024.0) for c, v in marks))
    ring = re.search(r"RING (\d+) (\d+)", out)
    if ring:
        print("   of which the log's ring of recent lines (console `log`): %s lines, %s bytes of "
              "text" % (ring.group(1), ring.group(2)))  # fmt: skip
    print("after a 200-cycle outage (backlog %s): %s" % (backlog, kb(heap["backlog"] - scaffold)))
    if peak:
        print("backlog drain: peak (live + one message's allocations with the GC off + 3 "
              "payloads in flight, over the first 100 messages) %s; %d messages in all"
              % (kb(peak[0] - scaffold), peak[1]))  # fmt: skip
    print("after the drain + 100 cycles:        %s" % kb(heap["after-drain:100"] - scaffold))
    per_dev = (heap["extra:cycles"] - heap["after-drain:100"]) // 4
    print("per extra device (Megatec, 4 added): %s" % kb(per_dev))
    from bench.board_romfs import measure

    rom, ram, _n = measure()
    factor = round(rom / float(ram), 3)
    print("code from ROMFS instead of RAM (unix port): %.0f%% of the heap" % (100 * factor))
    code = imports - freed
    print("estimate for the reference site with code in flash (ROMFS): %s"
          % kb(live[cn] - code + int(code * factor)))  # fmt: skip
    if args.write:
        base = live[cn] - code
        costs = {"note": "measured by bench/board_heap.py: WebAssembly port (32-bit), .mpy in "
                 "RAM, %d poll cycles of the reference site (5 devices with the agent's "
                 "health); base = its live heap minus the modules it holds; romfs_factor from "
                 "bench/board_romfs.py (unix port)" % args.cycles, "base": base,
                 "module_default": 4096, "per_device": per_dev, "reference_devices": 5,
                 "romfs_factor": factor, "modules": own, "boot_only": boot_only}  # fmt: skip
        with open(os.path.join(REPO, "firmware", "costs.json"), "w") as f:
            json.dump(costs, f, indent=1, sort_keys=True)
            f.write("\n")
        print("wrote firmware/costs.json")


if __name__ == "__main__":
    main()
