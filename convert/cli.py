"""``salsdk convert`` / ``python -m salsdk.convert``."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from salsdk.errors import InputError

from .formats import select_formats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk convert``."""
    parser.add_argument("--model", required=True, help="zoo model name (see `salsdk list`)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="checkpoint path (default: the official one from the cache)")
    source.add_argument("--random-init", action="store_true", help="untrained model with seeded random weights")
    parser.add_argument("--format", default="all",
                        help="onnx,tflite,coreml or all (default), or format keys such as tflite-int8")
    parser.add_argument("--int8", action="store_true", help="also make int8 artifacts (calibrated, gated)")
    parser.add_argument("--fp16", action="store_true", help="also make an fp16 ONNX model")
    parser.add_argument("--calib", help="calibration images: a folder or a video (default: the built-in set)")
    parser.add_argument("--calib-method", default="auto", choices=["auto", "minmax", "percentile", "entropy"],
                        help="activation range calibration: auto (default) starts with min-max and, if the gate "
                             "fails, tries the other methods the format's tool offers (ONNX Runtime: percentile, "
                             "entropy) before keeping layers in float")
    parser.add_argument("--n-calib", type=int, help="calibration inputs (default: 16 images or 8 clips)")
    parser.add_argument("--n-eval", type=int, help="held-out inputs for the fidelity gate (default: 6 images or 6 clips)")
    parser.add_argument("--min-cc", type=float, default=0.99, help="fidelity gate: minimum CC vs fp32 (default 0.99)")
    parser.add_argument("--max-float", type=float, default=0.5,
                        help="fidelity fallback: at most this fraction of the ranked layers may stay in float "
                             "(default 0.5, so an int8 artifact stays mostly int8; 1 allows as many as the gate "
                             "needs; the table and manifest say how many were kept)")
    parser.add_argument("--size", help="static input size HxW for image models (default: the card's, e.g. 480x640)")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX with a dynamic batch dimension")
    parser.add_argument("--graph", default="auto", choices=["auto", "original", "rewritten"],
                        help="graph to export: auto (default: the model's export rewrite for the formats that run it "
                             "faster, i.e. TinyHD without 3-D convolutions for TFLite), original, or rewritten")
    parser.add_argument("--out", required=True, help="output folder for the bundles")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``'192x256'`` -> (192, 256)."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {text!r}: use HxW, e.g. 480x640") from None
    if h % 32 or w % 32 or h <= 0 or w <= 0:
        raise InputError(f"--size {text}: height and width must be positive multiples of 32")
    return h, w


def _terminate(signum, frame):  # SIGTERM unwinds like Ctrl-C, so temporary folders are removed
    raise KeyboardInterrupt


def run(args: argparse.Namespace) -> int:
    """Convert, print the closing table; exit 1 if any requested format was rejected or failed."""
    from .pipeline import ConvertOptions, convert, format_table

    try:
        formats = select_formats(args.format, args.int8, args.fp16)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if not 0.0 < args.max_float <= 1.0:
        raise InputError(f"--max-float {args.max_float}: give a fraction of the ranked layers in (0, 1], e.g. 0.5")
    signal.signal(signal.SIGTERM, _terminate)
    weights = None if args.random_init else (args.weights or "official")
    opts = ConvertOptions(model=args.model, weights=weights, formats=formats, out=Path(args.out), calib=args.calib,
                          min_cc=args.min_cc, size=parse_size(args.size), calibration_method=args.calib_method,
                          dynamic_batch=args.dynamic_batch, graph=args.graph,
                          n_calib=args.n_calib, n_eval=args.n_eval, max_float=args.max_float)
    outcomes = convert(opts)
    print()
    print(format_table(outcomes))
    from salsdk import get_card

    print(f"\nlicence of these artifacts: {get_card(args.model).licence}")
    return 0 if all(o.status.startswith("accepted") for o in outcomes) else 1


def main(argv: list[str] | None = None) -> int:
    """``python -m salsdk.convert``."""
    from salsdk.cli import run_tool

    return run_tool(add_arguments, run, argv, "salsdk convert")
