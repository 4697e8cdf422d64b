"""ONNX static int8 (QDQ, per-channel weights) with ONNX Runtime's quantization tools.

Deliberate choices for these depthwise CNNs: static activation ranges calibrated on real images (dynamic int8
quantizes only MatMul/Conv weights on the fly and is slow and inaccurate for depthwise convolutions);
per-channel symmetric int8 weights (depthwise filters have very different ranges per channel); the final Sigmoid
left in float, so the [0, 1] saliency output keeps full resolution instead of 256 levels; and a sensitivity
ranking of the network's blocks (each block kept float in the otherwise quantized model, compared with fp32 on
calibration inputs) for the fidelity fallback (:mod:`salsdk.quantize.policy`).

Activation ranges are calibrated once per (source model, method) and cached in the work folder, so every
fallback attempt and the ranking reuse them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import onnx

from salsdk.errors import ConversionError
from salsdk.manifest import INPUT_NAME

from .calibration import CalibrationData
from .ranking import recovery_order

METHODS = ("minmax", "percentile", "entropy")


class _Reader:
    """ONNX Runtime's ``CalibrationDataReader`` over :meth:`CalibrationData.calibration_samples`."""

    def __init__(self, data: CalibrationData) -> None:
        self.data = data
        self.rewind()

    def get_next(self) -> dict[str, np.ndarray] | None:
        sample = next(self.samples, None)
        return None if sample is None else {INPUT_NAME: sample}

    def rewind(self) -> None:
        self.samples = self.data.calibration_samples()


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


def preprocessed(fp32: Path, workdir: Path) -> Path:
    """ORT's recommended pre-processing (shape inference + graph optimisation) of ``fp32``, done once."""
    from onnxruntime.quantization import quant_pre_process

    path = workdir / f"{fp32.stem}_int8_pre.onnx"
    if not path.exists():
        quant_pre_process(str(fp32), str(path), skip_symbolic_shape=True)
    return path


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


def quantize_qdq(source: Path, target: Path, data: CalibrationData, method: str, workdir: Path,
                 keep_float: Sequence[str] = ()) -> list[str]:
    """Static QDQ quantization of ``source`` into ``target``; returns the nodes left in float."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    model = onnx.load(str(source))
    excluded = sorted(set(expand_keep_float(model, keep_float)) | set(output_sigmoids(model)))
    quantize_static(
        str(source), str(target), _Reader(data), quant_format=QuantFormat.QDQ, per_channel=True,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
        calibrate_method=_calibrate_method(method),
        calibration_cache_path=str(workdir / f"ranges_{source.stem}_{method}.json"),
        extra_options={"WeightSymmetric": True, "ActivationSymmetric": False,
                       "CalibPercentile": 99.999, "CalibTensorRangeSymmetric": False})
    return excluded


def rank_sensitivity(source: Path, data: CalibrationData, method: str, workdir: Path,
                     cost: Mapping[str, float] | None = None) -> list[str]:
    """Layer groups in the order the fallback should keep them in float, measured on calibration inputs.

    Every candidate is scored the way the fallback will use it: the whole model quantized *except* the kept groups
    (exactly as :func:`quantize_qdq` does, activation ranges cached), compared with fp32 on up to four
    calibration inputs (never the held-out ones) by the lowest map CC; the groups of :func:`layer_groups` that
    hold a Conv are ordered by :func:`~salsdk.quantize.ranking.recovery_order`.
    """
    import onnxruntime as ort

    from salsdk.metrics import cc

    model = onnx.load(str(source))
    sample = list(data.calibration_samples(limit=4))
    probe_path = workdir / "sensitivity_probe.onnx"

    def run(path: Path) -> np.ndarray:  # static batch 1
        session = ort.InferenceSession(str(path))
        return np.concatenate([session.run(None, {INPUT_NAME: x})[0] for x in sample])

    reference = run(source)

    def score(keep: list[str]) -> float:
        quantize_qdq(source, probe_path, data, method, workdir, keep_float=keep)
        probe = run(probe_path)
        return min(cc(p[0].reshape(-1, p.shape[-1]), r[0].reshape(-1, r.shape[-1])) for p, r in zip(probe, reference))

    conv_nodes = {n.name for n in model.graph.node if n.op_type in ("Conv", "ConvTranspose", "MatMul", "Gemm")}
    groups = [g for g, nodes in layer_groups(model).items() if conv_nodes & set(nodes)]
    return recovery_order(groups, score, cost=cost)
