"""Post-processing of saliency maps: back to the image's geometry, SMILER/KDSalBox options, and heat-map overlays.

The options mirror KDSalBox's ``image_processing.process`` (itself from SMILER): histogram equalisation,
Gaussian smoothing proportional to the image size, an additive or multiplicative centre prior, and output scaling
(min-max, normalised, log-density). They are applied in that order, after the map is resized to the image.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.ndimage
import scipy.stats

from .geometry import Geometry, content_in_map, uncrop_fit
from .preprocess import resize_bilinear

Scaling = Literal["none", "min-max", "normalized", "log-density"]


@dataclass(frozen=True)
class PostprocessOptions:
    """Optional map post-processing (all off by default: the raw model map, resized to the image).

    Attributes:
        histogram: ``"equalization"`` equalises the map's histogram (scikit-image).
        smooth: Gaussian blur with sigma = ``smooth`` x the image's longer side (0 = off); KDSalBox 'proportional'.
        center_prior: ``"add"`` or ``"mult"`` a centred Gaussian of std ``center_prior_prop`` x height/width,
            weighted by ``center_prior_weight``; the map is min-max scaled first, as KDSalBox's default does.
        scale: ``"min-max"`` to [0, 1], ``"normalized"`` to zero mean and unit std, ``"log-density"`` to the
            log of a probability distribution over pixels.
    """

    histogram: Literal["none", "equalization"] = "none"
    smooth: float = 0.0
    center_prior: Literal["none", "add", "mult"] = "none"
    center_prior_weight: float = 0.5
    center_prior_prop: float = 0.2
    scale: Scaling = "none"


def crop_content(saliency: np.ndarray, geometry: Geometry) -> np.ndarray:
    """The part of a model output (h, w) that ends up in the restored map (letterbox bands cut off)."""
    y0, x0, y1, x1 = content_in_map(saliency.shape, geometry)
    return saliency[y0:y1, x0:x1]


def restore_map(saliency: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map a model output (h, w) back onto the original image: resized to the image's size, or for letterboxed
    inputs the official un-crop (resized to cover the image, then its centre cut out; :mod:`salsdk.geometry`)."""
    if not geometry.letterbox:
        return resize_bilinear(saliency, geometry.original_hw)
    size, top, left = uncrop_fit(saliency.shape, geometry.original_hw)
    h, w = geometry.original_hw
    return np.ascontiguousarray(resize_bilinear(saliency, size)[top:top + h, left:left + w])


def min_max(saliency: np.ndarray) -> np.ndarray:
    """Scale to [0, 1]; a constant map becomes all zeros."""
    lo, hi = float(saliency.min()), float(saliency.max())
    if hi - lo <= 0:
        return np.zeros_like(saliency, dtype=np.float32)
    return ((saliency - lo) / (hi - lo)).astype(np.float32)


def center_prior_mask(shape: tuple[int, int], prop: float) -> np.ndarray:
    """Separable centred Gaussian with std ``prop`` x the height (rows) and width (columns)."""
    h, w = shape
    y = np.linspace(-(h // 2), (h - 1) // 2, h)
    x = np.linspace(-(w // 2), (w - 1) // 2, w)
    return np.outer(scipy.stats.norm.pdf(y, 0, h * prop), scipy.stats.norm.pdf(x, 0, w * prop))


def apply_postprocess(saliency: np.ndarray, options: PostprocessOptions) -> np.ndarray:
    """Apply ``options`` to a map already at the image's resolution; returns float32."""
    out = saliency.astype(np.float64)
    if options.histogram == "equalization":
        from skimage import exposure

        out = exposure.equalize_hist(out)
    if options.smooth > 0:
        out = scipy.ndimage.gaussian_filter(out, sigma=options.smooth * max(out.shape), mode="constant")
    if options.center_prior != "none":
        out = min_max(out).astype(np.float64)
        prior = center_prior_mask(out.shape, options.center_prior_prop)
        weight = options.center_prior_weight
        out = (1 - weight) * out + weight * (prior if options.center_prior == "add" else out * prior)
    if options.scale == "min-max":
        out = min_max(out)
    elif options.scale == "normalized":
        std = out.std()
        out = (out - out.mean()) / (std if std > 0 else 1.0)
    elif options.scale == "log-density":
        density = min_max(out).astype(np.float64) + 1e-12
        out = np.log(density / density.sum())
    return out.astype(np.float32)


def jet_colormap(values: np.ndarray) -> np.ndarray:
    """Classic 'jet' colours for values in [0, 1] -> (..., 3) uint8 (piecewise linear, easy to port)."""
    v = np.clip(values, 0.0, 1.0)[..., None]
    r = np.clip(1.5 - np.abs(4.0 * v - 3.0), 0, 1)
    g = np.clip(1.5 - np.abs(4.0 * v - 2.0), 0, 1)
    b = np.clip(1.5 - np.abs(4.0 * v - 1.0), 0, 1)
    return np.round(np.concatenate([r, g, b], axis=-1) * 255.0).astype(np.uint8)


def overlay(rgb: np.ndarray, saliency: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend the min-max scaled map, coloured with :func:`jet_colormap`, over an (H, W, 3) uint8 image."""
    if saliency.shape != rgb.shape[:2]:
        saliency = resize_bilinear(saliency, rgb.shape[:2])
    heat = jet_colormap(min_max(saliency)).astype(np.float32)
    return np.round((1 - alpha) * rgb.astype(np.float32) + alpha * heat).astype(np.uint8)


def to_uint8(saliency: np.ndarray) -> np.ndarray:
    """Min-max scale a map to 0..255 uint8 (for PNG output)."""
    return np.round(min_max(saliency) * 255.0).astype(np.uint8)
