"""The agent's own health on the host (psutil): figures checked against psutil and the OS."""

import asyncio
import os

import psutil

from agent.core import registry
from agent.core.store.queue import LANE_ROUTINE, MemoryQueue
from agent.host.health import HealthDriver, soc_temperature


class Uplink:
    def state(self):
        return {"connected": True}


def poll(drv):
    r = asyncio.run(drv.poll(5.0))
    assert r.ok, r.error
    return {m: (v, u) for m, v, u in r.samples}


def test_samples_match_psutil_and_use_registry_names(tmp_path):
    q = MemoryQueue()
    for i in range(3):
        q.append(LANE_ROUTINE, {"v": i})
    drv = HealthDriver({"id": "agent"}, str(tmp_path), queue=q, uplink=Uplink(), zones=())
    first = poll(drv)
    assert "agent.cpu" not in first  # the first call only primes psutil's CPU counter
    got = poll(drv)
    assert 0.0 <= got["agent.cpu"][0] <= 100.0 and got["agent.cpu"][1] == "%"
    assert abs(got["agent.memory"][0] - psutil.virtual_memory().percent) < 5.0
    assert abs(got["agent.disk_used"][0] - psutil.disk_usage(str(tmp_path)).percent) < 1.0
    rss = psutil.Process(os.getpid()).memory_info().rss
    assert abs(got["agent.rss"][0] - rss) < 0.2 * rss and got["agent.rss"][1] == "B"
    assert got["agent.queue.depth"] == (3, "")
    assert got["agent.uplink.connected"] == (True, "")
    for m in got:
        assert registry.is_known(m), m
        assert registry.unit_of(m) in ("", got[m][1]), m


def test_soc_temperature_from_a_thermal_zone_or_left_out(tmp_path):
    zone = tmp_path / "temp"
    zone.write_text("48750\n")  # millidegrees, as /sys/class/thermal/thermal_zone0/temp
    assert soc_temperature(sensors=(), zones=(str(zone),)) == 48.75
    drv = HealthDriver({"id": "agent"}, str(tmp_path), zones=(str(zone),))
    assert poll(drv)["agent.temperature"] == (48.8, "C")
    zone.write_text("garbage\n")
    missing = str(tmp_path / "nope")
    assert soc_temperature(sensors=(), zones=(str(zone), missing)) is None
    assert "agent.temperature" not in poll(HealthDriver({"id": "a"}, str(tmp_path), zones=()))


def test_missing_data_dir_leaves_disk_out_and_still_polls(tmp_path):
    got = poll(HealthDriver({"id": "agent"}, str(tmp_path / "not-there"), zones=()))
    assert "agent.disk_used" not in got and "agent.rss" in got


def test_hwmon_sensor_is_preferred_over_a_thermal_zone(tmp_path):
    hw = tmp_path / "hwmon"
    for n, name, milli in (("hwmon0", "acpitz", "30000"), ("hwmon1", "cpu_thermal", "51230")):
        (hw / n).mkdir(parents=True)
        (hw / n / "name").write_text(name + "\n")
        (hw / n / "temp1_input").write_text(milli + "\n")
    (hw / "hwmon2").mkdir()  # no name file: skipped
    zone = tmp_path / "temp"
    zone.write_text("40000\n")
    assert soc_temperature(zones=(str(zone),), hwmon=str(hw)) == 51.23
    assert soc_temperature(sensors=("acpitz",), zones=(str(zone),), hwmon=str(hw)) == 30.0
    assert soc_temperature(sensors=("k10temp",), zones=(str(zone),), hwmon=str(hw)) == 40.0


def test_cpu_is_the_busy_share_between_two_reads_of_proc_stat(tmp_path, monkeypatch):
    from agent.host import health

    stat = tmp_path / "stat"
    # user nice system idle iowait irq softirq steal guest guest_nice
    stat.write_text("cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3\n")
    monkeypatch.setattr(health, "PROC", str(tmp_path))
    assert health.cpu_times(str(tmp_path)) == (200, 1000)
    fig = health._ProcFigures()
    assert fig.cpu() is None  # primes
    stat.write_text("cpu  150 0 150 1000 200 0 0 0 0 0\n")  # +100 busy of +500
    assert fig.cpu() == 20.0
    assert fig.cpu() == 0.0  # no tick since: nothing measured


def test_without_proc_the_figures_come_from_psutil(tmp_path, monkeypatch):
    from agent.host import health

    monkeypatch.setattr(health, "PROC", str(tmp_path / "no-proc"))
    drv = HealthDriver({"id": "agent"}, str(tmp_path), zones=())
    assert isinstance(drv.fig, health._PsutilFigures)
    assert "agent.cpu" not in poll(drv)
    got = poll(drv)
    assert 0.0 <= got["agent.cpu"][0] <= 100.0
    assert abs(got["agent.memory"][0] - psutil.virtual_memory().percent) < 5.0
    rss = psutil.Process(os.getpid()).memory_info().rss
    assert abs(got["agent.rss"][0] - rss) < 0.2 * rss
