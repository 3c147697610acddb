"""SIGKILL a real `site-agent run` right after a poll's readings were appended and long before
the next group commit, restart it, and find every record (issue 17, point 3).

The host's store writes each record through to the kernel at append (unsynced) and syncs at the
commit. The agent here commits once after its first poll pass and then only every hour, so every
later reading is in the page cache and nowhere else when the process dies. The test reads the
live queue directory (read-only, as `site-agent queue export` does) to see records appended,
kills the agent at once, restarts it and checks that every one of them is still in the queue,
intact, that the restarted agent never reuses a sequence number, and that the device's polls
(counted at the emulated UPS) all left their readings: none was held in RAM for a commit."""

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from agent.host import queue_cli
from hil.emulators.megatec import MegatecEmulator

EXE = os.path.join(os.path.dirname(sys.executable), "site-agent")
DEVICE = "ups-serial"

CONFIG = """\
[site]
id = "kill-bts-01"
kind = "bts"
clock = "system"

[[devices]]
id = "{dev}"
driver = "megatec"
interval = 1
timeout = 0.8

[devices.serial]
port = "{pty}"
baud = 2400

[storage]
dir = "{data}"
commit_interval = 3600
commit_records = 100000
"""


class CountingUps(MegatecEmulator):
    """Counts the status queries (Q1) it has answered: one per poll of the megatec driver."""

    def __init__(self, **kw):
        MegatecEmulator.__init__(self, **kw)
        self.lock = threading.Lock()
        self.q1 = 0

    def reply_for(self, request):
        out = MegatecEmulator.reply_for(self, request)
        if request.strip() == b"Q1":
            with self.lock:
                self.q1 += 1
        return out


def _spawn(conf, log_path):
    assert os.path.exists(EXE), "site-agent is not installed in the venv (pip install -e .)"
    return subprocess.Popen([EXE, "run", "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=open(log_path, "w"), start_new_session=True)  # fmt: skip


def _queue(data, out):
    """{seq: record} of the routine lane as the files hold it now (read-only open)."""
    if not os.path.isdir(queue_cli.queue_dir(data)):
        return {}  # the agent has not opened its store yet
    queue_cli.export(data, out)
    recs = {}
    with open(out) as f:
        for line in f:
            r = json.loads(line)
            if r["lane"] == "routine":
                recs[r["seq"]] = r
    return recs


def _polls(recs):
    """Distinct poll times of the device's own readings."""
    return sorted({r["time"] for r in recs.values() if r["device"] == DEVICE})


def _wait(pred, timeout, what, log):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    tail = open(log, errors="replace").read()[-3000:]
    raise AssertionError("timed out after %gs waiting for %s\n%s" % (timeout, what, tail))


def test_sigkill_after_append_before_commit_loses_nothing():
    d = tempfile.mkdtemp(prefix="agent-kill-")
    ups = CountingUps()
    procs = []
    try:
        pty = ups.start()
        data = os.path.join(d, "data")
        conf = os.path.join(d, "site.toml")
        with open(conf, "w") as f:
            f.write(CONFIG.format(dev=DEVICE, pty=pty, data=data))
        out = os.path.join(d, "export.jsonl")
        log1, log2 = os.path.join(d, "run1.log"), os.path.join(d, "run2.log")
        procs.append(_spawn(conf, log1))
        # At least 6 polls in the files: 5 of them after the only commit (the first pass).
        _wait(lambda: len(_polls(_queue(data, out))) >= 6, 60, "six polls appended", log1)
        # Kill right after a poll's readings reached the files: the answer counted at the UPS
        # and the readings of that very poll in the queue directory.
        with ups.lock:
            n = ups.q1
        _wait(lambda: ups.q1 > n, 10, "the next poll", log1)
        want = len(_polls(_queue(data, out))) + 1
        _wait(lambda: len(_polls(_queue(data, out))) >= want, 10, "its readings appended", log1)
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        answered = ups.q1
        before = _queue(data, out)
        polls = _polls(before)
        # Run 1 committed once, after its first pass (commit_interval is an hour): the later
        # polls were only written through when it died.
        assert len(polls) >= 7, polls
        # Every poll the UPS answered left its readings (a poll in flight at the kill aside).
        assert len(polls) >= answered - 1, (len(polls), answered)
        top = max(before)

        procs.append(_spawn(conf, log2))
        _wait(lambda: [s for s in _queue(data, out) if s > top], 60, "the restarted agent",
              log2)  # fmt: skip
        procs[1].send_signal(signal.SIGTERM)
        assert procs[1].wait(30) == 0
        after = _queue(data, out)
        lost = sorted(s for s in before if s not in after)
        assert lost == [], "records lost by the kill: %s" % lost[:20]
        changed = [s for s in before if after[s] != before[s]]
        assert changed == [], changed[:5]
        new = sorted(s for s in after if s not in before)
        assert new and min(new) > top, (top, new[:5])  # seq never reused after the kill
        print("kill: %d records of %d polls kept (%d answered by the UPS), next seq %d after %d"
              % (len(before), len(polls), answered, min(new), top))  # fmt: skip
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        ups.stop()
