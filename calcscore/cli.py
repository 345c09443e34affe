"""The `calcscore` console script: thin wrappers around library functions.

Errors the user can fix (:class:`calcscore.errors.CalcscoreError`) are printed as one line on
stderr with exit code 2; anything else is one line with exit code 1 (``--debug`` shows the
traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from calcscore import __version__
from calcscore.errors import CalcscoreError

# Subcommand modules, in the order `--help` lists them. Add a line to add a command.
COMMAND_MODULES: tuple[str, ...] = (
    "calcscore.commands.demo",
    "calcscore.commands.score",
    "calcscore.commands.info",
    "calcscore.commands.agatston",
    "calcscore.commands.evaluate",
    "calcscore.commands.train",
    "calcscore.commands.build_model",
    "calcscore.commands.synth",
    "calcscore.commands.report",
    "calcscore.commands.import_data",
    "calcscore.commands.check",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="calcscore",
        description="Automatic calcium scoring in low-dose chest CT (Lessmann et al., IEEE TMI 2018).",
    )
    parser.add_argument("--version", action="version", version=f"calcscore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of unexpected errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except CalcscoreError as exc:
        print(f"calcscore: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "calcscore: interrupted (Ctrl-C): outputs already written are complete and nothing "
            "half-written is left; rerun the command to finish",
            file=sys.stderr,
        )
        return 130
    except Exception as exc:  # one line, never a traceback, unless --debug
        if args.debug:
            raise
        msg = " ".join(str(exc).split())
        print(
            f"calcscore: unexpected error: {type(exc).__name__}: {msg} (rerun with --debug for details)",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
