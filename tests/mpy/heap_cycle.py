# Live heap of the core loop after a poll cycle (runs inside MicroPython; CPython works too).
#
# Builds what a small site runs: a Loop with 3 drivers (a UPS, a DC plant, a router; fakes that
# answer at once with realistic sample sets) and a MemoryQueue, then polls. The harness
# (tests/mpy/run.mjs heap) imports this module, calls step(i) for each entry of STEPS, returns to
# JavaScript after each so the WebAssembly port really collects (its gc.collect() inside Python
# only flags a collection for the top level), then reads gc.mem_alloc(). On a board run main()
# instead: gc.collect() works in place there. Output: "HEAP <label> <bytes>" lines.

import gc

from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from drivers.base import Driver

SITE = "vn-hue-0042"

# Sample sets like those of the real drivers (names from agent/core/registry.py).
UPS = (
    ("input.voltage", 229.6, "V"),
    ("input.voltage.fault", 140.0, "V"),
    ("output.voltage", 229.6, "V"),
    ("ups.load", 34.0, "%"),
    ("input.frequency", 50.0, "Hz"),
    ("battery.voltage", 27.3, "V"),
    ("ups.temperature", 35.0, "C"),
    ("ups.status", "OL", ""),
    ("ups.beeper", True, ""),
)
PLANT = (
    ("dc.voltage", 53.52, "V"),
    ("battery.current", 1.2, "A"),
    ("battery.temperature", 27.0, "C"),
    ("battery.lvd", "connected", ""),
    ("dc.mode", "float", ""),
    ("rectifier.count", 3, ""),
    ("rectifier.current", 21.4, "A"),
    ("rectifier.utilisation", 24.0, "%"),
    ("rectifier.1.status", "normal", ""),
    ("rectifier.2.status", "normal", ""),
    ("rectifier.3.status", "normal", ""),
    ("plant.alarm.mains_lost", False, ""),
)
ROUTER = (
    ("device.uptime", 864000, "s"),
    ("router.cpu", 7.0, "%"),
    ("if.wan0.oper", "up", ""),
    ("if.wan0.in_bps", 1.25e6, "bit/s"),
    ("if.wan0.out_bps", 3.1e5, "bit/s"),
    ("if.lte0.oper", "dormant", ""),
)


class FakeDriver(Driver):
    INFO = {"name": "fake", "version": "1", "maturity": "stable", "transport": "none"}

    def __init__(self, device, samples):
        Driver.__init__(self, device)
        self.samples = samples

    async def read(self):
        # A fresh list per poll, as a real driver builds one from each reply.
        return [s for s in self.samples]


def _rand():
    return 0.5


STATE = {}


def setup():
    log = Log(write=lambda line: None)
    q = MemoryQueue()
    loop = Loop(SITE, q, _rand, log)
    for dev_id, samples in (("ups1", UPS), ("plant1", PLANT), ("router1", ROUTER)):
        dev = {"id": dev_id, "interval": 30, "timeout": 5, "jitter": 0.1}
        loop.add_device(dev, FakeDriver(dev, samples))
    STATE["loop"] = loop
    STATE["queue"] = q


def cycle():
    import asyncio

    results = asyncio.run(STATE["loop"].poll_all())
    for dev_id, r in results.items():
        if not r.ok:
            raise RuntimeError("%s: poll failed: %s" % (dev_id, r.error))


def drain():
    """What the uplink does once the broker acknowledged: the queue empties."""
    q = STATE["queue"]
    while True:
        b = q.next_batch(50)
        if b is None:
            break
        q.ack(b[0])


def cycle_and_drain():
    cycle()
    drain()


# (label, function); "cycle1" is the figure held to the core-loop budget. cycle2-10 run with the
# queue drained after each (steady state), so growth between them would be a leak.
STEPS = [("setup", setup), ("cycle1", cycle)] + [
    ("cycle%d" % i, cycle_and_drain) for i in range(2, 11)
]


def step(i):
    STEPS[i][1]()


def main():
    """On a board (mpremote run): the same steps, collecting in place; absolute figures (subtract
    the heap of a bare interpreter to compare with the harness's)."""
    gc.collect()
    print("HEAP import %d" % gc.mem_alloc())
    for label, fn in STEPS:
        fn()
        gc.collect()
        print("HEAP %s %d" % (label, gc.mem_alloc()))


if __name__ == "__main__":
    main()
