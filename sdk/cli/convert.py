"""``salsdk convert``: a zoo model into verified ONNX / TFLite / CoreML bundles.

Exit status: 0 when the conversion ran and every requested format is accounted for: bundles for those that pass
the fidelity gate, a ``.rejected.json`` report for those that do not (a rejection is a measured result, printed
in the table, not an error); 1 when a format failed (an export error) or nothing was accepted, or with
``--strict`` when any format was rejected; 2 when the command could not run (bad options, missing weights).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from salsdk.convert.formats import select_formats
from salsdk.errors import InputError

from . import add_weights_source

HELP = "convert a zoo model into verified ONNX / TFLite / CoreML bundles (default: all formats, into out/)"
DEFAULT_OUT = "out"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk convert``."""
    parser.add_argument("--model", required=True, help="zoo model name (see `salsdk list`)")
    add_weights_source(parser, "checkpoint path (default: the official one, downloaded on first use)")
    parser.add_argument("--format", default="all",
                        help="onnx,tflite,coreml,pte,openvino or all (default), or format keys such as tflite-int8")
    parser.add_argument("--int8", action="store_true", help="also make int8 artifacts (calibrated, gated)")
    parser.add_argument("--fp16", action="store_true", help="also make an fp16 ONNX model")
    parser.add_argument("--calib", help="calibration images: a folder or a video (default: the built-in set)")
    parser.add_argument("--calib-method", default="auto", choices=["auto", "minmax", "percentile", "entropy"],
                        help="activation range calibration: auto (default) starts with the tool's default (min-max; "
                             "PT2E: histogram) and, if the gate fails, tries the other methods the format's tool "
                             "offers (ONNX Runtime: percentile, entropy; PT2E: min-max) before keeping layers in "
                             "float; a tool without the method named uses its default and records it")
    parser.add_argument("--bias-correction", default="auto", choices=["auto", "none", "per-tap", "per-channel"],
                        help="int8 bias correction (TFLite full int8, pte-int8): auto (default) applies the mode that "
                             "raises the fully int8 map CC most on calibration inputs and, if the gate fails, tries "
                             "the other modes fully int8 before keeping layers in float")
    parser.add_argument("--n-calib", type=int, help="calibration inputs (default: 16 images or 8 clips)")
    parser.add_argument("--n-eval", type=int, help="held-out inputs for the fidelity gate (default: 6 images or 8 clips)")
    parser.add_argument("--min-cc", type=float, default=0.99, help="fidelity gate: minimum CC vs fp32 (default 0.99)")
    parser.add_argument("--max-float", type=float, default=0.5,
                        help="fidelity fallback: at most this fraction of the ranked layers may stay in float "
                             "(default 0.5, so an int8 artifact stays mostly int8; 1 allows as many as the gate "
                             "needs; the table and manifest say how many were kept)")
    parser.add_argument("--prefer", default="speed", choices=["speed", "size", "fidelity"],
                        help="what int8 is for, i.e. which layers the fidelity fallback keeps in float first: speed "
                             "(default: those that recover most CC per share of the model's MACs, so the int8 "
                             "arithmetic stays where the time is), size (per share of the weights) or fidelity "
                             "(most CC recovered, whatever it costs)")
    parser.add_argument("--no-speed-check", action="store_true",
                        help="do not time accepted int8 artifacts against their fp32 sibling (by default each "
                             "one is, side by side on a held-out input; the table and manifest flag a slower one)")
    parser.add_argument("--size", help="static input size HxW for image models (default: the card's, e.g. 480x640)")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX with a dynamic batch dimension")
    parser.add_argument("--graph", default="auto", choices=["auto", "original", "rewritten"],
                        help="graph to export: auto (default: the model's export rewrite for the formats that run it "
                             "faster, i.e. TinyHD without 3-D convolutions for TFLite), original, or rewritten")
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder for the bundles (default: {DEFAULT_OUT}/)")
    parser.add_argument("--offline", action="store_true", help="never download weights (also: SALSDK_OFFLINE=1)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when any format is rejected by the gate")


def parse_size(text: str | None) -> tuple[int, int] | None:
    """``'192x256'`` -> (192, 256)."""
    if not text:
        return None
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise InputError(f"--size {text!r}: use HxW, e.g. 480x640") from None
    return h, w


def run(args: argparse.Namespace) -> int:
    """Convert, print the closing table; the exit status follows the module docstring."""
    from salsdk.convert.pipeline import ConvertOptions, convert, format_table
    from salsdk.registry import get_card

    card = get_card(args.model)
    formats = select_formats(args.format, args.int8, args.fp16)
    weights = None if args.random_init else (args.weights or "official")
    opts = ConvertOptions(model=card.name, weights=weights, formats=formats, out=Path(args.out), calib=args.calib,
                          min_cc=args.min_cc, size=parse_size(args.size), calibration_method=args.calib_method,
                          bias_correction=args.bias_correction,
                          dynamic_batch=args.dynamic_batch, graph=args.graph, n_calib=args.n_calib,
                          n_eval=args.n_eval, max_float=args.max_float, offline=True if args.offline else None,
                          prefer=args.prefer, speed_check=not args.no_speed_check)
    opts.validate()
    outcomes = convert(opts)
    print()
    print(format_table(outcomes))
    accepted = sum(o.accepted for o in outcomes)
    rejected = sum(o.status == "rejected" for o in outcomes)
    failed = sum(o.status == "failed" for o in outcomes)
    print(f"\n{accepted} bundle(s) written to {opts.out}" + (f"; {rejected} rejected by the fidelity gate "
          "(reports beside them)" if rejected else "") + (f"; {failed} FAILED" if failed else ""))
    slower = [o.format.key for o in outcomes if o.speed.get("slower_than_fp32")]
    if slower:
        print(f"slower than their fp32 sibling on this machine (kept, flagged in their manifests): {', '.join(slower)}")
    print(f"licence of these artifacts: {card.licence}")
    if failed or not accepted or (args.strict and rejected):
        return 1
    return 0
