"""TFLite quantization with ai-edge-quantizer, on the float ``.tflite`` litert-torch made: no TensorFlow.

* fp16 (:func:`recipe` ``"fp16"``): weights cast to float16 (``float_casting``), dequantized at load;
* dynamic range (``"int8-dynamic"``): ``dynamic_wi8_afp32``, int8 per-channel weights, float activations;
* full int8 (``"int8"``, ``"int8-io"``): ``static_wi8_ai8``, int8 symmetric per-channel weights and int8
  asymmetric per-tensor activations whose ranges are the min and max over all calibration inputs
  (:func:`_calibration`), with the convolution biases corrected for their weights' rounding where that helps
  (:mod:`~salsdk.quantize.bias_correction`, :func:`_bias_corrected`). With float I/O the INPUT and OUTPUT get
  ``NO_QUANTIZE`` (float tensors, one QUANTIZE/DEQUANTIZE at the edges) and so do the Sigmoid/Softmax ops, so maps
  keep full resolution instead of 256 levels, as in the onnx2tf files. With int8 I/O the float file comes without
  its final sigmoid (:func:`salsdk.convert.tflite_export.source_model`): the int8 output holds logits over their
  calibrated range and clients apply the sigmoid, since the sigmoid's own int8 output (scale 1/256) leaves a few
  dozen levels to maps whose peaks are near 0.1.

``keep_float`` (the fidelity fallback) names PyTorch module groups (``encoder.17``, ``decoder.conv8_1``, the unit the
ONNX and PT2E fallbacks use): litert-torch names every tensor after the module path that made it, so each group
becomes one ``NO_QUANTIZE`` recipe entry whose regex matches that path (:func:`group_regex`).
:func:`rank_sensitivity` orders the groups with :func:`~salsdk.quantize.ranking.recovery_order`, scoring each
candidate by the lowest map CC of the re-quantized model against the float file on calibration inputs; the
calibration statistics are computed once and reused for every candidate (a candidate costs one quantize pass).
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from salsdk.errors import ConversionError

from . import bias_correction
from .calibration import CalibrationData
from .ranking import recovery_order

FLOAT_BY_DESIGN = ("LOGISTIC", "SOFTMAX")  # output activations the float-I/O format keeps in float
RANK_SAMPLES = 4  # calibration inputs each ranking candidate is scored on
PRECISIONS = ("fp16", "int8-dynamic", "int8", "int8-io")
_NO_QUANTIZE = "no_quantize"
_CALIBRATIONS: dict[str, Any] = {}  # float file digest + calibration digest -> calibration statistics
_CORRECTIONS: dict[str, tuple[Any, ...]] = {}  # same key + precision -> (full int8 file, conv input means, mode, CCs)


def group_regex(group: str) -> str:
    """Regex of the tensor names litert-torch gives the ops of module group ``group`` (``"encoder.17"``).

    Names are module paths of ``<class>_<attribute>`` segments joined by ``/`` (fused ops join several paths
    with ``;``), e.g. ``..._wrapped/torch.nn.modules.container.Sequential_encoder/...InvertedResidual_17/...``.
    A container whose ``forward`` never runs (a ``ModuleList``, or a ``Sequential`` its owner iterates, as
    TinyHD's encoder and aggregator do) leaves no segment, so the segments between the first and the last are
    optional: ``aggregator.aggregate_adapter.14`` matches ``...TinyHDAggregator_aggregator/InvertedResidual3d_14``.
    :func:`check_groups_match` makes sure each group matches operators. (An operator litert-torch fused from
    several modules carries all their paths, so neighbouring groups can share one.)
    """
    parts = [r"[^/;]*_" + re.escape(p) for p in group.split(".")]
    body = parts[0] + "".join(f"(?:/{p})?" for p in parts[1:-1]) + (f"/{parts[-1]}" if len(parts) > 1 else "")
    return r"(?:^|/)" + body + r"(?=[/;]|$)"


def op_scopes(content: bytes) -> list[str]:
    """Each operator's scope as ai-edge-quantizer matches recipe regexes against it: its output tensor names
    joined by ``;``, with a trailing ``;``."""
    from salsdk.tflite_model import read_model, tensor_name

    graph = read_model(content).subgraphs[0]
    return [";".join(tensor_name(graph, int(t)) for t in op.outputs) + ";" for op in graph.operators]


def check_groups_match(float_model: Path, keep_float: Sequence[str]) -> None:
    """Refuse ``keep_float`` groups that match no operator of ``float_model``: keeping them float would silently
    change nothing while the manifest said otherwise."""
    if not keep_float:
        return
    scopes = op_scopes(float_model.read_bytes())
    empty = [g for g in keep_float if not any(re.search(group_regex(g), scope) for scope in scopes)]
    if empty:
        raise ConversionError(f"keep_float group(s) {', '.join(empty)} match no operator of {float_model.name}: "
                              f"its tensor names do not hold their module path")


def recipe(precision: str, keep_float: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The ai-edge-quantizer recipe for ``precision`` with ``keep_float`` module groups left float."""
    from ai_edge_quantizer import recipe as recipes

    if precision not in PRECISIONS:
        raise ConversionError(f"ai-edge-quantizer recipes exist for {', '.join(PRECISIONS)}, not {precision!r}")
    if keep_float and precision not in ("int8", "int8-io"):
        raise ConversionError(f"keep_float applies to int8 and int8-io TFLite formats, not {precision}")
    if precision == "fp16":
        return [{"regex": ".*", "operation": "*", "algorithm_key": "float_casting",
                 "op_config": {"weight_tensor_config": {"num_bits": 16, "dtype": "FLOAT"},
                               "compute_precision": "FLOAT", "explicit_dequantize": True}}]
    if precision == "int8-dynamic":
        return recipes.dynamic_wi8_afp32()
    entries = recipes.static_wi8_ai8()
    float_ops = () if precision == "int8-io" else ("INPUT", "OUTPUT", *FLOAT_BY_DESIGN)
    entries += [{"regex": ".*", "operation": op, "algorithm_key": _NO_QUANTIZE} for op in float_ops]
    entries += [{"regex": group_regex(g), "operation": "*", "algorithm_key": _NO_QUANTIZE} for g in keep_float]
    return entries


def _quantizer(float_model: Path | bytearray, entries: list[dict[str, Any]]) -> Any:
    from ai_edge_quantizer import quantizer

    q = quantizer.Quantizer(float_model if isinstance(float_model, bytearray) else str(float_model))
    q.load_quantization_recipe(entries)
    return q


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Swallow what the quantizer prints: sizes on stdout, tqdm progress bars on stderr."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        yield


def _signature(float_model: Path) -> tuple[str, str]:
    """(signature key, input name) of the float model."""
    from ai_edge_litert.interpreter import Interpreter

    signatures = Interpreter(model_path=str(float_model)).get_signature_list()
    key = next(iter(signatures))
    return key, signatures[key]["inputs"][0]


def _key(float_model: Path, data: CalibrationData) -> str:
    """Cache key of a float file and calibration inputs."""
    digest = hashlib.sha256(float_model.read_bytes())
    digest.update(np.ascontiguousarray(data.calibration, dtype=np.float32).tobytes())
    return digest.hexdigest()


def _calibration(float_model: Path, data: CalibrationData) -> Any:
    """Activation ranges of the full-int8 recipe: each tensor's min and max over all calibration inputs (cached per
    model and data).

    ai-edge-quantizer's ``calibrate`` merges the inputs' ranges by a moving average that keeps 0.95 of the running
    range at each new input, so the first input's range dominates and the others' activations are clipped: on the
    UMSI stand-in that cost 0.10 of map CC (0.870 against 0.967 with true min-max). So each input is calibrated
    on its own and the ranges are merged here.
    """
    key_ = _key(float_model, data)
    if key_ not in _CALIBRATIONS:
        key, name = _signature(float_model)
        ranges: dict[str, Any] = {}
        for x in data.calibration_samples(channels_last=True):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    with _quiet():
                        sample = _quantizer(float_model, recipe("int8-io")).calibrate({key: [{name: x}]})
                except Exception as exc:
                    raise ConversionError(f"ai-edge-quantizer calibration failed: {str(exc).splitlines()[0]}") from exc
            for tensor, qsv in sample.items():
                ranges[tensor] = _widened(ranges.get(tensor), qsv)
        _CALIBRATIONS[key_] = ranges
    return _CALIBRATIONS[key_]


def _widened(merged: dict[str, Any] | None, qsv: dict[str, Any]) -> dict[str, Any]:
    """``merged`` (one tensor's range so far, or None) widened to cover ``qsv`` (its range on one more input)."""
    if not merged:
        return dict(qsv)
    if "min" not in qsv or "max" not in qsv:
        return merged
    return dict(merged, min=np.minimum(merged["min"], qsv["min"]), max=np.maximum(merged["max"], qsv["max"]))


def _bias_corrected(float_model: Path, data: CalibrationData, keep_float: Sequence[str],
                    precision: str, bias: str = "auto") -> tuple[bytes, str, str]:
    """The float file to quantize, what bias correction did to it, and the mode applied (``none`` if none).

    The biases of the convolutions that will be int8 are corrected for their weights' rounding
    (:mod:`salsdk.quantize.bias_correction`) in the mode ``bias`` names, or with ``"auto"`` in the mode (per tap
    or per channel) that raises the lowest map CC of the fully int8 file against the float one most on
    :data:`RANK_SAMPLES` calibration inputs (never the held-out ones); if neither raises it, the file is left as
    it is. (The fidelity policy tries the other modes fully int8 when the one chosen here fails the gate.) Measured at stops 33-35: per channel lifts the UniSal
    stand-in at 480x640 from 0.983 to 0.990 held out (per tap 0.987) and lowers the UMSI one. The rounding errors
    come from the quantizer's own fully int8 file and the input means from the float file on the calibration
    inputs; both, and the choice, are made once per model, data and ``precision`` (``"int8"`` or ``"int8-io"``: the
    files scored have the I/O of the artifact, so a map stored as logits is compared as a map).
    """
    key_ = f"{_key(float_model, data)}-{precision}"
    content = float_model.read_bytes()
    if key_ not in _CORRECTIONS:
        calibration = _calibration(float_model, data)
        full = _run_quantizer(content, recipe(precision), calibration, precision)
        means = bias_correction.input_means(content, data.calibration_samples(channels_last=True))
        score = _map_scorer(float_model, data)
        scores = {"none": score(full)}
        for mode in bias_correction.MODES:
            corrected, _ = bias_correction.correct(content, full, means, mode=mode)
            scores[mode] = score(_run_quantizer(corrected, recipe(precision), calibration, precision))
        _CORRECTIONS[key_] = (full, means, max(scores, key=scores.__getitem__), scores)
    full, means, chosen, scores = _CORRECTIONS[key_]
    mode = chosen if bias == "auto" else bias
    measured = (f"lowest map CC of the fully int8 file on {RANK_SAMPLES} calibration inputs: "
                + ", ".join(f"{name} {value:.4f}" for name, value in scores.items()))
    if mode == "none":
        return content, (f"not applied: no mode raised the {measured}" if bias == "auto"
                         else f"not applied, as asked ({measured})"), mode
    kept = [re.compile(group_regex(g)) for g in keep_float]
    corrected, count = bias_correction.correct(content, full, means, mode=mode,
                                               skip=lambda scope: any(r.search(scope) for r in kept))
    how = "" if bias == "auto" else ", as asked"
    return corrected, (f"{count} int8 convolutions, {mode}{how}: biases absorb the mean shift of their rounded "
                       f"weights on the calibration inputs ({measured})"), mode


def _map_scorer(float_model: Path, data: CalibrationData) -> Callable[[bytes], float]:
    """A scorer of ``.tflite`` contents: the lowest map CC of its outputs against ``float_model``'s on
    :data:`RANK_SAMPLES` calibration inputs (never the held-out ones)."""
    from salsdk.metrics import cc
    from salsdk.runtimes.litert_runtime import LiteRTRuntime

    samples = list(data.calibration_samples(RANK_SAMPLES))
    reference = LiteRTRuntime(float_model, threads=2)
    expected = [reference.run(x)[0] for x in samples]

    def score(content: bytes) -> float:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "candidate.tflite"
            path.write_bytes(content)
            runtime = LiteRTRuntime(path, threads=2)
            return min(cc(_maps(runtime.run(x)[0]), _maps(e)) for x, e in zip(samples, expected))

    return score


def _run_quantizer(model: bytes, entries: list[dict[str, Any]], calibration: Any, precision: str) -> bytes:
    """ai-edge-quantizer's file for ``model`` (bytes) under ``entries``, its output and warnings silenced.

    The quantizer is given a copy of ``calibration``: it adjusts the ranges it is given in place (ops that share
    one range), so the cached ranges would otherwise depend on which files were quantized before.
    """
    calibration = copy.deepcopy(calibration)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            with _quiet():
                return bytes(_quantizer(bytearray(model), entries).quantize(calibration).quantized_model)
        except Exception as exc:
            raise ConversionError(f"ai-edge-quantizer ({precision}) failed: {str(exc).splitlines()[0]}") from exc


def quantize(float_model: Path, precision: str, data: CalibrationData | None = None,
             keep_float: Sequence[str] = (), bias: str = "auto") -> tuple[bytes, dict[str, Any]]:
    """Quantized ``.tflite`` bytes of ``float_model`` and the quantization record for the manifest (``bias``: the
    bias-correction mode of full int8, see :func:`_bias_corrected`)."""
    from salsdk.tflite_model import write_model, read_model

    check_groups_match(float_model, keep_float)
    entries = recipe(precision, keep_float)
    static = precision in ("int8", "int8-io")
    if static and data is None:
        raise ConversionError(f"{precision} needs calibration inputs")
    source, corrected, mode = (_bias_corrected(float_model, data, keep_float, precision, bias) if static
                               else (float_model.read_bytes(), "", "none"))
    quantized = _run_quantizer(source, entries, _calibration(float_model, data) if static else None, precision)
    content = write_model(read_model(quantized))  # one self-contained flatbuffer
    record: dict[str, Any] = {"tool": "ai-edge-quantizer", "recipe": _recipe_name(precision)}
    if precision == "fp16":
        record.update(weights="float16 (dequantized to float32 at load)", activations="float32")
    elif precision == "int8-dynamic":
        record.update(weights="int8 symmetric per-channel", activations="float32, quantized on the fly")
    else:
        record.update(weights="int8 symmetric per-channel", activations="int8 asymmetric per-tensor",
                      io="int8" if precision == "int8-io" else "float32", calibration_method="minmax",
                      calibration_ranges=f"min and max over all {len(data.calibration)} calibration inputs",
                      calibration_inputs=list(data.calibration_sources), kept_float=list(keep_float),
                      float_by_design=[] if precision == "int8-io" else ["INPUT", "OUTPUT", *FLOAT_BY_DESIGN],
                      keep_float_mechanism="NO_QUANTIZE recipe entries matching the module path in tensor names",
                      bias_correction=corrected, bias_correction_mode=mode)
    return content, record


def _recipe_name(precision: str) -> str:
    return {"fp16": "float_casting (fp16 weights)", "int8-dynamic": "dynamic_wi8_afp32",
            "int8": "static_wi8_ai8 + NO_QUANTIZE for I/O and output activations",
            "int8-io": "static_wi8_ai8"}[precision]


def rank_sensitivity(float_model: Path, data: CalibrationData, groups: Sequence[str], int8_io: bool,
                     cost: Mapping[str, float] | None = None, bias: str = "auto") -> list[str]:
    """Module groups, the ones whose float copy recovers most map CC first (see the module docstring)."""
    precision = "int8-io" if int8_io else "int8"
    score = _map_scorer(float_model, data)
    return recovery_order(list(groups), lambda keep: score(quantize(float_model, precision, data, keep, bias)[0]),
                          cost=cost)


def _maps(output: np.ndarray) -> np.ndarray:
    """One map per row (frames of a clip output side by side), as :func:`salsdk.metrics.cc` compares them."""
    return output.reshape(-1, output.shape[-1])
