"""Our UPS-MIB readings against an independent reader: NUT's snmp-ups driver (Debian nut-snmp),
run once (-d 1) against the same snmpsim recordings, for every UPS recording issue 5 names (eaton,
phoenixtec, huawei, eastpower). Where NUT and we disagree (values the device marks unknown,
Huawei's out-of-spec scales, EAST's extra ".0" after the table index), the test says why."""

import os
import shutil
import subprocess
import tempfile

import pytest

from drivers.snmp import SnmpDriver

from snmp_support import device, poll, sim_fixture

SNMP_UPS = "/lib/nut/snmp-ups"
EAST = "UPS/eastpower-istars-swv053"
RECORDINGS = ["UPS/eaton-93e-80", "UPS/phoenixtec-power", "UPS/huawei-gse200m", EAST]
# NUT variable -> ours, for the names both produce with the same meaning and unit
SAME = (
    "battery.charge",
    "battery.runtime",
    "battery.voltage",
    "battery.temperature",
    "battery.current",
    "output.frequency",
    "ups.mfr",
    "ups.status",
    "ups.firmware",
)


sim = sim_fixture(RECORDINGS)


@pytest.fixture(autouse=True, scope="module")
def nut_installed():
    if not os.path.exists(SNMP_UPS):
        pytest.fail(f"{SNMP_UPS} is missing: apt-get install nut-snmp")


def nut(sim, recording):
    d = tempfile.mkdtemp(prefix="nut-")
    try:
        env = dict(os.environ, NUT_STATEPATH=d, NUT_CONFPATH=d, NUT_ALTPIDPATH=d)
        cmd = [
            SNMP_UPS,
            "-s",
            "ups",
            "-d",
            "1",
            "-u",
            "root",
            "-x",
            f"port=127.0.0.1:{sim.port}",
            "-x",
            "community=" + recording,
            "-x",
            "mibs=ietf",
            "-x",
            "snmp_version=v2c",
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    finally:
        shutil.rmtree(d, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    values = {}
    for line in out.stdout.splitlines():
        if ": " in line:
            k, v = line.split(": ", 1)
            values[k] = v
    return values


def ours(sim, recording):
    # UPS-MIB alone, as NUT's "ietf" mapping reads it (not the Huawei vendor view)
    _, s = poll(SnmpDriver, device(sim, recording, dev_id="u", profile="ups-mib"))
    return {m: v for m, (v, _u) in s.items()}


def same(a, b):
    if isinstance(a, str):
        return a == b
    return float(b) == pytest.approx(a)


@pytest.mark.parametrize("recording", RECORDINGS[:2])
def test_agrees_with_nut(sim, recording):
    theirs, mine = nut(sim, recording), ours(sim, recording)
    compared = [k for k in SAME if k in theirs and k in mine]
    assert len(compared) >= 5, (sorted(theirs), sorted(mine))
    for k in compared:
        assert same(mine[k], theirs[k]), (k, mine[k], theirs[k])
    assert mine.get("ups.model") == (theirs.get("device.model") or None)  # '' -> no sample
    if "input.voltage" in theirs:
        assert same(mine["input.voltage"], theirs["input.voltage"])


def test_where_we_differ_from_nut_on_purpose(sim):
    rec = "UPS/huawei-gse200m"
    theirs, mine = nut(sim, rec), ours(sim, rec)
    # The device answers -1 ("unknown"); NUT passes it on as a value, we leave it out.
    assert theirs["battery.charge"] == "-1" and "battery.charge" not in mine
    assert theirs["battery.runtime"] == "-60" and "battery.runtime" not in mine
    # 0.01 Hz / 0.1 V on the wire: NUT reads 500 Hz and 2369 V, we rescale for this vendor.
    assert float(theirs["input.frequency"]) == 500 and mine["input.frequency"] == 50.0
    assert float(theirs["input.voltage"]) == 2369 and mine["input.voltage"] == 236.9
    for k in ("battery.voltage", "ups.load", "ups.status", "ups.mfr"):
        assert same(mine[k], theirs[k]), k


def test_eastpower_three_phase_with_nut(sim):
    """EAST iStars (EA9080, 80 kVA, three-phase): the five values issue 5 point 4 names."""
    theirs, mine = nut(sim, EAST), ours(sim, EAST)
    rec = sim.expected(EAST)
    # battery.charge: upsEstimatedChargeRemaining 100 %; both read it as is.
    assert rec["1.3.6.1.2.1.33.1.2.4.0"][1] == "100"
    assert same(mine["battery.charge"], theirs["battery.charge"]) and mine["battery.charge"] == 100
    # battery.voltage: upsBatteryVoltage is 0.1 V on the wire (2130 -> 213 V, a 180-cell string
    # of this size); both apply the RFC 1628 scale.
    assert rec["1.3.6.1.2.1.33.1.2.5.0"][1] == "2130"
    assert (
        same(mine["battery.voltage"], theirs["battery.voltage"]) and mine["battery.voltage"] == 213
    )
    # battery.runtime: upsEstimatedMinutesRemaining is 0 while on line with a full battery. Odd,
    # but it is what the device sends and 0 is not an RFC 1628 "unknown" marker, so both report
    # 0 (NUT in seconds after its x60, we likewise).
    assert rec["1.3.6.1.2.1.33.1.2.3.0"][1] == "0"
    assert (
        same(mine["battery.runtime"], theirs["battery.runtime"]) and mine["battery.runtime"] == 0
    )
    # Output source / status: upsOutputSource = normal(3). NUT turns it into ups.status "OL" and
    # publishes no source variable; we publish both output.source and the NUT-style ups.status.
    assert rec["1.3.6.1.2.1.33.1.4.1.0"][1] == "3"
    assert theirs["ups.status"] == "OL" and mine["ups.status"] == "OL"
    assert mine["output.source"] == "normal" and "output.source" not in theirs
    # input.voltage: DIFFERENCE, explained. This firmware puts an extra ".0" after the row index
    # of every table cell (upsInputVoltage.1.0, not upsInputVoltage.1). NUT's ietf mapping GETs
    # the exact instance upsInputVoltage.1 (and .2, .3 for its three-phase names), gets
    # noSuchInstance and publishes no input voltage at all (nor input.frequency, output.voltage,
    # ups.load). We parse table columns by prefix and take the row from the first index
    # component, so we read the phases the recording holds: 236, 236, 234 V.
    phases = [rec["1.3.6.1.2.1.33.1.3.3.1.3.%d.0" % n][1] for n in (1, 2, 3)]
    assert phases == ["236", "236", "234"]
    assert "1.3.6.1.2.1.33.1.3.3.1.3.1" not in rec  # the instance NUT asks for does not exist
    assert not [
        k for k in theirs if k.startswith("input.") and "voltage" in k and "nominal" not in k
    ]
    assert [mine["input.voltage.l%d" % n] for n in (1, 2, 3)] == [236, 236, 234]
    assert mine["input.voltage"] == 236  # phase 1, as for single-phase devices
    # Where both do read a value, they agree (nominal values and the like only NUT publishes).
    for k in ("output.frequency", "battery.temperature", "battery.current", "ups.mfr",
              "ups.firmware", "ups.model"):  # fmt: skip
        theirs_k = theirs.get(k) if k != "ups.model" else theirs.get("device.model")
        assert same(mine[k], theirs_k.strip() if isinstance(mine[k], str) else theirs_k), k
