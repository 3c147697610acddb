"""End to end on `site-agent run` (durable store) and a real mosquitto: stop the broker mid-run,
SIGKILL the agent during the outage, restart both, and check at the subscriber that every
sequence number the agent said was stored arrived (duplicates counted, gaps not). Runs on
127.0.0.1 and on a broker that listens on ::1 only (issue 4, points 2 and 8), and with contract
v2's compact stream (issue 17): every reading rebuilt, none unresolved."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from hil.broker import Broker
from hil.emulators.megatec import MegatecEmulator
from hil.upstream import Upstream

SITE = "e2e-bts-01"
EXE = os.path.join(os.path.dirname(sys.executable), "site-agent")

CONFIG = """\
[site]
id = "{site}"
kind = "bts"

[[devices]]
id = "ups-serial"
driver = "megatec"
interval = 1
timeout = 0.8

[devices.serial]
port = "{pty}"
baud = 2400

[uplink]
contract = {contract}
format = "{fmt}"
topic_prefix = "{prefix}"
batch_max = 10
max_connects_per_min = 30

[[uplink.brokers]]
name = "loopback"
host = "{host}"
port = {port}
insecure = true

[storage]
dir = "{data}"
commit_interval = 1
"""


def _spawn(conf, log_path):
    assert os.path.exists(EXE), "site-agent is not installed in the venv (pip install -e .)"
    return subprocess.Popen([EXE, "--log-level", "debug", "run", "-c", conf],
                            stdout=subprocess.DEVNULL, stderr=open(log_path, "w"),
                            start_new_session=True)  # fmt: skip


def _promised(log_path):
    """(start, stored): seqs in (start, stored] were confirmed as stored by that run."""
    with open(log_path, errors="replace") as f:
        text = f.read()
    m = re.search(r"uplink: started .*?confirmed_seq=(-?\d+)", text)
    start = int(m.group(1)) if m else None
    stored = [int(x) for x in re.findall(r"uplink: stored confirmed_seq=(-?\d+)", text)]
    return start, (max(stored) if stored else start), text


def _missing(up, runs):
    seqs = up.snapshot()[1]
    out = []
    for start, stored in runs:
        if start is None or stored is None:
            continue
        out += [s for s in range(start + 1, stored + 1) if s not in seqs]
    return out


def _wait(pred, timeout, what, logs=()):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return
        time.sleep(0.2)
    tails = "\n".join(open(p, errors="replace").read()[-3000:] for p in logs)
    raise AssertionError("timed out after %gs waiting for %s\n%s" % (timeout, what, tails))


def _run(host, contract=1, fmt="json"):
    prefix = "site-agent/v%d" % contract
    d = tempfile.mkdtemp(prefix="uplink-e2e-")
    ups = MegatecEmulator()
    broker = Broker(host=host, persistence=True).start()
    procs = []
    try:
        pty = ups.start()
        conf = os.path.join(d, "site.toml")
        with open(conf, "w") as f:
            f.write(CONFIG.format(site=SITE, pty=pty, prefix=prefix, host=host, port=broker.port,
                                  data=os.path.join(d, "data"), contract=contract,
                                  fmt=fmt))  # fmt: skip
        up = Upstream(host, broker.port, prefix, SITE, persistent=True,
                      client_id="ops-e2e").start()  # fmt: skip
        log1, log2 = os.path.join(d, "run1.log"), os.path.join(d, "run2.log")
        procs.append(_spawn(conf, log1))
        _wait(lambda: len(up.snapshot()[1]) >= 5, 30, "first readings upstream", [log1])
        broker.halt()
        s0 = _promised(log1)[1]
        _wait(lambda: _promised(log1)[1] >= s0 + 4, 20, "records stored in the outage", [log1])
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait(5)
        start1, stored1, text1 = _promised(log1)
        procs.append(_spawn(conf, log2))
        _wait(lambda: _promised(log2)[1] is not None and _promised(log2)[1] > _promised(log2)[0],
              20, "the restarted agent storing", [log2])  # fmt: skip
        broker.restart()

        def done():
            s2, t2, _ = _promised(log2)
            return t2 is not None and t2 > stored1 and not _missing(up, [(start1, stored1),
                                                                         (s2, t2)])  # fmt: skip

        _wait(done, 90, "every promised seq upstream", [log2])
        procs[1].send_signal(signal.SIGTERM)
        procs[1].wait(15)
        start2, stored2, text2 = _promised(log2)
        up.stop()
        seqs = up.snapshot()[1]
        assert start1 == -1 or start1 is not None
        assert stored1 - start1 >= 8, (start1, stored1)  # before and during the outage
        assert start2 >= stored1, (start2, stored1)  # the store kept every promise
        assert _missing(up, [(start1, stored1), (start2, stored2)]) == []
        dups = sum(n - 1 for n in seqs.values())
        print("e2e %s: %d seqs promised, %d received, %d duplicates"
              % (host, (stored1 - start1) + (stored2 - start2), len(seqs), dups))  # fmt: skip
        assert "link lost" in text1 or "disconnected" in text1
        assert "insecure = true" in text2
        assert up.bad_payloads == 0 and up.unresolved == [], up.unresolved[:3]
        if contract == 2 and fmt == "compact":
            # three connections: before the outage, the killed agent's none, the restarted one's
            assert len(up.ctx.get("streams", ())) >= 2 and up.series is not None
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(5)
        broker.stop()
        ups.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_broker_outage_and_sigkill_lose_nothing_ipv4():
    _run("127.0.0.1")


def test_broker_outage_and_sigkill_lose_nothing_ipv6_only():
    import socket

    with Broker(host="::1") as b:  # the listener really is ::1 only
        with socket.socket() as s:
            s.settimeout(2)
            assert s.connect_ex(("127.0.0.1", b.port)) != 0
    _run("::1")


def test_broker_outage_and_sigkill_lose_nothing_v2_compact_stream():
    _run("127.0.0.1", contract=2, fmt="compact")
