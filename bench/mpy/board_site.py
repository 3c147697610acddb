# The reference site, run inside the MicroPython WebAssembly port for heap figures (driven by
# bench/board_heap.py through bench/board_heap.mjs). The agent is the board image's own code
# (.mpy files from firmware/build.py, the firmware's runner functions); only what is silicon or
# network is scripted: UARTs (tests/portable/fake_machine.py, peers answering Megatec Q1 and
# Modbus RTU like the emulators), SNMP datagrams (answered from the snmpsim recordings' tables),
# and the broker (a session object whose every publish is acknowledged at once, or none while
# the link is "down"). The store writes files to the port's in-memory filesystem, which lives
# outside the MicroPython heap, as flash does on a board.
import asyncio
import gc
import json

import fake_machine
from outbox_session import Session

S = {}


def _crc16(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def _modbus(req):
    if len(req) < 8:
        return None
    slave, fc, addr, n = req[0], req[1], (req[2] << 8) | req[3], (req[4] << 8) | req[5]
    body = bytearray((slave, fc, 2 * n))
    for i in range(n):
        v = 1000 + (addr + i) % 500
        body += bytes((v >> 8, v & 255))
    c = _crc16(body)
    return bytes(body) + bytes((c & 255, c >> 8))


MEGATEC = {
    b"Q1\r": b"(229.6 140.0 229.6 034 50.0 27.3 35.0 00001001\r",
    b"F\r": b"#230.0 004 024.0 50.0\r",
    b"I\r": b"#ACME UPS        MODEL-600  V1.2      \r",
}


class FakeSnmp:
    """A connected UDP transport whose peer answers GET, GETNEXT and GETBULK from a table."""

    def __init__(self, table):
        from drivers.proto.snmp_client import oid_key

        self.mib = table
        self.keys = sorted(table, key=oid_key)
        self.oid_key = oid_key
        self.inbox = []

    def _next(self, oid):
        k = self.oid_key(oid)
        for o in self.keys:
            if self.oid_key(o) > k:
                return o
        return None

    async def send(self, data):
        from drivers.proto import ber, ber_agent

        m = ber.decode_message(data)
        out = []
        if m.pdu == ber.GET:
            for oid, _t, _v in m.varbinds:
                if oid in self.mib:
                    out.append((oid, self.mib[oid][0], self.mib[oid][1]))
                else:
                    out.append((oid, ber.NO_SUCH_OBJECT_TAG, None))
        else:
            cursors = [oid for oid, _t, _v in m.varbinds]
            reps = m.index if m.pdu == ber.GET_BULK else 1
            for _ in range(max(1, reps)):
                for i, oid in enumerate(cursors):
                    nxt = self._next(oid)
                    if nxt is None:
                        out.append((oid, ber.END_OF_MIB_VIEW_TAG, None))
                    else:
                        out.append((nxt, self.mib[nxt][0], self.mib[nxt][1]))
                        cursors[i] = nxt
        self.inbox.append(ber_agent.encode_response(m.version, m.community, m.request_id, out))

    async def recv(self, timeout):
        return self.inbox.pop(0) if self.inbox else None

    def close(self):
        pass


def scaffold(mib_path):
    """Peers and SNMP tables: bench scaffolding, measured on its own line."""
    fake_machine.install()
    fake_machine.peer(2).responder = lambda req: MEGATEC.get(bytes(req))
    fake_machine.peer(2).latency_s = 0
    fake_machine.peer(1).responder = _modbus
    fake_machine.peer(1).latency_s = 0
    from drivers.proto import ber

    with open(mib_path) as f:
        raw = json.load(f)
    tables = {}
    for name, rows in raw.items():
        t = {}
        for oid, tag, v in rows:
            if tag == ber.OCTET_STRING:
                v = bytes(v, "utf-8")
            t[oid] = (tag, v)
        tables[name] = t
    S["mibs"] = tables


def setup(extra_devices=0):
    from agent.board.health import BoardHealthDriver
    from agent.board.uplink import BoardUplink
    from agent.core.clock import Clock, ClockFile
    from agent.core.facade import AgentFacade
    from agent.core.log import Log
    from agent.core.monitor.pipeline import SiteMonitor
    from agent.core.store.jsonfile import JsonFile
    from firmware import runner
    from firmware.main import load_config

    cfg, errors = load_config()
    if errors:
        raise RuntimeError("bench site config: %s" % errors)
    with open("/board.json") as f:
        board = json.load(f)
    from agent.board import uart

    uart.configure(board["uarts"])
    log = Log(write=lambda line: None)
    queue = runner.open_store(cfg, log)
    clock = Clock("b0a7d00d", state=ClockFile("/data/clock.json"))
    clock.trust(1796000000.0, "sntp")
    monitor = SiteMonitor(cfg.site["id"], cfg.site["kind"], clock, cfg.alarms,
                          active_file=JsonFile("/data/alarms.json"), log=log)  # fmt: skip
    loop = runner.build_loop(cfg, queue, log, monitor, clock, None)
    for dev in cfg.devices:
        if dev["driver"] == "snmp-lite":
            table = S["mibs"]["ups" if dev["snmp"]["profile"] == "ups-mib" else "router"]

            async def factory(host, port, table=table):
                return FakeSnmp(table)

            loop.drivers[dev["id"]].factory = factory
    ucfg = dict(cfg.uplink)
    ucfg["batch_max"] = min(ucfg.get("batch_max", 100), runner.BATCH_MAX)
    up = BoardUplink(ucfg, cfg.site["id"], queue, log, tls=None)
    facade = AgentFacade(cfg, loop, queue, up, clock, log)  # the runner's, console off
    facade.alarms = monitor.engine
    up.attach(facade)
    loop.listeners.append(up.notify)
    loop.alarm_listeners.append(up.alarms_changed)
    health = {"id": "agent", "driver": "health", "interval": 60, "timeout": 10, "jitter": 0.1}
    loop.add_device(health, BoardHealthDriver(health, queue, up, clock, 1 << 20, 1, None))
    S.update(cfg=cfg, loop=loop, queue=queue, up=up, session=Session("bench"), log=log,
             clock=clock)  # fmt: skip
    S["peak"] = 0
    S["acked"] = 0


def _publish(msg):
    from agent.board import mqtt

    pid = S["pid"] = S.get("pid", 0) % 65535 + 1  # the broker's side: a packet id per publish
    S["last_size"] = len(msg.payload)
    S["last_packet"] = (mqtt.publish_head(msg.topic, len(msg.payload), 1, msg.retain, pid),
                        msg.payload)
    return pid


def drain(limit=100000):
    """Publish and acknowledge until the queue is empty (or `limit` messages)."""
    up = S["up"]
    s = S["session"]
    n = 0
    while n < limit:
        up.out.pump(s, up.budgets[0], _publish, "json")
        if not s.inflight:
            return n
        for pid in list(s.inflight):
            up.out.on_puback(s, pid)
            n += 1
        S["last_packet"] = None
    return n


def _trim():
    """The fake UARTs keep a timeline of every byte (for the portable tests' checks); drop it,
    or the bench would measure its own scaffolding growing."""
    del fake_machine.EVENTS[:]
    for u in fake_machine.UARTS.values():
        u.sent = []
        u.wire = bytearray()


def cycles(n, connected=True):
    loop = S["loop"]
    for _ in range(n):
        asyncio.run(loop.poll_all())
        _trim()
        if connected:
            drain()
    S["cycles"] = S.get("cycles", 0) + n


def drain_step(messages):
    """Drain `messages` messages one at a time (window 1) with the GC off, and estimate the
    peak of a drain: the live heap before, plus what publishing one message allocates (records
    read and decoded, the batch encoded), plus the payloads of the other WINDOW - 1 messages a
    real window holds until their PUBACK."""
    from agent.core.uplink.outbox import WINDOW

    out = S["up"].out
    out.window = 1
    before = gc.mem_alloc()  # live: the harness collected after the previous step
    gc.disable()
    try:
        done = drain(messages)
        grew = gc.mem_alloc() - before
    finally:
        gc.enable()
        out.window = WINDOW
    last = S.get("last_size", 0)
    S["peak"] = max(S["peak"], before + grew + (WINDOW - 1) * last)
    S["acked"] += done
    return done
