"""The simulated board (hil/fake_board.py): the REPL bytes a real board sends, scripted by hand,
and real mpremote against it (fs, sha256sum, romfs, reset).

Each expected byte string below is what MicroPython's shared/runtime/pyexec.c writes; mpremote's
transport_serial.py waits for exactly these.
"""

import os
import select
import subprocess
import sys
import termios
import time

import pytest

from hil.fake_board import FakeBoard

MPREMOTE = os.path.join(os.path.dirname(sys.executable), "mpremote")
BANNER = (b'MicroPython v1.27.0 on 2025-12-09; Generic ESP32 module with ESP32\r\n'
          b'Type "help()" for more information.\r\n>>> ')  # fmt: skip


class Line:
    """The host's end of the board's pty, read with a deadline."""

    def __init__(self, path):
        self.fd = os.open(path, os.O_RDWR | os.O_NOCTTY)
        termios.tcflush(self.fd, termios.TCIFLUSH)  # what the board said before we listened

    def send(self, data):
        os.write(self.fd, data)

    def read_until(self, ending, timeout=20.0):
        data = b""
        deadline = time.monotonic() + timeout
        while not data.endswith(ending):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %r; got %r" % (ending, data))
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                data += os.read(self.fd, 1)
        return data

    def read_exactly(self, n, timeout=20.0):
        data = b""
        deadline = time.monotonic() + timeout
        while len(data) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("wanted %d bytes, got %r" % (n, data))
            r, _, _ = select.select([self.fd], [], [], left)
            if r:
                data += os.read(self.fd, n - len(data))
        return data

    def quiet(self, wait=0.3):
        r, _, _ = select.select([self.fd], [], [], wait)
        return not r

    def close(self):
        os.close(self.fd)


@pytest.fixture
def board(tmp_path):
    with FakeBoard(tmp_path / "board") as b:
        b.wait_output(BANNER)
        yield b


@pytest.fixture
def line(board):
    ln = Line(board.path)
    yield ln
    ln.close()


def raw(line):
    line.send(b"\x01")
    prompt = b"raw REPL; CTRL-B to exit\r\n>"
    assert line.read_until(prompt) == b"\r\n" + prompt


def test_power_on_prints_rom_lines_then_banner(board):
    text = bytes(board.transcript)
    assert text.startswith(b"ets Jun  8 2016 00:22:57\r\n\r\nrst:0x1 (POWERON_RESET)")
    assert text.endswith(BANNER)
    assert board.boots == ["POWERON_RESET"]


def test_friendly_repl_echoes_and_prints_results(line):
    line.send(b"6*7\r")
    assert line.read_until(b">>> ") == b"6*7\r\n42\r\n>>> "
    line.send(b"x\x7f1+1\r")  # a backspace erases the x
    assert line.read_until(b">>> ") == b"x\x08 \x081+1\r\n2\r\n>>> "


def test_raw_repl_framing_output_then_error(line):
    raw(line)
    line.send(b"print('out')\x04")
    assert line.read_until(b">") == b"OKout\r\n\x04\x04>"
    line.send(b"print(1)\n1/0\x04")
    got = line.read_until(b"\x04>")
    assert got == (b"OK1\r\n\x04Traceback (most recent call last):\r\n"
                   b'  File "<stdin>", line 2, in <module>\r\n'
                   b"ZeroDivisionError: divide by zero\r\n\x04>")  # fmt: skip


def test_raw_repl_keeps_globals_until_a_soft_reset(line, board):
    raw(line)
    line.send(b"kept = 5\x04")
    line.read_until(b"\x04\x04>")
    line.send(b"print(kept)\x04")
    assert line.read_until(b"\x04\x04>") == b"OK5\r\n\x04\x04>"
    line.send(b"\x04")  # empty input: soft reset, and the board stays in the raw REPL
    assert line.read_until(b">") == b"OK\r\nMPY: soft reboot\r\nraw REPL; CTRL-B to exit\r\n>"
    line.send(b"print(kept)\x04")
    assert b"NameError" in line.read_until(b"\x04>")
    assert board.boots == ["POWERON_RESET", "SOFT_RESET"]


def test_raw_paste_window_flow_control(line):
    raw(line)
    line.send(b"\x05A\x01")
    # "R\x01", a window of 128 (little-endian), and one more window granted at once.
    assert line.read_exactly(5) == b"R\x01\x80\x00\x01"
    body = b"x = 0\n" + b"x += 1\n" * 80  # 566 bytes: four full windows and a bit
    sent = 0
    allowed = 256
    grants = 0
    while sent < len(body):
        chunk = body[sent : min(len(body), allowed)]
        line.send(chunk)
        sent += len(chunk)
        if sent < len(body):
            assert line.read_exactly(1) == b"\x01"  # the board grants the next window
            grants += 1
            allowed += 128
    line.send(b"\x04")
    tail = line.read_until(b"\x04")
    assert tail.count(b"\x01") + grants == len(body) // 128
    assert line.read_until(b">") == b"\x04\x04>"  # no output, no error
    line.send(b"print(x)\x04")
    assert line.read_until(b"\x04\x04>") == b"OK80\r\n\x04\x04>"


def test_ctrl_c_interrupts_running_code(line):
    raw(line)
    line.send(b"while True:\n  pass\n\x04")
    assert line.read_until(b"OK") == b"OK"
    assert line.quiet(0.5)  # still running
    line.send(b"\x03")
    got = line.read_until(b"\x04>")
    assert got.startswith(b"\x04Traceback (most recent call last):\r\n")
    assert b"KeyboardInterrupt" in got


def test_ctrl_b_leaves_raw_repl_with_banner(line):
    raw(line)
    line.send(b"\x02")
    assert line.read_until(b">>> ") == b"\r\n" + BANNER


def test_machine_reset_boots_in_friendly_mode_and_flash_survives(line, board):
    raw(line)
    line.send(b"f=open('note.txt','w'); f.write('kept'); f.close()\x04")
    line.read_until(b"\x04\x04>")
    line.send(b"import machine\nmachine.reset()\x04")
    got = line.read_until(b">>> ")
    assert b"rst:0xc (SW_CPU_RESET)" in got and got.endswith(BANNER)
    assert board.boots[-1] == "SW_CPU_RESET"
    assert board.littlefs_files()["/note.txt"] == b"kept"


def test_main_py_runs_at_boot_and_ctrl_c_stops_it(line, board):
    raw(line)
    src = repr("import time\nprint('main started')\nwhile True:\n    time.sleep_ms(10)\n")
    line.send(b"f=open('main.py','w'); f.write(" + src.encode() + b"); f.close()\x04")
    line.read_until(b"\x04\x04>")
    line.send(b"import machine\nmachine.reset()\x04")
    line.read_until(b"main started\r\n")
    assert line.quiet(0.5)
    line.send(b"\r\x03")  # what mpremote sends first
    got = line.read_until(b">>> ")
    assert b"KeyboardInterrupt" in got and got.endswith(BANNER)


def test_os_uname_and_statvfs_are_the_boards(line):
    raw(line)
    line.send(b"import os\nu=os.uname()\nprint(u.sysname, u.release, u.machine)\n"
              b"print(os.statvfs('/')[0])\x04")  # fmt: skip
    got = line.read_until(b"\x04\x04>")
    assert got == b"OKesp32 1.27.0 Generic ESP32 module with ESP32\r\n4096\r\n\x04\x04>"


def test_silent_board_answers_nothing(tmp_path):
    with FakeBoard(tmp_path / "b", silent=True) as b:
        ln = Line(b.path)
        try:
            ln.send(b"\r\x03\r\x01")
            assert ln.quiet(1.0)
        finally:
            ln.close()


def test_drop_after_kills_the_line_and_reconnect_powers_on(tmp_path):
    with FakeBoard(tmp_path / "b", drop_after=10) as b:
        b.wait_output(BANNER)
        ln = Line(b.path)
        try:
            ln.send(b"\x01print(1)\x04")  # 10 bytes: the cable goes at the last one
            deadline = time.monotonic() + 10
            while not b.dropped and time.monotonic() < deadline:
                time.sleep(0.05)
            assert b.dropped
            with pytest.raises(OSError):
                for _ in range(50):
                    os.write(ln.fd, b"x")
                    os.read(ln.fd, 10)
                    time.sleep(0.02)
        finally:
            ln.close()
        mark = len(b.transcript)
        b.reconnect()
        b.wait_output(BANNER, since=mark)
        assert b.boots[-1] == "POWERON_RESET"


# --- real mpremote ---------------------------------------------------------------------------


def mpremote(board, *args, timeout=60):
    return subprocess.run([MPREMOTE, "connect", board.path, *args], capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def test_mpremote_copies_and_hashes_a_file(board, tmp_path):
    src = tmp_path / "blob.bin"
    data = bytes(range(256)) * 40
    src.write_bytes(data)
    r = mpremote(board, "fs", "cp", str(src), ":blob.bin", "+", "fs", "sha256sum", ":blob.bin")
    assert r.returncode == 0, r.stderr
    import hashlib

    assert hashlib.sha256(data).hexdigest() in r.stdout
    assert board.littlefs_files()["/blob.bin"] == data


def test_mpremote_deploys_romfs_and_modules_import_from_it(board, tmp_path):
    src = tmp_path / "rom"
    (src / "lib").mkdir(parents=True)
    (src / "lib" / "greeting.py").write_text("WORD = 'xin chao'\n")
    r = mpremote(board, "romfs", "deploy", str(src))
    assert r.returncode == 0, r.stdout + r.stderr
    assert board.romfs_partition().startswith(b"\xd2\xcd\x31")
    r = mpremote(board, "exec", "import greeting; print(greeting.WORD, greeting.__file__)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "xin chao /rom/lib/greeting.mpy"


def test_mpremote_reset_and_soft_reset(board):
    r = mpremote(board, "exec", "import machine; print(machine.reset_cause())")
    assert r.stdout.strip() == "5"  # mpremote soft-resets first
    assert mpremote(board, "reset").returncode == 0
    board.wait_output(b"rst:0xc (SW_CPU_RESET)")
    assert "SW_CPU_RESET" in board.boots
