"""A Raspberry Pi root filesystem stand-in, and the site-agent unit run in it under the unit's
own sandbox settings, for testing `tools/flash.py pi --root` where systemd is not PID 1.

    python -m hil.pi_root make DIR                  a skeleton root: its own /etc (the host's
                                                    users), /var, /opt, /media/usb, /tmp ...
    python -m hil.pi_root exec DIR -- CMD ...       run CMD (not chrooted) while DIR has the
                                                    host's /usr (an overlay), /dev and /proc
    python -m hil.pi_root service DIR [--notify-log FILE] [--unit FILE]
                                                    run the installed unit's ExecStart the way
                                                    systemd would (below), until SIGTERM

`exec` and `service` need root: they run in a private mount namespace (`unshare --mount
--propagation private`), so nothing they mount is seen outside or outlives them. The root gets
the host's /usr because a test machine cannot run a Pi's arm binaries: the "Pi" is this
machine's CPU and Python, which the bundle is then made for (--arch amd64).

What `service` does of the unit's [Service] section (the settings config/site-agent.service
uses; anything else there is refused, so a new setting cannot go untested silently):
  User=, Group=, SupplementaryGroups=  chroot into DIR, then setgroups/setgid/setuid from DIR's
                                       /etc/passwd and /etc/group
  EnvironmentFile=                     read as root before dropping privileges ("-": optional)
  Type=notify, NotifyAccess=main,      NOTIFY_SOCKET (abstract), WATCHDOG_USEC, WATCHDOG_PID;
  WatchdogSec=                         every datagram is appended to --notify-log
  NoNewPrivileges=yes                  prctl(PR_SET_NO_NEW_PRIVS)
  ProtectSystem=strict                 DIR bound onto itself and made read-only; /dev and /proc
                                       are separate mounts and stay as they are
  ReadWritePaths=                      each bound onto itself read-write first ("-": optional)
  ProtectHome=yes                      /home, /root, /run/user: empty, mode 000
  PrivateTmp=yes                       /tmp and /var/tmp: fresh tmpfs
  StateDirectory=, ConfigurationDirectory=   made if missing (owner User for StateDirectory)
  Restart=, RestartSec=, Timeout*=, StartLimit*=, WantedBy= ...: lifecycle, not emulated
Not emulated: systemd's other hardening defaults, cgroups, the journal (output goes to stdout).
"""

import argparse
import ctypes
import os
import shlex
import signal
import socket
import subprocess
import sys
import threading

UNIT = "/etc/systemd/system/site-agent.service"
MARK = "SITE_AGENT_PI_ROOT_NS"
HANDLED = {"User", "Group", "SupplementaryGroups", "EnvironmentFile", "Type", "NotifyAccess",
           "WatchdogSec", "NoNewPrivileges", "ProtectSystem", "ReadWritePaths", "ProtectHome",
           "PrivateTmp", "StateDirectory", "ConfigurationDirectory", "ExecStart"}  # fmt: skip
LIFECYCLE = {"Restart", "RestartSec", "TimeoutStartSec", "TimeoutStopSec"}
PR_SET_NO_NEW_PRIVS = 38


# --- the skeleton -------------------------------------------------------------------------------


def make(root):
    """A root filesystem with the host's users and groups and empty system folders."""
    for d in ("etc/systemd/system", "usr", "dev", "proc", "sys", "run/user", "tmp", "var/tmp",
              "var/lib", "opt", "home", "root", "media/usb", "mnt"):  # fmt: skip
        os.makedirs(os.path.join(root, d), exist_ok=True)
    os.chmod(os.path.join(root, "tmp"), 0o1777)
    os.chmod(os.path.join(root, "var/tmp"), 0o1777)
    for name in ("bin", "lib", "lib64", "sbin"):
        link = os.path.join(root, name)
        if not os.path.lexists(link):
            os.symlink("usr/" + name, link)
    for name in ("passwd", "group", "shadow", "gshadow", "os-release", "nsswitch.conf"):
        src = os.path.join("/etc", name)
        if os.path.exists(src):
            with open(src, "rb") as f:
                data = f.read()
            dst = os.path.join(root, "etc", name)
            with open(dst, "wb") as f:
                f.write(data)
            os.chmod(dst, os.stat(src).st_mode & 0o777)
    return root


# --- mounts ------------------------------------------------------------------------------------


def _mount(*args):
    subprocess.run(["mount", *args], check=True)


def _in_namespace(argv):
    """Re-run this program in a private mount namespace (once)."""
    if os.environ.get(MARK) == "1":
        return
    if os.geteuid() != 0:
        sys.exit("hil.pi_root: mounting needs root (a private mount namespace)")
    env = dict(os.environ, **{MARK: "1"})
    cmd = ["unshare", "--mount", "--propagation", "private", sys.executable, "-m",
           "hil.pi_root", *argv]  # fmt: skip
    os.execvpe("unshare", cmd, env)


def mount_system(root):
    """The host's /usr, /dev and /proc inside the root. /usr is an overlay: the host's files
    below, the root's own changes (docs, /usr/local/bin links) in DIR/.usr-changes above, kept
    from one run to the next and never written to the host's /usr."""
    changes = os.path.join(root, ".usr-changes")
    for d in ("upper", "work"):
        os.makedirs(os.path.join(changes, d), exist_ok=True)
    _mount("-t", "overlay", "overlay", "-o", "lowerdir=/usr,upperdir=%s,workdir=%s"
           % (os.path.join(changes, "upper"), os.path.join(changes, "work")),
           os.path.join(root, "usr"))  # fmt: skip
    _mount("--rbind", "/dev", os.path.join(root, "dev"))
    _mount("-t", "proc", "proc", os.path.join(root, "proc"))


# --- the unit -----------------------------------------------------------------------------------


def parse_unit(path):
    """{key: [values]} of the [Service] section."""
    out = {}
    section = None
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")):
                continue
            if line.startswith("["):
                section = line.strip("[]")
                continue
            if section == "Service" and "=" in line:
                key, value = line.split("=", 1)
                out.setdefault(key.strip(), []).append(value.strip())
    unknown = set(out) - HANDLED - LIFECYCLE
    if unknown:
        raise SystemExit("hil.pi_root: the unit uses %s, which this stand-in does not emulate"
                         % ", ".join(sorted(unknown)))  # fmt: skip
    return out


def one(unit, key, default=None):
    return unit.get(key, [default])[-1]


def words(unit, key):
    return [w for v in unit.get(key, []) for w in v.split()]


def read_env_file(path):
    """systemd EnvironmentFile= syntax: KEY=VALUE, optionally double or single quoted."""
    env = {}
    with open(path) as f:
        for raw in f:
            line = raw.strip()
            if not line or line.startswith(("#", ";")) or "=" not in line:
                continue
            key, value = line.split("=", 1)
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                quote, value = value[0], value[1:-1]
                if quote == '"':
                    value = value.replace('\\"', '"').replace("\\\\", "\\")
            env[key.strip()] = value
    return env


def _ids(root, user, group, extra):
    def table(name):
        with open(os.path.join(root, "etc", name)) as f:
            return [ln.rstrip("\n").split(":") for ln in f if ln.count(":") >= 3]

    users = {r[0]: r for r in table("passwd")}
    groups = {r[0]: int(r[2]) for r in table("group")}
    pw = users[user]
    return int(pw[2]), groups[group or user], [groups[g] for g in extra], pw[5]


def sandbox(root, unit):
    """ProtectSystem=strict, ReadWritePaths=, ProtectHome=yes, PrivateTmp=yes on `root`."""
    if one(unit, "ProtectSystem") not in (None, "strict"):
        raise SystemExit("hil.pi_root: only ProtectSystem=strict is emulated")
    _mount("--rbind", root, root)  # with its submounts: /usr, /dev, /proc
    for spec in words(unit, "ReadWritePaths"):
        optional = spec.startswith("-")
        path = os.path.join(root, spec.lstrip("-").lstrip("/"))
        if not os.path.isdir(path):
            if optional:
                continue
            raise SystemExit("hil.pi_root: ReadWritePaths %s does not exist" % spec)
        _mount("--bind", path, path)
    if one(unit, "ProtectSystem") == "strict":
        _mount("-o", "remount,bind,ro", root)
        _mount("-o", "remount,bind,ro", os.path.join(root, "usr"))  # a mount of its own
    if one(unit, "ProtectHome") == "yes":
        for d in ("home", "root", "run/user"):
            p = os.path.join(root, d)
            if os.path.isdir(p):
                _mount("-t", "tmpfs", "-o", "ro,mode=000", "tmpfs", p)
    if one(unit, "PrivateTmp") == "yes":
        for d in ("tmp", "var/tmp"):
            _mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", os.path.join(root, d))


def service(root, unit_path, notify_log):
    unit = parse_unit(os.path.join(root, unit_path.lstrip("/")))
    uid, gid, groups, home = _ids(root, one(unit, "User"), one(unit, "Group"),
                                  words(unit, "SupplementaryGroups"))  # fmt: skip
    for d in words(unit, "StateDirectory"):
        p = os.path.join(root, "var/lib", d)
        os.makedirs(p, exist_ok=True)
        os.chown(p, uid, gid)
    for d in words(unit, "ConfigurationDirectory"):
        os.makedirs(os.path.join(root, "etc", d), exist_ok=True)
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin", "HOME": home,
           "USER": one(unit, "User"), "LOGNAME": one(unit, "User"), "LANG": "C.UTF-8"}  # fmt: skip
    for spec in unit.get("EnvironmentFile", []):
        path = os.path.join(root, spec.lstrip("-").lstrip("/"))
        if os.path.exists(path):
            env.update(read_env_file(path))
        elif not spec.startswith("-"):
            raise SystemExit("hil.pi_root: EnvironmentFile %s is missing" % spec)
    listener = None
    if one(unit, "Type") == "notify":
        name = "site-agent-notify-%d" % os.getpid()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        listener.bind("\0" + name)
        env["NOTIFY_SOCKET"] = "@" + name
        wd = one(unit, "WatchdogSec")
        if wd:
            env["WATCHDOG_USEC"] = str(int(float(wd) * 1_000_000))
    argv = shlex.split(one(unit, "ExecStart"))
    sandbox(root, unit)
    no_new_privs = one(unit, "NoNewPrivileges") == "yes"

    def become():
        os.chroot(root)
        os.chdir("/")
        os.setgroups(groups)
        os.setgid(gid)
        os.setuid(uid)
        if no_new_privs:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
        os.environ["WATCHDOG_PID"] = str(os.getpid())

    child = subprocess.Popen(argv, env=env, preexec_fn=become)  # noqa: PLW1509 - by design
    if listener is not None:
        def pump():
            with open(notify_log, "a") as log:
                while True:
                    data = listener.recv(4096)
                    log.write(data.decode(errors="replace").replace("\n", " ") + "\n")
                    log.flush()

        threading.Thread(target=pump, daemon=True).start()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda s, f: child.send_signal(signal.SIGTERM))
    sys.exit(child.wait())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m hil.pi_root")
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("root")
    e = sub.add_parser("exec")
    e.add_argument("root")
    e.add_argument("command", nargs=argparse.REMAINDER)
    s = sub.add_parser("service")
    s.add_argument("root")
    s.add_argument("--unit", default=UNIT)
    s.add_argument("--notify-log", default=os.devnull)
    args = p.parse_args(argv)
    root = os.path.abspath(args.root)
    if args.cmd == "make":
        make(root)
        return 0
    _in_namespace(argv)
    mount_system(root)
    if args.cmd == "exec":
        cmd = args.command[1:] if args.command[:1] == ["--"] else args.command
        return subprocess.run(cmd, check=False).returncode
    service(root, args.unit, args.notify_log)
    return 0


if __name__ == "__main__":
    sys.exit(main())
