"""Read and validate a site config on the technician's machine, with the agent's own validator,
and find the secrets it names.

A site config refers to secrets as `{ env = "NAME" }` or `{ file = "/path" }`. On the laptop they
come from, in this order: the secrets folder given with --secrets (a file named NAME for an env
secret, a file named like the path's last part for a file secret), the laptop's environment
(NAME) or, for a file secret, the path itself (relative to the config's folder). What was found is
kept in Secrets, so the Pi bundle can install each one where the agent on the Pi will look:
env secrets into the unit's EnvironmentFile, file secrets at their path.
"""

import os

from agent.core.config.validate import validate
from agent.core.errors import ConfigError
from agent.host.configfile import parse
from tools.flashing.errors import EXIT_USAGE, FlashError


class Secrets:
    def __init__(self):
        self.env = {}  # NAME -> value
        self.files = {}  # path as written in the config -> contents

    def env_file_text(self):
        """The EnvironmentFile systemd reads: NAME="value" lines, quoted for systemd."""
        lines = []
        for name in sorted(self.env):
            value = self.env[name].replace("\\", "\\\\").replace('"', '\\"')
            lines.append('%s="%s"' % (name, value))
        return "\n".join(lines) + ("\n" if lines else "")


def load(path, secrets_dir=None, environ=None):
    """Validate the config at `path`; return (SiteConfig, Secrets). Raises FlashError (exit 2)
    listing every problem, each naming the file, the key path and what was expected."""
    environ = os.environ if environ is None else environ
    path = os.fspath(path)
    base = os.path.dirname(os.path.abspath(path))
    secrets = Secrets()

    def from_dir(name):
        if not secrets_dir:
            return None
        candidate = os.path.join(secrets_dir, name)
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as f:
                return f.read().rstrip("\r\n")
        return None

    def getenv(name):
        value = from_dir(name)
        if value is None:
            value = environ.get(name)
        if value is not None:
            secrets.env[name] = value
        return value

    def read_file(name):
        value = from_dir(os.path.basename(name))
        if value is None:
            with open(os.path.join(base, os.path.expanduser(name)), encoding="utf-8") as f:
                value = f.read()
        secrets.files[name] = value
        return value

    try:
        data = parse(path)
        cfg = validate(data, source=path, getenv=getenv, read_file=read_file)
    except ConfigError as e:
        hint = "fix the config and run the same command again (`site-agent check -c %s` " \
               "shows the same)" % path
        if any("environment variable" in err or "secret file" in err for err in e.errors):
            where = "a file in the --secrets folder" if secrets_dir else "--secrets DIR"
            hint = ("give each secret as %s (named like the variable, or like the secret "
                    "file), or set the variable in this shell" % where)  # fmt: skip
        raise FlashError("config error:\n  " + "\n  ".join(e.errors), hint, EXIT_USAGE) from None
    return cfg, secrets
