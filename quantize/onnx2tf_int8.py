"""TFLite int8 with TensorFlow's converter, from a channels-last SavedModel (the onnx2tf path).

* dynamic range (:func:`dynamic_range`): ``Optimize.DEFAULT`` without data: int8 weights, float activations;
* full int8 (:func:`full_int8`): static int8 weights (symmetric, per channel) and activations (per tensor),
  calibrated on real images. The converter runs once in calibrate-only mode (:func:`calibrated`, cached); the
  calibrated model is then quantized with the MLIR quantizer (``mlir_quantize``, the call the converter and
  ``tf.lite.experimental.QuantizationDebugger`` make), with float32 or int8 I/O. With float I/O the final
  Sigmoid/Softmax of each output stays float by design, so maps keep full resolution instead of 256 levels.

``keep_float`` (the fidelity fallback) names op output tensors to leave in float: they go to the quantizer as
``denylisted_nodes``, which wraps each such op in DEQUANTIZE/QUANTIZE. :func:`rank_sensitivity` orders them by
the per-layer quantization noise QuantizationDebugger measures. Needs the ``onnx2tf`` extra (TensorFlow).
"""
from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from salsdk.errors import ConversionError
from salsdk.tflite_model import output_activations, read_model

from .calibration import CalibrationData

FLOAT_OUTPUT_OPS = ("LOGISTIC", "SOFTMAX")  # output activations the float-I/O format keeps in float by design
DEBUG_SAMPLES = 8  # calibration inputs the QuantizationDebugger runs for the sensitivity ranking


def _representative(data: CalibrationData, limit: int | None = None):
    def generate() -> Iterator[list[np.ndarray]]:
        for sample in data.calibration_samples(limit, channels_last=True):
            yield [sample]

    return generate


def _converter(saved_model: Path, step: str) -> Any:
    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    except Exception as exc:
        raise ConversionError(f"TFLiteConverter.from_saved_model ({step}) failed: {exc}") from exc
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def _convert(converter: Any, step: str) -> bytes:
    try:
        return bytes(converter.convert())
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise ConversionError(f"TFLite converter ({step}) failed: {message[-1] if message else type(exc).__name__}"
                              ) from exc


def dynamic_range(saved_model: Path) -> tuple[bytes, dict[str, Any]]:
    """Dynamic-range int8 ``.tflite`` bytes and the quantization record."""
    return _convert(_converter(saved_model, "dynamic-range int8"), "dynamic-range int8"), {
        "tool": "tf.lite.TFLiteConverter (Optimize.DEFAULT, no data)", "weights": "int8 symmetric per-channel",
        "activations": "float32, quantized on the fly by hybrid kernels"}


def calibrated(saved_model: Path, data: CalibrationData, cache: Path) -> bytes:
    """The SavedModel converted with activation ranges recorded on the calibration inputs (cached in ``cache``)."""
    import tensorflow as tf

    path = cache / "calibrated.tflite"
    if path.is_file():
        return path.read_bytes()
    converter = _converter(saved_model, "int8 calibration")
    converter.representative_dataset = _representative(data)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # noqa: SLF001 (what QuantizationDebugger sets)
    content = _convert(converter, "int8 calibration")
    path.write_bytes(content)
    return content


def _mlir_quantize(calibrated_model: bytes, int8_io: bool, denylisted: Sequence[str] = (),
                   numeric_verify: bool = False) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python import convert

    io_type = tf.int8 if int8_io else tf.float32
    try:
        return bytes(convert.mlir_quantize(calibrated_model, input_data_type=io_type, output_data_type=io_type,
                                           enable_numeric_verify=numeric_verify,
                                           denylisted_nodes=list(denylisted) or None))
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise ConversionError(f"TFLite MLIR quantizer (int8{'-io' if int8_io else ''}) failed: "
                              f"{message[-1] if message else type(exc).__name__}") from exc


def _float_by_design(calibrated_model: bytes, int8_io: bool) -> list[str]:
    return [] if int8_io else output_activations(calibrated_model, FLOAT_OUTPUT_OPS)


def full_int8(saved_model: Path, data: CalibrationData, cache: Path, int8_io: bool, method: str,
              keep_float: Sequence[str] = ()) -> tuple[bytes, dict[str, Any]]:
    """Full int8 ``.tflite`` bytes (float or int8 I/O, ``keep_float`` op outputs left float) and its record."""
    model = calibrated(saved_model, data, cache)
    known = {t.name.decode() for t in read_model(model).subgraphs[0].tensors}
    unknown = [n for n in keep_float if n not in known]
    if unknown:
        raise ConversionError(f"keep_float names no tensor of the calibrated TFLite model: {unknown[:3]}; use names "
                              "from rank_sensitivity()")
    by_design = _float_by_design(model, int8_io)
    content = _mlir_quantize(model, int8_io, [*by_design, *keep_float])
    used = method if method == "minmax" else f"minmax (the TFLite calibrator has no {method!r})"
    return content, {
        "tool": "tf.lite.TFLiteConverter.from_saved_model (calibrate) + MLIR quantizer",
        "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
        "io": "int8" if int8_io else "float32", "calibration_method": used,
        "calibration_inputs": list(data.calibration_sources), "kept_float": list(keep_float),
        "float_by_design": by_design,
        "keep_float_mechanism": "denylisted_nodes (QuantizationDebugOptions) of the MLIR quantizer",
    }


def _sqnr_db(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """Signal-to-quantization-noise ratio (dB) of one layer output: float op vs its int8 twin."""
    dequantized = (quantized.astype(np.float32) - zero_point) * scale
    noise = float(np.mean((float_values.astype(np.float32) - dequantized) ** 2))
    signal = float(np.mean(float_values.astype(np.float32) ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def layer_statistics(saved_model: Path, data: CalibrationData, cache: Path, int8_io: bool) -> list[dict[str, Any]]:
    """QuantizationDebugger per-layer statistics of the int8 model on real calibration inputs.

    Each row is one quantized op output (``tensor_name``, usable in ``keep_float``) with the debugger's default
    metrics and two derived ones: ``rmse/scale`` (the error in quantization steps; ~0.29 is pure rounding) and
    ``sqnr_db`` (float output power over float-vs-int8 error power).
    """
    import tensorflow as tf

    model = calibrated(saved_model, data, cache)
    debug_model = _mlir_quantize(model, int8_io, _float_by_design(model, int8_io), numeric_verify=True)
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"sqnr_db": _sqnr_db})
    try:
        with warnings.catch_warnings():  # the debugger uses tf.lite.Interpreter and keeps all tensors, on purpose
            warnings.filterwarnings("ignore", message=".*(deprecated|experimental_preserve_all_tensors).*")
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=debug_model, debug_options=options,
                debug_dataset=_representative(data, DEBUG_SAMPLES))
            debugger.run()
    except Exception as exc:
        raise ConversionError(f"QuantizationDebugger (TFLite layer sensitivity) failed: {exc}") from exc
    dump = io.StringIO()
    debugger.layer_statistics_dump(dump)
    dump.seek(0)
    rows: list[dict[str, Any]] = []
    for row in csv.DictReader(dump):
        scale, mse = float(row["scale"]), float(row["mean_squared_error"])
        rows.append({**row, "rmse/scale": float(np.sqrt(mse) / scale) if scale else float("inf"),
                     "sqnr_db": float(row["sqnr_db"])})
    return rows


def rank_sensitivity(saved_model: Path, data: CalibrationData, cache: Path, int8_io: bool) -> list[str]:
    """Op output tensors, most quantization-sensitive first, for ``keep_float``.

    Ranked by the quantization noise power each layer adds (``mean_squared_error`` of QuantizationDebugger's
    per-layer verification: the float op and its int8 twin fed the same quantized input), ties broken by the
    lower SQNR. On a KDSalBox student, keeping the top 16 or 32 layers of this ranking in float recovered more
    map CC than rankings by SQNR, by RMSE/scale or at random.
    """
    rows = layer_statistics(saved_model, data, cache, int8_io)
    rows.sort(key=lambda r: (-float(r["mean_squared_error"]), r["sqnr_db"]))
    known = {t.name.decode() for t in read_model(calibrated(saved_model, data, cache)).subgraphs[0].tensors}
    ranked: list[str] = []
    for row in rows:  # the debugger also reports outputs under signature names: keep the calibrated model's
        if row["tensor_name"] in known and row["tensor_name"] not in ranked:
            ranked.append(row["tensor_name"])
    return ranked
