"""``salsdk export android --bundle DIR [--app DIR]``: put a bundle into the Android demo, with test vectors."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "copy a bundle into a client (the Android demo app), with test vectors for its tests"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``salsdk export``: the target (``android``), the bundle and the app folder."""
    from salsdk.clients.android import DEFAULT_APP

    parser.add_argument("target", choices=["android"], help="what to export to (the Android demo app)")
    parser.add_argument("--bundle", required=True, type=Path, help="bundle folder written by salsdk convert")
    parser.add_argument("--app", type=Path, default=DEFAULT_APP,
                        help=f"the Android Studio project (default: {DEFAULT_APP})")
    parser.add_argument("--vectors-dir", type=Path, default=None,
                        help="where to write the Kotlin test vectors (default: <app>/core/src/test/resources/vectors)")
    parser.add_argument("--no-vectors", action="store_true", help="copy the bundle only, write no test vectors")


def run(args: argparse.Namespace) -> int:
    """Run ``salsdk export``; returns the exit status."""
    from salsdk.clients.android import export_android

    export_android(args.bundle, args.app, vectors=not args.no_vectors, vectors_dir=args.vectors_dir)
    return 0
