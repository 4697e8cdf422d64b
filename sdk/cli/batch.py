"""``salsdk batch``: saliency maps, statistics and crop boxes for large collections, resumable.

Exit status 0 when every input was processed (now or by an earlier run), 1 when some failed (each is in the index
with its error, and listed), 2 when the job could not start.
"""
from __future__ import annotations

import argparse

from . import add_weights_source

HELP = "saliency over large collections (resumable; local worker processes or Ray Data)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", help="images, videos, folders, glob patterns, or .txt/.csv/.parquet lists")
    parser.add_argument("--model", required=True, help="zoo model name or a bundle folder")
    add_weights_source(parser, "checkpoint path for a zoo model (default: the official one)")
    parser.add_argument("--out", required=True, help="output folder: maps/, index.parquet")
    parser.add_argument("--engine", choices=["local", "ray"], default="local", help="local (default) or ray")
    parser.add_argument("--workers", type=int, default=1, help="worker processes or Ray actors (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="inputs handed to a worker at a time (default 8)")
    parser.add_argument("--address", help="Ray cluster to join (default: start a local Ray instance)")
    parser.add_argument("--maps", default="png16", help="map files: png16 (16-bit PNG), npy, or png16,npy")
    parser.add_argument("--overlay", action="store_true", help="also write a JPEG heat-map overlay per image")
    parser.add_argument("--crop", default="", help="aspect ratios of the most salient crop boxes, e.g. 1:1,16:9")
    parser.add_argument("--threads", type=int, default=1, help="runtime threads per worker (default 1)")
    parser.add_argument("--max-side", type=int, help="downscale images above this longer side (KDSalBox models)")
    parser.add_argument("--retry-failed", action="store_true", help="process again the inputs recorded as failed")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from salsdk.batch import BatchSpec, run_batch

    weights = None if args.random_init else (args.weights or "official")
    spec = BatchSpec(model=args.model, out=args.out, weights=weights,
                     map_formats=tuple(f.strip() for f in args.maps.split(",") if f.strip()),
                     overlays=args.overlay, crops=tuple(r.strip() for r in args.crop.split(",") if r.strip()),
                     threads=args.threads, max_side=args.max_side)
    summary = run_batch(spec, args.inputs, engine=args.engine, workers=args.workers, batch_size=args.batch_size,
                        retry_failed=args.retry_failed, address=args.address, progress=not args.quiet)
    return 0 if summary.ok else 1
