"""``salsdk weights fetch|verify|list``: the official checkpoints in the local cache."""
from __future__ import annotations

import argparse

from salsdk.errors import WeightsError
from salsdk.registry import get_card, list_models
from salsdk.weights import cached_path, fetch, verify_file, weights_dir

HELP = "fetch, verify and list official checkpoints in the cache"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk weights``."""
    parser.add_argument("action", choices=["fetch", "verify", "list"])
    parser.add_argument("models", nargs="*", help="model names (default: all)")
    parser.add_argument("--cache-dir", help="weights cache folder (default $SALSDK_HOME/weights)")
    parser.add_argument("--sha256", help="expected SHA-256 (for checkpoints whose publisher gives none)")
    parser.add_argument("--force", action="store_true", help="download again even if cached")


def run(args: argparse.Namespace) -> int:
    """Fetch, verify or list checkpoints; returns 1 if any verification failed."""
    names = [get_card(n).name for n in args.models] or list_models()
    print(f"weights cache: {weights_dir(args.cache_dir)}")
    failures = 0
    for name in names:
        card = get_card(name)
        path = cached_path(card, args.cache_dir)
        expected = args.sha256 or card.checkpoint.sha256
        if args.action == "list":
            state = "cached" if path.is_file() else "not cached"
            print(f"{name:<16} {state:<11} {card.checkpoint.filename:<28} sha256={expected or 'unpublished'}  "
                  f"{card.checkpoint.url}")
            continue
        try:
            if args.action == "fetch":
                path = fetch(card, args.cache_dir, force=args.force, expected_sha256=args.sha256)
            elif not path.is_file():
                raise WeightsError(f"{path} is not cached (run `salsdk weights fetch {name}`)")
            digest = verify_file(path, expected)
            note = "verified" if expected else "no published hash; pin this one with --sha256"
            print(f"{name:<16} ok   {path}  sha256={digest} ({note})")
        except WeightsError as exc:
            failures += 1
            print(f"{name:<16} FAIL {exc}")
    return 1 if failures else 0
