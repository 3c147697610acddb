"""Launch snmpsim's command responder on loopback, serving chosen recordings (host only).

    with SnmpSim(["UPS/eaton-93e-80", "network/wifi/ubiquiti-m5"]) as sim:
        sim.port                               # UDP port on 127.0.0.1
        sim.community_for("UPS/eaton-93e-80")  # -> "UPS/eaton-93e-80"
        sim.recording_path("UPS/eaton-93e-80") # decompressed .snmprec, for expected values

Recording names are paths under snmpsim-data's data directory (or under hil/recordings/, which
wins when both hold a name) without the .snmprec[.bz2] suffix. The data directory keeps that
layout, so snmpsim's community name (and SNMPv3 context name) is the recording name itself,
slashes included: no flattening, no table of aliases to keep in sync.

Invariants: start() returns only once the responder answers an SNMP GET for sysDescr of the first
recording; stop() kills the process (its process group) and removes the temp dir, and is safe to
call twice. Everything lives in one temp dir: data, index cache, log.
"""

import bz2
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
LOCAL_RECORDINGS = os.path.join(HERE, "recordings")

# SNMPv3 user snmpsim accepts when `v3_user` is given (SHA + AES128, authPriv).
DEFAULT_V3 = {
    "user": "agent",
    "auth_protocol": "SHA",
    "auth_key": "authkey-12345",
    "priv_protocol": "AES",
    "priv_key": "privkey-12345",
}


def snmpsim_data_dir():
    """The data directory of the installed snmpsim-data package."""
    try:
        import snmpsim_data
    except ImportError as e:
        raise RuntimeError("snmpsim-data is not installed (pip install snmpsim-data)") from e
    return os.path.join(os.path.dirname(snmpsim_data.__file__), "data")


def find_recording(name):
    """Path of the recording file for `name` (.snmprec or .snmprec.bz2); FileNotFoundError if none.
    """
    for base in (LOCAL_RECORDINGS, snmpsim_data_dir()):
        for suffix in (".snmprec", ".snmprec.bz2"):
            path = os.path.join(base, name + suffix)
            if os.path.isfile(path):
                return path
    raise FileNotFoundError(f"no recording {name!r} in hil/recordings or snmpsim-data")


def read_snmprec(path):
    """Parse a .snmprec file into {oid: (type_tag, value_text)}. Tests read expected values here.
    Hex values (tag ending in 'x') are decoded to text (latin-1)."""
    out = {}
    with open(path, encoding="latin-1") as f:
        for line in f:
            line = line.rstrip("\r\n")
            if not line or line.startswith("#"):
                continue
            oid, tag, value = line.split("|", 2)
            if tag.endswith("x"):
                tag = tag[:-1]
                value = bytes.fromhex(value).decode("latin-1")
            out[oid] = (tag, value)
    return out


def free_udp_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _ber_len(n):
    if n < 128:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def _tlv(tag, body):
    return bytes([tag]) + _ber_len(len(body)) + body


def _get_packet(community, request_id=0x1234):
    """An SNMPv2c GetRequest for sysDescr.0, just enough to see that the responder is up."""
    oid = bytes([0x2B, 6, 1, 2, 1, 1, 1, 0])  # 1.3.6.1.2.1.1.1.0
    varbind = _tlv(0x30, _tlv(0x06, oid) + b"\x05\x00")
    pdu = _tlv(
        0xA0,
        _tlv(0x02, request_id.to_bytes(2, "big"))
        + b"\x02\x01\x00\x02\x01\x00"
        + _tlv(0x30, varbind),
    )
    return _tlv(0x30, b"\x02\x01\x01" + _tlv(0x04, community.encode()) + pdu)


class SnmpSim:
    """snmpsim-command-responder on 127.0.0.1:<free port> serving `recordings`."""

    def __init__(self, recordings, v3_user=None, start_timeout=30.0):
        if not recordings:
            raise ValueError("SnmpSim needs at least one recording")
        self.recordings = list(recordings)
        self.v3 = dict(DEFAULT_V3, **v3_user) if v3_user is not None else None
        self.start_timeout = start_timeout
        self.port = None
        self.tmp = None
        self.proc = None
        self._stderr = None
        self._paths = {}

    # --- public ----------------------------------------------------------------------------
    def community_for(self, recording):
        if recording not in self.recordings:
            raise KeyError(f"recording {recording!r} is not served by this SnmpSim")
        return recording

    def recording_path(self, name):
        """The decompressed .snmprec served for `name`."""
        return self._paths[name]

    def expected(self, name):
        """{oid: (type_tag, value_text)} of a served recording."""
        return read_snmprec(self.recording_path(name))

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="snmpsim-")
        try:
            self._prepare_data()
            for _attempt in range(3):  # the free port may be taken between probe and bind
                self.port = free_udp_port()
                self._spawn()
                if self._wait_ready():
                    return self
                self._kill()
            raise RuntimeError(
                f"snmpsim did not answer on 127.0.0.1:{self.port}; log:\n{self.log_tail()}"
            )
        except BaseException:
            self.stop()
            raise

    def stop(self):
        self._kill()
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def log_tail(self, n=40):
        try:
            with open(
                os.path.join(self.tmp, "snmpsim.log"), encoding="utf-8", errors="replace"
            ) as f:
                return "".join(f.readlines()[-n:])
        except (OSError, TypeError):
            return ""

    # --- internals -------------------------------------------------------------------------
    def _prepare_data(self):
        data = os.path.join(self.tmp, "data")
        for name in self.recordings:
            src = find_recording(name)
            dst = os.path.join(data, name + ".snmprec")
            os.makedirs(os.path.dirname(dst), exist_ok=True)
            opener = bz2.open if src.endswith(".bz2") else open
            with opener(src, "rb") as fin, open(dst, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            self._paths[name] = dst
        os.makedirs(os.path.join(self.tmp, "cache"), exist_ok=True)

    def _command(self):
        exe = os.path.join(os.path.dirname(sys.executable), "snmpsim-command-responder")
        if not os.path.exists(exe):
            raise RuntimeError(
                f"snmpsim-command-responder not found next to {sys.executable} (pip install "
                "snmpsim)"
            )
        cmd = [
            exe,
            "--data-dir=" + os.path.join(self.tmp, "data"),
            "--cache-dir=" + os.path.join(self.tmp, "cache"),
            "--agent-udpv4-endpoint=127.0.0.1:%d" % self.port,
            "--logging-method=file:" + os.path.join(self.tmp, "snmpsim.log"),
        ]
        if self.v3 is not None:
            cmd += [
                "--v3-user=" + self.v3["user"],
                "--v3-auth-key=" + self.v3["auth_key"],
                "--v3-auth-proto=" + self.v3["auth_protocol"],
                "--v3-priv-key=" + self.v3["priv_key"],
                "--v3-priv-proto=" + self.v3["priv_protocol"],
            ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root snmpsim drops privileges to 'nobody' unless told otherwise, and then cannot
            # read our temp dir.
            cmd += ["--process-user=root", "--process-group=root"]
        return cmd

    def _spawn(self):
        self._stderr = open(os.path.join(self.tmp, "stderr.log"), "wb")
        self.proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            start_new_session=True,  # own process group: stop() kills it and nothing else
        )

    def _wait_ready(self):
        packet = _get_packet(self.community_for(self.recordings[0]))
        deadline = time.monotonic() + self.start_timeout
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            s.settimeout(0.2)
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    return False
                try:
                    s.sendto(packet, ("127.0.0.1", self.port))
                    reply = s.recv(65535)
                    if reply and reply[0] == 0x30:
                        return True
                except OSError:  # timeout, or ICMP port unreachable before the bind
                    time.sleep(0.05)
            return False
        finally:
            s.close()

    def _kill(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None


if __name__ == "__main__":  # python -m hil.snmpsim UPS/eaton-93e-80 ... : serve until Ctrl-C
    names = sys.argv[1:] or ["UPS/eaton-93e-80", "network/wifi/ubiquiti-m5"]
    # SIGTERM too must stop the responder (its own process group) and remove the temp dir
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with SnmpSim(names) as sim:
        print("snmpsim on 127.0.0.1:%d; communities: %s" % (sim.port, ", ".join(names)))
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
