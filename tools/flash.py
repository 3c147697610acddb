#!/usr/bin/env python3
"""Put the site agent on a site device in one command: an ESP32 board or a Raspberry Pi.

    tools/flash.py esp32 --config site.toml [--port PORT] [--board NAME] [--firmware FILE]
    tools/flash.py pi --config site.toml (--bundle FILE | --root DIR | --ssh [USER@]HOST)

Every failure ends with one message saying what went wrong and what to do next, and a non-zero
exit code: 1 when the device, the cable or the network failed, 2 for a bad command line or
config (nothing was touched). `--dry-run` prints every step and does none. The technician's
page is docs/flash.md.
"""

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV_PYTHON = os.path.join(ROOT, ".venv", "bin", "python")


def _imports_or_reexec():
    """Run under the project's virtualenv, where mpremote, esptool and the agent are installed."""
    try:
        import mpremote  # noqa: F401
        import serial  # noqa: F401
    except ImportError:
        venv = os.path.dirname(os.path.dirname(VENV_PYTHON))
        if os.path.exists(VENV_PYTHON) and os.path.realpath(sys.prefix) != os.path.realpath(venv):
            os.execv(VENV_PYTHON, [VENV_PYTHON, os.path.abspath(__file__), *sys.argv[1:]])
        sys.stderr.write(
            "error: tools/flash.py needs the project's Python packages (mpremote, esptool, "
            "pyserial)\n  next: run ./run setup in %s, or pip install -e '.[flash]'\n" % ROOT
        )
        sys.exit(2)


def main(argv=None):
    sys.path.insert(0, ROOT)
    _imports_or_reexec()
    from tools.flashing.cli import main as cli_main

    return cli_main(argv)


if __name__ == "__main__":
    sys.exit(main())
