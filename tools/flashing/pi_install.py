#!/usr/bin/env python3
"""Install the site agent from an offline bundle (this file is the bundle's install.py).

    sudo python3 install.py                 on the Pi, from the unpacked bundle
    sudo python3 install.py --root /mnt/sd  into a Pi's root filesystem mounted elsewhere
    sudo python3 install.py --rollback      back to the release installed before this one
    python3 install.py --status [--root R]  what is installed

Standard library only: it runs on the Pi's own python3 (no pip, no internet). One file on
purpose, although it is longer than the project's modules: tools/flashing/pi.py copies it into
the bundle as install.py, which a technician runs by path on a Pi where nothing is installed yet;
it can use neither the agent's packages (the wheels are what it installs) nor helpers of its own
without a second file to copy and keep in step. Layout:

    /opt/site-agent/releases/<version>-<stamp>/   one virtualenv per release (bin/python links to
                                                  the system's /usr/bin/python3; wheels unpacked)
    /opt/site-agent/current, previous             symlinks to releases; switched atomically
    /usr/local/bin/site-agent                     -> /opt/site-agent/current/bin/site-agent
    /etc/site-agent/site.toml                     the config (0640 root:site-agent)
    /etc/site-agent/env                           secrets given as { env = ... } (0600 root:root;
                                                  the unit's EnvironmentFile, read by systemd)
    secret files named in the config              at their paths (0600 site-agent)
    /var/lib/site-agent                           the data (queue, state), 0750 site-agent
    /etc/systemd/system/site-agent.service        enabled for multi-user.target, watchdog on
    /usr/share/doc/site-agent/                    the docs the unit's Documentation= names
    user and group site-agent (system, no login), member of dialout (serial ports)

An upgrade (a second install) keeps the config, the secrets and the data unless --replace-config
is given (then the old config is kept as site.toml.previous); the release it replaces becomes
`previous`, so --rollback returns to it. On a live Pi the new release checks the config before it
is switched in, and if the service does not come up within the start timeout the previous
release is put back. With --root nothing is run inside the root: the Pi does that on boot.
"""

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
import zipfile

USER = "site-agent"
OPT = "/opt/site-agent"
ETC = "/etc/site-agent"
DATA = "/var/lib/site-agent"
UNIT = "/etc/systemd/system/site-agent.service"
WANTS = "/etc/systemd/system/multi-user.target.wants/site-agent.service"
DOC = "/usr/share/doc/site-agent"
LINK = "/usr/local/bin/site-agent"
KEEP_RELEASES = 3
ELF_MACHINES = {0x28: "armhf", 0xB7: "arm64", 0x3E: "amd64"}
UNAME_MACHINES = {"aarch64": "arm64", "armv7l": "armhf", "armv6l": "armhf", "x86_64": "amd64"}


class InstallError(Exception):
    def __init__(self, message, hint=None):
        super().__init__(message)
        self.hint = hint


def say(text):
    print("==> " + text, flush=True)


# --- the target ---------------------------------------------------------------------------------


class Target:
    """Where we install: the running system (root "/") or a root filesystem mounted at `root`."""

    def __init__(self, root):
        self.root = os.path.abspath(root or "/")
        self.live = root is None

    def path(self, p):
        return os.path.join(self.root, p.lstrip("/"))

    def resolve(self, p):
        """Follow symlinks inside the root (an absolute link target is relative to the root)."""
        for _ in range(40):
            full = self.path(p)
            if not os.path.islink(full):
                return p
            link = os.readlink(full)
            p = link if link.startswith("/") else os.path.join(os.path.dirname(p), link)
            p = os.path.normpath(p)
        raise InstallError("symlink loop at %s" % self.path(p))

    def python(self):
        """(arch, "3.X") of the target's /usr/bin/python3."""
        if self.live:
            machine = os.uname().machine
            arch = UNAME_MACHINES.get(machine)
            if arch is None:
                raise InstallError("this machine is %s; the bundle knows arm64, armhf and amd64"
                                   % machine)  # fmt: skip
            return arch, "%d.%d" % sys.version_info[:2]
        exe = self.resolve("/usr/bin/python3")
        full = self.path(exe)
        if not os.path.isfile(full):
            raise InstallError(
                "%s has no /usr/bin/python3: is it the Pi's root filesystem?" % self.root,
                "mount the SD card's root partition (the big ext4 one, not the boot "
                "partition) and give that folder to --root",
            )
        with open(full, "rb") as f:
            head = f.read(20)
        if head[:4] != b"\x7fELF":
            raise InstallError("%s is not an ELF program" % full)
        order = "little" if head[5] == 1 else "big"
        arch = ELF_MACHINES.get(int.from_bytes(head[18:20], order))
        if arch is None:
            raise InstallError("%s is for an unknown CPU" % full)
        m = re.search(r"python(3\.\d+)$", exe)
        if m:
            return arch, m.group(1)
        for name in sorted(os.listdir(self.path("/usr/lib")), reverse=True):
            m = re.fullmatch(r"python(3\.\d+)", name)
            if m and os.path.isfile(self.path("/usr/lib/%s/os.py" % name)):
                return arch, m.group(1)
        raise InstallError("cannot tell the Python version of %s" % full)


# --- users --------------------------------------------------------------------------------------


def _read_lines(path):
    try:
        with open(path) as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


def _write_lines(path, lines, mode):
    tmp = path + ".site-agent-new"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    try:
        st = os.stat(path)
        os.chmod(tmp, stat.S_IMODE(st.st_mode))
        os.chown(tmp, st.st_uid, st.st_gid)
    except FileNotFoundError:
        os.chmod(tmp, mode)
    os.replace(tmp, path)


def ensure_user(t):
    """The site-agent system user and group, in dialout. Edits passwd/group/shadow/gshadow
    directly (the same on a live Pi and in a mounted root). Returns (uid, gid)."""
    passwd = t.path("/etc/passwd")
    group = t.path("/etc/group")
    users = [ln.split(":") for ln in _read_lines(passwd) if ln.count(":") >= 6]
    groups = [ln.split(":") for ln in _read_lines(group) if ln.count(":") >= 3]
    if not users:
        raise InstallError("%s has no users: is %s a root filesystem?" % (passwd, t.root))
    used_uids = {int(u[2]) for u in users if u[2].isdigit()}
    used_gids = {int(g[2]) for g in groups if g[2].isdigit()}
    mine = [g for g in groups if g[0] == USER]
    if mine:
        gid = int(mine[0][2])
    else:
        gid = next(i for i in range(999, 99, -1) if i not in used_gids and i not in used_uids)
        groups.append([USER, "x", str(gid), ""])
    me = [u for u in users if u[0] == USER]
    if me:
        uid = int(me[0][2])
    else:
        free = [i for i in range(999, 99, -1) if i not in used_uids]
        uid = gid if gid not in used_uids else free[0]
        users.append([USER, "x", str(uid), str(gid), "site agent", DATA, "/usr/sbin/nologin"])
    dialout = [g for g in groups if g[0] == "dialout"]
    if not dialout:
        dial_gid = next(i for i in (20,) + tuple(range(998, 99, -1)) if i not in used_gids)
        groups.append(["dialout", "x", str(dial_gid), USER])
    else:
        members = [m for m in dialout[0][3].split(",") if m]
        if USER not in members:
            dialout[0][3] = ",".join(members + [USER])
    _write_lines(passwd, [":".join(u) for u in users], 0o644)
    _write_lines(group, [":".join(g) for g in groups], 0o644)
    for path, row in ((t.path("/etc/shadow"), [USER, "!", "", "", "", "", "", "", ""]),
                      (t.path("/etc/gshadow"), None)):  # fmt: skip
        if not os.path.exists(path):
            continue
        lines = _read_lines(path)
        if path.endswith("gshadow"):
            rows = [ln.split(":") for ln in lines]
            if not any(r[0] == USER for r in rows):
                rows.append([USER, "!", "", ""])
            for r in rows:
                if r[0] == "dialout" and len(r) >= 4:
                    members = [m for m in r[3].split(",") if m]
                    if USER not in members:
                        r[3] = ",".join(members + [USER])
            lines = [":".join(r) for r in rows]
        elif not any(ln.split(":")[0] == USER for ln in lines):
            lines.append(":".join(row))
        _write_lines(path, lines, 0o640)
    return uid, gid


# --- wheels into a virtualenv -----------------------------------------------------------------


def unpack_wheel(wheel, site_packages, bin_dir, python):
    """Install one wheel: what `pip install` does for a wheel, without pip."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        data_dir = next((n.split("/")[0] for n in names if n.split("/")[0].endswith(".data")),
                        None)  # fmt: skip
        for name in names:
            if name.endswith("/"):
                continue
            parts = name.split("/")
            if parts[0] == data_dir and len(parts) > 2:
                kind, rest = parts[1], "/".join(parts[2:])
                if kind in ("purelib", "platlib"):
                    dest = os.path.join(site_packages, rest)
                elif kind == "scripts":
                    dest = os.path.join(bin_dir, rest)
                else:
                    continue  # headers, data: nothing the agent needs
            else:
                dest = os.path.join(site_packages, name)
            dest = os.path.normpath(dest)
            if not (dest.startswith(site_packages + os.sep) or dest.startswith(bin_dir + os.sep)):
                raise InstallError("%s holds a path outside the install: %s" % (wheel, name))
            os.makedirs(os.path.dirname(dest), exist_ok=True)
            with z.open(name) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
            if dest.startswith(bin_dir + os.sep):
                _fix_script(dest, python)
        dist_info = next(n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info"))
        with open(os.path.join(site_packages, dist_info, "INSTALLER"), "w") as f:
            f.write("site-agent install.py\n")
        entry_points = dist_info + "/entry_points.txt"
        if entry_points in names:
            text = z.read(entry_points).decode()
            for name, target in _console_scripts(text):
                _write_script(os.path.join(bin_dir, name), python, target)


def _console_scripts(text):
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "console_scripts" and "=" in line:
            name, target = (x.strip() for x in line.split("=", 1))
            yield name, target


def _write_script(path, python, target):
    module, func = target.split(":")
    with open(path, "w") as f:
        f.write("#!%s\nimport sys\nfrom %s import %s\nif __name__ == \"__main__\":\n"
                "    sys.exit(%s())\n" % (python, module, func.split(".")[0], func))  # fmt: skip
    os.chmod(path, 0o755)


def _fix_script(path, python):
    with open(path, "rb") as f:
        body = f.read()
    if body.startswith(b"#!python"):
        body = b"#!" + python.encode() + body[len(b"#!python"):]
        with open(path, "wb") as f:
            f.write(body)
    os.chmod(path, 0o755)


def make_release(t, bundle, meta, arch, pyver):
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    name = "%s-%s" % (meta["version"], stamp)
    rel = "%s/releases/%s" % (OPT, name)
    full = t.path(rel)
    if os.path.exists(full):
        shutil.rmtree(full)
    bin_dir = os.path.join(full, "bin")
    site_packages = os.path.join(full, "lib", "python" + pyver, "site-packages")
    os.makedirs(bin_dir)
    os.makedirs(site_packages)
    os.symlink("/usr/bin/python3", os.path.join(bin_dir, "python"))
    os.symlink("python", os.path.join(bin_dir, "python3"))
    with open(os.path.join(full, "pyvenv.cfg"), "w") as f:
        f.write("home = /usr/bin\ninclude-system-site-packages = %s\nversion = %s\n"
                % ("true" if meta.get("system_packages") else "false", pyver))  # fmt: skip
    python = rel + "/bin/python"
    wheels = []
    for sub in ("any", arch):
        d = os.path.join(bundle, "wheels", sub)
        if os.path.isdir(d):
            wheels += [os.path.join(d, w) for w in sorted(os.listdir(d)) if w.endswith(".whl")]
    for i, wheel in enumerate(wheels, 1):
        unpack_wheel(wheel, site_packages, bin_dir, python)
        print("    wheel %d/%d %s" % (i, len(wheels), os.path.basename(wheel)), flush=True)
    with open(os.path.join(full, "release.json"), "w") as f:
        json.dump({"version": meta["version"], "installed": stamp, "arch": arch,
                   "python": pyver, "site": meta.get("site")}, f, indent=1)  # fmt: skip
    _compile(t, site_packages, pyver)
    return name


def _compile(t, site_packages, pyver):
    """Byte-compile once now: under ProtectSystem=strict /opt is read-only to the agent, so it
    could never cache them itself and would compile every module at every start."""
    if "%d.%d" % sys.version_info[:2] != pyver:
        return  # another Python (a workshop laptop): the bytecode would not match the Pi's
    import compileall

    compileall.compile_dir(site_packages, quiet=1, stripdir=t.root if not t.live else None,
                           prependdir="/" if not t.live else None, workers=1)  # fmt: skip


# --- files ---------------------------------------------------------------------------------------


def put(t, path, data, mode, uid=0, gid=0):
    full = t.path(path)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    tmp = full + ".site-agent-new"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())
    os.chown(tmp, uid, gid)
    os.chmod(tmp, mode)
    os.replace(tmp, full)


class Undo:
    """What install_config changed, to put back when the new release refuses the config."""

    def __init__(self, t):
        self.t = t
        self.saved = []  # (full path, copy of the old file or None when there was none)

    def keep(self, path):
        full = self.t.path(path)
        if os.path.exists(full):
            copy = full + ".site-agent-old"
            shutil.copy2(full, copy)
            self.saved.append((full, copy))
        else:
            self.saved.append((full, None))

    def restore(self):
        for full, copy in reversed(self.saved):
            if copy is None:
                if os.path.exists(full):
                    os.remove(full)
            else:
                os.replace(copy, full)
        self.saved = []

    def forget(self):
        for _full, copy in self.saved:
            if copy is not None and os.path.exists(copy):
                os.remove(copy)
        self.saved = []


def install_config(t, bundle, uid, gid, replace, undo):
    """Config, env file and secret files (what they replace is kept in `undo`). Returns True
    when the config was (re)written."""
    with open(os.path.join(bundle, "etc", "site.toml"), "rb") as f:
        config = f.read()
    os.makedirs(t.path(ETC), exist_ok=True)
    os.chmod(t.path(ETC), 0o755)
    existing = t.path(ETC + "/site.toml")
    wrote = False
    if not os.path.exists(existing):
        undo.keep(ETC + "/site.toml")
        put(t, ETC + "/site.toml", config, 0o640, 0, gid)
        wrote = True
    else:
        with open(existing, "rb") as f:
            same = f.read() == config
        if not same and replace:
            undo.keep(ETC + "/site.toml")
            shutil.copy2(existing, existing + ".previous")
            put(t, ETC + "/site.toml", config, 0o640, 0, gid)
            wrote = True
            say("config replaced; the old one is %s.previous" % (ETC + "/site.toml"))
        elif not same:
            say("kept the existing %s/site.toml (it differs from the bundle's; "
                "--replace-config uses the bundle's)" % ETC)  # fmt: skip
    if wrote or not os.path.exists(t.path(ETC + "/env")):
        undo.keep(ETC + "/env")
        with open(os.path.join(bundle, "etc", "env"), "rb") as f:
            put(t, ETC + "/env", f.read(), 0o600, 0, 0)
    with open(os.path.join(bundle, "etc", "secret-files.json")) as f:
        files = json.load(f)
    for target, stored in files.items():
        if wrote or not os.path.exists(t.path(target)):
            undo.keep(target)
            with open(os.path.join(bundle, "etc", "secret-files", stored), "rb") as f:
                put(t, target, f.read(), 0o600, uid, gid)
    return wrote


def install_unit_and_docs(t, bundle):
    with open(os.path.join(bundle, "systemd", "site-agent.service"), "rb") as f:
        put(t, UNIT, f.read(), 0o644)
    wants = t.path(WANTS)
    os.makedirs(os.path.dirname(wants), exist_ok=True)
    if os.path.lexists(wants):
        os.unlink(wants)
    os.symlink(UNIT, wants)
    docs = os.path.join(bundle, "doc")
    for name in sorted(os.listdir(docs)):
        with open(os.path.join(docs, name), "rb") as f:
            put(t, DOC + "/" + name, f.read(), 0o644)


def ensure_data_dir(t, uid, gid):
    full = t.path(DATA)
    os.makedirs(full, exist_ok=True)
    os.chown(full, uid, gid)
    os.chmod(full, 0o750)


def _symlink(t, link, target):
    full = t.path(link)
    os.makedirs(os.path.dirname(full), exist_ok=True)
    tmp = full + ".site-agent-new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(target, tmp)
    os.replace(tmp, full)  # atomic: the link is always the old or the new one


def current(t, which="current"):
    link = t.path(OPT + "/" + which)
    return os.path.basename(os.readlink(link)) if os.path.islink(link) else None


def switch(t, name):
    old = current(t)
    if old is not None and old != name:
        _symlink(t, OPT + "/previous", "releases/" + old)
    _symlink(t, OPT + "/current", "releases/" + name)
    _symlink(t, LINK, OPT + "/current/bin/site-agent")
    return old


def prune(t):
    keep = {current(t), current(t, "previous")}
    rels = t.path(OPT + "/releases")
    names = sorted(os.listdir(rels), key=lambda n: os.path.getmtime(os.path.join(rels, n)))
    extra = [n for n in names if n not in keep]
    for name in extra[: max(0, len(names) - KEEP_RELEASES)]:
        shutil.rmtree(os.path.join(rels, name))


# --- the live system ---------------------------------------------------------------------------


def _run(cmd, timeout=150):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def check_config(t, name):
    """Run the new release's `site-agent check` on the config, with the unit's environment."""
    env = dict(os.environ)
    for line in _read_lines(t.path(ETC + "/env")):
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            env[k] = v[1:-1].replace('\\"', '"').replace("\\\\", "\\") if v[:1] == '"' else v
    exe = "%s/releases/%s/bin/site-agent" % (OPT, name)
    r = subprocess.run([exe, "check", "-c", ETC + "/site.toml"], capture_output=True, text=True,
                       env=env, timeout=120, check=False)  # fmt: skip
    if r.returncode != 0:
        raise InstallError("the new release refuses the config:\n" + (r.stderr or r.stdout),
                           "fix the config (or give a corrected one with --replace-config); "
                           "nothing was switched")  # fmt: skip


def restart_service(t, new, old):
    if shutil.which("systemctl") is None or _run(["systemctl", "is-system-running"]).stdout \
            .strip() in ("offline", ""):
        say("systemd is not running here: the service starts at the next boot")
        return
    _run(["systemctl", "daemon-reload"])
    _run(["systemctl", "enable", "site-agent.service"])
    say("restarting site-agent.service")
    r = _run(["systemctl", "restart", "site-agent.service"])
    active = _run(["systemctl", "is-active", "site-agent.service"]).returncode == 0
    if r.returncode == 0 and active:
        say("site-agent.service is running release %s" % new)
        return
    log = _run(["journalctl", "-u", "site-agent.service", "-n", "20", "--no-pager"]).stdout
    if old is None:
        raise InstallError("site-agent.service did not start:\n" + log,
                           "read `journalctl -u site-agent` and fix what it says")
    switch(t, old)
    _run(["systemctl", "restart", "site-agent.service"])
    raise InstallError("release %s did not start; went back to %s:\n%s" % (new, old, log),
                       "read the log above; the previous release is running")


# --- commands ------------------------------------------------------------------------------------


def install(args):
    bundle = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(bundle, "bundle.json")) as f:
        meta = json.load(f)
    t = Target(args.root)
    arch, pyver = t.python()
    say("target: %s, %s Python %s" % (t.root, arch, pyver))
    if pyver != meta["python"]:
        raise InstallError(
            "the bundle is for Python %s; %s has Python %s" % (meta["python"], t.root, pyver),
            "make the bundle again with --python %s" % pyver,
        )
    if arch not in meta["arches"]:
        raise InstallError(
            "the bundle has wheels for %s; this system is %s" % (", ".join(meta["arches"]), arch),
            "make the bundle again with --arch %s" % arch,
        )
    for pkg in meta.get("system_packages", []):
        if not _has_system_package(t, pyver, pkg):
            raise InstallError(
                "the bundle expects the Debian package python3-%s on the Pi, and it is missing"
                % pkg, "apt-get install python3-%s (or make a bundle with --piwheels)" % pkg)
    say("user %s" % USER)
    uid, gid = ensure_user(t)
    say("release %s" % meta["version"])
    name = make_release(t, bundle, meta, arch, pyver)
    say("config and secrets in %s" % ETC)
    undo = Undo(t)
    install_config(t, bundle, uid, gid, args.replace_config, undo)
    if t.live:
        try:
            check_config(t, name)
        except InstallError:
            undo.restore()  # the running release keeps the config it had
            raise
    undo.forget()
    ensure_data_dir(t, uid, gid)
    install_unit_and_docs(t, bundle)
    old = switch(t, name)
    prune(t)
    if t.live and not args.no_start:
        restart_service(t, name, old)
    say("installed %s%s" % (name, "" if old is None else " (previous: %s)" % old))
    return 0


def _has_system_package(t, pyver, pkg):
    for d in ("/usr/lib/python3/dist-packages", "/usr/lib/python%s/dist-packages" % pyver):
        if os.path.isdir(t.path(d + "/" + pkg)):
            return True
    return False


def rollback(args):
    t = Target(args.root)
    prev = current(t, "previous")
    now = current(t)
    if prev is None or not os.path.isdir(t.path(OPT + "/releases/" + prev)):
        raise InstallError("there is no previous release to go back to")
    _symlink(t, OPT + "/current", "releases/" + prev)
    _symlink(t, OPT + "/previous", "releases/" + now)
    say("current is now %s (was %s)" % (prev, now))
    if t.live and not args.no_start:
        restart_service(t, prev, now)
    return 0


def status(args):
    t = Target(args.root)
    print("current:  %s" % (current(t) or "-"))
    print("previous: %s" % (current(t, "previous") or "-"))
    return 0


def main(argv=None):
    p = argparse.ArgumentParser(description="Install the site agent from this bundle.")
    p.add_argument("--root", help="a Pi's root filesystem mounted here (default: this system)")
    p.add_argument("--replace-config", action="store_true",
                   help="use the bundle's config even if one is installed (default: keep it)")
    p.add_argument("--no-start", action="store_true", help="do not (re)start the service")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--rollback", action="store_true", help="go back to the previous release")
    g.add_argument("--status", action="store_true", help="show the installed releases")
    args = p.parse_args(argv)
    if not args.status and os.geteuid() != 0:
        print("error: run as root (sudo python3 %s ...)" % sys.argv[0], file=sys.stderr)
        return 2
    try:
        if args.status:
            return status(args)
        if args.rollback:
            return rollback(args)
        return install(args)
    except InstallError as e:
        print("error: %s" % e, file=sys.stderr)
        if e.hint:
            print("  next: %s" % e.hint, file=sys.stderr)
        return 1
    except OSError as e:
        print("error: %s" % e, file=sys.stderr)
        print("  next: check the disk (space, read-only SD card) and run again; an interrupted "
              "install never switches `current`", file=sys.stderr)  # fmt: skip
        return 1


if __name__ == "__main__":
    sys.exit(main())
