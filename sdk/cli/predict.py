"""``salsdk predict``: saliency maps (PNG) and heat-map overlays for images, folders and videos.

``--model`` is a zoo name (PyTorch) or a bundle folder written by ``salsdk convert`` (its own runtime, pre- and
post-processing from its manifest). Images are predicted in batches of ``--batch-size`` (one call per batch where
the runtime takes batches; static-batch artifacts run them one by one); videos stream frame by frame, so memory
stays bounded, with a per-frame progress bar.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, PngImagePlugin

from salsdk import atomic
from salsdk.errors import InputError
from salsdk.imageio import IMAGE_SUFFIXES, is_video_path, load_image
from salsdk.postprocess import PostprocessOptions, overlay, to_uint8

from . import add_weights_source

HELP = "predict saliency maps and overlays for images, folders and videos"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``salsdk predict``."""
    parser.add_argument("inputs", nargs="+", help="images, folders of images, or videos (video models)")
    parser.add_argument("--model", required=True, help="zoo model name (see `salsdk list`) or a bundle folder")
    add_weights_source(parser)
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--no-overlay", action="store_true", help="write only the maps")
    parser.add_argument("--smooth", type=float, default=0.0, help="Gaussian sigma as a fraction of the longer side")
    parser.add_argument("--center-prior", choices=["none", "add", "mult"], default="none")
    parser.add_argument("--histogram", choices=["none", "equalization"], default="none")
    parser.add_argument("--scale", choices=["none", "min-max", "normalized", "log-density"], default="none",
                        help="scaling of the returned map (PNGs are always min-max scaled to 0..255)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per runtime call (default 8)")
    parser.add_argument("--threads", type=int, help="runtime threads")
    parser.add_argument("--cache-dir", help="weights cache folder")
    parser.add_argument("--max-side", type=int, help="models that run at the image's own size (KDSalBox): "
                        "downscale images whose longer side exceeds this many pixels (maps come back full size)")


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
    with atomic.temporary_file(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG", pnginfo=meta)


def run(args: argparse.Namespace) -> int:
    """Predict every input and write ``<stem>_saliency.png`` (+ ``<stem>_overlay.png``) into ``--out``."""
    from tqdm import tqdm

    from salsdk import load

    if Path(args.model).is_dir() and (args.weights or args.random_init):
        raise InputError(f"{args.model} is a bundle: its weights are baked in; drop --weights/--random-init")
    weights = None if args.random_init else (args.weights or "official")
    options = PostprocessOptions(histogram=args.histogram, smooth=args.smooth, center_prior=args.center_prior,
                                 scale=args.scale)
    out = atomic.writable_folder(Path(args.out), "--out")
    predictor = load(args.model, weights, cache_dir=args.cache_dir, threads=args.threads, postprocess=options,
                     max_side=args.max_side)
    contract = predictor.contract
    info = {"salsdk_model": contract.model, "salsdk_trained": str(contract.trained),
            "salsdk_runtime": predictor.runtime.name}
    if predictor.manifest:
        info["salsdk_format"] = predictor.manifest.format.key
    print(f"{contract.model} on {predictor.executes()}")
    if not contract.trained:
        print(f"warning: {contract.model} is UNTRAINED (random init): its maps mean nothing")
    if args.batch_size < 1:
        raise InputError(f"--batch-size {args.batch_size}: give a whole number of images >= 1")
    paths = list(expand_inputs(args.inputs))
    videos = [p for p in paths if is_video_path(p)]
    images = [p for p in paths if not is_video_path(p)]
    written, skipped = 0, []
    with tqdm(total=len(images), desc=f"images {contract.model}", unit="img", disable=not images) as bar:
        for start in range(0, len(images), args.batch_size):
            batch, rgbs = [], []
            for path in images[start:start + args.batch_size]:
                try:
                    rgbs.append(load_image(path))
                    batch.append(path)
                except InputError as exc:  # one unreadable file must not stop the others
                    skipped.append(str(exc))
                    bar.write(f"skipped: {exc}")
            for path, rgb, result in zip(batch, rgbs, predictor.predict_batch_full(rgbs) if rgbs else []):
                _save(out, path.stem, rgb, result.saliency, info, not args.no_overlay)
                if result.class_probs:
                    bar.write(f"{path.name}: class {result.top_class} ({result.class_probs[result.top_class]:.2f})")
            written += len(batch)
            bar.update(len(images[start:start + args.batch_size]))
    for path in videos:
        try:
            written += _predict_video(predictor, path, out, info, not args.no_overlay)
        except InputError as exc:
            skipped.append(str(exc))
            print(f"skipped: {exc}")
    print(f"wrote {written} saliency map(s){'' if args.no_overlay else ' and overlays'} to {out}")
    if skipped:
        print(f"{len(skipped)} input(s) could not be used:\n" + "\n".join(f"  {line}" for line in skipped))
        return 1
    return 0


def _save(out: Path, stem: str, rgb: np.ndarray, saliency: np.ndarray, info: dict[str, str], with_overlay: bool) -> None:
    save_png(to_uint8(saliency), out / f"{stem}_saliency.png", info)
    if with_overlay:
        save_png(overlay(rgb, saliency), out / f"{stem}_overlay.png", info)


def _predict_video(predictor, path: Path, out: Path, info: dict[str, str], with_overlay: bool) -> int:
    """Stream the video's frames through the predictor; frames wait in a queue until their map arrives."""
    from collections import deque

    from tqdm import tqdm

    from salsdk.imageio import iter_video_frames, video_frame_count

    folder = out / path.stem
    folder.mkdir(exist_ok=True)
    stream = predictor.stream()
    waiting: deque[np.ndarray] = deque()  # frames whose map has not come yet (up to a MIMO block)
    written = 0

    def emit(maps: list[np.ndarray]) -> None:
        nonlocal written
        for saliency in maps:
            _save(folder, f"{written:05d}", waiting.popleft(), saliency, info, with_overlay)
            written += 1

    with tqdm(total=video_frame_count(path), desc=path.name, unit="frame") as bar:
        for frame in iter_video_frames(path):
            waiting.append(frame)
            emit(stream.push(frame))
            bar.update(1)
        emit(stream.flush())
    return written
