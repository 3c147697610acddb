"""Wheels for a Pi that has no internet: the project and every dependency, for the Pi's Python
and CPU, fetched on the workshop machine with pip.

How they are found:
- the project itself: `pip wheel --no-deps` of this checkout (pure Python);
- its dependencies: `pip download --only-binary=:all:` with the target's platform tags, Python
  version, implementation and ABI (cp3X, abi3, none), so pip picks what the Pi could install:
  manylinux wheels for arm64 (aarch64) and armhf (armv7l) up to the Pi's glibc, pure wheels
  (py3-none-any) for everything else. The whole set is resolved once (`pip install --dry-run
  --report`, metadata only); pure wheels go to wheels/any, binary ones to wheels/<arch>, the same
  versions for every CPU, and when some are missing for a CPU they are fetched one by one so
  every missing package is named, not only the first.
- piwheels (www.piwheels.org, Raspberry Pi OS builds for armv6l/armv7l) is added as an extra
  index with --piwheels: PyPI has no armv7l wheels for some packages (at the time of writing
  psutil and cffi); there is no piwheels for arm64, where PyPI has everything.
Limits: pip evaluates dependency markers for the machine it runs on, not the Pi (ours have none
that differ); packages that exist only as source cannot go in an offline bundle (the Pi would
need a compiler and headers): they are reported as missing.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

from tools.flashing.errors import FlashError

ARCH_MACHINE = {"arm64": "aarch64", "armhf": "armv7l", "amd64": "x86_64"}
PIWHEELS = "https://www.piwheels.org/simple"
_NOT_FOUND = re.compile(r"No matching distribution found for ([A-Za-z0-9_.\-]+)")


def platform_tags(arch, glibc="2.36"):
    """pip --platform values a Pi with this CPU and glibc can install."""
    machine = ARCH_MACHINE[arch]
    top = int(glibc.split(".")[1])
    tags = ["manylinux_2_%d_%s" % (minor, machine) for minor in range(top, 16, -1)]
    tags.append("manylinux2014_" + machine)
    if arch == "amd64":
        tags += ["manylinux2010_x86_64", "manylinux1_x86_64"]
    if arch == "armhf":
        tags.append("linux_armv7l")  # piwheels' tag
    return tags


def _pip(args, log, what):
    log.info("pip: " + what)
    return subprocess.run([sys.executable, "-m", "pip", *args], capture_output=True, text=True,
                          check=False)  # fmt: skip


def project_wheel(root, out_dir, log):
    r = _pip(["wheel", "--no-deps", "--quiet", "-w", out_dir, root], log,
             "building the site-agent wheel")  # fmt: skip
    wheels = [w for w in os.listdir(out_dir) if w.startswith("site_agent-")]
    if r.returncode != 0 or not wheels:
        raise FlashError("could not build the site-agent wheel from %s:\n%s" % (root, r.stderr),
                         "run ./run setup, then try again")  # fmt: skip
    return os.path.join(out_dir, wheels[0])


def requirements(wheel):
    """Requires-Dist of a wheel, without extras and without those behind an `extra` marker."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        text = z.read(meta).decode()
    reqs = []
    for line in text.splitlines():
        if line.startswith("Requires-Dist:"):
            req = line.split(":", 1)[1].strip()
            if "extra ==" not in req:
                reqs.append(req.split(";")[0].strip())
    return reqs


def _target_args(arch, python, glibc, piwheels):
    args = ["--only-binary=:all:", "--python-version", python, "--implementation", "cp",
            "--abi", "cp" + python.replace(".", ""), "--abi", "abi3", "--abi", "none"]
    for tag in platform_tags(arch, glibc):
        args += ["--platform", tag]
    if piwheels and arch == "armhf":
        args += ["--extra-index-url", PIWHEELS]
    return args


def resolve(reqs, python, glibc, log):
    """[(name, version, pure)] of the whole dependency set, resolved by pip for a reference CPU
    (x86-64, where PyPI has wheels for all of ours); nothing is downloaded but metadata."""
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.json")
        r = _pip(["install", "--dry-run", "--quiet", "--ignore-installed", "--report", report,
                  *_target_args("amd64", python, glibc, False), *reqs], log,
                 "resolving the dependencies for Python " + python)  # fmt: skip
        if r.returncode != 0:
            m = _NOT_FOUND.search(r.stderr)
            what = ("no wheel of %s for Python %s" % (m.group(1), python)) if m else r.stderr
            raise FlashError("pip could not resolve the dependencies: " + what.strip(),
                             "check the workshop machine's internet connection (pip needs PyPI) "
                             "and the --python version")  # fmt: skip
        with open(report) as f:
            data = json.load(f)
    out = []
    for item in data["install"]:
        filename = item["download_info"]["url"].rsplit("/", 1)[-1]
        out.append((item["metadata"]["name"], item["metadata"]["version"], _is_pure(filename)))
    return out


def _download(pins, dest, arch, python, glibc, piwheels, log):
    args = ["download", "--quiet", "--no-deps", "--dest", dest]
    what = "fetching %s for %s" % (", ".join(pins) if len(pins) < 3 else "%d wheels" % len(pins),
                                   arch)  # fmt: skip
    return _pip(args + _target_args(arch, python, glibc, piwheels) + list(pins), log, what)


def _is_pure(filename):
    return filename.endswith("-none-any.whl")


def fetch(root, dest, arches, python, glibc="2.36", piwheels=False, log=None):
    """Fill dest/any (the project and pure wheels) and dest/<arch> (binary wheels) with the same
    versions for every CPU. Returns {"project": wheel filename, "missing": {arch: [names]}}; the
    caller decides whether something missing is an error."""
    with tempfile.TemporaryDirectory() as tmp:
        wheel = project_wheel(root, tmp, log)
        pins = resolve(requirements(wheel), python, glibc, log)
        any_dir = os.path.join(dest, "any")
        os.makedirs(any_dir, exist_ok=True)
        shutil.copy(wheel, any_dir)
    pure = ["%s==%s" % (n, v) for n, v, p in pins if p]
    binary = ["%s==%s" % (n, v) for n, v, p in pins if not p]
    if pure:
        r = _download(pure, any_dir, arches[0], python, glibc, False, log)
        if r.returncode != 0:
            raise FlashError("pip could not fetch " + ", ".join(pure) + ":\n" + r.stderr.strip(),
                             "check the workshop machine's internet connection and run again")
    missing = {}
    for arch in arches:
        arch_dir = os.path.join(dest, arch)
        os.makedirs(arch_dir, exist_ok=True)
        if not binary or _download(binary, arch_dir, arch, python, glibc, piwheels,
                                   log).returncode == 0:  # fmt: skip
            continue
        for pin in binary:  # find every one that is missing, not only the first
            if _download([pin], arch_dir, arch, python, glibc, piwheels, log).returncode != 0:
                missing.setdefault(arch, []).append(pin.split("==")[0])
    return {"project": os.path.basename(wheel), "missing": missing}
