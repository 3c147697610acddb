"""The agent under test, one class per kind (host only): start, power cut, clean stop.

    agent = make_agent("pi", config_path, env, argv_in_site_ns, log_path)
    agent.start()          # boots (a marker line goes into the log first)
    agent.cut("kill")      # power lost: SIGKILL, nothing flushed; returns a note or None
    agent.stop()           # SIGTERM: final commit, goodbye to the broker

Kinds:
- "pi": `site-agent run` under CPython, the Raspberry Pi's agent.
- "board": the firmware image on the MicroPython unix port, through the simulated board
  (hil/drill/board.py over hil/board_sim.py): `make_agent("board", ..., board={...})`.
Both write their log to log_path, a "### drill: boot" line before each boot's; the report reads
the uplink's "started confirmed_seq=" and "stored confirmed_seq=" lines from it (what the agent
confirmed as stored, per boot).
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
        """Power lost now: the process dies without flushing anything. A scenario's flash-level
        cut (the board's) is a kill here, and the note says so."""
        if how not in self.cuts + ("flash",):
            raise ValueError("the Pi agent's power cut is a kill, not %r" % how)
        if self.running():
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        if how == "flash":
            return "the Pi's power cut is a kill (a flash-level cut is the board's)"
        return None

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


def make_agent(kind, config_path, env, wrap, log_path, board=None):
    """board (kind "board"): scale_spec, site_ns, board, uarts, work (hil/drill/board.py)."""
    if kind == "pi":
        return PiAgent(config_path, env, wrap, log_path)
    if kind == "board":
        from hil.board_sim import micropython_exe
        from hil.drill.board import BoardAgent, BoardSetupError

        try:
            micropython_exe()
            return BoardAgent(config_path, log_path=log_path, **board)
        except (RuntimeError, BoardSetupError) as e:
            raise AgentUnavailable(str(e)) from None
    raise AgentUnavailable("no agent kind %r (have: pi, board)" % kind)
