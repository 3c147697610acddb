"""tools/flash.py esp32 against the simulated board (hil/fake_board.py): deploy, hash checks,
reset and watch; resume after a dropped cable; and every error a technician can act on.

The image is flash_support's: the deploy's bytes and hashes are real, its program is a stand-in
that prints the agent's start lines. (The agent's own image on the simulated board is in
test_flash_firmware.py.)
"""

import io
import json
import os
import subprocess
import sys

import pytest
from flash_support import make_firmware, make_image, write_board

from hil.fake_board import FakeBoard
from tools.flashing import cli, esp32, firmware, ports
from tools.flashing.errors import FlashError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLASH = os.path.join(ROOT, "tools", "flash.py")


@pytest.fixture
def image(tmp_path):
    manifest = make_image(tmp_path / "img")
    board = write_board(tmp_path / "board.json")
    return str(tmp_path / "img"), board, manifest


def flash(*argv):
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def esp(image, port, *extra):
    img, board, _ = image
    return flash("esp32", "--image", img, "--board", board, "--port", port,
                 "--ack-timeout", "10", "--start-timeout", "20", *extra)  # fmt: skip


def test_deploy_checks_resets_and_sees_the_agent_start(image, tmp_path):
    img, _, manifest = image
    with FakeBoard(tmp_path / "b") as b:
        code, text = esp(image, b.path)
        assert code == 0, text
        last = text.strip().splitlines()[-1]
        assert last == ("done: %s: site test-site runs site-agent 0.1.0 (image %s) on test-esp32 "
                        "with MicroPython 1.27.0; broker mqtt.example.net:8883; 2 devices; first "
                        "batch acknowledged" % (b.path, manifest["build"]))  # fmt: skip
        files = b.littlefs_files()
        for e in manifest["files"]:
            if e["kind"] == "code":
                assert e["dest"] not in files  # the code went to the ROMFS partition
                continue
            with open(os.path.join(img, e["path"]), "rb") as f:
                assert files[e["dest"]] == f.read(), e["dest"]
        with open(os.path.join(img, "romfs.img"), "rb") as f:
            rom = f.read()
        assert b.romfs_partition()[: len(rom)] == rom
        assert not [p for p in files if p.endswith(".new")]
        assert b.boots[-1] == "SW_CPU_RESET"


def test_second_run_writes_nothing_new(image, tmp_path):
    with FakeBoard(tmp_path / "b") as b:
        code, text = esp(image, b.path)
        assert code == 0, text
        code, text = esp(image, b.path)
        assert code == 0, text
        assert "ROMFS partition already holds this code" in text
        assert "5 file(s) already on the board with the right hash" in text


def test_firmware_without_romfs_gets_the_code_in_lib(image, tmp_path):
    img, _, manifest = image
    with FakeBoard(tmp_path / "b", rom_kb=0) as b:
        code, text = esp(image, b.path)
        assert code == 0, text
        files = b.littlefs_files()
        for e in manifest["files"]:
            with open(os.path.join(img, e["path"]), "rb") as f:
                assert files[e["dest"]] == f.read(), e["dest"]
        assert "ROMFS none" in text


def test_files_of_an_earlier_image_are_removed_but_data_is_kept(image, tmp_path):
    with FakeBoard(tmp_path / "b", rom_kb=0) as b:
        code, text = esp(image, b.path)
        assert code == 0, text
        other = make_image(tmp_path / "img2", padding=100)  # lib/pad.bin is new here
        code, text = flash("esp32", "--image", str(tmp_path / "img2"), "--board", image[1],
                           "--port", b.path, "--ack-timeout", "5")  # fmt: skip
        assert code == 0, text
        assert "/lib/pad.bin" in b.littlefs_files()
        # Back to the first image: pad.bin goes, a file in /data stays.
        from tools.flashing.link import BoardLink
        from tools.flashing.ui import Ui

        link = BoardLink(b.path, Ui(out=io.StringIO())).open()
        link.stop_program()
        link.write_file("/data/queue/seg-0001", b"readings not sent yet")
        link.close()
        code, text = esp(image, b.path)
        assert code == 0, text
        files = b.littlefs_files()
        assert "/lib/pad.bin" not in files
        assert files["/data/queue/seg-0001"] == b"readings not sent yet"
        assert other["build"] != image[2]["build"]


def _bytes_for_a_full_deploy(image, tmp_path):
    with FakeBoard(tmp_path / "count", rom_kb=0) as b:
        assert esp(image, b.path, "--no-watch")[0] == 0
        return b.received


def test_cable_dropped_mid_write_then_the_rerun_resumes(tmp_path):
    img = make_image(tmp_path / "img", padding=12000)
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), img)
    total = _bytes_for_a_full_deploy(image, tmp_path)
    with FakeBoard(tmp_path / "b", rom_kb=0, drop_after=int(total * 0.7)) as b:
        code, text = esp(image, b.path)
        assert code == 1
        err = text.strip().splitlines()
        assert err[-2].startswith("error: the connection to the board on %s broke while writing /"
                                  % b.path), text  # fmt: skip
        assert "run the same command again" in err[-1]
        assert "Traceback" not in text
        # Not reported done, and the board will not run a half-written image.
        assert "done:" not in text
        assert "/image.json" not in b.littlefs_files()
        mark = len(b.transcript)
        port = b.reconnect()  # the cable back in: the board powers on with what it has
        b.wait_output(b">>> ", since=mark)
        assert b"agent: boot" not in bytes(b.transcript[mark:])
        code, text = esp(image, port)
        assert code == 0, text
        assert "already on the board with the right hash" in text
        assert b.littlefs_files()["/image.json"]


def test_full_filesystem_is_refused_before_anything_is_written(tmp_path):
    make_image(tmp_path / "img", padding=60000)
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), None)
    with FakeBoard(tmp_path / "b", rom_kb=0, fs_kb=48) as b:
        before = b.littlefs_files()
        code, text = esp(image, b.path)
        assert code == 1
        assert "error: the board's filesystem on %s is too small for the image" % b.path in text
        assert "next: use a board with more flash" in text
        assert b.littlefs_files() == before


def test_filesystem_full_while_writing_is_one_clear_message(tmp_path):
    make_image(tmp_path / "img", padding=60000)
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), None)
    with FakeBoard(tmp_path / "b", rom_kb=0, fs_kb=48, statvfs_extra_kb=512) as b:
        code, text = esp(image, b.path)
        assert code == 1
        assert "error: the board's filesystem is full (while writing /" in text
        assert "Traceback" not in text


def test_board_that_does_not_answer(image, tmp_path):
    with FakeBoard(tmp_path / "b", silent=True) as b:
        code, text = esp(image, b.path, "--answer-timeout", "2")
        assert code == 1
        assert "error: the board on %s does not answer MicroPython's REPL" % b.path in text
        assert "--firmware FILE --erase" in text


def test_wrong_chip(image, tmp_path):
    with FakeBoard(tmp_path / "b", machine="Generic ESP32S3 module with ESP32S3") as b:
        code, text = esp(image, b.path)
        assert code == 1
        assert ("error: the board on %s is an esp32s3 (Generic ESP32S3 module with ESP32S3); "
                "the image is for test-esp32 (esp32)" % b.path) in text


def test_firmware_too_old(image, tmp_path):
    with FakeBoard(tmp_path / "b", version="1.22.0") as b:
        code, text = esp(image, b.path)
        assert code == 1
        assert ("error: the board runs MicroPython 1.22.0 (.mpy v6.3); the image needs "
                "MicroPython 1.27.0 or later with .mpy v6.3") in text
        assert "--firmware ESP32_GENERIC-<date>-v1.27.0.bin --erase" in text


def test_mpy_version_mismatch(tmp_path):
    make_image(tmp_path / "img", mpy="6.2")
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), None)
    with FakeBoard(tmp_path / "b") as b:
        code, text = esp(image, b.path)
        assert code == 1
        assert "(.mpy v6.3); the image needs MicroPython 1.27.0 or later with .mpy v6.2" in text


def test_agent_that_does_not_start_is_not_done(tmp_path):
    make_image(tmp_path / "img", build="0000000000000000")
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), None)
    # The board's /image.json and the code's disagree: boot.py refuses to run the code.
    manifest = json.loads((tmp_path / "img" / "manifest.json").read_text())
    (tmp_path / "img" / "files" / "image.json").write_text('{"build": "ffff"}')
    for e in manifest["files"]:
        if e["dest"] == "/image.json":
            import hashlib

            e["sha256"] = hashlib.sha256(b'{"build": "ffff"}').hexdigest()
            e["size"] = 17
    (tmp_path / "img" / "manifest.json").write_text(json.dumps(manifest))
    with FakeBoard(tmp_path / "b") as b:
        code, text = esp(image, b.path)
        assert code == 1
        assert ("error: the board's files are all in place, but the agent did not start: "
                "site-agent: no code matching /image.json") in text


def test_no_acknowledgement_is_reported_but_not_a_failure(tmp_path):
    make_image(tmp_path / "img", ack=False)
    image = (str(tmp_path / "img"), write_board(tmp_path / "board.json"), None)
    with FakeBoard(tmp_path / "b") as b:
        code, text = flash("esp32", "--image", image[0], "--board", image[1], "--port", b.path,
                           "--ack-timeout", "2")  # fmt: skip
        assert code == 0, text
        assert text.strip().endswith("no acknowledgement within 2 s: the network may be down "
                                     "here; the board keeps its readings until it can send them")


def test_dry_run_prints_every_step_and_touches_nothing(image, tmp_path):
    with FakeBoard(tmp_path / "b") as b:
        code, text = flash("--dry-run", "esp32", "--image", image[0], "--board", image[1],
                           "--port", b.path)  # fmt: skip
        assert code == 0, text
        lines = [ln for ln in text.splitlines() if ln.startswith("would ")]
        assert lines[0] == ("would connect to %s, reset the board and stop it while it boots"
                            % b.path)  # fmt: skip
        assert "would write /site.json (144 bytes, config)" in lines
        assert lines[-1].startswith("would reset the board; watch its output")
        assert b.received == 0


def test_several_ports_in_a_row_with_a_summary(image, tmp_path):
    boards = [FakeBoard(tmp_path / ("b%d" % i), silent=(i == 2)) for i in range(3)]
    for b in boards:
        b.start()
    try:
        args = []
        for b in boards:
            args += ["--port", b.path]
        code, text = esp(image, boards[0].path, *args[2:], "--answer-timeout", "2")
        assert code == 1
        assert "summary: 3 board(s): 2 done, 1 failed" in text
        rows = text.strip().splitlines()[-3:]
        assert rows[0].split()[:2] == [boards[0].path, "done"]
        assert rows[1].split()[:2] == [boards[1].path, "done"]
        assert rows[2].split()[:2] == [boards[2].path, "FAILED"]
        assert "does not answer" in rows[2]
    finally:
        for b in boards:
            b.stop()


class FakePort:
    def __init__(self, device, vid=None, pid=None, serial_number=None):
        self.device = device
        self.vid = vid
        self.pid = pid
        self.serial_number = serial_number


def test_repeat_waits_for_the_next_board(image, tmp_path):
    boards = [FakeBoard(tmp_path / ("r%d" % i)) for i in range(2)]
    for b in boards:
        b.start()
    # What USB shows over time: board 0, then nothing (unplugged), then board 1.
    timeline = [[boards[0].path]] * 3 + [[]] * 2 + [[boards[1].path]] * 100
    seen = []

    def list_ports():
        now = timeline[min(len(seen), len(timeline) - 1)]
        seen.append(now)
        return [FakePort(d, 0x10C4, 0xEA60) for d in now]

    try:
        parser = cli.build_parser()
        args = parser.parse_args(["esp32", "--image", image[0], "--board", image[1],
                                  "--repeat", "2", "--ack-timeout", "10"])  # fmt: skip
        out = io.StringIO()
        from tools.flashing.ui import Ui

        code = esp32.run(args, Ui(out=out), list_ports=list_ports)
        text = out.getvalue()
        assert code == 0, text
        assert "board 1 of 2 done: unplug it and plug in the next one" in text
        assert "summary: 2 board(s): 2 done, 0 failed" in text
        assert all(b.littlefs_files().get("/image.json") for b in boards)
    finally:
        for b in boards:
            b.stop()


# --- finding the port -------------------------------------------------------------------------


def test_port_found_by_usb_ids():
    listing = [FakePort("/dev/ttyS0"), FakePort("/dev/ttyUSB3", 0x1A86, 0x7523),
               FakePort("/dev/ttyACM0", 0x2341, 0x0043)]  # fmt: skip
    assert ports.choose(None, lambda: listing) == "/dev/ttyUSB3"
    for vid, pid in ((0x10C4, 0xEA60), (0x1A86, 0x55D4), (0x0403, 0x6001), (0x0403, 0x6015),
                     (0x303A, 0x1001), (0x303A, 0x4001)):  # fmt: skip
        assert ports.boards(lambda v=vid, p=pid: [FakePort("/dev/x", v, p)])[0][0] == "/dev/x"


def test_no_board_found():
    with pytest.raises(FlashError) as e:
        ports.choose(None, lambda: [FakePort("/dev/ttyS0"), FakePort("/dev/ttyACM0", 1, 2)])
    assert e.value.message == ("no ESP32 board found on USB (looked for CP210x, CH340/CH9102, "
                               "FTDI and the ESP32-S3's own USB); other serial ports: "
                               "/dev/ttyS0, /dev/ttyACM0")  # fmt: skip
    assert "data cable" in e.value.hint


def test_several_boards_ask_or_refuse():
    listing = [FakePort("/dev/ttyUSB1", 0x10C4, 0xEA60, "0001"),
               FakePort("/dev/ttyUSB0", 0x10C4, 0xEA60, "0002")]  # fmt: skip
    asked = []

    def ask(choices):
        asked.append(choices)
        return choices[1][0]

    assert ports.choose(None, lambda: listing, ask) == "/dev/ttyUSB1"
    assert asked == [[("/dev/ttyUSB0", "CP210x serial 0002"),
                      ("/dev/ttyUSB1", "CP210x serial 0001")]]
    with pytest.raises(FlashError) as e:
        ports.choose(None, lambda: listing, lambda choices: None)
    assert e.value.message.startswith("2 boards are plugged in: /dev/ttyUSB0 (CP210x serial")
    assert "--port" in e.value.hint


def test_named_port_that_does_not_exist():
    with pytest.raises(FlashError) as e:
        ports.choose("/dev/ttyUSB9", lambda: [FakePort("/dev/ttyUSB0", 0x10C4, 0xEA60)])
    assert e.value.message == "no serial port /dev/ttyUSB9"
    assert e.value.hint.endswith("boards found now: /dev/ttyUSB0")


# --- the firmware file (esptool) ---------------------------------------------------------------


def test_firmware_file_checked_as_esptool_sees_it(tmp_path):
    table = json.loads(open(write_board(tmp_path / "b.json")).read())
    good = make_firmware(tmp_path / "esp32.bin", "esp32")
    info = firmware.check_image(good, table)
    assert info["chip"] == "esp32" and info["offset"] == 0x1000
    assert info["partitions"] == ["nvs", "phy_init", "factory", "vfs"] and not info["romfs"]
    assert firmware.check_image(make_firmware(tmp_path / "rom.bin", "esp32", romfs=True),
                                table)["romfs"]  # fmt: skip
    s3 = make_firmware(tmp_path / "s3.bin", "esp32s3")
    with pytest.raises(FlashError) as e:
        firmware.check_image(s3, table)
    assert e.value.message == ("%s is firmware for an esp32s3; the board test-esp32 is an esp32"
                               % s3)  # fmt: skip
    s3_table = dict(table, chip="esp32s3")
    assert firmware.check_image(s3, s3_table)["offset"] == 0
    app_only = make_firmware(tmp_path / "app.bin", "esp32", merged=False)
    with pytest.raises(FlashError) as e:
        firmware.check_image(app_only, table)
    assert "is not a complete firmware image" in e.value.message
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 4096)
    with pytest.raises(FlashError) as e:
        firmware.check_image(str(junk), table)
    assert e.value.message.startswith("%s is not an ESP32 firmware image (esptool image-info:"
                                      % junk)  # fmt: skip


def test_chip_names():
    for text, want in (("ESP32-D0WD-V3", "esp32"), ("ESP32-S3 (QFN56)", "esp32s3"),
                       ("ESP32", "esp32"), ("esp32s3", "esp32s3"), ("ESP32-C3", "esp32c3"),
                       ("ESP32S3", "esp32s3")):  # fmt: skip
        assert firmware.chip_name(text) == want, text


def test_firmware_dry_run_names_offset_and_steps(image, tmp_path):
    fw = make_firmware(tmp_path / "fw.bin", "esp32")
    code, text = flash("--dry-run", "esp32", "--image", image[0], "--board", image[1],
                       "--port", "/dev/null", "--firmware", fw, "--erase")  # fmt: skip
    assert code == 0, text
    assert "would ask the chip on /dev/null what it is (esptool)" in text
    assert "would erase the whole flash (the board's files and data go too)" in text
    assert "would write fw.bin (%d KB, esp32) at 0x1000" % (os.path.getsize(fw) // 1024) in text


def test_firmware_write_with_no_bootloader_answering(image, tmp_path):
    fw = make_firmware(tmp_path / "fw.bin", "esp32")
    with FakeBoard(tmp_path / "b") as b:
        code, text = esp(image, b.path, "--firmware", fw, "--esptool-attempts", "1")
        assert code == 1
        assert "error: no ESP32 bootloader answered on %s" % b.path in text
        assert "hold the board's BOOT button" in text


def test_cli_errors_have_no_traceback(image, tmp_path):
    cases = [
        ["esp32", "--image", image[0], "--board", image[1], "--port", "/dev/ttyUSB9"],
        ["esp32", "--image", str(tmp_path / "nowhere"), "--board", image[1]],
        ["esp32", "--board", "no-such-board.json", "--image", image[0]],
        ["esp32", "--image", image[0], "--board", image[1], "--erase"],
        ["pi", "--config", str(tmp_path / "missing.toml"), "--bundle", str(tmp_path / "x")],
    ]
    for argv in cases:
        r = subprocess.run([sys.executable, FLASH, *argv], capture_output=True, text=True,
                           timeout=120)  # fmt: skip
        assert r.returncode in (1, 2), (argv, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr + r.stdout, argv
        assert r.stderr.startswith("error: "), (argv, r.stderr)
