"""TFLite exporter through litert-torch and ai-edge-quantizer: fp32, fp16, dynamic-range int8, full int8 (float or
int8 I/O). PyTorch to ``.tflite`` directly: no ONNX, no TensorFlow, no onnx2tf on this path.

litert-torch converts the PyTorch model of the context (TinyHD: its 2-D framewise rewrite, since TFLite has no
grouped 3-D convolution) wrapped by ``to_channel_last_io``, so the file takes NHWC / NTHWC input and gives
channels-last maps, the layout LiteRT's kernels use, with no layout TRANSPOSE at the input. The float file is made
once per conversion (cached in ``ctx.workdir``) in a child process: the converter can crash the interpreter on
graphs it does not support (TinyHD's original 3-D graph segfaults it), which must not take ``salsdk convert``
down. fp16, dynamic-range and full int8 are ai-edge-quantizer recipes on that float file
(:mod:`salsdk.quantize.litert_int8`), calibrated on the conversion's real calibration inputs. Every file then has
the transpose chains litert-torch makes of pixel shuffles replaced by ``DEPTH_TO_SPACE`` ops, exactly
(:mod:`salsdk.convert.tflite_depth_to_space`), and int8 files have their few-channel 1x1 convolutions read
neighbouring pixels as channels (:mod:`salsdk.convert.tflite_pointwise_fold`). The int8-I/O file is quantized from the float file without its
final sigmoid (:func:`source_model`): its int8 output holds logits over their calibrated range, and its manifest
tells clients to apply the sigmoid.

:func:`finish` and :func:`tensor_specs` are shared with the onnx2tf route (:mod:`salsdk.convert.onnx2tf_export`):
both name the I/O tensors ``input``/``saliency``/``class_probs`` and record the same operator report.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from salsdk.errors import ConversionError
from salsdk.manifest import CLASS_PROBS, SALIENCY, SALIENCY_LOGITS, TensorSpec
from salsdk.quantize import litert_int8
from salsdk.quantize.ranking import check_keep_float, layer_groups
from salsdk.runtimes.litert_runtime import load_interpreter, tensor_layout
from salsdk.tflite_model import ends_in_sigmoid, name_io_tensors, op_counts, ops_after_input, saliency_logits

from .context import ExportContext, ExportResult
from .formats import Format
from .tflite_concat import split_long_concatenations
from .tflite_depth_to_space import shuffles_to_depth_to_space
from .tflite_pointwise_fold import fold_pointwise

MODEL_FILE = "model.tflite"
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int8-io")
CONVERT_TIMEOUT_S = 1800  # a litert-torch conversion of the largest zoo model takes a few minutes here


def float_model(ctx: ExportContext) -> Path:
    """The fp32 ``.tflite`` of ``ctx``'s graph at its static input shape (converted once, cached in the workdir)."""
    rewrite = ctx.graph_record()["rewrite"] or "original"
    path = Path(ctx.workdir) / f"litert-{rewrite}-{'x'.join(map(str, ctx.input_shape))}.tflite"
    if path.is_file():
        return path
    module_file = path.with_suffix(".module.pt")
    torch.save(ctx.model.eval(), module_file)
    partial = path.with_suffix(".partial")
    command = [sys.executable, "-m", __name__, str(module_file), ",".join(map(str, ctx.input_shape)), str(partial)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise ConversionError(f"litert-torch did not finish converting {ctx.card.name} within "
                              f"{CONVERT_TIMEOUT_S}s") from exc
    finally:
        module_file.unlink(missing_ok=True)
    if done.returncode != 0 or not partial.is_file():
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        cause = f"killed by signal {-done.returncode}" if done.returncode < 0 else f"exit status {done.returncode}"
        raise ConversionError(f"litert-torch could not convert {ctx.card.name} ({rewrite} graph): {cause}"
                              + (f"; it said: {lines[-1][:300]}" if lines else "")
                              + ("; TinyHD converts on its framewise graph (--graph auto)" if rewrite == "original"
                                 and len(ctx.input_shape) == 5 else ""))
    partial.replace(path)
    return path


def source_model(ctx: ExportContext, precision: str) -> Path:
    """The float file ``precision`` is made from: :func:`float_model`, or for ``int8-io`` of a model whose map
    ends in a sigmoid (KDSalBox, TinyHD) the same file with that sigmoid removed (its map leaves as int8 logits;
    clients apply the sigmoid, see :func:`salsdk.tflite_model.saliency_logits`)."""
    source = float_model(ctx)
    if precision != "int8-io" or not ends_in_sigmoid(source.read_bytes()):
        return source
    path = source.with_name(f"{source.stem}-logits.tflite")
    if not path.is_file():
        try:
            content = saliency_logits(source.read_bytes())
        except ValueError as exc:
            raise ConversionError(f"{ctx.card.name}: int8 I/O stores the map as logits, but {exc}") from exc
        partial = path.with_suffix(".partial")
        partial.write_bytes(content)
        partial.replace(path)
    return path


def _convert_in_this_process(module_file: str, shape: str, dest: str) -> None:
    """The child process of :func:`float_model`: load the module, convert it with channels-last I/O, write it."""
    import warnings

    import litert_torch

    warnings.simplefilter("ignore")
    module = torch.load(module_file, weights_only=False)  # written by float_model a moment ago, in its workdir
    dims = tuple(int(d) for d in shape.split(","))
    channels_last = (0, *range(2, len(dims)), 1)
    example = torch.zeros(dims).permute(channels_last).contiguous()
    wrapped = litert_torch.to_channel_last_io(module, args=[0], outputs=[0])
    Path(dest).write_bytes(litert_torch.convert(wrapped.eval(), (example,)).model_content())


def build(ctx: ExportContext, fmt: Format, keep_float: Sequence[str]) -> tuple[bytes, dict[str, Any]]:
    """The ``.tflite`` bytes for ``fmt`` and the quantization record for the manifest."""
    if fmt.precision not in PRECISIONS:
        raise ConversionError(f"the TFLite exporter makes {', '.join(PRECISIONS)}, not {fmt.precision!r}")
    check_keep_float(ctx.model, keep_float)
    source = source_model(ctx, fmt.precision)
    if fmt.precision == "fp32":
        if keep_float:
            raise ConversionError("keep_float applies to int8 and int8-io TFLite formats, not fp32")
        content, record = source.read_bytes(), {}
    else:
        content, record = litert_int8.quantize(source, fmt.precision, ctx.data, keep_float, ctx.bias_correction)
    content, folded = fold_pointwise(shuffles_to_depth_to_space(content)[0])
    if folded:
        record = {**record, "pointwise_folded": f"{folded} few-channel int8 1x1 convolutions read "
                  "neighbouring pixels as channels (block-diagonal weights, same int8 values)"}
    return split_long_concatenations(content)[0], record


def tensor_specs(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs read from the written file by the LiteRT interpreter (names, shapes, dtypes, qparams)."""
    interpreter, _, _, _ = load_interpreter()
    loaded = interpreter(model_path=str(path))
    inputs = loaded.get_input_details()
    channels_last = tensor_layout([int(d) for d in inputs[0]["shape"]], 3) in ("NHWC", "NTHWC")

    def spec(detail: dict[str, Any], channels: int) -> TensorSpec:
        shape = [int(d) for d in detail["shape"]]
        scale, zero_point = detail["quantization"]
        quantized = np.issubdtype(detail["dtype"], np.integer) and bool(scale)
        role = None if channels == 3 else CLASS_PROBS if len(shape) == 2 else SALIENCY
        return TensorSpec(detail["name"], tuple(shape), tensor_layout(shape, channels, channels_last),
                          np.dtype(detail["dtype"]).name, float(scale) if quantized else None,
                          int(zero_point) if quantized else None, role,
                          "sigmoid" if detail["name"] == SALIENCY_LOGITS else None)

    outputs = sorted((spec(d, 1) for d in loaded.get_output_details()), key=lambda o: o.role != SALIENCY)
    return [spec(d, 3) for d in inputs], outputs


def finish(content: bytes, dest: Path, tool_versions: dict[str, str], quantization: dict[str, Any],
           started: float, converter: str) -> ExportResult:
    """Write ``content`` as ``dest/model.tflite`` with salsdk's I/O names and describe it (operator report)."""
    content = name_io_tensors(content)
    path = Path(dest) / MODEL_FILE
    path.write_bytes(content)
    inputs, outputs = tensor_specs(path)
    ops = op_counts(content)
    first = ops_after_input(content)
    notes = [f"converter: {converter}", f"ops: {ops}",
             f"TRANSPOSE ops: {ops.get('TRANSPOSE', 0)}; ops reading the input: {first}",
             f"input layout {inputs[0].layout}", f"exported in {time.perf_counter() - started:.1f}s "
             "(the float conversion and the calibration are cached per model)"]
    if ops.get("DEPTH_TO_SPACE"):
        notes.append(f"pixel shuffles as DEPTH_TO_SPACE: {ops['DEPTH_TO_SPACE']}")
    if any(o.activation for o in outputs):
        notes.append("the map leaves as int8 logits (its final sigmoid removed): clients apply the output's "
                     "activation after dequantizing it")
    if ops.get("CONV_3D"):
        notes.append(f"WARNING: {ops['CONV_3D']} CONV_3D ops (the framewise graph has none)")
    if "TRANSPOSE" in first:
        notes.append("WARNING: a TRANSPOSE reads the input directly (the layout change was not folded)")
    return ExportResult(model_file=MODEL_FILE, inputs=inputs, outputs=outputs, tool_versions=tool_versions,
                        quantization=quantization, graph_notes=notes)


def export_tflite(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.tflite`` for ``fmt.precision`` (fp32, fp16, int8-dynamic, int8, int8-io) into ``dest``."""
    started = time.perf_counter()
    content, quantization = build(ctx, fmt, tuple(keep_float))
    versions = {"torch": torch.__version__, "litert-torch": version("litert-torch"),
                "ai-edge-litert": version("ai-edge-litert")}
    if quantization:
        versions["ai-edge-quantizer"] = version("ai-edge-quantizer")
    return finish(content, dest, versions, quantization, started, "litert-torch (PyTorch -> TFLite, channels-last I/O)")


def rank_int8(ctx: ExportContext, fmt: Format) -> list[str]:
    """The TFLite int8 fallback's ranking of module groups (:func:`salsdk.quantize.litert_int8.rank_sensitivity`)."""
    return litert_int8.rank_sensitivity(source_model(ctx, fmt.precision), ctx.data, layer_groups(ctx.model),
                                        fmt.precision == "int8-io", cost=ctx.fallback_costs(),
                                        bias=ctx.bias_correction)


if __name__ == "__main__":  # the conversion child process of float_model()
    _convert_in_this_process(*sys.argv[1:4])
