# SiteMonitor: one call per poll result gives derived readings and events, saves the active set
# only when events happen, and a restart from that file raises nothing twice.
from agent.core import readings as rd
from agent.core.monitor.pipeline import SiteMonitor
from agent.core.store.fsio import MemFs
from agent.core.store.jsonfile import JsonFile

from faketime import trusted_clock


def R(metric, value, device="ups"):
    return rd.Reading("s1", device, metric, value, "", None)


class CountingFile(JsonFile):
    saves = 0

    def save(self, snap):
        CountingFile.saves += 1
        JsonFile.save(self, snap)


def test_record_orders_reachability_device_then_derived_and_persists_on_events():
    fs = MemFs()
    t, c = trusted_clock()
    mon = SiteMonitor("s1", "wifi", c, active_file=CountingFile("/a.json", fs))
    derived, ev = mon.record("ups", True, [R("ups.status", "OL"), R("mains.present", True)])
    assert ev == [] and CountingFile.saves == 0
    assert {r.metric: r.value for r in derived}["site.power_source"] == "mains"
    for _ in range(3):
        t.advance(30)
        derived, ev = mon.record("ups", True, [R("ups.status", "OB"), R("mains.present", False)])
    assert [e["alarm"] for e in ev] == []  # raised on the second OB poll, not again
    assert [a["alarm"] for a in mon.engine.active()] == ["UPS_ON_BATTERY/ups/ups.status"]
    assert CountingFile.saves == 1 and mon.take_changed() and not mon.take_changed()
    for _ in range(3):
        _, ev = mon.record("ups", False, [])
    assert [e["alarm"] for e in ev] == ["DEVICE_UNREACHABLE/ups/agent.device.stale"]
    # Restart from the saved file: nothing is raised again while the UPS stays on battery.
    t2, c2 = trusted_clock("b2")
    mon2 = SiteMonitor("s1", "wifi", c2, active_file=JsonFile("/a.json", fs))
    assert len(mon2.engine.active()) == 2
    t2.advance(30)
    _, ev = mon2.record("ups", True, [R("ups.status", "OB"), R("mains.present", False)])
    assert [(e["event"], e["alarm"]) for e in ev] == [
        ("clear", "DEVICE_UNREACHABLE/ups/agent.device.stale")
    ]
