"""`tools/flash.py pi`: the agent on a Raspberry Pi, from a site config.

    --bundle FILE   make an offline installer (a .tar.gz): wheels for the Pi's Python and CPUs,
                    the unit, the config and its secrets, install.py. Copy it to the Pi, then
                    `tar xzf FILE && sudo python3 site-agent-*/install.py`.
    --root DIR      install into a Pi's root filesystem mounted at DIR (an SD card in the
                    workshop); the CPU, Python and glibc are read from DIR.
    --ssh HOST      install over SSH ([user@]host): the Pi is asked what it runs, a bundle is
                    made (or --from one is used), copied over ssh, installed as root (sudo -n
                    unless the login is root), then removed.

The installer itself is tools/flashing/pi_install.py (standard library only); what it lays out,
how upgrade and rollback work and what the unit does are in docs/flash.md.
"""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from agent import __version__
from tools.flashing import pi_install, siteconfig, wheels
from tools.flashing.errors import EXIT_USAGE, FlashError

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
UNIT_FILE = os.path.join(ROOT, "config", "site-agent.service")
DATA_DIR = pi_install.DATA
SSH_OPTS = ["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=15"]
PROBE = ("import os, platform, sys; print(os.uname().machine, '%d.%d' % sys.version_info[:2], "
         "platform.libc_ver()[1])")  # fmt: skip


def check_config_for_pi(cfg):
    """What the unit's sandbox requires of a config, refused before anything is built."""
    errors = []
    data_dir = os.path.normpath(cfg.storage["dir"])
    if data_dir != DATA_DIR and not data_dir.startswith(DATA_DIR + "/"):
        errors.append(
            '%s: storage.dir: the service may write only under %s (ProtectSystem=strict), got '
            '"%s"; set dir = "%s"' % (cfg.source, DATA_DIR, cfg.storage["dir"], DATA_DIR))
    if errors:
        raise FlashError("config error:\n  " + "\n  ".join(errors),
                         "fix the config and run the same command again", EXIT_USAGE)


def _tls_files(cfg):
    out = []
    for b in (cfg.uplink or {}).get("brokers", []):
        for key in ("ca_file", "cert_file", "key_file"):
            if b.get(key):
                out.append((key, b[key]))
    return out


def make_bundle(args, ui, arches, python, glibc, out_path):
    """Build the bundle; return its path. `arches` like ["arm64", "armhf"]."""
    cfg, secrets = siteconfig.load(args.config, args.secrets)
    check_config_for_pi(cfg)
    for w in cfg.warnings:
        ui.warn(w)
    ui.step("make an offline bundle for %s, Python %s, glibc %s: %s"
            % (" and ".join(arches), python, glibc, out_path))  # fmt: skip
    if ui.dry:
        ui.step("fetch wheels with pip for %s; write install.py, the unit, the config, %d env "
                "secret(s) and %d secret file(s)" % (", ".join(arches), len(secrets.env),
                                                      len(secrets.files)))  # fmt: skip
        return out_path
    with tempfile.TemporaryDirectory() as tmp:
        name = "site-agent-%s-%s" % (cfg.site["id"], __version__)
        top = os.path.join(tmp, name)
        os.makedirs(top)
        ui.info("fetching wheels (pip)")
        got = wheels.fetch(ROOT, os.path.join(top, "wheels"), arches, python, glibc,
                           piwheels=args.piwheels, log=ui)  # fmt: skip
        allowed = set(args.system_packages or ())
        missing = {a: [n for n in names if n.lower() not in allowed]
                   for a, names in got["missing"].items()}  # fmt: skip
        missing = {a: names for a, names in missing.items() if names}
        if missing:
            what = "; ".join("%s: %s" % (a, ", ".join(n)) for a, n in sorted(missing.items()))
            hint = ("--piwheels adds Raspberry Pi OS builds (armhf) from piwheels.org; or install "
                    "the Debian packages on the Pi (apt-get install %s) and pass "
                    "--system-packages %s; or leave that CPU out with --arch" % (
                        " ".join("python3-" + n for n in sorted(set(sum(missing.values(), [])))),
                        ",".join(sorted(set(sum(missing.values(), []))))))  # fmt: skip
            raise FlashError("no wheel for Python %s on %s" % (python, what), hint)
        _write_bundle(top, cfg, secrets, args, arches, python, glibc)
        _write_tar(tmp, name, out_path)
    size = os.path.getsize(out_path)
    ui.info("bundle %s (%.1f MB; it holds the site's secrets: keep it private)"
            % (out_path, size / 1e6))  # fmt: skip
    return out_path


def _write_bundle(top, cfg, secrets, args, arches, python, glibc):
    shutil.copy(pi_install.__file__, os.path.join(top, "install.py"))
    os.makedirs(os.path.join(top, "systemd"))
    shutil.copy(UNIT_FILE, os.path.join(top, "systemd", "site-agent.service"))
    etc = os.path.join(top, "etc")
    os.makedirs(os.path.join(etc, "secret-files"))
    shutil.copy(args.config, os.path.join(etc, "site.toml"))
    with open(os.path.join(etc, "env"), "w") as f:
        f.write(secrets.env_file_text())
    files = {}
    extra = {path: None for _k, path in _tls_files(cfg)}
    for i, (path, text) in enumerate(sorted(secrets.files.items())):
        files[_pi_path(path)] = "s%d" % i
        with open(os.path.join(etc, "secret-files", "s%d" % i), "w") as f:
            f.write(text)
    for j, path in enumerate(sorted(extra)):
        src = os.path.join(args.secrets, os.path.basename(path)) if args.secrets else None
        if src and os.path.isfile(src):
            files[_pi_path(path)] = "t%d" % j
            shutil.copy(src, os.path.join(etc, "secret-files", "t%d" % j))
    with open(os.path.join(etc, "secret-files.json"), "w") as f:
        json.dump(files, f, indent=1, sort_keys=True)
    doc = os.path.join(top, "doc")
    os.makedirs(doc)
    shutil.copy(os.path.join(ROOT, "README.md"), doc)
    for name in sorted(os.listdir(os.path.join(ROOT, "docs"))):
        if name.endswith(".md"):
            shutil.copy(os.path.join(ROOT, "docs", name), doc)
    meta = {"version": __version__, "site": cfg.site["id"], "python": python, "glibc": glibc,
            "arches": arches, "system_packages": sorted(args.system_packages or ()),
            "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}  # fmt: skip
    with open(os.path.join(top, "bundle.json"), "w") as f:
        json.dump(meta, f, indent=1)
    with open(os.path.join(top, "README.txt"), "w") as f:
        f.write("Site agent %s for site %s (%s, Python %s).\n\nOn the Pi, as root:\n"
                "    python3 install.py            install or upgrade (keeps the config)\n"
                "    python3 install.py --rollback back to the previous release\n"
                "See /usr/share/doc/site-agent/flash.md after the install.\n"
                % (__version__, cfg.site["id"], ", ".join(arches), python))  # fmt: skip


def _pi_path(path):
    """A secret file's path on the Pi: relative paths are relative to the config's folder."""
    return path if path.startswith("/") else os.path.normpath(pi_install.ETC + "/" + path)


def _write_tar(tmp, name, out_path):
    def private(info):
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        if "/etc/" in "/" + info.name + "/" or info.name.endswith("/etc"):
            info.mode = 0o700 if info.isdir() else 0o600
        return info

    part = out_path + ".part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        tar.add(os.path.join(tmp, name), arcname=name, filter=private)
    os.replace(part, out_path)


# --- --root --------------------------------------------------------------------------------------


def _run_installer(bundle, extra, ui):
    with tempfile.TemporaryDirectory() as tmp:
        with tarfile.open(bundle) as tar:
            tar.extractall(tmp, filter="data")
        top = os.path.join(tmp, os.listdir(tmp)[0])
        cmd = [sys.executable, os.path.join(top, "install.py"), *extra]
        r = subprocess.run(cmd, text=True, capture_output=True, check=False)
    for line in r.stdout.splitlines():
        ui.info(line)
    if r.returncode != 0:
        err = r.stderr.strip().splitlines()
        message = err[0][len("error: "):] if err and err[0].startswith("error: ") else r.stderr
        hint = next((ln.split("next:", 1)[1].strip() for ln in err if "next:" in ln), None)
        raise FlashError(message, hint)


def install_root(args, ui):
    root = os.path.abspath(args.root)
    if not os.path.isdir(root):
        raise FlashError("%s is not a folder" % root, "mount the Pi's root filesystem there")
    try:
        arch, python = pi_install.Target(root).python()
    except pi_install.InstallError as e:
        raise FlashError(str(e), e.hint) from None
    glibc = _root_glibc(root) or args.glibc
    ui.step("install into the Pi root filesystem at %s (%s, Python %s)" % (root, arch, python))
    if os.geteuid() != 0 and not ui.dry:
        raise FlashError("writing a Pi's root filesystem needs root (files owned by root and by "
                         "the site-agent user)", "run it with sudo")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.from_bundle or make_bundle(args, ui, [arch], python, glibc,
                                                 os.path.join(tmp, "bundle.tar.gz"))
        if ui.dry:
            ui.step("run install.py --root %s --no-start" % root)
            return 0
        extra = ["--root", root, "--no-start"] + (["--replace-config"] if args.replace_config
                                                  else [])  # fmt: skip
        _run_installer(bundle, extra, ui)
    ui.result("done: site-agent installed in %s; it starts when the Pi boots" % root)
    return 0


def _root_glibc(root):
    """glibc version of a root filesystem, read from its libc.so.6."""
    for triplet in ("aarch64-linux-gnu", "arm-linux-gnueabihf", "x86_64-linux-gnu"):
        for d in ("usr/lib/" + triplet, "lib/" + triplet):
            path = os.path.join(root, d, "libc.so.6")
            if os.path.isfile(path):
                with open(path, "rb") as f:
                    m = re.search(rb"release version (2\.\d+)", f.read())
                if m:
                    return m.group(1).decode()
    return None


# --- --ssh ---------------------------------------------------------------------------------------


def _ssh_cmd(args):
    cmd = ["ssh", *SSH_OPTS]
    if args.ssh_config:
        cmd += ["-F", args.ssh_config]
    if args.ssh_port:
        cmd += ["-p", str(args.ssh_port)]
    return cmd + [args.ssh]


def _ssh(args, command, timeout=600, stdin=None):
    try:
        return subprocess.run(_ssh_cmd(args) + [command], capture_output=True, text=stdin is None,
                              timeout=timeout, check=False, stdin=stdin)  # fmt: skip
    except subprocess.TimeoutExpired:
        raise FlashError("the Pi at %s stopped answering over SSH" % args.ssh,
                         "check the Pi's power and network, then run again: an interrupted "
                         "install never switches the running release") from None


def _unreachable(args, r):
    err = r.stderr if isinstance(r.stderr, str) else r.stderr.decode(errors="replace")
    reason = (err.strip().splitlines() or ["ssh exited with %d" % r.returncode])[-1]
    return FlashError("cannot reach the Pi at %s: %s" % (args.ssh, reason),
                      "check that the Pi is powered and on this network, the address, and that "
                      "`ssh %s` works without a password prompt (ssh-copy-id)" % args.ssh)


# Run on the Pi: unpack privately (the bundle holds the site's secrets), install as root (sudo
# when the login is not root), remove the bundle whatever happens.
REMOTE_INSTALL = ("umask 077; S=; [ \"$(id -u)\" -eq 0 ] || S='sudo -n'; "
                  "mkdir -p {w} && tar xzf {b} -C {w} && $S python3 {w}/*/install.py{f}; "
                  "rc=$?; rm -rf {w} {b}; exit $rc")  # fmt: skip


def install_ssh(args, ui):
    ui.step("ask the Pi at %s what it runs" % args.ssh)
    if ui.dry:
        ui.step("make a bundle for its CPU and Python, copy it over ssh, run install.py as root")
        return 0
    r = _ssh(args, "python3 -c " + shlex.quote(PROBE), timeout=60)
    if r.returncode != 0:
        raise _unreachable(args, r)
    machine, python, glibc = (r.stdout.split() + ["", "", ""])[:3]
    arch = pi_install.UNAME_MACHINES.get(machine)
    if arch is None:
        raise FlashError("the Pi at %s is %s; bundles exist for arm64, armhf and amd64"
                         % (args.ssh, machine))  # fmt: skip
    ui.info("%s: %s, Python %s, glibc %s" % (args.ssh, arch, python, glibc or "?"))
    with tempfile.TemporaryDirectory() as tmp:
        bundle = args.from_bundle or make_bundle(args, ui, [arch], python, glibc or args.glibc,
                                                 os.path.join(tmp, "bundle.tar.gz"))
        remote = "/tmp/site-agent-bundle-%d.tar.gz" % os.getpid()
        ui.step("copy the bundle to %s:%s (%d KB)" % (args.ssh, remote,
                                                      os.path.getsize(bundle) // 1024))
        with open(bundle, "rb") as f:
            r = _ssh(args, "umask 077; cat > " + shlex.quote(remote), stdin=f)
        if r.returncode != 0:
            raise _unreachable(args, r)
        ui.step("install on %s" % args.ssh)
        work = remote[: -len(".tar.gz")]
        flags = " --replace-config" if args.replace_config else ""
        script = REMOTE_INSTALL.format(w=shlex.quote(work), b=shlex.quote(remote), f=flags)
        r = _ssh(args, "sh -c " + shlex.quote(script))
        for line in r.stdout.splitlines():
            ui.info(line)
        if r.returncode != 0:
            _ssh(args, "rm -rf %s %s" % (shlex.quote(work), shlex.quote(remote)), timeout=60)
            text = r.stderr.strip()
            if "sudo" in text and "password" in text:
                raise FlashError("sudo on %s asks for a password" % args.ssh,
                                 "log in and run the install by hand (see docs/flash.md), or "
                                 "allow passwordless sudo for this user")  # fmt: skip
            raise FlashError("the install on %s failed:\n%s" % (args.ssh, text),
                             "read the message above; the running release was not changed")
    if "systemd is not running here" in r.stdout:
        ui.result("done: site-agent installed on %s; it starts at the next boot" % args.ssh)
    else:
        ui.result("done: site-agent installed and running on %s" % args.ssh)
    return 0


def run(args, ui):
    if args.bundle:
        arches = args.arch or ["arm64", "armhf"]
        make_bundle(args, ui, arches, args.python, args.glibc, os.path.abspath(args.bundle))
        if not ui.dry:
            ui.result("done: copy %s to the Pi, then: tar xzf %s && sudo python3 "
                      "site-agent-*/install.py" % (args.bundle, os.path.basename(args.bundle)))
        return 0
    if args.root:
        return install_root(args, ui)
    return install_ssh(args, ui)


def add_parser(sub):
    p = sub.add_parser("pi", help="install on a Raspberry Pi (bundle, SD card root or SSH)",
                       description=__doc__.split("\n\n")[1])  # fmt: skip
    p.add_argument("--config", required=True, help="the site config (TOML)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--bundle", metavar="FILE", help="make an offline installer here")
    where.add_argument("--root", metavar="DIR", help="install into a Pi root filesystem")
    where.add_argument("--ssh", metavar="[USER@]HOST", help="install over SSH")
    p.add_argument("--ssh-port", type=int, help="SSH port (default 22)")
    p.add_argument("--ssh-config", metavar="FILE", help="ssh client config file (ssh -F)")
    p.add_argument("--from", dest="from_bundle", metavar="FILE",
                   help="install this bundle instead of making one (--root, --ssh)")
    p.add_argument("--secrets", metavar="DIR", help="folder with the config's secrets")
    p.add_argument("--arch", action="append", choices=sorted(wheels.ARCH_MACHINE),
                   help="CPU(s) for --bundle (default: arm64 and armhf)")
    p.add_argument("--python", default="3.11",
                   help="the Pi's Python for --bundle (default 3.11, Raspberry Pi OS 12)")
    p.add_argument("--glibc", default="2.36", help="the Pi's glibc for --bundle (default 2.36)")
    p.add_argument("--piwheels", action="store_true",
                   help="also fetch armhf wheels from piwheels.org")
    p.add_argument("--system-packages", type=lambda s: [x.strip().lower() for x in s.split(",")],
                   help="packages to take from the Pi's Debian packages (python3-NAME)")
    p.add_argument("--replace-config", action="store_true",
                   help="on an upgrade, replace the installed config (default: keep it)")
    return p
