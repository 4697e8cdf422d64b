"""The ``salsdk`` command (also ``python -m salsdk``): one module per subcommand in this package.

Each module exposes ``HELP`` (one line), ``add_arguments(parser)`` and ``run(args) -> int``. Errors raised on
purpose (:class:`~salsdk.errors.SalsdkError`), and input/output failures such as a full disk, are printed as one
line, without a traceback, and exit with status 2. Exit status 0 means the command did what it promises; 1 that it
ran but some items failed or were rejected (each command's help says which); 2 that it could not run; 130 that
it was interrupted.
"""
from __future__ import annotations

import argparse
import errno
import importlib
import signal
import sys
from typing import Sequence

from ..errors import SalsdkError

COMMANDS = ("list", "weights", "predict", "batch", "check", "convert", "bench", "export", "serve")


def _module(name: str):
    return importlib.import_module(f"salsdk.cli.{name}")


def add_weights_source(parser: argparse.ArgumentParser,
                       weights_help: str = "checkpoint path (default: the official one from the cache)") -> None:
    """Where a zoo model's weights come from: ``--weights PATH`` or ``--random-init``, not both."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help=weights_help)
    source.add_argument("--random-init", action="store_true", help="untrained model with seeded random weights")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand module is imported)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="salsdk", description="Saliency models to phones, browsers and edge devices.")
    parser.add_argument("--version", action="version", version=f"salsdk {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        module = _module(name)
        module.add_arguments(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C, so temporary files and folders are removed
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``salsdk`` console script."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return _module(args.command).run(args)
    except SalsdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            print(f"error: no space left on the device writing {exc.filename or 'output'}: free some space and run "
                  "the command again (nothing half-written was left behind)", file=sys.stderr)
        else:
            print(f"error: {exc.strerror or exc} ({exc.filename or 'file'})", file=sys.stderr)
        return 2
    except MemoryError:
        print("error: out of memory: use a smaller input (--size) or fewer images per batch (--batch-size)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
