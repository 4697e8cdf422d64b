"""Test vectors every client of a bundle must reproduce: the Python SDK's own results on real inputs.

:func:`write_vectors` runs a verified bundle through the Python SDK and writes, into one folder:

* ``manifest.json``: the bundle's manifest (clients parse and validate it themselves);
* per case, the input frame(s) as raw uint8 RGB (``*.rgb``; sizes in ``vectors.json``): two photos (scikit-image
  ``coffee``, ``astronaut``, downscaled to at most 128 pixels a side) for image models; for letterboxed models
  also photos of sizes whose fitted side is not a whole number (300x451, 451x300, 7x1000: the official
  letterbox rounds down, a rounding client is off by one row); 16 frames of the shared DHF1K clip for clip models;
* the pre-processed input tensor in the model's input layout (float32 little-endian, gzipped; for clips only the
  first and last frame of the window) and, for int8 inputs, the quantised tensor;
* the model's raw output buffer (the bundle run by its own runtime, in the output tensor's layout and dtype);
* the post-processed maps at the original resolution (min-max, without and with Gaussian smoothing) and the
  heat-map overlay; and the letterbox geometry Python used (``content``, ``uncrop``).

``vectors.json`` (schema :data:`VECTORS_SCHEMA`) describes every file and the tolerances.
:func:`write_shared_vectors` adds, beside the bundle folders, the manifest JSON Schema clients validate each
``manifest.json`` against and ``letterbox.json``: the official letterbox fit and un-crop for thousands of sizes. The Kotlin core's tests
(``android_demo/core/src/test``) and the browser client's tests read the same files.
"""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..geometry import letterbox_fit, uncrop_fit
from ..manifest import MANIFEST_NAME, SCHEMA_FILE, Manifest, read_manifest
from ..paths import shared_video
from ..postprocess import PostprocessOptions, apply_postprocess, overlay, restore_map
from ..preprocess import preprocess_image, resize_bilinear

VECTORS_SCHEMA = "salsdk-client-vectors/2"
MAX_SIDE = 128
LETTERBOX_SIZES = ((300, 451), (451, 300), (7, 1000))  # fitted side not a whole number of pixels
CLIP_FRAMES_STORED = (0, -1)  # first and last frame of a clip's window
MAP_OPTIONS = ({"smooth": 0.0, "min_max": True}, {"smooth": 0.02, "min_max": True})
ALPHA = 0.5
TOLERANCES = {"input": 1e-4, "map": 1e-3, "overlay": 1}  # tensor units (at least), map units, grey levels
INPUT_TOLERANCE_LEVELS = 0.01  # pre-processed tensors agree to 1/100 of an 8-bit grey level


def tolerances(manifest: Manifest) -> dict[str, float]:
    """Tolerances of a bundle's vectors: the input's in its own units (1/100 grey level, at least 1e-4)."""
    pre = manifest.preprocessing
    return {**TOLERANCES, "input": max(TOLERANCES["input"], INPUT_TOLERANCE_LEVELS * pre.scale / min(pre.std))}
_TO_LAYOUT = {"NHWC": (0, 2, 3, 1), "NTHWC": (0, 2, 3, 4, 1)}


def _fit(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``rgb`` resized to ``size`` with the SDK's bilinear rule, as uint8."""
    return np.clip(np.round(resize_bilinear(rgb, size)), 0, 255).astype(np.uint8)


def _small(rgb: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
    """Downscale an RGB uint8 image so that its longer side is at most ``max_side``."""
    h, w = rgb.shape[:2]
    if max(h, w) <= max_side:
        return rgb
    scale = max_side / max(h, w)
    return _fit(rgb, (max(1, round(h * scale)), max(1, round(w * scale))))


def _to_layout(canonical: np.ndarray, layout: str) -> np.ndarray:
    """Canonical NCHW/NCTHW -> the tensor's layout (NHWC/NTHWC; channels-first layouts unchanged)."""
    return np.ascontiguousarray(canonical.transpose(_TO_LAYOUT[layout]) if layout in _TO_LAYOUT else canonical)


def _quantize(x: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float array -> int8/uint8 with the tensor's scale/zero point (round half to even, clipped)."""
    info = np.iinfo(dtype)
    return np.clip(np.round(x / np.float32(scale)) + zero_point, info.min, info.max).astype(dtype)


def cases(manifest: Manifest) -> list[tuple[str, list[np.ndarray]]]:
    """The real inputs of a bundle's vectors: photos for image models, 16 consecutive video frames for clips."""
    if manifest.is_clip:
        from ..imageio import iter_video_frames

        video = shared_video()
        if video is None:
            raise FileNotFoundError("video vectors need the shared DHF1K clip (set SALSDK_SHARED to the shared/ folder)")
        frames = manifest.temporal.frames
        return [(f"{video.stem}_f0-{frames - 1}", [_small(f) for f in iter_video_frames(video, max_frames=frames)])]
    from skimage import data

    made = [("coffee", [_small(data.coffee())]), ("astronaut", [_small(data.astronaut())])]
    if manifest.preprocessing.resize == "letterbox":
        made += [(f"astronaut_{h}x{w}", [_fit(data.astronaut(), (h, w))]) for h, w in LETTERBOX_SIZES]
    return made


def write_vectors(bundle: Path, out: Path, log: Callable[[str], None] = print) -> Path:
    """Write the test vectors of ``bundle`` into the folder ``out`` (created; see the module docstring)."""
    from ..api import load_bundle

    manifest = read_manifest(bundle)
    contract = manifest.contract()
    runtime = load_bundle(bundle).runtime
    in_spec, out_spec = manifest.input, manifest.saliency_output
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy2(bundle / MANIFEST_NAME, out / MANIFEST_NAME)

    def save(name: str, array: np.ndarray, compress: bool = False) -> str:
        raw = np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        if compress:
            name += ".gz"
            raw = gzip.compress(raw, mtime=0)
        (out / name).write_bytes(raw)
        return name

    written = []
    for name, frames in cases(manifest):
        prepared = [preprocess_image(f, contract.preprocessing, manifest.input_size) for f in frames]
        geometry = prepared[-1][1]
        canonical = (np.stack([p[0] for p in prepared], axis=1) if contract.is_video else prepared[0][0])[None]
        model_input = _to_layout(canonical, in_spec.layout).astype(np.float32)
        case: dict[str, Any] = {
            "name": name,
            "frames": [{"file": save(f"{name}_{i:02d}.rgb", f), "height": f.shape[0], "width": f.shape[1]}
                       for i, f in enumerate(frames)],
            "geometry": {"content": list(geometry.content), "letterbox": geometry.letterbox},
        }
        if contract.is_video and in_spec.layout == "NTHWC":
            stored = sorted({i % len(frames) for i in CLIP_FRAMES_STORED})
            case["input"] = {"file": save(f"{name}.input.f32", model_input[0, stored], True),
                             "layout": in_spec.layout, "frames_stored": stored}
        else:
            case["input"] = {"file": save(f"{name}.input.f32", model_input, True), "layout": in_spec.layout}
        if in_spec.quantized and in_spec.scale is not None:
            q = _quantize(model_input, in_spec.scale, in_spec.zero_point, in_spec.dtype)
            case["input_q"] = {"file": save(f"{name}.input.{in_spec.dtype}", q, True), "dtype": in_spec.dtype}
        saliency = runtime.run(canonical)[0]  # canonical (1, 1, h, w) or (1, 1, T, h, w)
        raw = _to_layout(saliency, out_spec.layout).astype(np.float32)
        if out_spec.quantized and out_spec.scale is not None:
            raw = _quantize(raw, out_spec.scale, out_spec.zero_point, out_spec.dtype)  # exact: what was dequantised
        case["output"] = {"file": save(f"{name}.output.{out_spec.dtype}", raw, True), "dtype": out_spec.dtype,
                          "layout": out_spec.layout, "shape": list(raw.shape), "map_index": 0}
        raw_map = saliency[0, 0] if saliency.ndim == 4 else saliency[0, 0, 0]
        if geometry.letterbox:
            size, top, left = uncrop_fit(raw_map.shape, geometry.original_hw)
            case["geometry"]["uncrop"] = {"resize": list(size), "top": top, "left": left}
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
        written.append(case)
        log(f"  vectors: {name} ({len(frames)} frame(s) {frames[0].shape[1]}x{frames[0].shape[0]})")
    spec = {"schema": VECTORS_SCHEMA, "bundle": bundle.name, "model": manifest.model_name,
            "format": manifest.format.key, "tolerances": tolerances(manifest), "cases": written}
    (out / "vectors.json").write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")
    return out


LETTERBOX_CASES = 3000
LETTERBOX_TARGETS = ((240, 320), (480, 640), (96, 128), (320, 240))


def letterbox_cases(n: int = LETTERBOX_CASES, seed: int = 0) -> list[dict[str, Any]]:
    """The official letterbox fit and un-crop of ``n`` image sizes (1 to 5000 pixels a side, extreme aspect
    ratios included) into the usual input and output sizes."""
    rng = np.random.default_rng(seed)
    sizes = [(300, 451), (451, 300), (7, 1000), (1000, 7), (1, 5000), (240, 320), (480, 640)]
    sizes += [(int(h), int(w)) for h, w in rng.integers(1, 5001, size=(n - len(sizes), 2))]
    made = []
    for k, (h, w) in enumerate(sizes):
        rows, cols = LETTERBOX_TARGETS[k % len(LETTERBOX_TARGETS)]
        (rh, rw), top, left = uncrop_fit((2 * rows, 2 * cols), (h, w))
        made.append({"image": [h, w], "input": [rows, cols], "content": list(letterbox_fit((h, w), (rows, cols))),
                     "map": [2 * rows, 2 * cols], "uncrop": [rh, rw, top, left]})
    return made


def write_shared_vectors(root: Path) -> None:
    """Write the manifest JSON Schema and ``letterbox.json`` into the vectors folder ``root``."""
    from .. import atomic

    atomic.write_bytes(root / SCHEMA_FILE.name, SCHEMA_FILE.read_bytes())
    atomic.write_text(root / "letterbox.json", json.dumps({"schema": "salsdk-letterbox-vectors/1",
                                                           "cases": letterbox_cases()}) + "\n")
