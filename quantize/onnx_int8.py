"""ONNX static int8 (QDQ, per-channel weights) with ONNX Runtime's quantization tools.

Deliberate choices for these depthwise CNNs: static activation ranges calibrated on real images (dynamic int8
quantizes only MatMul/Conv weights on the fly and is slow and inaccurate for depthwise convolutions);
per-channel symmetric int8 weights (depthwise filters have very different ranges per channel); the final Sigmoid
left in float, so the [0, 1] saliency output keeps full resolution instead of 256 levels; and a sensitivity
ranking (per-tensor signal-to-quantization-noise ratio, float vs QDQ) for the fidelity fallback, which keeps
the worst nodes in float.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import onnx

from salsdk.convert.context import INPUT_NAME, ExportContext, ExportResult
from salsdk.convert.formats import Format
from salsdk.convert.onnx_export import tensor_specs
from salsdk.errors import ConversionError

METHODS = ("minmax", "percentile", "entropy")


class ArrayReader:
    """``CalibrationDataReader`` over a stack of pre-processed inputs, one sample per call."""

    def __init__(self, inputs: np.ndarray) -> None:
        self.inputs = inputs
        self.index = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.index >= len(self.inputs):
            return None
        self.index += 1
        return {INPUT_NAME: self.inputs[self.index - 1:self.index].astype(np.float32)}

    def rewind(self) -> None:
        self.index = 0


def _calibrate_method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    table = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
             "entropy": CalibrationMethod.Entropy}
    if name not in table:
        raise ConversionError(f"unknown calibration method {name!r}; choose one of {', '.join(METHODS)}")
    return table[name]


def output_sigmoids(model: onnx.ModelProto) -> list[str]:
    """Names of Sigmoid nodes that produce graph outputs (their [0, 1] range needs no quantization)."""
    outputs = {o.name for o in model.graph.output}
    return [n.name for n in model.graph.node if n.op_type == "Sigmoid" and set(n.output) & outputs]


def preprocessed_fp32(ctx: ExportContext) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation) of the fp32 model, done once."""
    from onnxruntime.quantization import quant_pre_process

    if ctx.onnx_fp32 is None:
        raise ConversionError("ONNX int8 is derived from the fp32 ONNX model, which was not exported")
    path = ctx.workdir / "onnx_int8_pre.onnx"
    if not path.exists():
        quant_pre_process(str(ctx.onnx_fp32), str(path), skip_symbolic_shape=True)
    return path


def quantize_qdq(ctx: ExportContext, source: Path, target: Path, keep_float: Sequence[str]) -> list[str]:
    """Static QDQ quantization of ``source`` into ``target``; returns the nodes left in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    excluded = sorted(set(keep_float) | set(output_sigmoids(onnx.load(str(source)))))
    quantize_static(
        str(source), str(target), ArrayReader(ctx.calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
        calibrate_method=_calibrate_method(ctx.calibration_method),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                       "CalibPercentile": 99.999, "CalibTensorRangeSymmetric": False})
    return excluded


def export_onnx_int8(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.onnx``: the fp32 graph with static QDQ int8 (activations uint8, weights int8 per channel)."""
    import onnxruntime

    target = dest / "model.onnx"
    excluded = quantize_qdq(ctx, preprocessed_fp32(ctx), target, keep_float)
    model = onnx.load(str(target))
    inputs, outputs = tensor_specs(model)
    n_q = sum(1 for n in model.graph.node if n.op_type == "QuantizeLinear")
    return ExportResult(
        model_file=target.name, inputs=inputs, outputs=outputs,
        tool_versions={"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                       "opset": str(model.opset_import[0].version)},
        quantization={
            "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ", "weights": "int8 symmetric per-channel",
            "activations": "uint8 asymmetric per-tensor", "calibration_method": ctx.calibration_method,
            "calibration_inputs": ctx.calibration_sources, "kept_float": list(keep_float),
            "float_by_design": [n for n in excluded if n not in keep_float],
        },
        graph_notes=[f"{n_q} QuantizeLinear nodes"],
    )


def rank_onnx_sensitivity(ctx: ExportContext, fmt: Format) -> list[str]:
    """Node names, most quantization-sensitive first, by the SQNR each node's own output loses to its QDQ pair.

    Runs the QDQ model with every intermediate tensor exposed on the calibration inputs (ORT's
    ``qdq_loss_debug``), and ranks the producing nodes by the lowest signal-to-quantization-noise ratio.
    """
    from onnxruntime.quantization.qdq_loss_debug import (collect_activations, compute_activation_error,
                                                          create_activation_matching,
                                                          modify_model_output_intermediate_tensors)

    source = preprocessed_fp32(ctx)
    qdq = ctx.workdir / "sensitivity_qdq.onnx"
    quantize_qdq(ctx, source, qdq, ())
    augmented = ctx.workdir / "sensitivity_qdq_aug.onnx"
    modify_model_output_intermediate_tensors(str(qdq), str(augmented))
    sample = ctx.calibration[: min(4, len(ctx.calibration))]
    activations = collect_activations(str(augmented), ArrayReader(sample))
    errors = compute_activation_error(create_activation_matching(activations))
    producer = {out: node.name for node in onnx.load(str(source)).graph.node for out in node.output}
    ranked = sorted(((e.get("qdq_err", np.inf), name) for name, e in errors.items() if name in producer),
                    key=lambda item: item[0])
    return [producer[name] for _, name in ranked]
