"""The active-alarm file on a real filesystem: a restart raises nothing twice, and a write cut
short (a stray temporary file, or a torn one) never loses the last complete snapshot."""

import os

from agent.core import readings as rd
from agent.core.clock import Clock
from agent.core.monitor.pipeline import SiteMonitor
from agent.core.store.jsonfile import JsonFile

EPOCH = 1788000000.0


def monitor(path, boot, t):
    c = Clock(boot, mono=lambda: t[0], wall=lambda: 0.0)
    c.trust(EPOCH + t[0], "test")
    return SiteMonitor("s1", "bts", c, active_file=JsonFile(path))


def R(metric, value):
    return rd.Reading("s1", "plant", metric, value, "", None)


def test_restart_from_the_file_and_a_cut_write(tmp_path):
    path = str(tmp_path / "alarms.json")
    t = [0.0]
    m = monitor(path, "b1", t)
    m.record("plant", True, [R("plant.alarm.mains_lost", True)])
    t[0] = 20.0
    _, ev = m.record("plant", True, [R("plant.alarm.mains_lost", True)])
    assert [e["event"] for e in ev] == ["raise"]
    saved = open(path).read()
    # Power is cut while the next snapshot is being written: a torn temporary file is left.
    with open(path + ".tmp", "w") as f:
        f.write('{"v": 1, "active": [')
    t = [5.0]
    m2 = monitor(path, "b2", t)
    assert [a["alarm"] for a in m2.engine.active()] == ["MAINS_LOST/plant/plant.alarm.mains_lost"]
    _, ev = m2.record("plant", True, [R("plant.alarm.mains_lost", True)])
    assert ev == []  # still lost after the restart: not raised again
    assert open(path).read() == saved  # no event, no write
    t[0] = 6.0
    m2.record("plant", True, [R("plant.alarm.mains_lost", False)])
    t[0] = 70.0
    _, ev = m2.record("plant", True, [R("plant.alarm.mains_lost", False)])
    assert [e["event"] for e in ev] == ["clear"]
    assert not os.path.exists(path + ".tmp")  # the next save replaced the torn file
    assert monitor(path, "b3", [0.0]).engine.active() == []
