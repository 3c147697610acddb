"""`site-agent check` and `site-agent run` accept exactly the same configs (issue 12, point 8).

The corpus in tests/host/config_corpus/ holds broken and borderline configs, each a whole file
whose first line says what `check` must answer: `# expect: <key path>` (exit 2, an error naming
that key) or `# expect: valid` (exit 0). Every config `check` accepts is then run as the daemon
for a short while: it must start, get through its first uplink attempt and stop cleanly on
SIGTERM. A config that passes `check` and stops `run` (under systemd: a restart loop that never
polls) fails here. The files are plain TOML with a relative storage.dir, so they can be tried by
hand: `cd /tmp/x && site-agent check -c tests/host/config_corpus/host-with-port.toml`.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS = sorted((ROOT / "tests" / "host" / "config_corpus").glob("*.toml"))
RUN_FOR_S = 60  # generous: a loaded CI machine starts Python slowly; the test ends on events


def expectation(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# expect: "), "%s: first line must be '# expect: ...'" % path.name
    want = first[len("# expect: ") :].strip()
    return None if want == "valid" else want


def cli(*args, cwd, timeout=60):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "agent.host.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def test_the_corpus_has_both_kinds():
    wants = [expectation(p) for p in CORPUS]
    assert len(CORPUS) >= 30 and wants.count(None) >= 5
    assert len([w for w in wants if w is not None]) >= 20


def run_briefly(path, cwd):
    """Start `site-agent run`, wait until it has started and made its first uplink attempt,
    then SIGTERM it. Returns (exit code, stderr)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "agent.host.cli", "run", "-c", str(path)],
                            cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)  # fmt: skip
    lines = []
    try:
        end = time.monotonic() + RUN_FOR_S
        started = attempted = False
        while time.monotonic() < end:
            line = proc.stderr.readline()
            if not line:
                break  # the agent exited
            lines.append(line)
            started = started or " agent: started" in line
            # The uplink task has been through one whole connect attempt (the field test's
            # connect_timeout = 1e300 killed it right there) when it names the next one. That
            # line may come before "started" (the uplink task starts first), and it comes once
            # (later ones are summarised: Log.repeating).
            attempted = attempted or " uplink: next attempt" in line or "next_attempt_s=" in line
            if started and attempted:
                break
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, "".join(lines) + err


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_check_and_run_agree(path, tmp_path):
    want = expectation(path)
    r = cli("check", "-c", str(path), cwd=tmp_path)
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    if want is not None:
        assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
        named = [x for x in r.stderr.splitlines() if x.startswith("config error: %s: %s: "
                                                                   % (path, want))]  # fmt: skip
        assert named, "no error naming %s:\n%s" % (want, r.stderr)
        return
    assert r.returncode == 0, r.stderr
    assert "config %s is valid" % path in r.stdout
    code, log = run_briefly(path, tmp_path)
    assert " agent: started" in log, log
    assert " uplink: next attempt" in log or "next_attempt_s=" in log, log
    assert code == 0, log
    assert " agent: stopped restart=False" in log
    assert "task failed" not in log and "Traceback" not in log, log


def test_every_serial_rate_check_accepts_can_be_set_on_a_tty():
    """One list of rates (STANDARD_BAUDS) for the console and device lines: the console sets each
    with termios on a real tty (a pty), a device port with pyserial."""
    import asyncio
    import termios

    from agent.core.config.tables import STANDARD_BAUDS
    from agent.host.console_tty import BAUDS, open_raw
    from agent.host.serial_port import SerialPort

    async def device_port(path, baud):
        port = SerialPort()
        await port.open({"port": path, "baud": baud})
        await port.close()

    for baud in STANDARD_BAUDS:
        assert baud in BAUDS, "console cannot set %d baud" % baud
        master, slave = os.openpty()
        try:
            path = os.ttyname(slave)
            fd = open_raw(path, baud)
            try:
                attrs = termios.tcgetattr(fd)
                assert attrs[4] == attrs[5] == BAUDS[baud], baud
            finally:
                os.close(fd)
            asyncio.run(device_port(path, baud))
        finally:
            os.close(master)
            os.close(slave)


def test_preflight_names_what_this_machine_lacks(tmp_path):
    from agent.core.config.validate import validate
    from agent.host.configfile import preflight

    def cfg(storage_dir, ca_file):
        raw = {
            "site": {"id": "s", "kind": "wifi"},
            "devices": [{"id": "ups", "driver": "megatec", "serial": {"port": "uart1"}}],
            "uplink": {"brokers": [{"name": "main", "host": "192.0.2.1", "ca_file": ca_file}]},
            "storage": {"dir": storage_dir},
        }
        return validate(raw, source="site.toml")

    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    errors, warnings = preflight(cfg(str(tmp_path / "new" / "data"), str(ca)))
    assert warnings == []
    assert errors == ['site.toml: devices[0].serial.port: "uart1" is a board UART; on this host '
                      'give a device path such as "/dev/ttyUSB0"']  # fmt: skip
    (tmp_path / "file").write_text("")
    errors, warnings = preflight(cfg(str(tmp_path / "file" / "data"), str(tmp_path / "no.pem")))
    assert errors[0] == "site.toml: storage.dir: cannot create %s: %s is not a folder" % (
        tmp_path / "file" / "data", tmp_path / "file")
    assert warnings == [
        "site.toml: uplink.brokers[0].ca_file: cannot read %s (No such file or directory): the "
        "agent polls and stores, but cannot connect to broker main until it can"
        % (tmp_path / "no.pem")
    ]
