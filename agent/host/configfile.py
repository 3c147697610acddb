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

    config = validate(data, source=path, getenv=environ.get, read_file=read_file)
    for name, full in opened:
        mode = os.stat(full).st_mode
        if mode & stat.S_IROTH:
            config.warnings.append(
                f"{path}: secret file {name} can be read by every user "
                f"(mode {stat.S_IMODE(mode):o}); chmod 600 it"
            )
    return config
