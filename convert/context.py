"""What every exporter receives (:class:`ExportContext`) and returns (:class:`ExportResult`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from salsdk.cards import ModelCard
from salsdk.contract import Contract
from salsdk.weights import WeightsInfo

INPUT_NAME = "input"
SALIENCY_OUTPUT = "saliency"
CLASS_OUTPUT = "class_probs"


@dataclass
class ExportContext:
    """A model ready to export: the fp32 network, its contract and real calibration inputs.

    ``calibration`` holds pre-processed inputs in canonical layout (N, 3, H, W) or (N, 3, T, H, W), produced
    by the model's own pre-processing from the images named in ``calibration_sources``.
    """

    card: ModelCard
    contract: Contract
    model: nn.Module
    weights: WeightsInfo
    input_shape: tuple[int, ...]
    calibration: np.ndarray
    calibration_sources: list[str]
    workdir: Path
    calibration_method: str = "minmax"
    opset: int = 17
    dynamic_batch: bool = False
    onnx_fp32: Path | None = None  # set once the ONNX fp32 export exists; other formats derive from it
    graph: dict[str, Any] | None = None  # the export rewrite ``model`` is (name, summary, measured error), if any

    def graph_record(self) -> dict[str, Any]:
        """What the manifest says about the exported graph."""
        return self.graph or {"rewrite": None, "summary": "the zoo model's own graph"}

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the graph outputs, in the order the network returns them."""
        return (SALIENCY_OUTPUT, CLASS_OUTPUT) if self.card.class_names else (SALIENCY_OUTPUT,)


@dataclass
class TensorSpec:
    """Name, shape, layout and dtype of one artifact input or output, with int8 parameters if quantized."""

    name: str
    shape: list[int | str]
    layout: str  # NCHW, NHWC, NCTHW, NTHWC, NC (class probabilities)
    dtype: str  # float32, int8, uint8
    scale: float | None = None
    zero_point: int | None = None


@dataclass
class ExportResult:
    """What an exporter wrote into its bundle folder."""

    model_file: str  # file (or .mlpackage folder) name inside the bundle
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    tool_versions: dict[str, str]
    quantization: dict[str, Any] = field(default_factory=dict)
    graph_notes: list[str] = field(default_factory=list)
