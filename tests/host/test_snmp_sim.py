"""hil/snmpsim.py: the launcher answers before start() returns and leaves nothing behind."""

import os
import socket

import pytest

from hil.snmpsim import SnmpSim, _get_packet, find_recording, read_snmprec

EATON = "UPS/eaton-93e-80"


def test_serves_answers_and_cleans_up():
    sim = SnmpSim([EATON])
    with sim:
        tmp, pid = sim.tmp, sim.proc.pid
        assert os.path.isdir(tmp) and os.path.exists("/proc/%d" % pid)
        assert sim.community_for(EATON) == EATON
        rec = sim.expected(EATON)
        # hex-encoded strings in the recording are decoded: sysDescr is "4x|4541..." on disk
        assert rec["1.3.6.1.2.1.1.1.0"] == ("4", "EATON 93E 80")
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.settimeout(2)
        s.sendto(_get_packet(EATON), ("127.0.0.1", sim.port))
        assert b"EATON 93E 80" in s.recv(2048)
        s.close()
        with pytest.raises(KeyError):
            sim.community_for("UPS/huawei-gse200m")
    assert not os.path.exists(tmp)
    assert sim.proc is None
    with (
        open("/proc/%d/stat" % pid) if os.path.exists("/proc/%d" % pid) else open(os.devnull) as f
    ):
        assert f.read().split(") ")[-1][:1] in ("", "Z")  # gone (or a reaped-soon zombie)
    sim.stop()  # twice is fine


def test_unknown_recording_fails_before_starting_anything():
    with pytest.raises(FileNotFoundError, match="no recording"):
        SnmpSim(["UPS/no-such-device"]).start()
    assert find_recording("power/eltek-smartpack").endswith(
        "hil/recordings/power/eltek-smartpack.snmprec"
    )
    assert read_snmprec(find_recording("power/netsure"))["1.3.6.1.4.1.6302.2.1.2.2.0"] == (
        "2",
        "53480",
    )
