"""The drill's report (hil/drill/report.py) on a small run written by hand: each criterion passes
on good data and fails on the fault it is there to catch."""

import json

import pytest

from hil.drill import report

ORIGIN = 1_800_000_000.0
EPOCH = 1_790_000_000.0
SCALE = 100.0


def rt(t):  # real time of site second t
    return ORIGIN + t / SCALE


def rec(seq, t, metric="x", device="d", value=1.0, **kw):
    r = {"site": "s", "device": device, "metric": metric, "value": value, "unit": "",
         "time": EPOCH + t, "quality": "good", "seq": seq}  # fmt: skip
    r.update(kw)
    return r


class RunDir:
    def __init__(self, path, budget=None):
        self.path = path
        links = {"fibre": {"up": True}}
        if budget:
            links["fibre"].update(budget_bytes=budget, budget_window="hour")
        self.meta = {"rig": "r.toml", "rig_name": "r", "scenario": "s.toml",
                     "scenario_name": "s", "agent": "pi", "site_id": "s", "scale": SCALE,
                     "origin": ORIGIN, "epoch": EPOCH, "duration_s": 7200.0, "drain_s": 0.0,
                     "realtime": False, "links_mode": "netns", "network": "test",
                     "shaping": "none", "disk": "test", "links": links,
                     "brokers": [{"name": "b", "link": "fibre"}], "powered_by": "plant",
                     "devices": [], "started": "now"}  # fmt: skip
        self.events = [{"t": 0.0, "rt": rt(0), "do": "agent_boot", "pid": 1}]
        self.truth = []
        self.noc = []
        self.log = ["### drill: boot 1 at real %f" % rt(0),
                    "t INFO uplink: started brokers=1 confirmed_seq=-1 format=json"]  # fmt: skip

    def message(self, t, topic, records, nbytes=100):
        self.noc.append({"rt": rt(t), "broker": "b", "topic": topic, "retain": False,
                         "bytes": nbytes, "records": records})  # fmt: skip

    def write(self):
        p = self.path
        (p / "run.json").write_text(json.dumps(self.meta))
        for name, rows in (("events", self.events), ("truth", self.truth), ("noc", self.noc)):
            (p / (name + ".jsonl")).write_text("".join(json.dumps(r) + "\n" for r in rows))
        (p / "agent.log").write_text("\n".join(self.log) + "\n")
        (p / "backlog.jsonl").write_text("")
        return report.evaluate(str(p))[1]


def test_loss_counts_confirmed_records_missing_upstream(tmp_path):
    d = RunDir(tmp_path)
    d.log.append("t DEBUG uplink: stored confirmed_seq=9")
    d.message(10, "data", [rec(s, s) for s in range(10) if s != 4])
    v = d.write()
    assert v["loss"]["pass"] is False and v["loss"]["lost"] == 1
    assert v["loss"]["missing_first"] == [4]
    # the store declared one record dropped: not a loss
    d.message(11, "data", [rec(10, 11, metric="agent.queue.dropped", device="agent", value=1)])
    d.log.append("t DEBUG uplink: stored confirmed_seq=10")
    v = d.write()
    assert v["loss"]["pass"] is True and v["loss"]["declared_dropped"] == 1


def test_alarm_latency_from_the_usable_link(tmp_path):
    d = RunDir(tmp_path)
    d.log.append("t DEBUG uplink: stored confirmed_seq=1")
    # the link is down from t=1000 to t=5000 (10 s to 50 s of real time)
    d.events += [{"t": 1000.0, "rt": rt(1000), "do": "link_down", "link": "fibre"},
                 {"t": 5000.0, "rt": rt(5000), "do": "link_up", "link": "fibre"}]  # fmt: skip
    alarm = rec(0, 2000, alarm="A/d/x", event="raise")
    d.message(5000 + 100 * 25, "alarm", [alarm])  # 25 real seconds after the link is back
    v = d.write()
    a = v["alarms"]["deliveries"][0]
    assert a["latency_s"] == pytest.approx(25.0)
    assert v["alarms"]["pass"] is True
    d.noc[-1]["rt"] = rt(5000) + 31.0
    v = d.write()
    assert v["alarms"]["pass"] is False and v["alarms"]["late"][0]["latency_s"] == 31.0


def test_budget_counts_routine_over_the_limit(tmp_path):
    d = RunDir(tmp_path, budget=1000)
    d.log.append("t DEBUG uplink: stored confirmed_seq=3")
    d.message(10, "alarm", [rec(0, 1, alarm="A", event="raise")], nbytes=600)
    d.message(20, "data", [rec(1, 2)], nbytes=300)
    v = d.write()
    assert v["budget"]["pass"] is True  # 900 of 1000
    d.message(30, "alarm", [rec(2, 3, alarm="A", event="clear")], nbytes=300)
    v = d.write()
    assert v["budget"]["pass"] is True  # alarms may overdraw: 1200, but no routine after
    d.message(40, "data", [rec(3, 4)], nbytes=50)
    v = d.write()
    assert v["budget"]["pass"] is False
    assert v["budget"]["brokers"][0]["routine_over_limit"] == 1


def test_runtime_estimate_against_the_model(tmp_path):
    d = RunDir(tmp_path)
    d.log.append("t DEBUG uplink: stored confirmed_seq=40")
    # on battery from t=0 to the cut-off at t=4000; truth: runtime_left = 4000 - t
    for t in range(0, 4001, 500):
        st = {"mains": False, "on_battery": t < 4000, "discharging": t < 4000, "soc": 50.0,
              "low_battery": False, "cut_off": t >= 4000,
              "runtime_left": (4000.0 - t) if t < 4000 else None}  # fmt: skip
        d.truth.append({"t": float(t), "rt": rt(t), "power": {"plant": st}, "links": {},
                        "brokers": {}, "agent": True})  # fmt: skip
    d.truth.insert(0, dict(d.truth[0], t=-1.0, power={"plant": dict(
        d.truth[0]["power"]["plant"], on_battery=False, mains=True)}))  # fmt: skip
    good = [rec(i, 2000 + 50 * i, "site.runtime", "site", value=(4000 - 2000 - 50 * i) * 1.05)
            for i in range(30)]  # fmt: skip
    d.message(3990, "data", good)
    v = d.write()
    assert v["runtime"]["pass"] is True
    assert v["runtime"]["worst_error"] == pytest.approx(0.05, abs=0.001)
    d.message(3995, "data", [rec(30, 3000, "site.runtime", "site", value=1300.0)])  # 30 % over
    v = d.write()
    assert v["runtime"]["pass"] is False


def test_memory_growth_within_a_boot(tmp_path):
    d = RunDir(tmp_path)
    d.log.append("t DEBUG uplink: stored confirmed_seq=40")
    flat = [rec(i, 60 * i, "agent.rss", "agent", value=50_000_000) for i in range(40)]
    d.message(100, "data", flat)
    assert d.write()["memory"]["pass"] is True
    d.noc = []
    leak = [rec(i, 60 * i, "agent.rss", "agent", value=50_000_000 + 400_000 * i)
            for i in range(40)]  # fmt: skip
    d.message(100, "data", leak)
    m = d.write()["memory"]
    assert m["pass"] is False and m["growth"] > 0.1


def test_summary_and_plot_are_written(tmp_path):
    d = RunDir(tmp_path)
    d.log.append("t DEBUG uplink: stored confirmed_seq=0")
    d.message(1, "data", [rec(0, 1)])
    d.truth.append({"t": 0.0, "rt": rt(0), "power": {}, "links": {"fibre": True},
                    "brokers": {"b": True}, "agent": True})  # fmt: skip
    d.write()
    v = report.build(str(tmp_path))
    text = (tmp_path / "summary.md").read_text()
    assert "| 0 confirmed readings lost | PASS |" in text
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((tmp_path / "summary.json").read_text())["pass"] == v["pass"]
