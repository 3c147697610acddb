# Every fault mode of every serial emulator against its driver (Megatec, Modbus/EPEVER, Voltronic,
# VE.Direct, Pylontech), inside the real poll loop (agent.core.poll.loop.Loop) with a second
# device of the same kind on its own port: the faulty device goes stale with a reason naming the
# fault's symptom, recovers when the fault clears, and the other device keeps its schedule
# throughout.
import asyncio
import time

import pytest

from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.store.queue import MemoryQueue
from drivers.megatec import MegatecDriver
from drivers.modbus import ModbusDriver
from drivers.pylontech import PylontechDriver
from drivers.vedirect import VeDirectDriver
from drivers.voltronic import VoltronicDriver
from hil.emulators.base import COMMON_FAULTS
from hil.emulators.megatec import MegatecEmulator
from hil.emulators.modbus_epever import EpeverEmulator
from hil.emulators.pylontech import PylontechEmulator
from hil.emulators.vedirect import VeDirectEmulator
from hil.emulators.voltronic import VoltronicEmulator

BUDGET = 2.0  # seconds per poll of the faulty device
# The healthy device's interval: 0.25 s, or 1 s for VE.Direct, whose poll waits up to four 0.2 s
# block periods (find a boundary, then a main block: a BMV alternates main and history blocks).
# The largest gap allowed between two of its polls is its interval, its jitter (10 %) and 0.3 s
# of slack: a loop blocked by the faulty device's 1.8 s drips would exceed it.
INTERVAL_B = {"vedirect": 1.0}
# Faults that are not a failure of the device: a Megatec UPS fills fields it does not know with
# '@', which gives no sample for those fields while the rest still count (tested in
# tests/host/test_megatec_emulator.py::test_at_fields_give_no_sample_for_unknown_values).
NOT_STALE = {"megatec": ("at_fields",)}

KINDS = {
    "megatec": (MegatecEmulator, MegatecDriver, {}, {}),
    "modbus": (
        EpeverEmulator,
        ModbusDriver,
        {"modbus": {"slave": 1, "map": "epever"}, "options": {"retries": 0}},
        {},
    ),
    "voltronic": (VoltronicEmulator, VoltronicDriver, {}, {}),
    "vedirect": (VeDirectEmulator, VeDirectDriver, {}, {"period_s": 0.2}),
    "pylontech": (PylontechEmulator, PylontechDriver, {"options": {"address": 2}}, {}),
}

# What the stale reason must contain, per kind and fault.
REASONS = {
    "megatec": {
        "silence": "no reply within 0.3s",
        "drip": "partial reply within 0.3s",
        "truncated": "partial reply within 0.3s",
        "garbage": "Q1: byte 0x",
        "echo": "Q1: the UPS echoed the command",
        "bad_format": "Q1: 1 fields, need 8",
    },
    # Modbus times a try from the frames and the slave's turnaround (about 0.11 s here, more
    # once it has seen the slave answer slowly), not from read_timeout (drivers/modbus.py).
    "modbus": {
        "silence": "modbus slave 1 fc 4 0x3100 x6: no reply within 0.",
        "drip": "modbus slave 1 fc 4 0x3100 x6: partial reply within 0.",
        "truncated": "modbus slave 1 fc 4 0x3100 x6: partial reply within 0.",
        "garbage": "modbus slave 1 fc 4 0x3100 x6",
        "echo": "modbus slave 1 fc 4 0x3100 x6: partial reply within 0.",
        "bad_checksum": "bad CRC",
        "bad_format": "byte count 10, expected 12",
        "exception": "exception 4 (slave device failure)",
    },
    "voltronic": {
        "silence": "no reply within 0.3s",
        "drip": "partial reply within 0.3s",
        "truncated": "partial reply within 0.3s",
        "garbage": "voltronic: ",
        "echo": "voltronic: reply starts with 0x51, not '('",
        "bad_checksum": "voltronic: bad CRC",
        "bad_format": "voltronic: QPIGS has 1 fields",
        "nak": "refused the command (NAK)",
    },
    "vedirect": {
        "silence": "vedirect: no data for 0.3s",
        "drip": "vedirect: no complete block",
        "truncated": "never in sync",
        "garbage": "vedirect: no complete block",
        "echo": "vedirect: no data for 0.3s",
        "bad_checksum": "bad checksums, in sync",
        "bad_format": "has no label and tab",
    },
    "pylontech": {
        "silence": "no reply within 0.3s",
        "drip": "partial reply within 0.3s",
        "truncated": "partial reply within 0.3s",
        "garbage": "pylontech: ",
        "echo": "the line echoed the request",
        "bad_checksum": "pylontech: bad CHKSUM",
        "bad_format": "pylontech: bad LCHKSUM",
        "refused": "RTN 0x91 (internal communication error)",
    },
}


def _device(dev_id, port, extra, interval, timeout):
    d = {"id": dev_id, "interval": interval, "timeout": timeout, "jitter": 0.1}
    d["serial"] = {"port": port, "read_timeout": 0.3}
    d.update(extra)
    return d


class Timed:
    """Wraps a driver's poll to record when each poll started."""

    def __init__(self, driver):
        self.driver = driver
        self.starts = []
        orig = driver.poll

        async def poll(budget_s):
            self.starts.append(time.monotonic())
            return await orig(budget_s)

        driver.poll = poll


async def _wait(cond, limit):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return False


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_fault_goes_stale_with_a_reason_and_recovers(kind):
    emu_cls, drv_cls, extra, emu_kw = KINDS[kind]
    skip = NOT_STALE.get(kind, ())
    faults = [f for f in COMMON_FAULTS + emu_cls.PROTOCOL_FAULTS if f not in skip]
    assert set(faults) == set(REASONS[kind]), "every fault mode has an expected reason"
    got = {}
    recovered = {}
    interval_b = INTERVAL_B.get(kind, 0.25)
    max_gap_b = interval_b * 1.1 + 0.3

    async def go(a, b):
        # A short commit interval keeps readings moving; backoff_max keeps retries of the faulty
        # device quick so each fault's recovery is seen within the test's time.
        loop = Loop("site-test", MemoryQueue(), lambda: 0.5, Log(write=lambda s: None),
                    commit_interval=0.05, backoff_max=0.6)  # fmt: skip
        dev_a = _device("a", a.path, extra, 0.3, BUDGET)
        dev_b = _device("b", b.path, extra, interval_b, 1.0)
        loop.add_device(dev_a, drv_cls(dev_a))
        timed = Timed(drv_cls(dev_b))
        loop.add_device(dev_b, timed.driver)
        task = asyncio.ensure_future(loop.run())
        st_a, st_b = loop.sched.state("a"), loop.sched.state("b")
        b_stale = []
        try:
            assert await _wait(lambda: st_a.last_ok is not None, 5), st_a.reason
            for fault in faults:
                a.set_fault(fault)
                await _wait(lambda: st_a.stale, 8)
                got[fault] = st_a.reason
                a.set_fault(None)
                recovered[fault] = await _wait(lambda: not st_a.stale, 8)
                if st_b.stale:
                    b_stale.append(st_b.reason)
        finally:
            loop.stop()
            await task
        return timed.starts, b_stale, loop.last_result["a"]

    with emu_cls(drip_s=0.05, **emu_kw) as a, emu_cls(**emu_kw) as b:
        starts, b_stale, last = asyncio.run(go(a, b))

    for fault in faults:
        reason = got.get(fault)
        assert reason is not None, "%s: the device never went stale" % fault
        assert REASONS[kind][fault] in reason, "%s: %r" % (fault, reason)
        assert recovered[fault], "%s: no recovery after the fault cleared" % fault
    assert last.ok and last.samples
    assert b_stale == []
    gaps = [t2 - t1 for t1, t2 in zip(starts, starts[1:])]
    assert len(starts) > 10
    assert max(gaps) < max_gap_b, "healthy device delayed: max gap %.3fs" % max(gaps)
