"""``salsdk check``: run bundles side by side with their PyTorch reference on real inputs (the parity check)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "run bundles side by side with their PyTorch model on real inputs: agreement matrix"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk check``."""
    parser.add_argument("bundles", nargs="+", help="bundle folders written by `salsdk convert` (one model)")
    parser.add_argument("--inputs", nargs="+", help="images / folders (image models) or one video (clip models); "
                                                    "default: built-in real inputs no bundle calibrated on")
    parser.add_argument("--frames", type=int, default=20, help="frames of the video for clip models (default 20)")
    parser.add_argument("--weights", help="checkpoint the bundles were made from (default: the official one, "
                                          "or the manifest's seed for untrained bundles)")
    parser.add_argument("--no-reference", action="store_true", help="compare the bundles with each other only")
    parser.add_argument("--threads", type=int, help="threads per runtime")
    parser.add_argument("--json", help="also write the report as JSON to this file")
    parser.add_argument("--plot", help="also save the agreement matrix as a PNG heat map")
    parser.add_argument("--cache-dir", help="weights cache folder")


def run(args: argparse.Namespace) -> int:
    """Print the agreement matrix and the per-bundle verdicts; exit 1 if a bundle is below its gate."""
    from salsdk.parity import check_bundles, format_report, plot_matrix

    bundles = [b for b in args.bundles if not b.endswith(".rejected.json")]
    for skipped in sorted(set(args.bundles) - set(bundles)):  # a glob such as out/Model-* also matches these
        print(f"  skipping {skipped}: a conversion's rejection report, not a bundle")
    report = check_bundles(bundles, args.inputs, n_frames=args.frames, reference=not args.no_reference,
                           weights=args.weights, cache_dir=args.cache_dir, threads=args.threads,
                           progress=lambda line: print(f"  {line}"))
    print()
    print(format_report(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
        print(f"report: {args.json}")
    if args.plot:
        print(f"agreement matrix: {plot_matrix(report, args.plot)}")
    failing = [row.label for row in report.rows if not row.ok]
    if failing:
        print(f"below their fidelity gate here: {', '.join(failing)}")
    return 0 if report.passed else 1
