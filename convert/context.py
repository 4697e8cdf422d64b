"""What every exporter receives (:class:`ExportContext`) and returns (:class:`ExportResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from salsdk.cards import ModelCard
from salsdk.contract import Contract
from salsdk.manifest import CLASS_PROBS, SALIENCY, TensorSpec
from salsdk.quantize.calibration import CalibrationData
from salsdk.weights import WeightsInfo


@dataclass
class ExportContext:
    """A model ready to export: the fp32 network, its contract and real calibration inputs.

    ``data`` holds pre-processed inputs in canonical layout (N, 3, H, W) or (N, 3, T, H, W), produced by the
    model's own pre-processing from the real images it names. ``workdir`` is the conversion's private cache
    (intermediate models, activation ranges), removed when the conversion ends.
    """

    card: ModelCard
    contract: Contract  # at the static export size (``contract.preprocessing.size`` is set)
    model: nn.Module
    weights: WeightsInfo
    input_shape: tuple[int, ...]
    data: CalibrationData
    workdir: Path
    calibration_method: str = "minmax"
    bias_correction: str = "auto"  # auto (chosen on calibration inputs) | none | per-tap | per-channel
    opset: int = 17
    dynamic_batch: bool = False
    prefer: str = "speed"  # what int8 is for: speed | size | fidelity (orders the fidelity fallback's layers)
    onnx_fp32: Path | None = None  # set once the ONNX fp32 export exists; other formats derive from it
    graph: dict[str, Any] | None = None  # the export rewrite ``model`` is (name, summary, measured error), if any

    @property
    def calibration(self) -> np.ndarray:
        """The calibration inputs (canonical layout)."""
        return self.data.calibration

    @property
    def calibration_sources(self) -> list[str]:
        return self.data.calibration_sources

    def fallback_costs(self) -> dict[str, float] | None:
        """Each module group's share of what keeping it float costs under ``prefer`` (None: fidelity only)."""
        from salsdk.quantize.ranking import group_costs

        return group_costs(self.model, self.input_shape, self.prefer)

    def graph_record(self) -> dict[str, Any]:
        """What the manifest says about the exported graph."""
        return self.graph or {"rewrite": None, "summary": "the zoo model's own graph"}

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the graph outputs, in the order the network returns them."""
        return (SALIENCY, CLASS_PROBS) if self.card.class_names else (SALIENCY,)


@dataclass
class ExportResult:
    """What an exporter wrote into its bundle folder."""

    model_file: str  # file (or .mlpackage folder) name inside the bundle
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]  # with their roles (saliency, class_probs)
    tool_versions: dict[str, str]
    quantization: dict[str, Any] = field(default_factory=dict)
    graph_notes: list[str] = field(default_factory=list)
