"""One process per serial line (issue 12, point 16): `site-agent poll` while the daemon runs used
to open the daemon's serial ports too, and both read each other's replies as garbage. Now the
agent claims each device it opens (agent/host/port_lock.py: flock + TIOCEXCL) and a second
process is refused with who holds the line. Real processes, a real pty (the Megatec emulator).
"""

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from agent.core.errors import DeviceError
from hil.emulators.megatec import MegatecEmulator
from hil.proc import die_with_parent

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[site]
id = "lock-test"
kind = "wifi"

[[devices]]
id = "ups"
driver = "megatec"
interval = 1
timeout = 0.9
[devices.serial]
port = "{port}"

[storage]
dir = "{data}"
commit_interval = 0.5
"""


@pytest.fixture
def ups():
    emu = MegatecEmulator()
    emu.start()
    yield emu
    emu.stop()


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def test_poll_while_the_daemon_runs_is_refused_and_breaks_nothing(ups, tmp_path):
    cfg = tmp_path / "site.toml"
    cfg.write_text(CONFIG.format(port=ups.path, data=tmp_path / "data"))
    daemon = subprocess.Popen([sys.executable, "-m", "agent.host.cli", "run", "-c", str(cfg)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              env=env(), cwd=str(ROOT), preexec_fn=die_with_parent)  # fmt: skip
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(iter(daemon.stderr.readline, "")),
                              daemon=True)  # fmt: skip
    reader.start()
    try:
        end = time.monotonic() + 30
        while not ("agent: started" in "".join(lines) and ups.requests >= 2):
            assert daemon.poll() is None, "the daemon exited:\n" + "".join(lines)
            assert time.monotonic() < end, "the daemon never polled:\n" + "".join(lines)
            time.sleep(0.05)
        before = ups.requests
        r = subprocess.run([sys.executable, "-m", "agent.host.cli", "poll", "-c", str(cfg)],
                           capture_output=True, text=True, timeout=60, env=env(),
                           cwd=str(ROOT))  # fmt: skip
        assert r.returncode == 1, r.stderr
        want = "ups: STALE: serial port %s is in use by the running agent (pid %d)" % (
            ups.path, daemon.pid)
        assert want in r.stderr, r.stderr
        # The daemon went on polling, and none of its polls failed meanwhile.
        end = time.monotonic() + 20
        while ups.requests < before + 6 and time.monotonic() < end:
            time.sleep(0.1)
        assert ups.requests >= before + 6
    finally:
        daemon.terminate()
        daemon.wait(30)
        reader.join(10)
    log = "".join(lines)
    assert daemon.returncode == 0, log
    assert "device stale" not in log and "garbage" not in log, log


HOLDER = """
import asyncio, sys, time
from agent.host.serial_port import SerialPort

async def main():
    port = SerialPort()
    await port.open({"port": sys.argv[1], "baud": 2400})
    print("HELD", flush=True)
    sys.stdin.readline()
    await port.close()
    print("RELEASED", flush=True)
    sys.stdin.readline()

asyncio.run(main())
"""


def open_in_this_process(path):
    import asyncio

    from agent.host.serial_port import SerialPort

    async def go():
        port = SerialPort()
        await port.open({"port": path, "baud": 2400})
        await port.close()

    asyncio.run(go())


def test_another_program_holding_the_port_is_named_and_the_claim_ends_with_it(ups):
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, ups.path], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env(),
                              preexec_fn=die_with_parent)  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "HELD"
        with pytest.raises(DeviceError) as info:
            open_in_this_process(ups.path)
        text = str(info.value)
        assert text.startswith("serial port %s is in use by " % ups.path), text
        assert text.endswith("(pid %d)" % holder.pid) and "agent" not in text, text
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout.readline().strip() == "RELEASED"
        open_in_this_process(ups.path)  # the line is free again
    finally:
        holder.kill()
        holder.wait()


NO_LOCK_OPENER = """
import os, sys
if os.getuid() == 0:
    os.setuid(65534)  # root passes TIOCEXCL; a technician's own login does not
try:
    os.open(sys.argv[1], os.O_RDWR | os.O_NOCTTY)
except OSError as e:
    print("REFUSED", e.errno)
else:
    print("OPENED")
"""


def test_a_program_that_takes_no_lock_cannot_open_a_claimed_tty(ups):
    import asyncio
    import errno

    from agent.host.serial_port import SerialPort

    os.chmod(ups.path, 0o666)  # so the unprivileged opener meets TIOCEXCL, not the file mode

    def try_open():
        r = subprocess.run([sys.executable, "-c", NO_LOCK_OPENER, ups.path], capture_output=True,
                           text=True, timeout=30)  # fmt: skip
        return r.stdout.strip()

    async def scenario():
        port = SerialPort()
        await port.open({"port": ups.path, "baud": 2400})
        held = try_open()
        await port.close()
        return held, try_open()

    held, free = asyncio.run(scenario())
    assert held == "REFUSED %d" % errno.EBUSY
    assert free == "OPENED"


def test_a_second_claim_in_the_same_process_says_so(ups):
    import asyncio

    from agent.host.serial_port import SerialPort

    async def scenario():
        first = SerialPort()
        await first.open({"port": ups.path, "baud": 2400})
        try:
            second = SerialPort()
            with pytest.raises(DeviceError) as info:
                await second.open({"port": ups.path, "baud": 2400})
            return str(info.value)
        finally:
            await first.close()

    assert asyncio.run(scenario()) == (
        "serial port %s is already open in this process" % ups.path
    )


def test_the_claim_is_the_lock_pyserial_and_picocom_take(ups):
    """Tools that lock (pyserial exclusive=True, picocom's flock) are kept off the agent's line,
    and the agent off theirs: it is the same flock."""
    import serial

    code = textwrap.dedent("""
        import sys, serial
        s = serial.Serial(sys.argv[1], 2400, exclusive=True)
        print("HELD", flush=True)
        sys.stdin.readline()
    """)
    tool = subprocess.Popen([sys.executable, "-c", code, ups.path], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent)
    try:
        assert tool.stdout.readline().strip() == "HELD"
        with pytest.raises(DeviceError) as info:
            open_in_this_process(ups.path)
        assert "(pid %d)" % tool.pid in str(info.value)
    finally:
        tool.kill()
        tool.wait()
    with pytest.raises(serial.SerialException):  # and the other way round
        import asyncio

        from agent.host.serial_port import SerialPort

        async def hold_and_try():
            port = SerialPort()
            await port.open({"port": ups.path, "baud": 2400})
            try:
                serial.Serial(ups.path, 2400, exclusive=True)
            finally:
                await port.close()

        asyncio.run(hold_and_try())
