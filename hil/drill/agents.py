"""The agent under test, one class per kind (host only): start, power cut, clean stop.

    agent = make_agent("pi", config_path, env, argv_in_site_ns, log_path)
    agent.start()          # boots (a marker line goes into the log first)
    agent.cut("kill")      # power lost: SIGKILL, nothing flushed
    agent.stop()           # SIGTERM: final commit, goodbye to the broker

Kinds:
- "pi": `site-agent run` under CPython, the Raspberry Pi's agent.
- "board": the firmware on the MicroPython unix port, through the simulated board runner of the
  board issue (hil/board_sim.py). Until that runner is on this branch, asking for it is an
  AgentUnavailable naming what is missing; the rig format already has the kind.
Both write their log to log_path; the report reads the store's "started confirmed_seq=" and
"stored confirmed_seq=" lines from it (what the agent confirmed as stored, per boot).
"""

import os
import signal
import subprocess
import sys
import time

from hil.proc import die_with_parent


class AgentUnavailable(RuntimeError):
    pass


class PiAgent:
    kind = "pi"
    cuts = ("kill",)

    def __init__(self, config_path, env, wrap, log_path):
        self.config_path = config_path
        self.env = env
        self.wrap = wrap  # argv -> argv run in the site's namespace
        self.log_path = log_path
        self.proc = None
        self.boots = 0

    def argv(self):
        exe = os.path.join(os.path.dirname(sys.executable), "site-agent")
        if not os.path.exists(exe):
            return [sys.executable, "-m", "agent.host.cli", "--log-level", "debug", "run",
                    "-c", self.config_path]  # fmt: skip
        return [exe, "--log-level", "debug", "run", "-c", self.config_path]

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self):
        self.boots += 1
        with open(self.log_path, "a") as f:
            f.write("### drill: boot %d at real %.3f\n" % (self.boots, time.time()))
        log = open(self.log_path, "a")
        try:
            self.proc = subprocess.Popen(
                self.wrap(self.argv()), env=self.env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, preexec_fn=die_with_parent,
            )  # fmt: skip
        finally:
            log.close()
        return self.proc.pid

    def cut(self, how="kill"):
        """Power lost now: the process dies without flushing anything."""
        if how not in self.cuts:
            raise ValueError("the Pi agent's power cut is a kill, not %r" % how)
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, timeout=30.0):
        if not self.running():
            return None
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            return self.proc.wait(10)

    def exit_code(self):
        return None if self.proc is None else self.proc.poll()


def make_agent(kind, config_path, env, wrap, log_path):
    if kind == "pi":
        return PiAgent(config_path, env, wrap, log_path)
    if kind == "board":
        try:
            from hil import board_sim  # noqa: F401  (issue 13's simulated board runner)
        except ImportError as e:
            raise AgentUnavailable(
                "the board agent needs hil/board_sim.py (the simulated board runner of the "
                "board issue), which is not on this branch yet"
            ) from e
        raise AgentUnavailable("hil/board_sim.py is here but the drill does not drive it yet")
    raise AgentUnavailable("no agent kind %r (have: pi, board)" % kind)
