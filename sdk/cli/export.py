"""``salsdk export android|web --bundle DIR...``: put bundles into a client (the Android demo, or a web site)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "copy bundles into a client: the Android demo app (with test vectors), or a static web site"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``salsdk export``: the target, the bundles and where they go."""
    from salsdk.clients.android import DEFAULT_APP

    parser.add_argument("target", choices=["android", "web"],
                        help="android: the demo app (one LiteRT bundle); web: a static site (ONNX / TFLite bundles)")
    parser.add_argument("--bundle", required=True, type=Path, nargs="+",
                        help="bundle folder(s) written by salsdk convert (web: several, shown side by side)")
    parser.add_argument("--out", type=Path, default=None, help="web: the site folder to write (default: site/)")
    parser.add_argument("--app", type=Path, default=DEFAULT_APP,
                        help=f"android: the Android Studio project (default: {DEFAULT_APP})")
    parser.add_argument("--vectors-dir", type=Path, default=None,
                        help="android: where to write the Kotlin test vectors "
                             "(default: <app>/core/src/test/resources/vectors)")
    parser.add_argument("--no-vectors", action="store_true", help="android: copy the bundle only, write no test vectors")
    parser.add_argument("--vectors", action="store_true",
                        help="web: also write the client test vectors (the site's conformance check, used by tests)")


def run(args: argparse.Namespace) -> int:
    """Run ``salsdk export``; returns the exit status."""
    from salsdk.errors import InputError

    if args.target == "web":
        from salsdk.clients.web import export_web

        export_web(args.bundle, args.out or Path("site"), vectors=args.vectors)
        return 0
    from salsdk.clients.android import export_android

    if len(args.bundle) != 1:
        raise InputError("the Android demo takes one bundle: give one --bundle DIR")
    export_android(args.bundle[0], args.app, vectors=not args.no_vectors, vectors_dir=args.vectors_dir)
    return 0
