# Second opinion: NUT's blazer_ser reads the same emulated UPS; its values must equal ours.
import asyncio
import os
import subprocess

import pytest

from drivers.megatec import MegatecDriver
from hil.emulators.megatec import MegatecEmulator

BLAZER = "/lib/nut/blazer_ser"

# Our metric -> NUT variable, for values both report.
SAME = {
    "input.voltage": "input.voltage",
    "input.voltage.fault": "input.voltage.fault",
    "output.voltage": "output.voltage",
    "ups.load": "ups.load",
    "input.frequency": "input.frequency",
    "battery.voltage": "battery.voltage",
    "ups.temperature": "ups.temperature",
    "ups.mfr": "ups.mfr",
    "ups.model": "ups.model",
    "ups.firmware": "ups.firmware",
    "ups.rating.current": "input.current.nominal",
    "ups.rating.battery_voltage": "battery.voltage.nominal",
}


def nut_dump(path, tmp_path):
    if not os.access(BLAZER, os.X_OK):
        pytest.fail(
            "NUT's blazer_ser is not installed at %s (apt-get install nut-server)" % BLAZER
        )
    env = dict(os.environ, NUT_STATEPATH=str(tmp_path))
    args = [BLAZER, "-s", "emu", "-x", "port=" + path, "-d", "1"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    p = subprocess.run(args, capture_output=True, text=True, timeout=60, env=env)
    assert p.returncode == 0, p.stderr[-2000:]
    out = {}
    for line in p.stdout.splitlines():
        if ": " in line:
            key, value = line.split(": ", 1)
            out[key] = value
    assert "ups.status" in out, p.stdout + p.stderr[-2000:]
    return out


def ours(path):
    async def go():
        d = MegatecDriver({"id": "ups", "serial": {"port": path}})
        r = await d.poll(5.0)
        await d.close()
        return r

    r = asyncio.run(go())
    assert r.ok, r.error
    return {m: v for m, v, _u in r.samples}


SCENARIOS = {
    "mains_boost": dict(input_voltage=190.0),
    "mains_trim": dict(input_voltage=262.0),
    "battery_low": dict(mains=False, soc=12.0, load=55.0),
    "whole_battery": dict(battery_report="whole", mains=False, soc=60.0),
}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_blazer_ser_agrees(name, tmp_path):
    kw = dict(SCENARIOS[name])
    mains = kw.pop("mains", True)
    soc = kw.pop("soc", None)
    with MegatecEmulator(speed=0, **kw) as ups:  # speed 0: the model holds still
        ups.set_mains(mains)
        if soc is not None:
            ups.set_soc(soc)
        nut = nut_dump(ups.path, tmp_path)
        mine = ours(ups.path)
    for metric, var in SAME.items():
        assert var in nut, (var, nut)
        assert metric in mine, metric
        if isinstance(mine[metric], float):
            assert abs(mine[metric] - float(nut[var])) < 0.006, (metric, mine[metric], nut[var])
        else:
            assert mine[metric] == nut[var], (metric, mine[metric], nut[var])
    assert mine["ups.status"] == nut["ups.status"]
    assert mine["ups.beeper"] == (nut["ups.beeper.status"] == "enabled")
