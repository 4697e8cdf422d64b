"""Pre-processing: RGB uint8 pixels -> model input tensors, following a model's :class:`~salsdk.cards.Preprocessing`.

Resizing is bilinear with half-pixel centres and no antialiasing (``align_corners=False``, as OpenCV's
``INTER_LINEAR``), computed in float on the 0..255 pixel values. It is the one resize rule of the SDK: the same
rule is written into every manifest, so the Android core and any other runtime reproduce it exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .cards import Preprocessing
from .errors import InputError


@dataclass(frozen=True)
class Geometry:
    """Where an image went inside the model input, so the map can be mapped back onto it.

    ``content`` is (top, left, height, width) of the image inside the (``input_hw``) model input; it is the
    whole input except for letterboxing.
    """

    original_hw: tuple[int, int]
    input_hw: tuple[int, int]
    content: tuple[int, int, int, int]


def resize_bilinear(array: np.ndarray, size_hw: tuple[int, int]) -> np.ndarray:
    """Resize an (H, W) or (H, W, C) float/uint8 array to ``size_hw`` (float32 result, no antialiasing)."""
    if tuple(array.shape[:2]) == tuple(size_hw):
        return array.astype(np.float32, copy=False)
    tensor = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    squeeze = tensor.ndim == 2
    tensor = tensor[None, None] if squeeze else tensor.permute(2, 0, 1)[None]
    out = F.interpolate(tensor, size=tuple(size_hw), mode="bilinear", align_corners=False, antialias=False)
    out = out[0, 0] if squeeze else out[0].permute(1, 2, 0)
    return out.numpy()


def letterbox_geometry(original_hw: tuple[int, int], target_hw: tuple[int, int]) -> Geometry:
    """Fit ``original_hw`` inside ``target_hw`` keeping the aspect ratio, centred."""
    (h, w), (th, tw) = original_hw, target_hw
    scale = min(th / h, tw / w)
    nh, nw = max(1, min(th, round(h * scale))), max(1, min(tw, round(w * scale)))
    top, left = (th - nh) // 2, (tw - nw) // 2
    return Geometry(original_hw, target_hw, (top, left, nh, nw))


def input_geometry(spec: Preprocessing, original_hw: tuple[int, int], size: tuple[int, int] | None = None) -> Geometry:
    """Geometry of an image of ``original_hw`` under ``spec`` (``size`` overrides ``spec.size``)."""
    target = tuple(size) if size is not None else spec.size
    if spec.resize == "native" and target is None:
        return Geometry(original_hw, original_hw, (0, 0, *original_hw))
    if target is None:
        raise ValueError(f"pre-processing {spec.resize!r} needs an input size")
    if spec.resize == "letterbox":
        return letterbox_geometry(original_hw, target)
    return Geometry(original_hw, target, (0, 0, *target))


def preprocess_image(rgb: np.ndarray, spec: Preprocessing, size: tuple[int, int] | None = None) -> tuple[np.ndarray, Geometry]:
    """One RGB uint8 image -> (3, H, W) float32 model input and its :class:`Geometry`."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise InputError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
    geometry = input_geometry(spec, rgb.shape[:2], size)
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


def preprocess_clip(frames: Sequence[np.ndarray], spec: Preprocessing) -> tuple[np.ndarray, Geometry]:
    """``spec.frames`` RGB uint8 frames -> (3, T, H, W) float32 clip and the geometry of its frames."""
    if len(frames) != spec.frames:
        raise InputError(f"a clip needs exactly {spec.frames} frames, got {len(frames)}")
    tensors, geometries = zip(*(preprocess_image(f, spec) for f in frames))
    if len(set(geometries)) != 1:
        raise InputError("all frames of a clip must have the same size")
    return np.stack(tensors, axis=1), geometries[0]
