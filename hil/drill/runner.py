"""Run one drill: a rig, a scenario, an agent kind; write the raw data for the report (host only).

    Drill(rig, scenario, out_dir, agent_kind="pi").run()   # -> out_dir/summary.md, timeline.png

What it does, in order: make the network (namespaces and links, or the loopback fallback), the
brokers (one mosquitto per rig broker, behind its link), the operations centre's subscriber
(hil/drill/observer.py, in the noc namespace), the devices (emulators on the site clock), the
agent's data directory (a tmpfs of its own when root, so "disk full" is a real ENOSPC), the
agent's site.toml; then the agent boots and the scenario's events are applied at their site
times, while the truth (every power model, link, broker and the agent's power) is sampled.
After the timeline, `drain` more site time passes with no events, the agent is stopped cleanly,
its store's undelivered records are exported, and the report is built (hil/drill/report.py).

Files in out_dir: run.json (what ran, how: scale, origin, link mode), events.jsonl (every event
applied, including the automatic ones: the agent losing power when its supply cuts off),
truth.jsonl, noc.jsonl (the operations centre, raw), agent.log, site.toml, backlog.jsonl.

Coupling: a rig whose [agent] is `powered_by` a device loses the agent (a power cut) when that
device's model cuts off (a plant's LVD opens, a UPS shuts down), and boots it when power is back.

The board agent (agent_kind "board", hil/drill/board.py) differs where a board does: its image
is built from the site.toml and flashed onto a simulated board in the site namespace; its data
is on the board's littlefs (no tmpfs: disk_full is skipped, said in the event), its time comes
from an SNTP server the drill runs on the site's LAN answering with site time (clock jumps step
that server), its end is a power cut, and its store is read off the flash for backlog.jsonl.
"""

import json
import os
import subprocess
import sys
import time

from agent.core.simtime import SiteTime
from hil import netns
from hil.drill import report as report_mod
from hil.drill.agents import make_agent
from hil.drill.datadir import DataDir
from hil.drill.netlab import Brokers, LoopbackLab, NetLab
from hil.drill.observer import ObserverProcess
from hil.drill.rigsite import RigSite, site_config, to_toml
from hil.sntp_server import SntpServer

PREFIX = "site-agent/v1"
TICK_S = 0.2  # real seconds between checks of the timeline and the power coupling
PROGRESS_S = 5.0


class DrillError(RuntimeError):
    pass


def _fmt_h(t):
    return "%5.1fh" % (t / 3600.0)


class Drill:
    def __init__(self, rig, scenario, out_dir, agent_kind="pi", links="auto", scale=None,
                 say=None, realtime=False):  # fmt: skip
        self.rig = rig
        self.scn = scenario
        self.out = os.path.abspath(out_dir)
        self.agent_kind = agent_kind
        self.links_mode = links
        self.say = say or (lambda line: print(line, flush=True))
        scale = scenario.scale if scale is None else float(scale)
        self.realtime = realtime or bool(rig.real_devices)
        self.scale = 1.0 if self.realtime else scale
        self.lab = None
        self.brokers = None  # netlab.Brokers
        self.observer = None
        self.site = None
        self.agent = None
        self.data = None  # DataDir
        self.data_dir = None
        self.time = None
        self.step_file = None
        self.cut_by_scenario = False
        self.cut_by_supply = False
        self.clock_step = 0.0
        self.files = {}
        self.manual = []  # events the operator had to carry out by hand (real devices)
        self.sntp = None  # the board's time server (site LAN)

    # --- output files ---------------------------------------------------------------------
    def _open(self, name):
        f = open(os.path.join(self.out, name), "a")
        self.files[name] = f
        return f

    def _write(self, name, obj):
        f = self.files[name]
        f.write(json.dumps(obj, separators=(",", ":"), sort_keys=True) + "\n")
        f.flush()

    def now(self):
        """Site seconds since the scenario's start."""
        return (time.time() - self.time.origin) * self.time.scale

    def _event(self, do, **args):
        rec = {"t": round(self.now(), 3), "rt": round(time.time(), 3), "do": do}
        rec.update(args)
        self._write("events.jsonl", rec)

    # --- setup ----------------------------------------------------------------------------
    def _make_lab(self):
        ok, why = netns.available()
        if self.links_mode == "netns" and not ok:
            raise DrillError("--links netns asked for, but %s" % why)
        if self.links_mode == "loopback" or not ok:
            why = why or "asked for with --links loopback"
            return LoopbackLab(self.rig.links, why).start()
        return NetLab(self.rig.links).start()

    def _start_observer(self):
        self.observer = ObserverProcess(os.path.join(self.out, "noc.jsonl"))
        brokers = self.brokers.addresses()
        noc = self.lab.place("noc")
        env = dict(os.environ, PYTHONPATH=_repo_root())
        if not self.observer.start(lambda argv: netns.exec_argv(noc, argv), PREFIX,
                                   self.rig.site_id, brokers, env):  # fmt: skip
            raise DrillError("the operations centre's subscriber did not start")

    def _agent_env(self):
        env = dict(os.environ, PYTHONPATH=_repo_root())
        env["SITE_AGENT_TIME_SCALE"] = self.time.spec()
        env["SITE_AGENT_CLOCK_STEP_FILE"] = self.step_file
        return env

    def _site_wall(self):
        """The site's wall clock as the drill steps it: what the board's SNTP server says."""
        return self.time.wall() + self.clock_step

    def _make_agent(self, cfg):
        site_ns = self.lab.place("site")
        cfg_path = os.path.join(self.out, "site.toml")
        board = None
        if self.agent_kind == "board":
            from hil.drill.board import BoardSetupError, board_config

            self.sntp = netns.call_in(site_ns, SntpServer, "127.0.0.1", 0.0,
                                      self._site_wall).start()  # fmt: skip
            try:
                cfg, uarts = board_config(cfg, self.rig, self.site, self.rig.agent["board"],
                                          self.sntp.port, self.out)  # fmt: skip
            except BoardSetupError as e:
                raise DrillError(str(e)) from None
            board = {"scale_spec": self.time.spec(), "site_ns": site_ns,
                     "board": self.rig.agent["board"], "uarts": uarts,
                     "work": os.path.join(self.out, "board")}  # fmt: skip
        with open(cfg_path, "w") as f:
            f.write("# Generated by hil/drill: rig %s, scenario %s, agent %s\n"
                    % (self.rig.name, self.scn.name, self.agent_kind))  # fmt: skip
            f.write(to_toml(cfg))
        if board is not None:
            self.say("drill: building the board image for %s and flashing the simulated board"
                     % board["board"])  # fmt: skip
        return make_agent(self.agent_kind, cfg_path, self._agent_env(),
                          lambda argv: netns.exec_argv(site_ns, argv),
                          os.path.join(self.out, "agent.log"), board=board)  # fmt: skip

    def setup(self):
        os.makedirs(self.out, exist_ok=True)
        for name in ("events.jsonl", "truth.jsonl", "noc.jsonl", "agent.log", "backlog.jsonl"):
            p = os.path.join(self.out, name)
            if os.path.exists(p):
                os.remove(p)
        self._open("events.jsonl")
        self._open("truth.jsonl")
        self.lab = self._make_lab()
        self.say("drill: network: %s" % self.lab.mode)
        self.data = DataDir(self.out, self.agent_kind, self.rig.agent)
        disk = self.data.make()
        self.data_dir = self.data.path
        self.say("drill: agent data: %s" % disk)
        self.step_file = os.path.join(self.out, "clock-step")
        with open(self.step_file, "w") as f:
            f.write("0\n")
        self.brokers = Brokers(self.lab, self.rig.brokers)
        self.brokers.start()  # teardown stops those started when one fails
        self._start_observer()
        # The timeline starts now; the site's wall clock reads the scenario's start (or now).
        epoch = _epoch(self.scn.start) if self.scn.start else None
        self.time = SiteTime(self.scale, origin=time.time() + 2.0, epoch=epoch)
        self.site = RigSite(self.rig, self.lab, clock=self.time.mono).start()
        for name, spec in self.scn.links.items():
            self._apply_link(name, spec)
        cfg = site_config(self.rig, self.site, self.brokers.addresses(), self.scn.links,
                          self.data_dir)  # fmt: skip
        self.agent = self._make_agent(cfg)
        meta = {
            "rig": self.rig.path, "rig_name": self.rig.name, "scenario": self.scn.path,
            "scenario_name": self.scn.name, "agent": self.agent_kind, "site_id": self.rig.site_id,
            "scale": self.scale, "origin": self.time.origin, "epoch": self.time.epoch,
            "duration_s": self.scn.duration, "drain_s": self.scn.drain,
            "board": self.rig.agent.get("board") if self.agent_kind == "board" else None,
            "realtime": self.realtime, "links_mode": self.lab.kind, "network": self.lab.mode,
            "shaping": self.lab.shaping, "disk": disk, "links": self.scn.links,
            "brokers": [{"name": b["name"], "link": b["link"]} for b in self.rig.brokers],
            "powered_by": self.rig.agent.get("powered_by"), "devices": [
                {"id": d["id"], "emulator": d.get("emulator"), "real": bool(d.get("real"))}
                for d in self.rig.devices],
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }  # fmt: skip
        with open(os.path.join(self.out, "run.json"), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)

    # --- events ---------------------------------------------------------------------------
    def _apply_link(self, name, spec):
        shape = {k: spec[k] for k in ("rate_kbit", "delay_ms", "loss_pct") if k in spec}
        up = spec.get("up")
        if self.lab.kind == "loopback":
            if up is not None:
                for b in self.rig.brokers:
                    if b["link"] == name:
                        self.brokers.set(b["name"], up)
            self.lab.set_link(name, up=up, **shape)
        else:
            self.lab.set_link(name, up=up, **shape)
        if up is not None and self.site is not None:
            self.site.set_link(name, up)

    def apply(self, ev):
        a = ev.args
        note = None
        if ev.do in ("mains_off", "mains_on"):
            manual = self.site.set_mains(ev.do == "mains_on", a.get("device"))
            if manual:
                note = self._prompt("switch mains %s on %s" % (ev.do[6:], ", ".join(manual)))
        elif ev.do in ("link_down", "link_up"):
            self._apply_link(a["link"], {"up": ev.do == "link_up"})
        elif ev.do == "link_shape":
            self._apply_link(a["link"], a)
        elif ev.do in ("broker_down", "broker_up"):
            self.brokers.set(a["broker"], ev.do == "broker_up")
        elif ev.do == "power_cut":
            self.cut_by_scenario = True
            note = self.agent.cut(a.get("how", "kill"))
        elif ev.do == "power_on":
            self.cut_by_scenario = False
            self._boot_if_powered()
        elif ev.do in ("device_fault", "device_ok"):
            fault = a.get("fault") if ev.do == "device_fault" else None
            if not self.site.set_fault(a["device"], fault):
                note = self._prompt("fault %s on real device %s" % (fault, a["device"]))
        elif ev.do == "disk_full":
            note = self.data.fill()
        elif ev.do == "disk_ok":
            self.data.free()
        elif ev.do == "clock_jump":
            self.clock_step += a["by_s"]
            self._write_step()
        elif ev.do == "clock_back":
            self.clock_step = 0.0
            self._write_step()
        args = {k: v for k, v in a.items() if k != "by_s"}
        self._event(ev.do, planned=ev.t, note=note, **args)
        self.say("drill: %s %s%s" % (_fmt_h(ev.t), ev.text(), " (%s)" % note if note else ""))

    def _prompt(self, what):
        self.manual.append(what)
        self.say("drill: OPERATOR: %s now" % what)
        return "operator: " + what

    def _write_step(self):
        tmp = self.step_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%r\n" % self.clock_step)
        os.replace(tmp, self.step_file)

    # --- power coupling and the timeline ----------------------------------------------------
    def _supply_ok(self):
        dev = self.rig.agent.get("powered_by")
        if not dev:
            return True
        st = self.site.power_state(dev)
        return st is None or not st["cut_off"]

    def _boot_if_powered(self):
        if not self.cut_by_scenario and not self.cut_by_supply and not self.agent.running():
            pid = self.agent.start()
            self._event("agent_boot", pid=pid)

    def _couple(self):
        ok = self._supply_ok()
        if not ok and not self.cut_by_supply:
            self.cut_by_supply = True
            if self.agent.running():
                self.agent.cut("kill")
            dev = self.rig.agent.get("powered_by")
            self._event("supply_lost", device=dev)
            self.say("drill: %s the agent loses power: %s cut off" % (_fmt_h(self.now()), dev))
        elif ok and self.cut_by_supply:
            self.cut_by_supply = False
            self._event("supply_back", device=self.rig.agent.get("powered_by"))
            self.say("drill: %s power back: the agent boots" % _fmt_h(self.now()))
            self._boot_if_powered()
        elif (not self.cut_by_scenario and not self.cut_by_supply and self.agent.proc is not None
              and not self.agent.running()):  # fmt: skip
            self._event("agent_exited", code=self.agent.exit_code())
            self.say("drill: the agent exited by itself (code %s); starting it again"
                     % self.agent.exit_code())  # fmt: skip
            self._boot_if_powered()

    def sample(self):
        rec = {
            "t": round(self.now(), 3), "rt": round(time.time(), 3), "power": self.site.truth(),
            "links": {n: s.get("up", True) for n, s in self.lab.state.items()},
            "brokers": dict(self.brokers.up), "agent": self.agent.running(),
            "disk_full": self.data.full, "clock_step": self.clock_step,
            "link_bytes": {n: self.lab.link_bytes(n) for n in self.lab.links},
        }  # fmt: skip
        self._write("truth.jsonl", rec)

    def _progress(self, end):
        t = self.now()
        power = []
        for dev, st in self.site.truth().items():
            state = ("cut off" if st["cut_off"] else "battery" if st["on_battery"] else "mains")
            power.append("%s %s %.0f%%" % (dev, state, st["soc"]))
        links = " ".join("%s %s" % (n, "up" if s.get("up", True) else "DOWN")
                         for n, s in self.lab.state.items())  # fmt: skip
        c = self.observer.progress()
        self.say("drill: [%s/%s] %s | %s | agent %s | noc: %d readings, %d alarm events" % (
            _fmt_h(t).strip(), _fmt_h(end).strip(), ", ".join(power), links,
            "up" if self.agent.running() else "off", c["readings"], c["alarms"]))  # fmt: skip

    def timeline(self):
        events = list(self.scn.events)
        end = self.scn.duration + self.scn.drain
        next_sample = 0.0
        next_progress = time.monotonic()
        wait = self.time.origin - time.time()
        if wait > 0:
            time.sleep(wait)
        self._boot_if_powered()
        while True:
            t = self.now()
            while events and events[0].t <= t:
                self.apply(events.pop(0))
            self._couple()
            if t >= next_sample:
                self.sample()
                next_sample += self.scn.sample
            if time.monotonic() >= next_progress:
                self._progress(end)
                next_progress += PROGRESS_S
            if t >= end:
                break
            nxt = min([next_sample, end] + ([events[0].t] if events else []))
            time.sleep(max(0.0, min(TICK_S, (nxt - t) / self.scale)))
        self.sample()

    # --- the end ----------------------------------------------------------------------------
    def finish(self):
        if self.agent is not None:
            code = self.agent.stop()
            self._event("agent_stop", code=code)
        if self.agent is not None and self.agent_kind == "board":
            try:  # the board's /data, read off its flash with the power off
                self.agent.export(self.data_dir)
            except RuntimeError as e:
                self.say("drill: cannot read the board's flash: %s" % str(e)[-300:])
        if self.agent is not None:
            # What the agent still holds undelivered, for the loss check (not lost: stored).
            r = subprocess.run([sys.executable, "-m", "agent.host.cli", "queue", "export",
                                self.data_dir, os.path.join(self.out, "backlog.jsonl")],
                               capture_output=True, text=True,
                               env=dict(os.environ, PYTHONPATH=_repo_root()))  # fmt: skip
            if r.returncode != 0:
                self.say("drill: cannot export the agent's backlog: %s" % r.stderr.strip()[-300:])
        time.sleep(1.0)  # the observer writes what was in flight

    def teardown(self):
        """Stop everything this drill started; every step runs even when an earlier one fails,
        so no namespace, process or mount is left behind."""
        steps = [self.observer.stop] if self.observer is not None else []
        if self.agent is not None:
            steps.append(lambda: self.agent.running() and self.agent.cut("kill"))
            if hasattr(self.agent, "close"):
                steps.append(self.agent.close)
        if self.sntp is not None:
            steps.append(self.sntp.stop)
        if self.site is not None:
            steps.append(self.site.stop)
        if self.brokers is not None:
            steps += [br.stop for br in self.brokers.by_name.values()]
        if self.lab is not None:
            steps.append(self.lab.stop)
        if self.data is not None:
            steps.append(self.data.unmount)
        for step in steps:
            try:
                step()
            except Exception as e:
                self.say("drill: cleanup step failed: %r" % (e,))
        for f in self.files.values():
            f.close()
        self.files = {}

    def run(self):
        """The whole drill; returns the report's verdict dict."""
        try:
            self.setup()
            self.say("drill: rig %s, scenario %s (%s of site time at %gx: %.1f min), agent %s"
                     % (self.rig.name, self.scn.name, _fmt_h(self.scn.duration).strip(),
                        self.scale, (self.scn.duration + self.scn.drain) / self.scale / 60,
                        self.agent_kind))  # fmt: skip
            self.timeline()
            self.finish()
        finally:
            self.teardown()
        verdict = report_mod.build(self.out)
        self.say("drill: report in %s" % self.out)
        return verdict


def _epoch(text):
    from datetime import datetime

    return datetime.fromisoformat(text).timestamp()


def _repo_root():
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
