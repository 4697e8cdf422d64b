"""``salsdk list``: every zoo model with params, MACs, weights status and licence."""
from __future__ import annotations

import argparse
import json
import sys

from salsdk.complexity import model_complexity
from salsdk.registry import get_card, list_models
from salsdk.weights import cached_path

HELP = "list the zoo models with params, MACs, weights status and licence"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk list``."""
    parser.add_argument("--family", choices=["kdsalbox", "tinyhd", "umsi"], help="only this family")
    parser.add_argument("--json", action="store_true", help="print the full model cards as JSON")
    parser.add_argument("--cache-dir", help="weights cache folder (default $SALSDK_HOME/weights)")


def weights_status(name: str, cache_dir: str | None = None) -> str:
    """``cached`` / ``not cached`` for the official checkpoint of ``name``."""
    return "cached" if cached_path(get_card(name), cache_dir).is_file() else "not cached"


def run(args: argparse.Namespace) -> int:
    """Print the model table (or JSON cards)."""
    names = list_models(args.family)
    if args.json:
        rows = []
        for name in names:
            c = model_complexity(name)
            rows.append({**get_card(name).to_dict(), "params": c.params, "macs": c.macs,
                         "gmacs_per_map": c.gmacs_per_map, "gmacs_per_map_paper_style": c.gmacs_per_map_paper_style,
                         "macs_input_shape": c.input_shape,
                         "weights_status": weights_status(name, args.cache_dir)})
        json.dump(rows, sys.stdout, indent=2, default=str)
        print()
        return 0
    header = (f"{'model':<16} {'family':<9} {'input':<18} {'params':>11} {'GMACs/map':>10} {'(ptflops)':>10}  "
              f"{'weights':<11} licence")
    print(header)
    print("-" * len(header))
    for name in names:
        card, c = get_card(name), model_complexity(name)
        shape = "x".join(str(d) for d in c.input_shape[1:])
        print(f"{name:<16} {card.family:<9} {shape:<18} {c.params:>11,} {c.gmacs_per_map:>10.2f} "
              f"{c.gmacs_per_map_paper_style:>10.2f}  "
              f"{weights_status(name, args.cache_dir):<11} {card.licence_short}")
    print(f"\n{len(names)} models. MACs counted at the input shown (KDSalBox: the paper's 480x640 timing size); "
          "GMACs/map counts convolutions, (ptflops) also BatchNorm, activations, biases and resizing, as TinyHD's "
          "paper does.")
    return 0
