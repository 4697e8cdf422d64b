"""The ``salsdk`` command: one entry point, one subcommand per tool.

Every subcommand lives in the module that owns the work (``salsdk.convert``, ``salsdk.bench``, ...) and is
also runnable as ``python -m salsdk.<tool>``. Errors raised on purpose (:class:`~salsdk.errors.SalsdkError`) are
printed as one line, without a traceback, and exit with status 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from typing import Callable, Sequence

from .errors import SalsdkError

# subcommand -> module exposing add_arguments(parser) and run(args) -> int
SUBCOMMANDS = {
    "list": ("salsdk.zoo_cli", "list the zoo models with params, MACs, weights status and licence"),
    "weights": ("salsdk.weights_cli", "fetch, verify and list official checkpoints in the cache"),
    "predict": ("salsdk.predict_cli", "predict saliency maps and overlays for images, folders and videos"),
    "check": ("salsdk.check_cli", "run bundles side by side with their PyTorch model on real inputs: agreement matrix"),
    "convert": ("salsdk.convert.cli", "convert a zoo model into verified ONNX / TFLite / CoreML bundles"),
    "bench": ("salsdk.bench.cli", "latency, memory, size and MACs per format and runtime, against the papers"),
    "export": ("salsdk.export_cli", "copy a TFLite bundle into the Android demo app, with test vectors for its Kotlin core"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (subcommand modules are imported here)."""
    parser = argparse.ArgumentParser(prog="salsdk", description="Saliency models to phones and edge devices.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        module.add_arguments(sub.add_parser(name, help=help_text, description=help_text))
    return parser


def run_tool(add_arguments: Callable[[argparse.ArgumentParser], None], run: Callable[[argparse.Namespace], int],
             argv: Sequence[str] | None, prog: str) -> int:
    """Run one tool standalone (``python -m salsdk.<tool>``) with the same error handling as :func:`main`."""
    parser = argparse.ArgumentParser(prog=prog)
    add_arguments(parser)
    return _guarded(run, parser.parse_args(argv))


def _guarded(run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        return run(args)
    except SalsdkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``salsdk`` console script."""
    args = build_parser().parse_args(argv)
    module = importlib.import_module(SUBCOMMANDS[args.command][0])
    return _guarded(module.run, args)


if __name__ == "__main__":
    sys.exit(main())
