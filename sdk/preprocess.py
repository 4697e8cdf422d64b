"""Pre-processing: RGB uint8 pixels -> model input tensors, following a model's :class:`~salsdk.cards.Preprocessing`.

Resizing is bilinear with half-pixel centres and no antialiasing (PyTorch's ``align_corners=False``, OpenCV's
``INTER_LINEAR``), computed in float on the 0..255 pixel values, never rounded. It is the one resize rule of the
SDK, written into every manifest, so the Android core, the browser client and any other runtime reproduce it
exactly. It is plain NumPy: running a bundle needs no PyTorch.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .cards import Preprocessing
from .errors import InputError
from .geometry import Geometry, input_geometry

RESIZE_RULE = "bilinear, half-pixel centres, no antialiasing, on 0..255 float pixels"

__all__ = ["Geometry", "RESIZE_RULE", "preprocess_clip", "preprocess_image", "resize_bilinear"]


def _axis_weights(size_in: int, size_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices (low, high) and the weight of ``high`` for each output position along one axis."""
    scale = size_in / size_out
    source = np.maximum((np.arange(size_out, dtype=np.float64) + 0.5) * scale - 0.5, 0.0)
    low = np.minimum(np.floor(source).astype(np.int64), size_in - 1)
    high = np.minimum(low + 1, size_in - 1)
    return low, high, (source - low).astype(np.float32)


def resize_bilinear(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) array to ``size_hw`` (float32 result, half-pixel centres, no antialiasing)."""
    image = np.asarray(array, dtype=np.float32)
    size_hw = (int(size_hw[0]), int(size_hw[1]))
    if image.shape[:2] == size_hw:
        return image
    low, high, weight = _axis_weights(image.shape[0], size_hw[0])
    weight = weight.reshape(-1, *([1] * (image.ndim - 1)))
    rows = image[low] * (1 - weight) + image[high] * weight
    low, high, weight = _axis_weights(image.shape[1], size_hw[1])
    weight = weight.reshape(1, -1, *([1] * (image.ndim - 2)))
    return np.ascontiguousarray(rows[:, low] * (1 - weight) + rows[:, high] * weight, dtype=np.float32)


def preprocess_image(rgb: np.ndarray, spec: Preprocessing, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Geometry]:
    """One RGB uint8 image -> (3, H, W) float32 model input and its :class:`Geometry`.

    ``size`` overrides ``spec.size`` (a bundle's static input size; for ``native`` models it turns the fit into
    ``stretch``).
    """
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    target = tuple(size) if size is not None else spec.size
    resize = "stretch" if spec.resize == "native" and target is not None else spec.resize
    geometry = input_geometry(resize, rgb.shape[:2], target)
    top, left, ch, cw = geometry.content
    pixels = resize_bilinear(rgb, (ch, cw))
    if (ch, cw) != geometry.input_hw:
        canvas = np.empty((*geometry.input_hw, 3), dtype=np.float32)
        canvas[...] = np.asarray(spec.pad_value, dtype=np.float32)
        canvas[top:top + ch, left:left + cw] = pixels
        pixels = canvas
    if spec.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    mean = np.asarray(spec.mean, dtype=np.float32)
    std = np.asarray(spec.std, dtype=np.float32)
    normalised = (pixels * np.float32(spec.scale) - mean) / std
    return np.ascontiguousarray(normalised.transpose(2, 0, 1), dtype=np.float32), geometry


def preprocess_clip(frames: Sequence[np.ndarray], spec: Preprocessing, frames_per_clip: int | None = None,
                    size: tuple[int, int] | None = None) -> tuple[np.ndarray, Geometry]:
    """RGB uint8 frames -> (3, T, H, W) float32 clip and the geometry of its frames (``frames_per_clip``, when
    given, is checked)."""
    if not frames or (frames_per_clip is not None and len(frames) != frames_per_clip):
        raise InputError(f"a clip needs exactly {frames_per_clip} frames, got {len(frames)}")
    tensors, geometries = zip(*(preprocess_image(f, spec, size) for f in frames))
    if len(set(geometries)) != 1:
        raise InputError("all frames of a clip must have the same size")
    return np.stack(tensors, axis=1), geometries[0]
