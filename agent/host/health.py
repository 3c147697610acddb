"""The agent's own health on the host, polled like a device (CPython, psutil).

    drv = HealthDriver({"id": "agent"}, data_dir, queue=q, uplink=up, clock=clock, budget_bytes=b)
    loop.add_device({"id": "agent", "interval": 60, "timeout": 5}, drv)

Samples (registry names): agent.cpu, agent.memory, agent.disk_used (the filesystem holding the data
directory), agent.temperature (SoC, where the board exposes it), agent.rss (this process), plus the
portable part (agent/core/selfhealth.py): agent.uptime, agent.queue.depth/bytes, the store's use of
its budget, agent.uplink.connected, whether the clock is trusted.

CPU: psutil.cpu_percent(None) is the load since the previous call (the first call after start
primes it and reads 0.0, so it is left out), which makes a poll cost microseconds and never sleep.
"""

import os

import psutil

from agent.core import selfhealth
from drivers.base import BETA, Driver

# Where SoC temperature lives: psutil's sensor names in order of preference, then sysfs zones.
TEMP_SENSORS = ("cpu_thermal", "soc_thermal", "coretemp", "k10temp", "cpu-thermal")
THERMAL_ZONES = ("/sys/class/thermal/thermal_zone0/temp",)


def soc_temperature(sensors=TEMP_SENSORS, zones=THERMAL_ZONES):
    """Degrees C, or None when the board exposes no temperature."""
    read = getattr(psutil, "sensors_temperatures", None)
    if read is not None:
        try:
            found = read()
        except Exception:
            found = {}
        for name in sensors:
            if found.get(name):
                return float(found[name][0].current)
    for path in zones:
        try:
            with open(path) as f:
                return int(f.read().strip()) / 1000.0  # millidegrees
        except (OSError, ValueError):
            continue
    return None


class HealthDriver(Driver):
    INFO = {
        "name": "health",
        "version": "0.1",
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
        self._proc = psutil.Process(os.getpid())
        self._primed = False

    async def read(self):
        out = []
        cpu = psutil.cpu_percent(None)
        if self._primed:
            out.append(("agent.cpu", float(cpu), "%"))
        self._primed = True
        out.append(("agent.memory", float(psutil.virtual_memory().percent), "%"))
        try:
            out.append(("agent.disk_used", float(psutil.disk_usage(self.data_dir).percent), "%"))
        except OSError:
            pass  # data dir missing: the store reports that; disk use is unknown
        t = soc_temperature(zones=self.zones)
        if t is not None:
            out.append(("agent.temperature", round(t, 1), "C"))
        out.append(("agent.rss", int(self._proc.memory_info().rss), "B"))
        out.extend(
            selfhealth.agent_samples(self.queue, self.uplink, self.clock, self.budget_bytes)
        )
        return out
