"""Accelerated site time (agent/core/simtime.py): every process with the same variable agrees,
the scale holds, the step file steps the wall clock but never monotonic time, and the agent's
loop keeps poll budgets in machine time under a scale."""

import asyncio
import os
import subprocess
import sys
import time

import pytest

from agent.core.log import Log
from agent.core.poll.loop import Loop
from agent.core.simtime import SiteTime
from agent.core.store.queue import MemoryQueue
from drivers.base import Driver


def test_parse_and_refuse():
    st = SiteTime.parse("240,1800000000.5,1790000000")
    assert (st.scale, st.origin, st.epoch) == (240.0, 1800000000.5, 1790000000.0)
    assert SiteTime.parse(st.spec()).origin == st.origin
    for bad in ("0.5", "x", "1,2,3,4", ""):
        with pytest.raises(ValueError):
            SiteTime.parse(bad)


def test_scale_and_steps(tmp_path):
    step = tmp_path / "step"
    st = SiteTime(100.0, origin=time.time(), epoch=1790000000.0, step_file=str(step))
    m0, w0 = st.mono(), st.wall()
    time.sleep(0.2)
    m1, w1 = st.mono(), st.wall()
    assert 15.0 <= m1 - m0 <= 40.0 and 15.0 <= w1 - w0 <= 40.0  # 0.2 s x 100, loaded machine
    step.write_text("3600\n")
    st._step_checked = None  # read it now rather than within half a second
    assert st.wall() - w1 >= 3600.0
    assert st.mono() - m1 < 100.0  # monotonic time never steps
    assert abs(st.real_of_site(st.site_of_real(1800000123.0)) - 1800000123.0) < 1e-6


def test_another_process_with_the_same_variable_agrees():
    st = SiteTime(240.0, origin=time.time() - 10.0, epoch=1790000000.0)
    env = dict(os.environ, SITE_AGENT_TIME_SCALE=st.spec())
    code = "from agent.core import simtime; print(simtime.wall()); print(simtime.SCALE)"
    t0 = st.wall()
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, check=True).stdout.split()  # fmt: skip
    t1 = st.wall()
    assert float(out[1]) == 240.0
    assert t0 - 1.0 <= float(out[0]) <= t1 + 1.0  # within the run time of the child
    assert 1790000000.0 + 2300 < t0 < 1790000000.0 + 2500  # 10 s ago at 240x


class Slow(Driver):
    INFO = {"name": "slow", "version": "1", "maturity": "experimental", "transport": "none"}

    def __init__(self, device):
        Driver.__init__(self, device)
        self.budgets = []

    async def open(self):
        pass

    async def close(self):
        pass

    async def read(self):
        await asyncio.sleep(0.05)  # 50 ms of real time: 12 site seconds at 240x
        return [("battery.charge", 50.0, "%")]


def test_loop_keeps_poll_budgets_in_machine_time():
    st = SiteTime(240.0)
    q = MemoryQueue()
    lines = []
    loop = Loop("s", q, lambda: 0.0, Log(write=lines.append), mono=st.mono, wall=st.wall,
                commit_interval=60, scale=240.0)  # fmt: skip
    drv = Slow({"id": "d"})
    loop.add_device({"id": "d", "interval": 60, "timeout": 1.0, "jitter": 0.0}, drv)

    async def run():
        task = asyncio.create_task(loop.run())
        await asyncio.sleep(1.5)  # 360 site seconds: about six polls at a 60 s interval
        loop.stop()
        await task

    asyncio.run(run())
    st_d = loop.sched.state("d")
    # 50 ms polls against a 1 s budget are never "hung", though each lasts 12 site seconds
    assert st_d.errors == 0 and not any("hung" in x for x in lines), lines
    assert 4 <= st_d.polls <= 8, st_d.polls
