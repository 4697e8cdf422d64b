"""Export a bundle to the Android demo: its assets, and test vectors the Kotlin core must reproduce.

:func:`export_android` verifies a bundle, copies it into ``android_demo/app/src/main/assets/bundle/`` (written
to a temporary folder first, then renamed into place) and writes, under
``android_demo/core/src/test/resources/vectors/<bundle name>/``, the Python SDK's own results on real inputs:

* ``manifest.json``: the bundle's manifest (the Kotlin core parses it itself);
* per case, the input image(s) as raw uint8 RGB (``*.rgb``; sizes in ``vectors.json``), downscaled to at most
  128 pixels a side; two photos (scikit-image ``coffee``, ``astronaut``) for image models, 16 frames of the
  shared DHF1K video for clip models;
* the pre-processed input tensor in the model's input layout (float32 little-endian, gzipped; for clips only
  the first and last frame of the window, to keep the files small) and, for int8 inputs, the quantised tensor;
* the model's raw output buffer (the bundle run by its own runtime, in the output tensor's layout and dtype);
* the post-processed maps at the original resolution (min-max, without and with Gaussian smoothing) and the
  heat-map overlay.

``vectors.json`` describes every file; the Kotlin test runner (``android_demo/core/src/test``) reads it.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .manifest import MANIFEST_NAME, contract_from_manifest, read_manifest

REPO = Path(__file__).resolve().parents[1]
DEFAULT_APP = REPO / "android_demo"
ASSETS = Path("app/src/main/assets/bundle")
VECTORS = Path("core/src/test/resources/vectors")
VECTORS_SCHEMA = "salsdk-android-vectors/1"
MAX_SIDE = 128
CLIP_FRAMES_STORED = (0, -1)  # first and last frame of a clip's window
MAP_OPTIONS = ({"smooth": 0.0, "min_max": True}, {"smooth": 0.02, "min_max": True})
ALPHA = 0.5
_TO_LAYOUT = {"NHWC": (0, 2, 3, 1), "NTHWC": (0, 2, 3, 4, 1)}


def shared_video() -> Path:
    """The shared DHF1K clip used for video-model vectors (``$SALSDK_SHARED`` overrides ``../shared``)."""
    return Path(os.environ.get("SALSDK_SHARED", REPO.parent / "shared")) / "data/video/dhf1k_0068.avi"


def _replace_dir(staged: Path, target: Path) -> None:
    """Move the complete ``staged`` folder to ``target`` (replacing it) with renames only."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        target.rename(old)
    staged.rename(target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _small(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Downscale an RGB uint8 image so that its longer side is at most ``max_side`` (SDK bilinear resize)."""
    from .preprocess import resize_bilinear

    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    return np.clip(np.round(resize_bilinear(rgb, size)), 0, 255).astype(np.uint8)


def _to_layout(canonical: np.ndarray, layout: str) -> np.ndarray:
    """Canonical NCHW/NCTHW -> the tensor's layout (NHWC/NTHWC; channels-first layouts unchanged)."""
    return np.ascontiguousarray(canonical.transpose(_TO_LAYOUT[layout]) if layout in _TO_LAYOUT else canonical)


def _quantize(x: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    """Float array -> the int8/uint8 dtype of ``spec`` with its scale/zero point (as the LiteRT adapter)."""
    info = np.iinfo(spec["dtype"])
    q = np.round(x / np.float32(spec["scale"])) + spec["zero_point"]
    return np.clip(q, info.min, info.max).astype(spec["dtype"])


def _cases(manifest: dict[str, Any]) -> list[tuple[str, list[np.ndarray]]]:
    """Real inputs: two photos for image models, 16 consecutive video frames for clip models."""
    frames = int(manifest["input"]["preprocessing"].get("frames", 1))
    if frames > 1:
        from .imageio import iter_video_frames

        video = shared_video()
        if not video.is_file():
            raise FileNotFoundError(f"video vectors need {video} (set SALSDK_SHARED to the shared/ folder)")
        clip = [_small(f) for f in iter_video_frames(video, max_frames=frames)]
        return [(f"{video.stem}_f0-{frames - 1}", clip)]
    from skimage import data

    return [("coffee", [_small(data.coffee())]), ("astronaut", [_small(data.astronaut())])]


def write_vectors(bundle: Path, out: Path, log: Callable[[str], None] = print) -> Path:
    """Write the test vectors of ``bundle`` into the folder ``out`` (created; see the module docstring)."""
    import salsdk

    from .postprocess import PostprocessOptions, apply_postprocess, overlay, restore_map
    from .preprocess import preprocess_image

    manifest = read_manifest(bundle)
    contract = contract_from_manifest(manifest)
    predictor = salsdk.load(bundle)
    runtime = predictor.runtime
    in_spec = manifest["input"]
    out_spec = next((o for o in manifest["outputs"] if o["name"].split(":")[0] == "saliency"),
                    manifest["outputs"][0])
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle / MANIFEST_NAME, out / MANIFEST_NAME)

    def save(name: str, array: np.ndarray, compress: bool = False) -> str:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        if compress:
            name += ".gz"
            raw = gzip.compress(raw, mtime=0)
        (out / name).write_bytes(raw)
        return name

    cases = []
    for name, frames in _cases(manifest):
        prepared = [preprocess_image(f, contract.preprocessing, runtime.input_hw) for f in frames]
        geometry = prepared[-1][1]
        if contract.is_video:
            canonical = np.stack([p[0] for p in prepared], axis=1)[None]  # (1, 3, T, H, W), as VideoStream
        else:
            canonical = prepared[0][0][None]
        model_input = _to_layout(canonical, in_spec["layout"]).astype(np.float32)
        case: dict[str, Any] = {
            "name": name,
            "frames": [{"file": save(f"{name}_{i:02d}.rgb", f), "height": f.shape[0], "width": f.shape[1]}
                       for i, f in enumerate(frames)],
        }
        if contract.is_video and in_spec["layout"] == "NTHWC":
            stored = sorted({i % len(frames) for i in CLIP_FRAMES_STORED})
            case["input"] = {"file": save(f"{name}.input.f32", model_input[0, stored], True),
                             "layout": in_spec["layout"], "frames_stored": stored}
        else:
            case["input"] = {"file": save(f"{name}.input.f32", model_input, True), "layout": in_spec["layout"]}
        if in_spec["dtype"] in ("int8", "uint8"):
            case["input_q"] = {"file": save(f"{name}.input.{in_spec['dtype']}", _quantize(model_input, in_spec), True),
                               "dtype": in_spec["dtype"]}
        outputs = runtime.run(canonical)
        saliency = outputs[0]  # canonical (1, 1, h, w) or (1, 1, T, h, w)
        raw = _to_layout(saliency, out_spec["layout"]).astype(np.float32)
        if out_spec["dtype"] in ("int8", "uint8"):
            raw = _quantize(raw, out_spec)  # exact: the runtime dequantised these very integers
        case["output"] = {"file": save(f"{name}.output.{out_spec['dtype']}", raw, True), "dtype": out_spec["dtype"],
                          "layout": out_spec["layout"], "shape": list(raw.shape), "map_index": 0}
        raw_map = saliency[0, 0] if saliency.ndim == 4 else saliency[0, 0, 0]
        maps = []
        for k, opts in enumerate(MAP_OPTIONS):
            options = PostprocessOptions(smooth=opts["smooth"], scale="min-max" if opts["min_max"] else "none")
            m = apply_postprocess(restore_map(raw_map, geometry), options).astype(np.float32)
            maps.append(m)
            case.setdefault("maps", []).append({"file": save(f"{name}.map{k}.f32", m, True), **opts,
                                                "height": m.shape[0], "width": m.shape[1]})
        frame_index = len(frames) - 1  # the map belongs to the window's last frame
        case["overlay"] = {"file": save(f"{name}.overlay.rgb", overlay(frames[frame_index], maps[0], ALPHA)),
                           "frame": frame_index, "map": 0, "alpha": ALPHA}
        cases.append(case)
        log(f"  vectors: {name} ({len(frames)} frame(s) {frames[0].shape[1]}x{frames[0].shape[0]})")
    spec = {"schema": VECTORS_SCHEMA, "bundle": bundle.name, "model": manifest["model"]["name"],
            "format": manifest["format"]["key"], "tolerances": {"input": 1e-4, "map": 1e-3, "overlay": 1},
            "cases": cases}
    (out / "vectors.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return out


def export_android(bundle: Path, app: Path = DEFAULT_APP, vectors: bool = True,
                   vectors_dir: Path | None = None, log: Callable[[str], None] = print) -> Path:
    """Copy a verified bundle into the Android demo's assets and write its test vectors; return the assets copy.

    Args:
        bundle: a bundle folder written by ``salsdk convert`` (its manifest and file hashes are checked).
        app: the Android Studio project (default: ``android_demo/`` of this repository).
        vectors: also write the test vectors for the Kotlin core.
        vectors_dir: folder holding one vector folder per bundle (default ``<app>/core/src/test/resources/vectors``).
        log: progress messages.

    Both the assets and the vector folder are written to a temporary folder next to their destination and
    renamed into place, so an interrupted export never leaves a half-written bundle behind.
    """
    bundle, app = Path(bundle), Path(app)
    manifest = read_manifest(bundle)
    model_file = bundle / manifest["model_file"]
    assets = app / ASSETS
    assets.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=".bundle-", dir=assets.parent))
    try:
        shutil.copy2(bundle / MANIFEST_NAME, staged / MANIFEST_NAME)
        if model_file.is_dir():
            shutil.copytree(model_file, staged / model_file.name)
        else:
            shutil.copy2(model_file, staged / model_file.name)
        read_manifest(staged)  # the copy verifies against the pinned hashes
        _replace_dir(staged, assets)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    log(f"bundle {bundle.name} -> {assets}")
    if vectors:
        root = Path(vectors_dir) if vectors_dir is not None else app / VECTORS
        root.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f".{bundle.name}-", dir=root))
        try:
            write_vectors(bundle, work, log)
            _replace_dir(work, root / bundle.name)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        log(f"test vectors -> {root / bundle.name}")
    return assets
