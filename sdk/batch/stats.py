"""Statistics of a saliency map that downstream users need: where the peak is, how spread the map is, and for
each aspect ratio the most salient crop (what saliency-aware cropping and thumbnails use)."""
from __future__ import annotations

import math

import numpy as np

from ..errors import InputError


def parse_ratio(text: str) -> tuple[int, int]:
    """``"16:9"`` -> (16, 9)."""
    try:
        w, h = (int(v) for v in text.split(":"))
    except ValueError:
        raise InputError(f"crop ratio {text!r}: give W:H with whole numbers, e.g. 1:1 or 16:9") from None
    if w < 1 or h < 1 or w > 100 or h > 100:
        raise InputError(f"crop ratio {text!r}: W and H must be 1..100")
    return w, h


def best_crop(saliency: np.ndarray, ratio: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the largest box of aspect ``ratio`` (W:H) that fits the map, placed where it holds
    the most saliency (ties: the first, scanning from the top left)."""
    h, w = saliency.shape
    rw, rh = ratio
    box_w = min(w, max(1, math.floor(h * rw / rh)))
    box_h = min(h, max(1, math.floor(box_w * rh / rw)))
    integral = np.pad(np.cumsum(np.cumsum(saliency.astype(np.float64), 0), 1), ((1, 0), (1, 0)))
    sums = (integral[box_h:, box_w:] - integral[:-box_h, box_w:] - integral[box_h:, :-box_w]
            + integral[:-box_h, :-box_w])
    y0, x0 = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(x0), int(y0), int(x0 + box_w), int(y0 + box_h)


def map_stats(saliency: np.ndarray, ratios: tuple[str, ...] = ()) -> dict[str, object]:
    """Peak location, mean of the min-max scaled map, entropy (bits) of the map as a distribution, crop boxes."""
    lo, hi = float(saliency.min()), float(saliency.max())
    scaled = (saliency - lo) / (hi - lo) if hi > lo else np.zeros_like(saliency)
    peak_y, peak_x = np.unravel_index(int(np.argmax(saliency)), saliency.shape)
    p = scaled.astype(np.float64).ravel()
    total = p.sum()
    entropy = float(-(p[p > 0] / total * np.log2(p[p > 0] / total)).sum()) if total > 0 else 0.0
    return {"peak_x": int(peak_x), "peak_y": int(peak_y), "mean": float(scaled.mean()), "entropy_bits": entropy,
            "crops": {r: list(best_crop(saliency, parse_ratio(r))) for r in ratios}}
