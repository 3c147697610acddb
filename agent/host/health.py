"""The agent's own health on the host, polled like a device (CPython; Linux /proc and /sys).

    drv = HealthDriver({"id": "agent"}, data_dir, queue=q, uplink=up, clock=clock, budget_bytes=b)
    loop.add_device({"id": "agent", "interval": 60, "timeout": 5}, drv)

Samples (registry names): agent.cpu, agent.memory, agent.disk_used (the filesystem holding the data
directory), agent.temperature (SoC, where the board exposes it), agent.rss (this process), plus the
portable part (agent/core/selfhealth.py): agent.uptime, agent.queue.depth/bytes, the store's use of
its budget, agent.uplink.connected, whether the clock is trusted.

The figures are read where psutil reads them on Linux, with psutil's definitions: CPU is the
system's busy share since the previous poll from /proc/stat (idle and iowait are not busy; the
first poll after start only primes the counter, so it is left out), memory is 1 - MemAvailable /
MemTotal from /proc/meminfo, disk use is used / (used + free to users) from os.statvfs, RSS is
/proc/self/statm. Reading them directly saves the daemon psutil's import (about 1 MB of RSS,
bench/cost_memory.py). Where /proc is absent (a developer's Mac) the same figures come from
psutil, imported only then. A poll costs microseconds and never sleeps.
"""

import os

from agent.core import selfhealth
from drivers.base import BETA, Driver

# Where SoC temperature lives: hwmon sensor names in order of preference, then thermal zones.
TEMP_SENSORS = ("cpu_thermal", "soc_thermal", "coretemp", "k10temp", "cpu-thermal")
THERMAL_ZONES = ("/sys/class/thermal/thermal_zone0/temp",)
HWMON = "/sys/class/hwmon"
PROC = "/proc"
PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _read(path):
    with open(path) as f:
        return f.read()


def _hwmon_temperatures(root=HWMON):
    """{sensor name: degrees C of its first temperature input} from sysfs hwmon."""
    found = {}
    try:
        entries = sorted(os.listdir(root))
    except OSError:
        return found
    for entry in entries:
        d = os.path.join(root, entry)
        try:
            name = _read(os.path.join(d, "name")).strip()
            inputs = sorted(f for f in os.listdir(d) if f.startswith("temp") and
                            f.endswith("_input"))  # fmt: skip
            if inputs and name not in found:
                found[name] = int(_read(os.path.join(d, inputs[0])).strip()) / 1000.0
        except (OSError, ValueError):
            continue
    return found


def soc_temperature(sensors=TEMP_SENSORS, zones=THERMAL_ZONES, hwmon=HWMON):
    """Degrees C, or None when the board exposes no temperature."""
    if sensors:
        found = _hwmon_temperatures(hwmon)
        for name in sensors:
            if name in found:
                return found[name]
    for path in zones:
        try:
            return int(_read(path).strip()) / 1000.0  # millidegrees
        except (OSError, ValueError):
            continue
    return None


def cpu_times(proc=None):
    """(busy, total) jiffies of the whole system from /proc/stat, as psutil counts them: guest
    time is already inside user and nice, idle and iowait are not busy."""
    fields = [int(x) for x in _read((proc or PROC) + "/stat").split("\n", 1)[0].split()[1:]]
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal
    return total - fields[3] - fields[4], total


def memory_percent(proc=None):
    info = {}
    for line in _read((proc or PROC) + "/meminfo").splitlines():
        key, _, rest = line.partition(":")
        info[key] = int(rest.split()[0])
    total = info["MemTotal"]
    return round((total - info["MemAvailable"]) * 100.0 / total, 1)


def disk_percent(path):
    st = os.statvfs(path)
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    free = st.f_bavail * st.f_frsize
    return round(used * 100.0 / (used + free), 1) if used + free else 0.0


def rss_bytes(proc=None):
    return int(_read((proc or PROC) + "/self/statm").split()[1]) * PAGE


class _ProcFigures:
    """System figures from /proc (Linux)."""

    def __init__(self):
        self._last = None

    def cpu(self):
        """Busy % since the previous call; None on the first."""
        now, last = cpu_times(), self._last
        self._last = now
        if last is None:
            return None
        if now[1] <= last[1]:  # within one tick: nothing measured (psutil says 0.0 too)
            return 0.0
        return round((now[0] - last[0]) * 100.0 / (now[1] - last[1]), 1)

    memory = staticmethod(memory_percent)
    disk = staticmethod(disk_percent)
    rss = staticmethod(rss_bytes)


class _PsutilFigures:
    """The same figures from psutil, where there is no /proc."""

    def __init__(self):
        import psutil

        self.ps = psutil
        self.proc = psutil.Process(os.getpid())
        self._primed = False

    def cpu(self):
        cpu = self.ps.cpu_percent(None)
        primed, self._primed = self._primed, True
        return float(cpu) if primed else None

    def memory(self):
        return float(self.ps.virtual_memory().percent)

    def disk(self, path):
        return float(self.ps.disk_usage(path).percent)

    def rss(self):
        return int(self.proc.memory_info().rss)


def figures():
    return _ProcFigures() if os.path.exists(PROC + "/self/statm") else _PsutilFigures()


class HealthDriver(Driver):
    INFO = {
        "name": "health",
        "version": "0.2",
        "maturity": BETA,
        "transport": "none",
        "description": "the agent's own health: CPU, memory, disk, SoC temperature, RSS, queue",
    }

    def __init__(self, device, data_dir, queue=None, uplink=None, clock=None, budget_bytes=None,
                 zones=THERMAL_ZONES):  # fmt: skip
        Driver.__init__(self, device)
        self.data_dir = data_dir
        self.queue = queue
        self.uplink = uplink
        self.clock = clock
        self.budget_bytes = budget_bytes
        self.zones = zones
        self.fig = figures()

    async def read(self):
        out = []
        cpu = self.fig.cpu()
        if cpu is not None:
            out.append(("agent.cpu", float(cpu), "%"))
        out.append(("agent.memory", float(self.fig.memory()), "%"))
        try:
            out.append(("agent.disk_used", float(self.fig.disk(self.data_dir)), "%"))
        except OSError:
            pass  # data dir missing: the store reports that; disk use is unknown
        t = soc_temperature(zones=self.zones)
        if t is not None:
            out.append(("agent.temperature", round(t, 1), "C"))
        out.append(("agent.rss", self.fig.rss(), "B"))
        out.extend(
            selfhealth.agent_samples(self.queue, self.uplink, self.clock, self.budget_bytes)
        )
        return out
