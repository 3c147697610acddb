"""A fleet on loopback for the fleet view's end-to-end tests and its screenshots: the demo site
(the real agent against emulated devices, hil/site.py), generated sites speaking the contract
(hil/fleet.py; the last `v2` of them contract v2, alternately in its JSON and compact forms),
one broker, and the fleet view (agent/fleet/app.py) of them all. The view starts before the
generated sites, so that it reads their v2 compact streams from their first message.

    with FleetRig(generated=5) as rig:
        rig.app.url                     # the fleet page
        rig.night_and_no_mains()        # the demo site goes on battery
        rig.kill_agent()                # the demo agent dies: the broker sends its last will
"""

import os
import signal
import subprocess
import sys

from agent.core.log import Log
from agent.fleet.app import FleetApp
from hil.fleet import FleetSim, make_sites
from hil.proc import die_with_parent
from hil.site import SimulatedSite


class FleetRig:
    def __init__(self, generated=5, typhoon=0, fast=True, history_step=5.0, history_hours=1.0,
                 silent_after=120.0, seed=7, v2=0):  # fmt: skip
        self.generated = generated
        self.v2 = v2
        self.typhoon = typhoon
        self.fast = fast
        self.opts = {"history_step": history_step, "history_hours": history_hours,
                     "silent_after": silent_after}  # fmt: skip
        self.seed = seed
        self.site = None
        self.agent = None
        self.sim = None
        self.app = None

    def start(self):
        try:
            self.site = SimulatedSite().start()
            self.agent_log = os.path.join(self.site.dir, "agent.log")
            with open(self.agent_log, "w") as out:
                self.agent = subprocess.Popen(
                    [sys.executable, "-m", "agent.host.cli", "run", "-c", self.site.config_path],
                    stdout=out, stderr=out, start_new_session=True,
                    preexec_fn=die_with_parent)  # fmt: skip
            sites = make_sites(self.generated, typhoon=self.typhoon, seed=self.seed,
                               bts_share=0.5, prefix="sim")  # fmt: skip
            for i, s in enumerate(sites[len(sites) - self.v2 :]):
                s.use_contract(2, ("compact", "json")[i % 2])
            if self.fast:  # polls and commits every couple of seconds: tests take seconds
                for s in sites:
                    s.commit_s = 1.0
                    for d in s.devices:
                        d.interval = 2.0
            self.fleet_log = []
            log = Log(write=self.fleet_log.append)
            self.app = FleetApp("127.0.0.1", self.site.broker.port, ("127.0.0.1", 0), log=log,
                                **self.opts).start()  # fmt: skip
            if not self.app.sub.wait_synced(30):
                raise RuntimeError("the fleet view did not subscribe: %s"
                                   % self.app.sub.last_error)
            self.sim = FleetSim("127.0.0.1", self.site.broker.port, sites).start()
        except BaseException:
            self.stop()
            raise
        return self

    def night_and_no_mains(self):
        """The demo site's UPS loses mains while its solar controller has no sun: the agent's
        site state goes to battery (with sun, the site would be on solar)."""
        with self.site.solar._lock:
            self.site.solar.unit(1).set_sun(0.0)
        self.site.ups_serial.set_mains(False)

    def kill_agent(self):
        """SIGKILL the demo site's agent: no goodbye; its TCP connection drops and the broker
        publishes its last will."""
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGKILL)
            self.agent.wait(10)

    def agent_log_tail(self, n=30):
        try:
            with open(self.agent_log, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except (OSError, AttributeError):
            return ""

    def stop(self):
        if self.app is not None:
            self.app.stop()
            self.app = None
        if self.sim is not None:
            self.sim.stop()
            self.sim = None
        if self.agent is not None and self.agent.poll() is None:
            self.agent.send_signal(signal.SIGTERM)
            try:
                self.agent.wait(10)
            except subprocess.TimeoutExpired:
                self.agent.kill()
                self.agent.wait()
        self.agent = None
        if self.site is not None:
            self.site.stop()
            self.site = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
