"""The fidelity gate: an artifact's maps against the fp32 PyTorch model's, on held-out real inputs."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from salsdk.metrics import agreement
from salsdk.postprocess import crop_content
from salsdk.geometry import Geometry

RunFn = Callable[[np.ndarray], list[np.ndarray]]


@dataclass
class FidelityReport:
    """Agreement of an artifact with the fp32 reference (maps compared one by one, then averaged)."""

    cc_mean: float
    cc_min: float
    kl_mean: float
    sim_mean: float
    nss_like_mean: float
    n_inputs: int
    inputs: list[str]
    min_cc: float
    cc_per_input: list[float] = field(default_factory=list)  # one per map, in the order of ``inputs``
    reference: str = "PyTorch fp32 (same weights, same pre-processed inputs)"
    top_class_agreement: float | None = None
    method: str = "executed"  # or "simulated" (CoreML off macOS)
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """The gate: every held-out map correlates at least ``min_cc`` with the reference."""
        return self.cc_min >= self.min_cc and (self.top_class_agreement in (None, 1.0))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready, with the verdict."""
        return {**asdict(self), "passed": self.passed}


def _maps(outputs: list[np.ndarray], geometry: list[Geometry] | None) -> list[np.ndarray]:
    """Every saliency map in a batch output (N,1,H,W) or (N,1,T,H,W) as 2-D arrays, cropped to the image content
    of its input when ``geometry`` (one per input) says where that lies."""
    saliency = outputs[0]
    return [m if geometry is None else crop_content(m, geometry[i])
            for i, sample in enumerate(saliency) for m in sample.reshape(-1, *saliency.shape[-2:])]


def compare_outputs(reference: list[np.ndarray], candidate: list[np.ndarray], inputs: list[str],
                    min_cc: float, method: str = "executed", geometry: list[Geometry] | None = None) -> FidelityReport:
    """Fidelity of ``candidate`` outputs against ``reference`` outputs of the same batch.

    With ``geometry`` (one per input) maps are compared only where the image is, as users get them: letterbox
    bands, whose constant input is easy to reproduce, would otherwise inflate the agreement.
    """
    scores = [agreement(c, r) for c, r in zip(_maps(candidate, geometry), _maps(reference, geometry))]
    top = None
    if len(reference) > 1 and len(candidate) > 1:
        top = float(np.mean(np.argmax(reference[1], axis=1) == np.argmax(candidate[1], axis=1)))
    return FidelityReport(
        cc_mean=float(np.mean([s["cc"] for s in scores])), cc_min=float(np.min([s["cc"] for s in scores])),
        kl_mean=float(np.mean([s["kl"] for s in scores])), sim_mean=float(np.mean([s["sim"] for s in scores])),
        nss_like_mean=float(np.mean([s["nss_like"] for s in scores])), n_inputs=len(inputs), inputs=list(inputs),
        min_cc=min_cc, cc_per_input=[round(float(s["cc"]), 6) for s in scores], top_class_agreement=top,
        method=method, notes=[LETTERBOX_NOTE] if geometry and any(_letterboxed(g) for g in geometry) else [])


LETTERBOX_NOTE = "maps compared over the image content only (letterbox bands cut off, as post-processing does)"


def _letterboxed(geometry: Geometry) -> bool:
    return geometry.letterbox


def run_batched(run: RunFn, inputs: np.ndarray) -> list[np.ndarray]:
    """Run ``run`` one input at a time (artifacts have static batch 1) and stack the outputs."""
    parts = [run(inputs[i:i + 1]) for i in range(len(inputs))]
    return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]
