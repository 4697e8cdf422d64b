"""Saliency evaluation metrics, in pure NumPy, following the MIT saliency benchmark code (Bylinskii et al.).

Two kinds of metric:

* **Against fixations** (``fixations`` is an (H, W) map; every pixel > 0 is one fixated location, as
  ``fixationMap > 0`` in the MIT code; zero and negative entries are not fixations): :func:`nss`, :func:`auc_judd`, :func:`auc_borji`,
  :func:`auc_shuffled`, :func:`info_gain`.
* **Between two continuous maps** (a prediction and a ground-truth density or importance map, or two model
  outputs): :func:`cc`, :func:`kl_div`, :func:`sim`, :func:`r2`, :func:`rmse`, and :func:`agreement`, which
  bundles the ones used to compare a converted or quantized model's map with the fp32 map.

Conventions, and where they come from:

* ``EPS`` is Matlab's ``eps`` (2.2204e-16), the regulariser of the MIT ``KLdiv.m`` and ``InfoGain.m``.
* :func:`kl_div` is MIT ``KLdiv.m``: both maps sum-normalised, ``sum(gt * log(eps + gt / (pred + eps)))`` (natural
  log), the formula EML-NET quotes too. KDSalBox's ``backend/metrics.py`` ``KL`` with its *default* arguments is
  a different estimator (``minimum_value=1e-20`` added to both densities, no regularisation in the log); its
  ``log_regularization=quotient_regularization=2.2204e-16`` variant is this one up to that 1e-20 floor.
* :func:`sim` and :func:`info_gain` min-max normalise each map before sum-normalising it, as MIT
  ``similarity.m`` / ``InfoGain.m`` and KDSalBox's ``SIM`` do (for maps whose minimum is 0 that is just the
  sum-normalised histogram intersection). A constant map becomes the uniform distribution (MIT gives NaN).
* :func:`nss` and :func:`cc` standardise with the population std (``ddof=0``, as KDSalBox and pysaliency); MIT's
  Matlab ``std`` uses ``ddof=1``, available through ``nss(..., ddof=1)`` (CC does not depend on it).
* The AUCs use MIT's threshold sweeps and trapezoid areas exactly (including AUC-Judd's linear interpolation
  between fixation thresholds and Borji's sampling of negatives from *all* pixels, fixated ones included); their
  randomness comes from a seeded :class:`numpy.random.Generator`, so results are reproducible.
* Unlike MIT and KDSalBox, nothing is resized: maps must have the same (H, W) shape.

Inputs are anything :func:`numpy.asarray` accepts (NumPy arrays, lists, CPU tensors), of any real dtype; they
are computed on in float64 and never modified. Invalid inputs (wrong rank, shape mismatch, NaN/inf, no
fixations, negative values where a distribution is required) raise :class:`salsdk.InputError`, a
:class:`ValueError`. Undefined results (the correlation or NSS of a constant map, R² against a constant ground
truth, AUC-Borji and the shuffled AUC of a constant map, AUC-Borji of a single fixation, AUC-Judd of a
constant map without its default jitter) are returned as NaN, as the MIT code does.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "EPS", "agreement", "auc_borji", "auc_judd", "auc_shuffled", "cc", "info_gain", "kl_div", "nss", "r2",
    "rmse", "sim",
]

EPS: float = float(np.finfo(np.float64).eps)  # 2.220446049250313e-16, Matlab's eps
"""Regulariser of KL divergence and information gain (Matlab ``eps``, as in the MIT benchmark code)."""

SeedLike = int | np.random.Generator | None


# ----------------------------------------------------------------------------------------------- validation


def _as_map(x: Any, name: str) -> np.ndarray:
    """``x`` as a finite float64 (H, W) array, or an :class:`InputError` saying what is wrong with it."""
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged lists and the like
        raise InputError(f"{name} cannot be read as an array: {exc}") from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InputError(f"{name} must be a real-valued array, got dtype {arr.dtype}")
    if np.iscomplexobj(arr):
        raise InputError(f"{name} must be real-valued, got dtype {arr.dtype}")
    if arr.ndim != 2:
        squeezable = arr.ndim > 2 and arr.shape[:-2] == (1,) * (arr.ndim - 2)
        hint = " (squeeze the leading size-1 axes first)" if squeezable else ""
        raise InputError(f"{name} must be a 2-D (H, W) map, got shape {arr.shape}{hint}")
    if arr.size == 0:
        raise InputError(f"{name} is empty (shape {arr.shape})")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{name} has {bad} non-finite value(s) (NaN or inf); saliency maps must be finite")
    return arr


def _same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise InputError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match "
                         "(resize the prediction to the ground truth first)")


def _as_pair(a: Any, b: Any, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    x, y = _as_map(a, name_a), _as_map(b, name_b)
    _same_shape(x, y, name_a, name_b)
    return x, y


def _as_fixations(fixations: Any, shape: tuple[int, ...], name: str = "fixations") -> np.ndarray:
    """A boolean mask of fixated pixels (entries > 0, as MIT's ``fixationMap > 0``), checked against ``shape`` and
    for emptiness."""
    f = _as_map(fixations, name)
    if f.shape != shape:
        raise InputError(f"{name} has shape {f.shape} but the saliency map has shape {shape}; they must match")
    mask = f > 0
    if not mask.any():
        raise InputError(f"{name} has no fixations (no pixel > 0); the metric is undefined")
    return mask


def _nonnegative(x: np.ndarray, name: str) -> None:
    if x.min() < 0:
        raise InputError(f"{name} has negative values (min {x.min():.4g}); it must be a non-negative map to be "
                         "read as a distribution")


def _check_positive(value: float, name: str) -> None:
    if not (isinstance(value, (int, float, np.integer, np.floating)) and math.isfinite(value) and value > 0):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")


# ----------------------------------------------------------------------------------------------- normalisers


def _standardize(x: np.ndarray, ddof: int = 0) -> np.ndarray | None:
    """(x - mean) / std, or None for a constant map (zero std)."""
    std = x.std(ddof=ddof)
    if not std > 0:
        return None
    return (x - x.mean()) / std


def _sum_normalize(x: np.ndarray) -> np.ndarray:
    """x / sum(x), left as it is when it sums to 0 (MIT ``KLdiv.m``: ``if any(map(:))``)."""
    total = x.sum()
    return x / total if total > 0 else x


def _range_normalize(x: np.ndarray) -> np.ndarray | None:
    """(x - min) / (max - min), or None for a constant map."""
    lo, hi = x.min(), x.max()
    if not hi > lo:
        return None
    return (x - lo) / (hi - lo)


def _range_sum_normalize(x: np.ndarray) -> np.ndarray:
    """Min-max, then sum-normalised (MIT ``similarity.m`` / ``InfoGain.m``); a constant map becomes uniform."""
    r = _range_normalize(x)
    if r is None:
        return np.full(x.shape, 1.0 / x.size)
    return r / r.sum()


def _trapezoid(y: np.ndarray, x: np.ndarray) -> float:
    """Area under the polyline through (x, y), as Matlab ``trapz(x, y)``."""
    return float(np.sum((x[1:] - x[:-1]) * (y[1:] + y[:-1])) / 2.0)


# ----------------------------------------------------------------------------------------- map vs map metrics


def cc(pred: Any, gt: Any) -> float:
    """Pearson's linear correlation coefficient between two maps (MIT ``CC.m``), in [-1, 1].

    Symmetric, and invariant to a positive affine change of either map. NaN when either map is constant.
    """
    a, b = _as_pair(pred, gt, "pred", "gt")
    za, zb = _standardize(a), _standardize(b)
    if za is None or zb is None:
        return float("nan")
    return float(np.clip(np.mean(za * zb), -1.0, 1.0))


def kl_div(pred: Any, gt: Any, eps: float = EPS) -> float:
    """KL divergence of ``pred`` from ``gt`` as in MIT ``KLdiv.m`` (natural log, nats); 0 is best.

    Both maps are normalised to sum to 1 (a map that sums to 0 is left as it is, as MIT does), then
    ``KL = sum(gt * log(eps + gt / (pred + eps)))``. Not symmetric: ``gt`` is the reference distribution, the
    information lost when ``pred`` approximates it. Invariant to scaling either map by a positive factor, not to
    adding an offset. Both maps must be non-negative.
    """
    p, q = _as_pair(pred, gt, "pred", "gt")
    _check_positive(eps, "eps")
    _nonnegative(p, "pred")
    _nonnegative(q, "gt")
    p, q = _sum_normalize(p), _sum_normalize(q)
    return float(np.sum(q * np.log(eps + q / (p + eps))))


def sim(pred: Any, gt: Any) -> float:
    """Similarity (histogram intersection) of two maps as distributions, MIT ``similarity.m``; in [0, 1], 1 best.

    Each map is min-max normalised to [0, 1], then divided by its sum, and ``SIM = sum(min(p, q))``. Symmetric;
    invariant to a positive affine change of either map. A constant map is taken as the uniform distribution.
    """
    a, b = _as_pair(pred, gt, "pred", "gt")
    return float(np.sum(np.minimum(_range_sum_normalize(a), _range_sum_normalize(b))))


def r2(pred: Any, gt: Any) -> float:
    """Coefficient of determination of ``pred`` as a fit to ``gt``: ``1 - SS_res / SS_tot``, pixel-wise.

    ``SS_res = sum((gt - pred)**2)``, ``SS_tot = sum((gt - mean(gt))**2)``: 1 is a perfect fit, 0 is no better than
    predicting gt's mean everywhere, and it can be negative. It is the R² the UMSI reproduction (Jiao, 2021) reports
    next to CC for importance maps (there R² is well below CC², e.g. 0.08 with CC 0.84 on Imp1k, so it is not the
    squared correlation). Computed on the raw values, so it is *not* scale invariant: put both maps on the same
    scale (e.g. [0, 1], as UMSI's outputs and ground truths are) first. Not symmetric. NaN when gt is constant.
    """
    p, g = _as_pair(pred, gt, "pred", "gt")
    ss_tot = float(np.sum((g - g.mean()) ** 2))
    if not ss_tot > 0:
        return float("nan")
    return 1.0 - float(np.sum((g - p) ** 2)) / ss_tot


def rmse(pred: Any, gt: Any) -> float:
    """Root-mean-square error between two maps, ``sqrt(mean((pred - gt)**2))``, on the raw values; 0 best."""
    p, g = _as_pair(pred, gt, "pred", "gt")
    return float(np.sqrt(np.mean((p - g) ** 2)))


# -------------------------------------------------------------------------------------- fixation-based metrics


def nss(saliency: Any, fixations: Any, ddof: int = 0) -> float:
    """Normalized Scanpath Saliency (MIT ``NSS.m``): the mean of the standardised map at fixated pixels.

    The map is standardised to zero mean and unit std (population std, ``ddof=0``; pass ``ddof=1`` for Matlab's
    ``std``), then averaged over the non-zero pixels of ``fixations`` (each counted once). 0 is chance, higher is
    better. Invariant to a positive affine change of the map. NaN for a constant map.
    """
    s = _as_map(saliency, "saliency")
    mask = _as_fixations(fixations, s.shape)
    if ddof not in (0, 1):
        raise InputError(f"ddof must be 0 or 1, got {ddof!r}")
    z = _standardize(s, ddof=ddof)
    if z is None:
        return float("nan")
    return float(np.mean(z[mask]))


def _rng(seed: SeedLike) -> np.random.Generator:
    try:
        return np.random.default_rng(seed)
    except (TypeError, ValueError) as exc:
        raise InputError(f"seed must be an int, a numpy Generator or None, got {seed!r}") from exc


def auc_judd(saliency: Any, fixations: Any, jitter: bool = True, seed: SeedLike = 0) -> float:
    """AUC-Judd (MIT ``AUC_Judd.m``): area under the ROC of fixated vs all other pixels; 0.5 chance, 1 perfect.

    The map (after an optional jitter of ``U(0, 1) * 1e-7`` per pixel to break ties, drawn from
    ``numpy.random.default_rng(seed)``, as MIT does by default) is min-max normalised; the thresholds are the
    saliency values at the fixated pixels, in decreasing order; at the k-th threshold, TP rate = k / n_fix and
    FP rate = (pixels >= threshold - k) / (n_pixels - n_fix); the curve runs from (0, 0) to (1, 1) and its area
    is the trapezoid rule. (Because it interpolates linearly between the thresholds, it can exceed the rank AUC.)

    Invariant to a positive affine change of the map (up to the jitter). NaN for a constant map without jitter.
    Raises :class:`InputError` when every pixel is fixated (there are no negatives).
    """
    s = _as_map(saliency, "saliency")
    mask = _as_fixations(fixations, s.shape)
    n_pixels, n_fix = s.size, int(mask.sum())
    if n_fix == n_pixels:
        raise InputError("every pixel is fixated, so there are no non-fixated pixels for AUC-Judd")
    if jitter:
        s = s + _rng(seed).random(s.shape) * 1e-7
    s = _range_normalize(s)
    if s is None:
        return float("nan")
    flat = s.ravel()
    thresholds = np.sort(flat[mask.ravel()])[::-1]
    above = n_pixels - np.searchsorted(np.sort(flat), thresholds, side="left")  # pixels with S >= threshold
    k = np.arange(1, n_fix + 1)
    tp = np.concatenate(([0.0], k / n_fix, [1.0]))
    fp = np.concatenate(([0.0], (above - k) / (n_pixels - n_fix), [1.0]))
    return _trapezoid(tp, fp)


def _step_thresholds(max_value: float, step: float) -> np.ndarray:
    """Matlab's ``fliplr(0:step:max_value)``: 0, step, 2*step, ... up to max_value inclusive, decreasing."""
    n = int(math.floor(max_value / step + 1e-10))
    return (np.arange(n, -1, -1) * step).astype(np.float64)


def _auc_fixed_step(s_fix: np.ndarray, s_neg: np.ndarray, step: float) -> float:
    """One split of MIT's AUC-Borji / shuffled AUC: thresholds 0:step:max swept against fixations and negatives."""
    thresholds = _step_thresholds(float(max(s_fix.max(), s_neg.max())), step)
    fix_sorted, neg_sorted = np.sort(s_fix), np.sort(s_neg)
    tp = (s_fix.size - np.searchsorted(fix_sorted, thresholds, side="left")) / s_fix.size
    fp = (s_neg.size - np.searchsorted(neg_sorted, thresholds, side="left")) / s_neg.size
    tp = np.concatenate(([0.0], tp, [1.0]))
    fp = np.concatenate(([0.0], fp, [1.0]))
    return _trapezoid(tp, fp)


def _check_splits(n_splits: int, step: float) -> None:
    if not (isinstance(n_splits, (int, np.integer)) and not isinstance(n_splits, bool) and n_splits >= 1):
        raise InputError(f"n_splits must be a positive integer, got {n_splits!r}")
    _check_positive(step, "step")
    if step > 1:
        raise InputError(f"step must be at most 1 (the map is scaled to [0, 1]), got {step!r}")


def auc_borji(saliency: Any, fixations: Any, n_splits: int = 100, step: float = 0.1,
              seed: SeedLike = 0) -> float:
    """AUC-Borji (MIT ``AUC_Borji.m``): fixated pixels vs uniformly random pixels; 0.5 chance, 1 perfect.

    The map is min-max normalised. For each of ``n_splits`` splits, n_fix negatives are drawn uniformly, with
    replacement, from *all* pixels (fixated ones included, as in the MIT code) by
    ``numpy.random.default_rng(seed).integers(0, n_pixels, size=(n_fix, n_splits))``; thresholds run
    ``0:step:max`` (Matlab colon, inclusive) from high to low, TP and FP rates are the fractions of fixation and
    negative values >= threshold, and the curve's trapezoid area is averaged over the splits.

    Invariant to a positive affine change of the map. NaN for a constant map and for a single fixation (as MIT).
    """
    s = _as_map(saliency, "saliency")
    mask = _as_fixations(fixations, s.shape)
    _check_splits(n_splits, step)
    rng = _rng(seed)
    s = _range_normalize(s)
    if s is None or mask.sum() < 2:
        return float("nan")
    flat = s.ravel()
    s_fix = flat[mask.ravel()]
    draws = rng.integers(0, flat.size, size=(s_fix.size, n_splits))
    s_rand = flat[draws]
    return float(np.mean([_auc_fixed_step(s_fix, s_rand[:, i], step) for i in range(n_splits)]))


def auc_shuffled(saliency: Any, fixations: Any, other_fixations: Any, n_splits: int = 100, step: float = 0.1,
                 seed: SeedLike = 0) -> float:
    """Shuffled AUC (MIT ``AUC_shuffled.m``): fixated pixels vs the fixations of *other* images; 0.5 chance.

    ``other_fixations`` is a binary map, the same shape, whose non-zero pixels are fixation locations pooled from
    other images (Borji uses 10), so a map that only models the centre bias scores about 0.5. For each split,
    ``min(n_fix, n_other)`` negatives are the first of a random permutation (``default_rng(seed).permutation``,
    one per split) of those locations; then thresholds, TP/FP and areas as :func:`auc_borji` (FP rate divided by
    the number of negatives). A pixel fixated in both maps counts in both. When ``n_other <= n_fix`` every split
    uses all of them and the result does not depend on the seed.

    Invariant to a positive affine change of the map. NaN for a constant map.
    """
    s = _as_map(saliency, "saliency")
    mask = _as_fixations(fixations, s.shape)
    other = _as_fixations(other_fixations, s.shape, name="other_fixations")
    _check_splits(n_splits, step)
    rng = _rng(seed)
    s = _range_normalize(s)
    if s is None:
        return float("nan")
    flat = s.ravel()
    s_fix = flat[mask.ravel()]
    other_idx = np.flatnonzero(other.ravel())
    n_neg = min(s_fix.size, other_idx.size)
    aucs = []
    for _ in range(n_splits):
        chosen = rng.permutation(other_idx)[:n_neg]
        aucs.append(_auc_fixed_step(s_fix, flat[chosen], step))
    return float(np.mean(aucs))


def info_gain(saliency: Any, fixations: Any, baseline: Any, eps: float = EPS) -> float:
    """Information gain of ``saliency`` over ``baseline`` (MIT ``InfoGain.m``), in bits per fixation; 0 = no gain.

    Both maps are min-max normalised and then divided by their sums (a constant map becomes uniform), and
    ``IG = mean over fixated pixels of log2(eps + p) - log2(eps + b)``. Positive when the map predicts the fixations
    better than the baseline (typically a centre-bias map or the pooled fixations of other images). Invariant to
    a positive affine change of either map; a fixation on a pixel where the min-max normalised map is 0 costs
    about ``log2(eps)`` = -52 bits, as in the MIT code.
    """
    s = _as_map(saliency, "saliency")
    mask = _as_fixations(fixations, s.shape)
    b = _as_map(baseline, "baseline")
    _same_shape(s, b, "saliency", "baseline")
    _check_positive(eps, "eps")
    p, q = _range_sum_normalize(s)[mask], _range_sum_normalize(b)[mask]
    return float(np.mean(np.log2(eps + p) - np.log2(eps + q)))


# ------------------------------------------------------------------------------------------------ agreement


def agreement(a: Any, b: Any, top_fraction: float = 0.02) -> dict[str, float]:
    """How closely map ``a`` (e.g. a quantized or converted model's) reproduces reference map ``b`` (e.g. fp32).

    Returns ``{'cc': cc(a, b), 'kl': kl_div(a, b), 'sim': sim(a, b), 'nss_like': ...}`` where ``kl`` takes ``b``
    as the reference distribution (both maps must be non-negative) and ``nss_like`` is :func:`nss` of ``a`` with
    the top ``top_fraction`` (2%) pixels of ``b`` as fixations: every pixel whose value in ``b`` is at least the
    k-th largest, k = ceil(top_fraction * n_pixels) (at least 1), so ties at the cut are all included. For
    ``a == b``: cc = 1, kl = 0, sim = 1 and nss_like is the reference's own NSS on its peaks.
    """
    x, y = _as_pair(a, b, "a", "b")
    if not (isinstance(top_fraction, (int, float, np.floating)) and 0 < top_fraction <= 1):
        raise InputError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
    k = max(1, math.ceil(top_fraction * y.size - 1e-9))
    kth_largest = np.partition(y.ravel(), y.size - k)[y.size - k]
    top = y >= kth_largest
    return {"cc": cc(x, y), "kl": kl_div(x, y), "sim": sim(x, y), "nss_like": nss(x, top)}
