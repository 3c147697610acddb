"""Load a site config file on the host: TOML via tomllib, secrets from the environment and files.

The checking itself is agent/core/config.validate (portable); this adapter adds what needs
CPython: reading the file, turning TOML syntax errors into "<path>:<line>: TOML syntax: ...",
resolving { env = ... } from `environ` and { file = ... } from disk (a relative path is taken
from the config file's folder), and a warning for a secret file other users can read.
"""

import os
import re
import stat
import tomllib

import drivers
from agent.core.config.validate import validate
from agent.core.errors import ConfigError

_AT_LINE = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")
_AT_END = re.compile(r"\s*\(at end of document\)$")


def _syntax_error(path, text, exc):
    """ "<path>:<line>: TOML syntax: <message>" from tomllib's "<message> (at line L, column C)"
    """
    message = str(exc)
    m = _AT_LINE.search(message)
    if m:
        line = int(m.group(1))
        message = message[: m.start()] + " (column " + m.group(2) + ")"
    else:
        # tomllib says "at end of document" for an unterminated string, array or table: the
        # last line with text is where the reader has to look.
        line = max(1, len(text.rstrip("\r\n").split("\n")))
        m = _AT_END.search(message)
        if m:
            message = message[: m.start()] + " at end of document"
    return ConfigError(f"{path}:{line}: TOML syntax: {message}")


def parse(path):
    """Read and parse a TOML file into plain dicts; raises ConfigError for I/O and syntax."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror or e}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: TOML syntax: not valid UTF-8") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise _syntax_error(path, text, e) from None


def load(path, environ=os.environ):
    """Read, parse and validate a site config file; return a SiteConfig or raise ConfigError
    (every validation problem is listed in .errors, each prefixed with `path`)."""
    path = os.fspath(path)
    data = parse(path)
    base = os.path.dirname(os.path.abspath(path))
    opened = []

    def read_file(name):
        full = os.path.join(base, os.path.expanduser(name))
        with open(full, encoding="utf-8") as f:
            text = f.read()
        opened.append((name, full))
        return text

    config = validate(data, source=path, getenv=environ.get, read_file=read_file,
                      drivers=drivers.load)  # fmt: skip
    for name, full in opened:
        mode = os.stat(full).st_mode
        if mode & stat.S_IROTH:
            config.warnings.append(
                f"{path}: secret file {name} can be read by every user "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
    return config


# --- what `check` and `run` both ask of this machine --------------------------------------------


def _user():
    try:
        import pwd

        return "%s (uid %d)" % (pwd.getpwuid(os.getuid()).pw_name, os.getuid())
    except (ImportError, KeyError):
        return "uid %d" % os.getuid()


def _dir_problem(path):
    """Why the agent could not create or write the folder `path`, or None."""
    path = os.path.abspath(path)
    if os.path.exists(path):
        if not os.path.isdir(path):
            return "%s exists and is not a folder" % path
        if not os.access(path, os.W_OK | os.X_OK):
            return "%s is not writable by %s" % (path, _user())
        return None
    parent = path
    while not os.path.exists(parent):
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return "cannot create %s: %s is not a folder" % (path, parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        return "cannot create %s: %s is not writable by %s" % (path, parent, _user())
    return None


def _unreadable(path):
    try:
        with open(path, "rb"):
            return None
    except OSError as e:
        return e.strerror or str(e)


def preflight(cfg):
    """(errors, warnings) about this machine for a validated config: what `run` would stumble on
    at start. `site-agent check` and `run` both call it, so they accept the same configs.

    Errors (run could not start): a storage.dir the agent cannot create or write; a serial or
    console port named "uart<n>" (a board's UART) on this host. Warnings (run starts, part of it
    cannot work): a broker's ca_file, cert_file or key_file that cannot be read."""
    errors, warnings = [], []
    src = cfg.source
    problem = _dir_problem(cfg.storage["dir"])
    if problem:
        errors.append("%s: storage.dir: %s" % (src, problem))
    ports = [("devices[%d].serial.port" % i, d["serial"]["port"])
             for i, d in enumerate(cfg.devices) if "serial" in d]  # fmt: skip
    if cfg.console.get("enabled") and cfg.console.get("port"):
        ports.append(("console.port", cfg.console["port"]))
    for where, port in ports:
        if port.startswith("uart") and port[4:].isdigit():
            errors.append('%s: %s: "%s" is a board UART; on this host give a device path such as '
                          '"/dev/ttyUSB0"' % (src, where, port))  # fmt: skip
    for j, b in enumerate((cfg.uplink or {}).get("brokers", ())):
        for key in ("ca_file", "cert_file", "key_file"):
            if key in b and not b.get("insecure"):
                why = _unreadable(b[key])
                if why:
                    warnings.append(
                        "%s: uplink.brokers[%d].%s: cannot read %s (%s): the agent polls and "
                        "stores, but cannot connect to broker %s until it can"
                        % (src, j, key, os.path.abspath(b[key]), why, b.get("name") or b["host"])
                    )
    return errors, warnings
