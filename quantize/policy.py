"""The accept/fallback policy of quantized artifacts: the fidelity gate, and how an artifact below it recovers.

An artifact is accepted when every held-out map correlates at least ``min_cc`` with the fp32 PyTorch model
(:class:`~salsdk.quantize.fidelity.FidelityReport`). A quantized one below the gate recovers in two steps:

1. **calibration**: the other activation-range methods its tool offers (:func:`calibration_candidates`; ONNX
   Runtime: percentile, entropy), then, for tools that correct biases (LiteRT, PT2E), the bias-correction modes
   other than the one chosen on calibration inputs, keeping the best. Every candidate of this step is fully int8,
   so each is faster than any artifact of the next step;
2. **precision** (accuracy-aware mixed precision): the most sensitive layers of the format's ranking are kept in
   float, more at each attempt (:func:`fallback_steps`: 1, 2, 3, 4, 6, 9, ...), at most ``max_float`` of the
   ranked layers, until the gate passes.

The policy knows nothing of formats: the caller gives it a ``build`` (write the artifact for a calibration
method and a set of layers kept float), an ``evaluate`` and a ``rank``; every attempt is recorded.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from salsdk.errors import ConversionError

from .fidelity import FidelityReport

CALIBRATION_CHOICES = ("auto", "minmax", "percentile", "entropy")
FALLBACK_GROWTH = 1.5  # each fallback step keeps about this many times more layers in float than the last
DEFAULT_MAX_FLOAT = 0.5  # an int8 artifact keeps at least half of its ranked layers quantized unless told otherwise

BIAS_CHOICES = ("auto", "per-tap", "per-channel", "none")  # see salsdk.quantize.bias_correction


@dataclass(frozen=True)
class Calibration:
    """One way to calibrate a quantized artifact: an activation-range method and a bias-correction mode."""

    method: str  # e.g. "minmax", "percentile", "histogram"
    bias: str = "auto"  # "auto": the mode that raises the fully int8 map CC most on calibration inputs; or a mode

    @property
    def label(self) -> str:
        """How attempts and manifests name it, e.g. ``minmax`` or ``minmax, bias per-channel``."""
        return self.method if self.bias == "auto" else f"{self.method}, bias {self.bias}"


Build = Callable[[Calibration, tuple[str, ...], int], Any]  # (calibration, kept float, ranked count) -> artifact
Evaluate = Callable[[Any], FidelityReport]
Rank = Callable[[Calibration], list[str]]  # layer names, most sensitive first
Log = Callable[[str], None]


@dataclass
class Decision:
    """The outcome of the policy: the last artifact built, its fidelity, the status and every attempt."""

    artifact: Any
    fidelity: FidelityReport
    status: str  # "accepted", "accepted (calibration: <label>)", "accepted (fallback: k/n layers float)", "rejected"
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return self.status.startswith("accepted")


def calibration_candidates(offered: Sequence[str], requested: str, bias_modes: Sequence[str] = (),
                           bias: str = "auto") -> list[Calibration]:
    """Calibrations to try, in order. ``auto`` is every activation-range method the tool offers (its default
    first), an explicit method that one alone (tools without it record that they used their default). With
    ``bias="auto"`` each comes with the bias correction its calibration inputs choose, and the default method is
    tried again with each of the tool's other ``bias_modes``; an explicit ``bias`` is used alone."""
    if requested not in CALIBRATION_CHOICES:
        raise ConversionError(f"unknown calibration method {requested!r}; choose one of {', '.join(CALIBRATION_CHOICES)}")
    if bias not in BIAS_CHOICES:
        raise ConversionError(f"unknown bias correction {bias!r}; choose one of {', '.join(BIAS_CHOICES)}")
    methods = list(offered) if requested == "auto" else [requested]
    if bias != "auto":
        return [Calibration(m, bias) for m in methods]
    return [Calibration(m) for m in methods] + [Calibration(methods[0], mode) for mode in bias_modes]


def _announced(rank: Rank, method: Calibration, label: str, log: Log) -> list[str]:
    """``rank(method)``, announced and timed in the log: a ranking quantizes once per candidate, which takes
    minutes on large inputs."""
    log(f"  {label}: ranking its layers for the fallback on calibration inputs (one quantization per candidate)")
    started = time.perf_counter()
    ranking = rank(method)
    log(f"  {label}: ranked {len(ranking)} layers in {time.perf_counter() - started:.1f}s")
    return ranking


def fallback_steps(n_ranked: int, max_float: float) -> list[int]:
    """How many of ``n_ranked`` layers each fallback attempt keeps in float: 1, 2, 3, 4, 6, 9, 14, 21, ... (growing
    by :data:`FALLBACK_GROWTH`), ending exactly at the cap, ``max_float`` of the ranked layers."""
    if not 0.0 < max_float <= 1.0:
        raise ConversionError(f"--max-float {max_float}: give a fraction of the ranked layers in (0, 1]")
    limit = max(1, int(n_ranked * max_float)) if n_ranked else 0
    steps, k = [], 1
    while k < limit:
        steps.append(k)
        k = max(k + 1, round(k * FALLBACK_GROWTH))
    return steps + [limit] if limit else []


def decide(build: Build, evaluate: Evaluate, *, label: str, quantized: bool, methods: Sequence[Calibration],
           rank: Rank | None, max_float: float, log: Log,
           method_used: Callable[[Any, Calibration], str] = lambda artifact, method: method.label) -> Decision:
    """Build, gate and (for quantized formats) recover an artifact; see the module docstring.

    ``method_used(artifact, calibration)`` labels the calibration the tool actually applied (recorded per attempt;
    with ``bias="auto"``, the mode it chose): a later candidate with a label already tried is skipped.
    """
    attempts: list[dict[str, Any]] = []

    def attempt(method: Calibration, keep: tuple[str, ...] = (), ranked: int = 0) -> tuple[Any, FidelityReport]:
        started = time.perf_counter()
        artifact = build(method, keep, ranked)
        fidelity = evaluate(artifact)
        recorded = method_used(artifact, method)
        attempts.append({"calibration_method": recorded, "kept_float": list(keep), "cc_min": fidelity.cc_min,
                         "cc_mean": fidelity.cc_mean})
        what = f"{len(keep)}/{ranked} layers in float" if keep else f"calibration {recorded}" if quantized else "exported"
        log(f"  {label}: {what} in {time.perf_counter() - started:.1f}s -> CC min {fidelity.cc_min:.4f} "
            f"mean {fidelity.cc_mean:.4f}")
        return artifact, fidelity

    artifact, fidelity = attempt(methods[0])
    if fidelity.passed or not quantized:
        return Decision(artifact, fidelity, "accepted" if fidelity.passed else "rejected", attempts)
    best = methods[0], fidelity.cc_min
    for method in methods[1:]:
        if method.label in {a["calibration_method"] for a in attempts}:
            continue
        artifact, fidelity = attempt(method)
        if fidelity.passed:
            return Decision(artifact, fidelity, f"accepted (calibration: {attempts[-1]['calibration_method']})",
                            attempts)
        best = max(best, (method, fidelity.cc_min), key=lambda pair: pair[1])
    method = best[0]
    ranking = _announced(rank, method, label, log) if rank else []
    steps = fallback_steps(len(ranking), max_float)
    used = next(a["calibration_method"] for a in attempts if a["cc_min"] == best[1])
    log(f"  {label}: below CC {fidelity.min_cc}; fallback (calibration: {used}): up to {steps[-1] if steps else 0} "
        f"of {len(ranking)} ranked layers in float (most sensitive: {', '.join(ranking[:3])})")
    for k in steps:
        artifact, fidelity = attempt(method, tuple(ranking[:k]), len(ranking))
        if fidelity.passed:
            return Decision(artifact, fidelity, f"accepted (fallback: {k}/{len(ranking)} layers float)", attempts)
    return Decision(artifact, fidelity, "rejected", attempts)
