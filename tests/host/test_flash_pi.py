"""tools/flash.py pi: the offline bundle, the install into a Pi root filesystem (--root), the
installed agent started from that root under its unit's sandbox against the simulated site,
upgrade and rollback, `systemd-analyze verify`, and the errors.

systemd is not PID 1 here, so the unit cannot be started by systemd: hil/pi_root.py runs its
ExecStart the way the unit says (user, groups, EnvironmentFile, notify socket and watchdog,
ProtectSystem=strict, ReadWritePaths, ProtectHome, PrivateTmp) in a private mount namespace.
That needs root; the tests say so rather than skip.

The "Pi" is this machine (amd64, Debian's /usr/bin/python3): the bundle is made for it with
--arch amd64, through the same code that makes arm64 and armhf bundles (tested for their
wheels at the end, which needs PyPI, as ./run setup does).
"""

import io
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import time

import pytest

from agent.core.console.auth import make_hash
from hil.net import free_port
from hil.pi_root import make as make_root
from hil.site import SimulatedSite
from hil.upstream import Upstream
from tools.flashing import cli

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FLASH = os.path.join(ROOT, "tools", "flash.py")
PIN = "2468"
pytestmark = pytest.mark.slow


def _need_root():
    assert os.geteuid() == 0, ("these tests mount a Pi root filesystem in a private mount "
                               "namespace and chown files to its users: run them as root")


def _host_python():
    out = subprocess.run(["/usr/bin/python3", "-c", "import sys; print('%d.%d' % "
                          "sys.version_info[:2])"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def flash(*argv):
    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def in_root(root, *cmd, check=True):
    r = subprocess.run([sys.executable, "-m", "hil.pi_root", "exec", str(root), "--", *cmd],
                       capture_output=True, text=True, cwd=ROOT, timeout=600)  # fmt: skip
    if check:
        assert r.returncode == 0, r.stdout + r.stderr
    return r


SITE_EXTRA = """
[console]
enabled = false
socket = true
pin_hash = { env = "SITE_AGENT_CONSOLE_PIN_HASH" }
"""


def pi_config(site, path):
    """The simulated site's config as a Pi would have it: data in /var/lib/site-agent, the SNMP
    UPS's community and the console PIN hash as { env = ... } secrets."""
    with open(site.config_path) as f:
        text = f.read()
    text = re.sub(r'dir = ".*"', 'dir = "/var/lib/site-agent"', text)
    ups = site.snmp.community_for("UPS/eaton-93e-80")
    text = text.replace('community = "%s"' % ups, 'community = { env = "UPS_COMMUNITY" }', 1)
    with open(path, "w") as f:
        f.write(text + SITE_EXTRA)
    secrets = os.path.join(os.path.dirname(path), "secrets")
    os.makedirs(secrets, exist_ok=True)
    with open(os.path.join(secrets, "UPS_COMMUNITY"), "w") as f:
        f.write(ups + "\n")
    with open(os.path.join(secrets, "SITE_AGENT_CONSOLE_PIN_HASH"), "w") as f:
        f.write(make_hash(PIN, iterations=1000) + "\n")
    return path, secrets


@pytest.fixture(scope="module")
def site():
    s = SimulatedSite(interval=1)
    s.start()
    # What udev does for a USB-serial adapter: the device is root:dialout 0660.
    for emu in (s.ups_serial, s.solar, s.bms):
        os.chown(emu.path, 0, 20)
        os.chmod(emu.path, 0o660)
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, site):
    _need_root()
    work = tmp_path_factory.mktemp("bundle")
    config, secrets = pi_config(site, str(work / "site.toml"))
    path = str(work / "site-agent.tar.gz")
    code, text = flash("pi", "--config", config, "--secrets", secrets, "--bundle", path,
                       "--arch", "amd64", "--python", _host_python())  # fmt: skip
    assert code == 0, text
    return {"path": path, "config": config, "secrets": secrets, "dir": str(work)}


def install(root, bundle, *extra):
    return in_root(root, sys.executable, FLASH, "pi", "--config", bundle["config"], "--secrets",
                   bundle["secrets"], "--root", str(root), "--from", bundle["path"], *extra)


@pytest.fixture
def root(tmp_path):
    _need_root()
    return make_root(str(tmp_path / "root"))


def _stat(root, path):
    st = os.lstat(os.path.join(root, path.lstrip("/")))
    return st.st_uid, st.st_gid, st.st_mode & 0o7777


def _user(root):
    with open(os.path.join(root, "etc/passwd")) as f:
        row = next(ln.split(":") for ln in f if ln.startswith("site-agent:"))
    return int(row[2]), int(row[3]), row[5], row[6].strip()


def test_bundle_holds_wheels_unit_config_secrets_and_installer(bundle):
    with tarfile.open(bundle["path"]) as tar:
        names = tar.getnames()
        top = names[0].split("/")[0]
        meta = json.load(tar.extractfile(top + "/bundle.json"))
        env = tar.extractfile(top + "/etc/env").read().decode()
        modes = {m.name: m.mode for m in tar.getmembers()}
    assert top == "site-agent-demo-bts-01-0.1.0"
    assert meta["arches"] == ["amd64"] and meta["site"] == "demo-bts-01"
    wheels = [n.split("/")[-1] for n in names if n.endswith(".whl")]
    for dist in ("site_agent", "paho_mqtt", "pysnmp", "pyserial", "psutil", "cryptography",
                 "cffi", "pyasn1"):  # fmt: skip
        assert any(w.startswith(dist + "-") for w in wheels), dist
    assert all(w.endswith("-none-any.whl") or "x86_64" in w for w in wheels), wheels
    assert 'UPS_COMMUNITY="' in env and "SITE_AGENT_CONSOLE_PIN_HASH=" in env
    assert modes[top + "/etc/env"] == 0o600 and modes[top + "/etc"] == 0o700
    assert os.stat(bundle["path"]).st_mode & 0o077 == 0  # the file itself is private
    assert top + "/install.py" in names and top + "/systemd/site-agent.service" in names


def test_root_install_lays_out_user_venv_config_unit_and_docs(root, bundle):
    r = install(root, bundle)
    assert "done: site-agent installed in %s; it starts when the Pi boots" % root in r.stdout
    uid, gid, home, shell = _user(root)
    assert (home, shell) == ("/var/lib/site-agent", "/usr/sbin/nologin")
    with open(os.path.join(root, "etc/group")) as f:
        groups = {ln.split(":")[0]: ln.strip().split(":") for ln in f}
    assert "site-agent" in groups["dialout"][3].split(",")
    assert int(groups["site-agent"][2]) == gid
    assert _stat(root, "/etc/site-agent/site.toml") == (0, gid, 0o640)
    assert _stat(root, "/etc/site-agent/env") == (0, 0, 0o600)
    assert _stat(root, "/var/lib/site-agent") == (uid, gid, 0o750)
    current = os.readlink(os.path.join(root, "opt/site-agent/current"))
    assert current.startswith("releases/0.1.0-")
    rel = os.path.join(root, "opt/site-agent", current)
    with open(os.path.join(rel, "pyvenv.cfg")) as f:
        assert f.read().startswith("home = /usr/bin\n")
    assert os.readlink(os.path.join(rel, "bin/python")) == "/usr/bin/python3"
    with open(os.path.join(rel, "bin/site-agent")) as f:
        assert f.readline() == "#!/opt/site-agent/%s/bin/python\n" % current
    unit = os.path.join(root, "etc/systemd/system/site-agent.service")
    with open(os.path.join(ROOT, "config/site-agent.service")) as a, open(unit) as b:
        assert a.read() == b.read()
    wants = os.path.join(root, "etc/systemd/system/multi-user.target.wants/site-agent.service")
    assert os.readlink(wants) == "/etc/systemd/system/site-agent.service"
    docs = os.path.join(root, ".usr-changes/upper/share/doc/site-agent")  # under the root's /usr
    assert {"README.md", "console.md", "flash.md"} <= set(os.listdir(docs))
    # The installed agent runs in the root (chrooted), byte-compiled once at install.
    r = in_root(root, "chroot", str(root), "/usr/local/bin/site-agent", "--version")
    assert r.stdout.strip() == "site-agent 0.1.0"
    pycs = [f for _, _, fs in os.walk(rel) for f in fs if f.endswith(".pyc")]
    assert len(pycs) > 100


def test_unit_passes_systemd_analyze_verify(root, bundle):
    install(root, bundle)
    r = in_root(root, "systemd-analyze", "verify", "--root=%s" % root,
                "/etc/systemd/system/site-agent.service", check=False)  # fmt: skip
    assert (r.returncode, r.stdout + r.stderr) == (0, "")
    # verify does fail on what matters: the unit as it was before (ExecStart /usr/bin/site-agent,
    # which nothing installs).
    old = os.path.join(root, "etc/systemd/system/old.service")
    with open(os.path.join(ROOT, "config/site-agent.service")) as f:
        text = f.read().replace("/opt/site-agent/current/bin/site-agent", "/usr/bin/site-agent")
    with open(old, "w") as f:
        f.write(text)
    r = in_root(root, "systemd-analyze", "verify", "--root=%s" % root,
                "/etc/systemd/system/old.service", check=False)  # fmt: skip
    assert r.returncode != 0 and "/usr/bin/site-agent is not executable" in r.stderr


def _probe_unit(root, read_write_paths):
    """The shipped unit with its own sandbox lines, but an ExecStart that tries to write where
    an export might go and reports what happened."""
    with open(os.path.join(ROOT, "config/site-agent.service")) as f:
        text = f.read()
    probe = ("/usr/bin/sh -c 'for p in /media/usb/probe /opt/probe /tmp/probe /var/lib/site-agent"
             "/probe; do if echo x > $p 2>/dev/null; then echo ok $p; else echo no $p; fi; done'")
    text = re.sub(r"(?m)^ExecStart=.*$", "ExecStart=" + probe, text)
    text = re.sub(r"(?m)^Type=notify$", "Type=simple", text)
    text = re.sub(r"(?m)^(NotifyAccess|WatchdogSec)=.*\n", "", text)
    if read_write_paths is not None:
        text = re.sub(r"(?m)^ReadWritePaths=.*$", "ReadWritePaths=" + read_write_paths, text)
    path = os.path.join(root, "etc/systemd/system/probe.service")
    with open(path, "w") as f:
        f.write(text)
    r = subprocess.run([sys.executable, "-m", "hil.pi_root", "service", root, "--unit",
                        "/etc/systemd/system/probe.service"], capture_output=True, text=True,
                       cwd=ROOT, timeout=120)  # fmt: skip
    assert r.returncode == 0, r.stderr
    return dict(reversed(ln.split()) for ln in r.stdout.split("\n") if ln)


def test_the_units_sandbox_lets_the_export_reach_a_usb_stick(root, bundle):
    install(root, bundle)
    uid, gid, _, _ = _user(root)
    os.chown(os.path.join(root, "media/usb"), uid, gid)  # a stick mounted with uid=site-agent
    got = _probe_unit(root, None)
    assert got == {"/media/usb/probe": "ok", "/opt/probe": "no", "/tmp/probe": "ok",
                   "/var/lib/site-agent/probe": "ok"}  # fmt: skip
    assert os.path.exists(os.path.join(root, "media/usb/probe"))
    assert not os.path.exists(os.path.join(root, "tmp/probe"))  # PrivateTmp: its own /tmp
    # The unit as it was (ReadWritePaths=/var/lib/site-agent only): the stick is read-only.
    os.remove(os.path.join(root, "media/usb/probe"))
    got = _probe_unit(root, "/var/lib/site-agent")
    assert got["/media/usb/probe"] == "no" and got["/var/lib/site-agent/probe"] == "ok"


class Console:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.s.settimeout(0.2)
        self.screen = b""

    def say(self, line):
        self.s.sendall(line.encode() + b"\r")

    def expect(self, text, timeout=30):
        deadline = time.monotonic() + timeout
        while text.encode() not in self.screen:
            assert time.monotonic() < deadline, "never saw %r in:\n%s" % (
                text, self.screen.decode(errors="replace"))
            try:
                self.screen += self.s.recv(4096)
            except TimeoutError:
                pass
        at = self.screen.index(text.encode()) + len(text)
        seen, self.screen = self.screen[:at], self.screen[at:]
        return seen.decode(errors="replace")


def _wait(pred, timeout, what, proc=None, log=None):
    deadline = time.monotonic() + timeout
    while not pred():
        if proc is not None and proc.poll() is not None:
            raise AssertionError("the service exited with %s before %s:\n%s" % (
                proc.returncode, what, open(log).read() if log else ""))
        assert time.monotonic() < deadline, "timed out waiting for " + what + (
            ":\n" + open(log).read()[-3000:] if log else "")
        time.sleep(0.2)


def test_installed_agent_runs_from_the_root_under_its_unit(root, bundle, site, tmp_path):
    install(root, bundle)
    uid, gid, _, _ = _user(root)
    os.chown(os.path.join(root, "media/usb"), uid, gid)
    notify = str(tmp_path / "notify.log")
    log_path = str(tmp_path / "agent.log")
    up = Upstream("127.0.0.1", site.broker.port, site.prefix, site.site_id).start()
    with open(log_path, "w") as log:
        svc = subprocess.Popen([sys.executable, "-m", "hil.pi_root", "service", root,
                                "--notify-log", notify], stdout=log, stderr=log, cwd=ROOT)
    try:
        _wait(lambda: os.path.exists(notify) and "READY=1" in open(notify).read(), 90,
              "READY=1 on the notify socket", svc, log_path)  # fmt: skip
        # The UPS on SNMP answers only with the community from the EnvironmentFile.
        keys = [("ups-snmp", "battery.charge"), ("ups-serial", "input.voltage")]
        _wait(lambda: all(k in up.latest for k in keys), 90, "readings at the broker", svc,
              log_path)  # fmt: skip
        _wait(lambda: "WATCHDOG=1" in open(notify).read(), 60, "a watchdog ping", svc, log_path)
        # A broker outage, so there is a backlog to carry away on the stick.
        site.broker.halt()
        time.sleep(4)
        sock = os.path.join(root, "var/lib/site-agent/console.sock")
        con = Console(sock)
        con.say("login")
        con.expect("PIN")
        con.say(PIN)
        con.expect("logged in")
        con.expect("]>")
        con.say("export /media/usb/backlog.jsonl")
        done = con.expect("]>")
        assert re.search(r"wrote \d+ records to /media/usb/backlog.jsonl", done), done
        exported = os.path.join(root, "media/usb/backlog.jsonl")
        assert os.stat(exported).st_uid == uid
        with open(exported) as f:
            first = json.loads(f.readline())
        assert first["site"] == "demo-bts-01" and first["lane"] in ("alarm", "routine")
        assert int(re.search(r"wrote (\d+) records", done).group(1)) > 0
        con.say("export /opt/backlog.jsonl")
        text = con.expect("]>")  # the unit's ProtectSystem: /opt is read-only to the agent
        assert "cannot write /opt/backlog.jsonl" in text and "read-only" in text, text
        con.s.close()
    finally:
        site.broker.restart()
        svc.terminate()
        try:
            svc.wait(30)
        finally:
            up.stop()
    assert svc.returncode == 0, open(log_path).read()[-2000:]
    with open(log_path) as f:
        text = f.read()
    assert re.search(r"INFO agent: started .*site=demo-bts-01", text)
    assert "INFO agent: stopped" in text
    community = site.snmp.community_for("UPS/eaton-93e-80")
    assert community not in text  # the secret from the EnvironmentFile is never logged


def _edit_config(bundle, tmp_path, **replace):
    with open(bundle["config"]) as f:
        text = f.read()
    for old, new in replace.items():
        text = text.replace(old, new)
    path = str(tmp_path / "site2.toml")
    with open(path, "w") as f:
        f.write(text)
    b = dict(bundle, config=path)
    out = str(tmp_path / "b2.tar.gz")
    code, msg = flash("pi", "--config", path, "--secrets", bundle["secrets"], "--bundle", out,
                      "--arch", "amd64", "--python", _host_python())  # fmt: skip
    assert code == 0, msg
    return dict(b, path=out)


def test_upgrade_keeps_config_and_data_and_rolls_back(root, bundle, tmp_path):
    install(root, bundle)
    first = os.readlink(os.path.join(root, "opt/site-agent/current"))
    data = os.path.join(root, "var/lib/site-agent/queue-marker")
    with open(data, "w") as f:
        f.write("unsent readings")
    time.sleep(1.1)  # release names carry the second
    newer = _edit_config(bundle, tmp_path, **{"commit_interval = 1": "commit_interval = 2"})
    r = install(root, newer)
    assert "kept the existing /etc/site-agent/site.toml" in r.stdout
    second = os.readlink(os.path.join(root, "opt/site-agent/current"))
    assert second != first
    assert os.readlink(os.path.join(root, "opt/site-agent/previous")) == first
    with open(os.path.join(root, "etc/site-agent/site.toml")) as f:
        assert "commit_interval = 1\n" in f.read()
    with open(data) as f:
        assert f.read() == "unsent readings"
    rb = in_root(root, sys.executable, os.path.join(ROOT, "tools/flashing/pi_install.py"),
                 "--rollback", "--root", str(root))  # fmt: skip
    assert "current is now %s" % first.split("/")[-1] in rb.stdout
    assert os.readlink(os.path.join(root, "opt/site-agent/current")) == first
    assert os.readlink(os.path.join(root, "opt/site-agent/previous")) == second
    time.sleep(1.1)
    r = install(root, newer, "--replace-config")
    with open(os.path.join(root, "etc/site-agent/site.toml")) as f:
        assert "commit_interval = 2\n" in f.read()
    with open(os.path.join(root, "etc/site-agent/site.toml.previous")) as f:
        assert "commit_interval = 1\n" in f.read()


# --- errors -------------------------------------------------------------------------------------


def test_root_that_is_not_a_pi_root(tmp_path, bundle):
    _need_root()
    empty = tmp_path / "card"
    empty.mkdir()
    code, text = flash("pi", "--config", bundle["config"], "--secrets", bundle["secrets"],
                       "--root", str(empty), "--from", bundle["path"])  # fmt: skip
    assert code == 1
    assert "error: %s has no /usr/bin/python3: is it the Pi's root filesystem?" % empty in text
    assert "the big ext4 one" in text


def test_bundle_for_another_cpu_is_refused(root, bundle, tmp_path):
    top = "site-agent-demo-bts-01-0.1.0"
    other = str(tmp_path / "arm.tar.gz")
    with tarfile.open(bundle["path"]) as src, tarfile.open(other, "w:gz") as dst:
        for m in src.getmembers():
            data = src.extractfile(m) if m.isfile() else None
            if m.name == top + "/bundle.json":
                meta = json.load(data)
                meta["arches"] = ["arm64"]
                raw = json.dumps(meta).encode()
                m.size = len(raw)
                data = io.BytesIO(raw)
            dst.addfile(m, data)
    r = in_root(root, sys.executable, FLASH, "pi", "--config", bundle["config"], "--root",
                str(root), "--from", other, check=False)  # fmt: skip
    assert r.returncode == 1
    assert "error: the bundle has wheels for arm64; this system is amd64" in r.stderr
    assert "make the bundle again with --arch amd64" in r.stderr
    assert not os.path.exists(os.path.join(root, "opt/site-agent"))


def test_config_errors_are_refused_before_anything_is_built(tmp_path, bundle):
    bad = tmp_path / "bad.toml"
    with open(bundle["config"]) as f:
        bad.write_text(f.read().replace('dir = "/var/lib/site-agent"', 'dir = "/data/agent"'))
    code, text = flash("pi", "--config", str(bad), "--secrets", bundle["secrets"], "--bundle",
                       str(tmp_path / "x.tar.gz"))  # fmt: skip
    assert code == 2
    assert ('%s: storage.dir: the service may write only under /var/lib/site-agent '
            '(ProtectSystem=strict), got "/data/agent"' % bad) in text
    code, text = flash("pi", "--config", bundle["config"], "--bundle",
                       str(tmp_path / "y.tar.gz"))  # no --secrets  # fmt: skip
    assert code == 2
    assert "devices[0].snmp.community: environment variable UPS_COMMUNITY is not set" in text
    assert "next: give each secret as --secrets DIR" in text
    typo = tmp_path / "typo.toml"
    with open(bundle["config"]) as f:
        typo.write_text(f.read().replace("interval = 1", "intervall = 1", 1))
    code, text = flash("pi", "--config", str(typo), "--secrets", bundle["secrets"], "--bundle",
                       str(tmp_path / "z.tar.gz"))  # fmt: skip
    assert code == 2 and 'intervall: unknown key (did you mean "interval"?)' in text
    assert not (tmp_path / "x.tar.gz").exists() and not (tmp_path / "z.tar.gz").exists()


def test_unreachable_pi_over_ssh(tmp_path, bundle):
    port = free_port()
    r = subprocess.run([sys.executable, FLASH, "pi", "--config", bundle["config"], "--secrets",
                        bundle["secrets"], "--ssh", "pi@127.0.0.1", "--ssh-port", str(port)],
                       capture_output=True, text=True, timeout=120)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("error: cannot reach the Pi at pi@127.0.0.1: "), r.stderr
    assert "Connection refused" in r.stderr
    assert "`ssh pi@127.0.0.1` works without a password prompt" in r.stderr
    assert "Traceback" not in r.stderr


def test_arm_bundles_have_arm_wheels_or_name_what_is_missing(tmp_path, bundle):
    """arm64 has every wheel on PyPI; armhf lacks some (psutil and cffi when this was written):
    the bundle either holds armv7l wheels for all, or the error names each missing package."""
    out = str(tmp_path / "arm.tar.gz")
    code, text = flash("pi", "--config", bundle["config"], "--secrets", bundle["secrets"],
                       "--bundle", out, "--arch", "arm64")  # fmt: skip
    assert code == 0, text
    with tarfile.open(out) as tar:
        wheels = [n.split("/")[-1] for n in tar.getnames() if n.endswith(".whl")]
    binary = [w for w in wheels if not w.endswith("-none-any.whl")]
    assert binary and all("aarch64" in w for w in binary), binary
    code, text = flash("pi", "--config", bundle["config"], "--secrets", bundle["secrets"],
                       "--bundle", str(tmp_path / "hf.tar.gz"), "--arch", "armhf")  # fmt: skip
    if code == 0:
        with tarfile.open(str(tmp_path / "hf.tar.gz")) as tar:
            binary = [n for n in tar.getnames() if n.endswith(".whl") and "none-any" not in n]
        assert binary and all("armv7l" in n for n in binary), binary
    else:
        m = re.search(r"error: no wheel for Python 3\.11 on armhf: (.*)", text)
        assert m, text
        for name in m.group(1).split(", "):
            # Each one named really has no armv7l wheel: pip cannot fetch it alone either.
            r = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps",
                                "--only-binary=:all:", "--dest", str(tmp_path / "chk"),
                                "--python-version", "3.11", "--implementation", "cp",
                                "--platform", "manylinux2014_armv7l", "--platform",
                                "manylinux_2_36_armv7l", "--platform", "linux_armv7l", name],
                               capture_output=True, text=True)  # fmt: skip
            assert r.returncode != 0, name
        assert "--piwheels" in text and "--system-packages" in text
    shutil.rmtree(tmp_path / "chk", ignore_errors=True)


def _unpack_into(root, bundle_path, edit_config=None):
    """The bundle copied onto the Pi and unpacked there (what `--ssh` and a USB stick do)."""
    dest = os.path.join(root, "tmp", "bundle")
    with tarfile.open(bundle_path) as tar:
        tar.extractall(dest, filter="data")
    top = os.listdir(dest)[0]
    if edit_config:
        path = os.path.join(dest, top, "etc", "site.toml")
        with open(path) as f:
            text = edit_config(f.read())
        with open(path, "w") as f:
            f.write(text)
    return "/tmp/bundle/%s/install.py" % top


def test_install_on_the_pi_itself_checks_the_config_before_switching(root, bundle):
    # Run by the Pi's own python3 (chrooted into the root): the path `--ssh` and a bundle on a
    # stick take. systemd is not running there, which the installer says.
    script = _unpack_into(root, bundle["path"])
    r = in_root(root, "chroot", str(root), "/usr/bin/python3", script)
    assert "systemd is not running here: the service starts at the next boot" in r.stdout
    first = os.readlink(os.path.join(root, "opt/site-agent/current"))
    r = in_root(root, "chroot", str(root), "/usr/bin/python3", script, "--status")
    assert r.stdout.splitlines()[0] == "current:  " + first.split("/")[-1]
    # A config edited by hand into something the agent refuses: nothing is switched.
    shutil.rmtree(os.path.join(root, "tmp", "bundle"))
    script = _unpack_into(root, bundle["path"], lambda t: t + "\n[storage2]\nx = 1\n")
    time.sleep(1.1)
    r = in_root(root, "chroot", str(root), "/usr/bin/python3", script, "--replace-config",
                check=False)  # fmt: skip
    assert r.returncode == 1
    assert r.stderr.startswith("error: the new release refuses the config:")
    assert "storage2: unknown key" in r.stderr
    assert os.readlink(os.path.join(root, "opt/site-agent/current")) == first
    with open(os.path.join(root, "etc/site-agent/site.toml")) as f:
        assert "storage2" not in f.read()  # the refused config was not left in place


class Sshd:
    """A real OpenSSH server on loopback whose sessions run inside the Pi root: every command
    (ForceCommand) goes through hil.pi_root into a chroot of `root`, so `pi --ssh` installs
    into the root and never into this machine."""

    def __init__(self, work, root):
        self.work = str(work)
        self.port = free_port()
        os.makedirs(self.work, exist_ok=True)
        key = os.path.join(self.work, "id")
        host_key = os.path.join(self.work, "host_key")
        for path in (key, host_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path],
                           check=True)  # fmt: skip
        shutil.copy(key + ".pub", os.path.join(self.work, "authorized_keys"))
        force = ("cd %s && %s -m hil.pi_root exec %s -- chroot %s /bin/sh -c "
                 '"$SSH_ORIGINAL_COMMAND"' % (ROOT, sys.executable, root, root))  # fmt: skip
        self.config = os.path.join(self.work, "sshd_config")
        with open(self.config, "w") as f:
            f.write("Port %d\nListenAddress 127.0.0.1\nHostKey %s\nPidFile %s/sshd.pid\n"
                    "AuthorizedKeysFile %s/authorized_keys\nPermitRootLogin prohibit-password\n"
                    "PasswordAuthentication no\nStrictModes no\nUsePAM no\nForceCommand %s\n"
                    % (self.port, host_key, self.work, self.work, force))  # fmt: skip
        self.client = os.path.join(self.work, "ssh_config")
        with open(self.client, "w") as f:
            f.write("Host *\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n"
                    "  StrictHostKeyChecking accept-new\n"
                    % (key, os.path.join(self.work, "known_hosts")))  # fmt: skip
        os.makedirs("/run/sshd", exist_ok=True)
        self.proc = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", self.config],
                                     stderr=open(os.path.join(self.work, "sshd.log"), "w"))
        from hil.net import wait_tcp

        wait_tcp("127.0.0.1", self.port, 15, self.proc)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


def test_install_over_ssh_into_the_pi(root, bundle, tmp_path):
    sshd = Sshd(tmp_path / "ssh", root)
    try:
        r = subprocess.run([sys.executable, FLASH, "pi", "--config", bundle["config"],
                            "--secrets", bundle["secrets"], "--ssh", "root@127.0.0.1",
                            "--ssh-port", str(sshd.port), "--ssh-config", sshd.client,
                            "--from", bundle["path"]], capture_output=True, text=True,
                           timeout=600)  # fmt: skip
    finally:
        sshd.stop()
    assert r.returncode == 0, r.stdout + r.stderr
    assert "127.0.0.1: amd64, Python %s" % _host_python() in r.stdout
    assert r.stdout.strip().endswith(
        "done: site-agent installed on root@127.0.0.1; it starts at the next boot")
    assert os.readlink(os.path.join(root, "opt/site-agent/current")).startswith("releases/0.1.0-")
    assert os.path.exists(os.path.join(root, "etc/site-agent/env"))
    assert [n for n in os.listdir(os.path.join(root, "tmp")) if "site-agent" in n] == []
