"""ONNX static int8 (QDQ, per-channel weights) with ONNX Runtime's quantization tools.

Deliberate choices for these depthwise CNNs: static activation ranges calibrated on real images (dynamic int8
quantizes only MatMul/Conv weights on the fly and is slow and inaccurate for depthwise convolutions);
per-channel symmetric int8 weights (depthwise filters have very different ranges per channel); the final Sigmoid
left in float, so the [0, 1] saliency output keeps full resolution instead of 256 levels; and a sensitivity
ranking of the network's blocks (each block quantized alone, compared with fp32 on calibration inputs) for the
fidelity fallback, which keeps the most sensitive blocks in float.
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


def range_cache(ctx: ExportContext, source: Path) -> Path:
    """Where the activation ranges of ``source`` under ``ctx``'s calibration method are kept: calibrating once per
    method serves every fallback attempt and the sensitivity ranking (histogram methods take minutes on big models)."""
    return ctx.workdir / f"ranges_{source.stem}_{ctx.calibration_method}.json"


def quantize_qdq(ctx: ExportContext, source: Path, target: Path, keep_float: Sequence[str]) -> list[str]:
    """Static QDQ quantization of ``source`` into ``target``; returns the nodes left in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))
    excluded = sorted(set(expand_keep_float(model, keep_float)) | set(output_sigmoids(model)))
    quantize_static(
        str(source), str(target), ArrayReader(ctx.calibration), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
        calibrate_method=_calibrate_method(ctx.calibration_method), calibration_cache_path=str(range_cache(ctx, source)),
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
            "float_by_design": output_sigmoids(model),
        },
        graph_notes=[f"{n_q} QuantizeLinear nodes"],
    )


def layer_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Nodes grouped by the module that produced them (first two levels of the exporter's ``/a/b/...`` names).

    For the zoo models these are the network's blocks (``/encoder/encoder.17``, ``/decoder/conv8_1``...): the
    unit the fallback keeps in float, so that a block's convolution, normalisation and activation stay together.
    """
    groups: dict[str, list[str]] = {}
    for node in model.graph.node:
        parts = [p for p in node.name.split("/") if p]
        key = "/" + "/".join(parts[:2]) if len(parts) > 2 else node.name
        groups.setdefault(key, []).append(node.name)
    return groups


def expand_keep_float(model: onnx.ModelProto, keep_float: Sequence[str]) -> list[str]:
    """Node names for ``keep_float`` entries, each a node name or a group prefix from :func:`layer_groups`."""
    names = [n.name for n in model.graph.node]
    return sorted({n for item in keep_float for n in names if n == item or n.startswith(item.rstrip("/") + "/")})


GREEDY_STEPS = 8  # the first fallback steps are chosen greedily, each among ...
GREEDY_WIDTH = 6  # ... the best-ranked remaining groups


def rank_onnx_sensitivity(ctx: ExportContext, fmt: Format) -> list[str]:
    """Layer groups in the order the fallback should keep them in float, measured on calibration inputs.

    Every candidate is scored the way the fallback will use it: the whole model quantized *except* the kept groups
    (exactly as :func:`export_onnx_int8` does, activation ranges cached), compared with fp32 on up to four
    calibration inputs (never the held-out ones) by the lowest map CC. First each group of :func:`layer_groups`
    that holds a Conv is kept alone; then the order is built greedily, because kept groups interact: the first
    :data:`GREEDY_STEPS` entries each add, among the :data:`GREEDY_WIDTH` best remaining groups, the one that
    recovers most together with those already chosen. The rest follow by their single-group score.
    """
    import onnxruntime as ort

    from salsdk.metrics import cc

    source = preprocessed_fp32(ctx)
    model = onnx.load(str(source))
    sample = ctx.calibration[: min(4, len(ctx.calibration))]
    target = ctx.workdir / "sensitivity_probe.onnx"

    def run(path: Path) -> np.ndarray:  # static batch 1
        session = ort.InferenceSession(str(path))
        return np.concatenate([session.run(None, {INPUT_NAME: sample[i:i + 1]})[0] for i in range(len(sample))])

    reference = run(source)

    def score(keep: list[str]) -> float:
        quantize_qdq(ctx, source, target, keep_float=keep)
        probe = run(target)
        return min(cc(p[0].reshape(-1, p.shape[-1]), r[0].reshape(-1, r.shape[-1])) for p, r in zip(probe, reference))

    conv_nodes = {n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")}
    groups = [g for g, nodes in layer_groups(model).items() if conv_nodes & set(nodes)]
    pool = [g for _, g in sorted(((score([g]), g) for g in groups), reverse=True)]
    order: list[str] = []
    while pool and len(order) < GREEDY_STEPS:
        best = max(pool[:GREEDY_WIDTH], key=lambda g: score(order + [g]))
        order.append(best)
        pool.remove(best)
    return order + pool
