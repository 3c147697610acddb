"""Rig and scenario files (hil/drill/spec.py): the shipped ones load, mistakes are named with the
file and key, durations read as people write them, and `for` unrolls into its undo."""

import pytest

from hil.drill.rigsite import site_config, to_toml
from hil.drill.spec import SpecError, duration, load_rig, load_scenario

PAIRS = (
    ("hil/rigs/bts-emulated.toml", "hil/scenarios/storm-short.toml"),
    ("hil/rigs/bts-hardened.toml", "hil/scenarios/storm-short.toml"),
    ("hil/rigs/bts-hardened.toml", "hil/scenarios/typhoon-72h.toml"),
    ("hil/rigs/wifi-emulated.toml", "hil/scenarios/wifi-evening.toml"),
    ("hil/rigs/wifi-real-ups.toml", "hil/scenarios/wifi-evening.toml"),
)


def test_durations():
    errors = []
    assert duration("90", "x", errors) == 0.0 and errors  # a number without a unit, as text
    errors = []
    assert duration(90, "x", errors) == 90.0
    assert duration("45s", "x", errors) == 45.0
    assert duration("1h30m", "x", errors) == 5400.0
    assert duration("1.5h", "x", errors) == 5400.0
    assert duration("3d", "x", errors) == 259200.0
    assert duration("-10m", "x", errors, signed=True) == -600.0
    assert errors == []
    duration("-10m", "events[3].for", errors)
    duration("2 hours", "events[4].at", errors)
    duration(True, "events[5].at", errors)
    assert errors[0] == 'events[3].for: a duration here has no sign, got \'-10m\''
    assert errors[1].startswith("events[4].at: cannot read duration '2 hours'")
    assert errors[2].startswith("events[5].at: expected a duration")


@pytest.mark.parametrize("rig_path, scn_path", PAIRS)
def test_shipped_rigs_and_scenarios_load(rig_path, scn_path):
    rig = load_rig(rig_path)
    scn = load_scenario(scn_path, rig)
    assert scn.events == sorted(scn.events, key=lambda e: e.t)
    assert all(0 <= e.t <= scn.duration for e in scn.events)


def test_a_real_device_is_an_edit_of_the_rig(tmp_path):
    rig = load_rig("hil/rigs/wifi-real-ups.toml")
    assert rig.real_devices == ["ups"]
    ups = rig.device("ups")
    assert ups["agent"]["serial"]["port"] == "/dev/ttyUSB0" and "emulator" not in ups

    class Site:  # what RigSite gives the config: where each emulator listens
        where = {"router": {"snmp": {"host": "127.0.0.1", "port": 16161}}}

    links = {"fibre": {"up": True}}
    brokers = {b["name"]: ("10.77.3.2", 1883) for b in rig.brokers}
    cfg = site_config(rig, Site(), brokers, links, str(tmp_path / "data"))
    text = to_toml(cfg)
    assert 'port = "/dev/ttyUSB0"' in text
    # the agent's own config checker takes what the drill writes
    import tomllib

    from agent.core.config.validate import validate

    checked = validate(tomllib.loads(text))
    assert [d["id"] for d in checked.devices] == [d["id"] for d in rig.devices]


def _write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_rig_mistakes_are_named(tmp_path):
    p = _write(tmp_path, "bad-rig.toml", """
[rig]
name = "x"
[agent]
kind = "esp8266"
powered_by = "nothing"
[[devices]]
id = "ups"
emulator = "apc"
[[devices]]
id = "plant"
emulator = "eltek"
real = true
agent = { driver = "snmp" }
[[brokers]]
name = "b"
link = "fibre"
""")
    with pytest.raises(SpecError) as e:
        load_rig(p)
    text = str(e.value)
    assert p + ": rig.site_id: expected a non-empty string" in text
    assert "agent.kind: expected \"pi\" or \"board\"" in text
    assert "devices[0].emulator: no emulator 'apc'" in text
    assert "devices[0].agent: expected a table" in text
    assert "devices[1]: give exactly one of emulator" in text
    assert "agent.powered_by: no device 'nothing'" in text
    assert "[[links]]: a rig needs at least one link" in text
    assert "brokers[0].link: no link 'fibre'" in text


def test_scenario_mistakes_are_named(tmp_path):
    rig = load_rig("hil/rigs/bts-emulated.toml")
    p = _write(tmp_path, "bad-scn.toml", """
[scenario]
name = "x"
duration = "2h"
scale = 0.5
[links.microwave]
up = true
[links.satellite]
budget_window = "week"
[[events]]
at = "1h"
do = "flood"
[[events]]
at = "1h"
do = "link_down"
link = "lte"
[[events]]
at = "3h"
do = "mains_off"
[[events]]
at = "1h"
do = "mains_on"
for = "5m"
[[events]]
at = "30m"
do = "device_fault"
device = "plant"
""")
    with pytest.raises(SpecError) as e:
        load_scenario(p, rig)
    text = str(e.value)
    assert "scenario.scale: expected a number >= 1" in text
    assert "links.microwave: the rig hil/rigs/bts-emulated.toml has no link 'microwave'" in text
    assert "links.satellite.budget_window: expected \"hour\" or \"day\"" in text
    assert "events[0].do: expected one of mains_off" in text
    assert "events[1].link: the rig has no link 'lte'" in text
    assert "events[3].for: mains_on has no undo" in text
    assert "events[4].fault: device_fault needs it" in text
    assert "events[2]: at 10800s, after the scenario's end (7200s)" in text


def test_for_unrolls_into_the_undo():
    rig = load_rig("hil/rigs/bts-emulated.toml")
    scn = load_scenario("hil/scenarios/storm-short.toml", rig)
    fibre = [(e.t, e.do) for e in scn.events if e.args.get("link") == "fibre"]
    assert fibre == [(5400.0, "link_down"), (23400.0, "link_up")]
    jump = [e for e in scn.events if e.do in ("clock_jump", "clock_back")]
    got = [(e.do, e.args.get("by_s")) for e in jump]
    assert got == [("clock_jump", 600.0), ("clock_back", None)]


def test_a_rig_with_real_hardware_runs_in_real_time(tmp_path):
    from hil.drill.runner import Drill

    rig = load_rig("hil/rigs/wifi-real-ups.toml")
    scn = load_scenario("hil/scenarios/wifi-evening.toml", rig)
    assert scn.scale == 120
    d = Drill(rig, scn, str(tmp_path), agent_kind="pi")
    assert d.realtime and d.scale == 1.0  # a real UPS cannot be hurried
    emu = load_rig("hil/rigs/wifi-emulated.toml")
    d = Drill(emu, load_scenario("hil/scenarios/wifi-evening.toml", emu), str(tmp_path))
    assert not d.realtime and d.scale == 120.0
    d = Drill(emu, scn, str(tmp_path), realtime=True)
    assert d.scale == 1.0
