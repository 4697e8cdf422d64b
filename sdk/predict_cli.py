"""``salsdk predict``: saliency maps (PNG) and heat-map overlays for images, folders and videos."""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, PngImagePlugin

from .errors import InputError
from .imageio import IMAGE_SUFFIXES, is_video_path, load_image
from .postprocess import PostprocessOptions, overlay, to_uint8


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk predict``."""
    parser.add_argument("inputs", nargs="+", help="images, folders of images, or videos (video models)")
    parser.add_argument("--model", required=True, help="zoo model name (see `salsdk list`)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--weights", help="checkpoint path (default: the official one from the cache)")
    source.add_argument("--random-init", action="store_true", help="untrained model with seeded random weights")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlay", action="store_true", help="write only the maps")
    parser.add_argument("--smooth", type=float, default=0.0, help="Gaussian sigma as a fraction of the longer side")
    parser.add_argument("--center-prior", choices=["none", "add", "mult"], default="none")
    parser.add_argument("--histogram", choices=["none", "equalization"], default="none")
    parser.add_argument("--scale", choices=["none", "min-max", "normalized", "log-density"], default="none",
                        help="scaling of the returned map (PNGs are always min-max scaled to 0..255)")
    parser.add_argument("--cache-dir", help="weights cache folder")


def expand_inputs(inputs: list[str]) -> Iterator[Path]:
    """Files as given; folders expanded to the images and videos they hold (sorted)."""
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES or is_video_path(p))
            if not found:
                raise InputError(f"folder {path} holds no images or videos")
            yield from found
        elif not path.exists():
            raise InputError(f"input {path} does not exist")
        else:
            yield path


def save_png(array: np.ndarray, path: Path, info: dict[str, str]) -> None:
    """Write a PNG atomically (temp file + rename) with text metadata."""
    meta = PngImagePlugin.PngInfo()
    for key, value in info.items():
        meta.add_text(key, value)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        Image.fromarray(array).save(tmp, format="PNG", pnginfo=meta)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def run(args: argparse.Namespace) -> int:
    """Predict every input and write ``<stem>_saliency.png`` (+ ``<stem>_overlay.png``) into ``--out``."""
    from tqdm import tqdm

    from . import load

    weights = None if args.random_init else (args.weights or "official")
    predictor = load(args.model, weights, cache_dir=args.cache_dir, postprocess=PostprocessOptions(
        histogram=args.histogram, smooth=args.smooth, center_prior=args.center_prior, scale=args.scale))
    contract = predictor.contract
    info = {"salsdk_model": contract.model, "salsdk_trained": str(contract.trained)}
    if not contract.trained:
        print(f"warning: {contract.model} is UNTRAINED (random init): its maps mean nothing")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for path in tqdm(list(expand_inputs(args.inputs)), desc=f"predict {contract.model}", unit="input"):
        if is_video_path(path):
            written += _predict_video(predictor, path, out, info, not args.no_overlay)
            continue
        rgb = load_image(path)
        result = predictor.predict_full(rgb)
        save_png(to_uint8(result.saliency), out / f"{path.stem}_saliency.png", info)
        if not args.no_overlay:
            save_png(overlay(rgb, result.saliency), out / f"{path.stem}_overlay.png", info)
        if result.class_probs:
            tqdm.write(f"{path.name}: class {result.top_class} ({result.class_probs[result.top_class]:.2f})")
        written += 1
    print(f"wrote {written} saliency map(s){'' if args.no_overlay else ' and overlays'} to {out}")
    return 0


def _predict_video(predictor, path: Path, out: Path, info: dict[str, str], with_overlay: bool) -> int:
    from .imageio import iter_video_frames

    folder = out / path.stem
    folder.mkdir(exist_ok=True)
    frames = list(iter_video_frames(path))
    for index, saliency in enumerate(predictor.predict_video(frames)):
        save_png(to_uint8(saliency), folder / f"{index:05d}_saliency.png", info)
        if with_overlay:
            save_png(overlay(frames[index], saliency), folder / f"{index:05d}_overlay.png", info)
    return len(frames)


def main(argv: list[str] | None = None) -> int:
    """``python -m salsdk.predict_cli``."""
    from .cli import run_tool

    return run_tool(add_arguments, run, argv, "salsdk predict")
