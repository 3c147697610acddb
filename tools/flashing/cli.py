"""The command line of tools/flash.py: parse, run one command, turn every failure into one
message and an exit code."""

import argparse
import sys
import traceback

from tools.flashing import esp32, pi
from tools.flashing.errors import EXIT_FAILED, EXIT_USAGE, FlashError
from tools.flashing.ui import Ui


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "error: %s\n" % message)


def build_parser():
    p = _Parser(prog="tools/flash.py",
                description="Put the site agent on a site device: an ESP32 board or a "
                "Raspberry Pi. See docs/flash.md.")  # fmt: skip
    p.add_argument("--dry-run", action="store_true", help="print every step; change nothing")
    p.add_argument("--debug", action="store_true", help="show a traceback on internal errors")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)
    esp32.add_parser(sub)
    pi.add_parser(sub)
    return p


def main(argv=None, out=None):
    args = build_parser().parse_args(argv)
    ui = Ui(out=out, dry=args.dry_run)
    try:
        if args.command == "esp32":
            return esp32.run(args, ui)
        return pi.run(args, ui)
    except FlashError as e:
        if out is not None:  # tests read one stream
            ui.result(e.render())
        else:
            sys.stderr.write(e.render() + "\n")
        return e.code
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: what was being written may be incomplete\n"
                         "  next: run the same command again; it checks every file and writes "
                         "what is missing\n")  # fmt: skip
        return EXIT_FAILED
    except Exception as e:  # noqa: BLE001 - a bug: one line, not a traceback, unless --debug
        if args.debug:
            traceback.print_exc()
        sys.stderr.write("error: internal error in tools/flash.py: %r\n  next: run again with "
                         "--debug and report the output\n" % e)  # fmt: skip
        return EXIT_FAILED
