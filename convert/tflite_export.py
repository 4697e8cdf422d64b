"""TFLite exporter: fp32, fp16, dynamic-range int8, full int8 (float or int8 I/O), via onnx2tf and the TFLite converter.

One onnx2tf run per model turns the fp32 ONNX graph into a channels-last TensorFlow SavedModel (NCHW -> NHWC,
NCTHW -> NTHWC; the layout transposes are folded into the weights, so the graph starts with the first real op)
together with fp32 and fp16-weight ``.tflite`` files. Before it runs, pixel shuffles are switched to TFLite's
DCR channel order where the weights absorb the permutation (:mod:`salsdk.convert.depth_to_space`). The integer variants are made from that SavedModel by
``tf.lite.TFLiteConverter.from_saved_model``:

* ``int8-dynamic``: ``Optimize.DEFAULT`` without data: int8 weights, float activations.
* ``int8`` / ``int8-io``: static int8 weights (symmetric, per channel) and activations (per tensor), calibrated
  on ``ctx.calibration`` (real images, transposed to NHWC). The converter is run once in calibrate-only mode;
  the calibrated model is then quantized with the MLIR quantizer (``mlir_quantize``, the same call the
  converter and ``tf.lite.experimental.QuantizationDebugger`` make), with float32 I/O for ``int8`` and int8 I/O
  for ``int8-io``. ``int8`` keeps the final Sigmoid/Softmax of each output in float by design, so the maps keep
  full resolution instead of 256 levels.

``keep_float`` (the fidelity fallback) names output tensors of ops to leave in float: they are passed to the
quantizer as ``denylisted_nodes`` (``QuantizationDebugOptions.denylisted_nodes``), which wraps each such op in
DEQUANTIZE/QUANTIZE. :func:`rank_tflite_sensitivity` orders those names by the per-layer quantization noise
that ``QuantizationDebugger`` measures (see its docstring).

All conversions of one :class:`ExportContext` share a cache folder in ``ctx.workdir`` (the onnx2tf output and
the calibrated model), so the five TFLite formats and the fallback steps cost one onnx2tf run and one calibration.
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import os
import shutil
import time
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from salsdk.errors import ConversionError
from salsdk.runtimes.litert_runtime import load_interpreter, tensor_layout

from .context import CLASS_OUTPUT, INPUT_NAME, SALIENCY_OUTPUT, ExportContext, ExportResult, TensorSpec
from .formats import Format

MODEL_FILE = "model.tflite"
MANIFEST_KEY = "salsdk_manifest"
ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"
DEBUG_SAMPLES = 8  # calibration inputs the QuantizationDebugger runs for the sensitivity ranking
FLOAT_OUTPUT_OPS = ("LOGISTIC", "SOFTMAX")  # output activations ``int8`` keeps in float by design
PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int8-io")

Content = bytes
RepresentativeDataset = Callable[[], Iterator[list[np.ndarray]]]


# ------------------------------------------------------------------------------------------- flatbuffer helpers
def _schema() -> Any:
    from tensorflow.lite.python import schema_py_generated

    return schema_py_generated


def read_model(content: Content) -> Any:
    """The flatbuffer as a mutable ``ModelT`` (TensorFlow's generated object API)."""
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    if any(getattr(b, "offset", 0) > 1 for b in model.buffers or []):
        raise ConversionError("this .tflite stores buffers outside the flatbuffer (a >2 GB model); salsdk cannot "
                              "rewrite such files")
    return model


def write_model(model: Any) -> Content:
    """Serialise a ``ModelT`` back to ``.tflite`` bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _op_names(model: Any) -> list[str]:
    """Builtin op name of every operator of the main subgraph, in execution order."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        result.append(names.get(builtin, str(builtin)) if builtin != schema.BuiltinOperator.CUSTOM
                      else f"CUSTOM:{code.customCode.decode()}")
    return result


def op_counts(content: Content) -> dict[str, int]:
    """How many operators of each builtin type the model has."""
    return dict(sorted(Counter(_op_names(read_model(content))).items()))


def ops_after_input(content: Content) -> list[str]:
    """Op types that read the graph input directly (a TRANSPOSE here means onnx2tf left a layout change)."""
    model = read_model(content)
    graph, names = model.subgraphs[0], _op_names(model)
    return [names[i] for i, op in enumerate(graph.operators) if set(op.inputs) & set(graph.inputs)]


def _tensor_name(graph: Any, index: int) -> str:
    return graph.tensors[index].name.decode()


def _output_activations(content: Content, op_types: Sequence[str]) -> list[str]:
    """Names of graph-output tensors produced by an op of one of ``op_types`` (e.g. the final Sigmoid)."""
    model = read_model(content)
    graph, names = model.subgraphs[0], _op_names(model)
    return [_tensor_name(graph, out) for i, op in enumerate(graph.operators) if names[i] in op_types
            for out in op.outputs if out in set(graph.outputs)]


def _role(shape: Sequence[int]) -> str:
    """salsdk's name for an output: rank 2 is class probabilities, a map is the saliency."""
    return CLASS_OUTPUT if len(shape) == 2 else SALIENCY_OUTPUT


def name_io_tensors(content: Content) -> Content:
    """Rename the graph input to ``input`` and outputs to ``saliency``/``class_probs``, signature included.

    onnx2tf and the SavedModel route name them ``Identity``/``serving_default_input:0``/``PartitionedCall:0``;
    with the ONNX names the file documents itself and runtimes can pick outputs by name.
    """
    schema = _schema()
    model = read_model(content)
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ConversionError(f"the TFLite graph has {len(graph.inputs)} inputs; salsdk models have one")
    new_names = {graph.inputs[0]: INPUT_NAME}
    roles = [_role(graph.tensors[i].shape) for i in graph.outputs]
    if len(set(roles)) != len(roles):
        raise ConversionError(f"cannot tell the TFLite outputs apart by rank: {roles}")
    new_names.update(zip(graph.outputs, roles))
    for index, name in new_names.items():
        graph.tensors[index].name = name.encode()

    def tensor_map(index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = new_names[index].encode(), index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = b"serving_default", 0
    signature.inputs = [tensor_map(i) for i in graph.inputs]
    signature.outputs = [tensor_map(i) for i in graph.outputs]
    model.signatureDefs = [signature]
    return write_model(model)


# ------------------------------------------------------------------------------------------------- onnx2tf
@dataclass(frozen=True)
class FloatModels:
    """What the onnx2tf run left in the cache folder."""

    saved_model: Path
    fp32: Path
    fp16: Path


def cache_dir(ctx: ExportContext) -> Path:
    """Per-model cache folder in ``ctx.workdir``, keyed by the fp32 ONNX file and the calibration inputs."""
    if ctx.onnx_fp32 is None or not Path(ctx.onnx_fp32).is_file():
        raise ConversionError("TFLite formats are derived from the fp32 ONNX model, which was not exported "
                              "(ctx.onnx_fp32 is unset or missing)")
    digest = hashlib.sha256(Path(ctx.onnx_fp32).read_bytes())
    digest.update(np.ascontiguousarray(ctx.calibration, dtype=np.float32).tobytes())
    folder = Path(ctx.workdir) / f"tflite-{digest.hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def frames_nhwc(ctx: ExportContext) -> np.ndarray:
    """Calibration inputs as channels-last float32: (N, H, W, 3) images or (N, T, H, W, 3) clips."""
    x = np.asarray(ctx.calibration, dtype=np.float32)
    axes = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}.get(x.ndim)
    if axes is None:
        raise ConversionError(f"calibration inputs must be (N,3,H,W) or (N,3,T,H,W), got {x.shape}")
    return np.ascontiguousarray(x.transpose(axes))


def write_onnx2tf_sample(ctx: ExportContext, path: Path) -> None:
    """onnx2tf's 20x128x128x3 test sample (it downloads one when absent): calibration images as [0, 1] pixels.

    The inputs are de-normalised with the contract (``pixel = (x * std + mean) / scale``), put in RGB order,
    resized to 128x128 and repeated to 20.
    """
    import torch
    import torch.nn.functional as F

    pre = ctx.contract.preprocessing
    x = frames_nhwc(ctx)
    x = x.reshape(-1, *x.shape[-3:])  # clips -> frames
    pixels = (x * np.asarray(pre.std, np.float32) + np.asarray(pre.mean, np.float32)) / pre.scale / 255.0
    if pre.channel_order == "BGR":
        pixels = pixels[..., ::-1]
    chosen = torch.from_numpy(np.ascontiguousarray(pixels[np.resize(np.arange(len(pixels)), 20)]))
    resized = F.interpolate(chosen.permute(0, 3, 1, 2), size=(128, 128), mode="bilinear", align_corners=False)
    np.save(path, resized.permute(0, 2, 3, 1).clamp(0.0, 1.0).numpy().astype(np.float32))


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def float_models(ctx: ExportContext) -> FloatModels:
    """Run onnx2tf once per model (cached): channels-last SavedModel, fp32 and fp16-weight ``.tflite``.

    onnx2tf runs with its working directory in the cache folder, where its calibration sample has been written
    first (from the real calibration images), so it never reaches for the network.
    """
    folder = cache_dir(ctx)
    out = folder / "saved_model"
    stem = Path(ctx.onnx_fp32).stem
    result = FloatModels(out, out / f"{stem}_float32.tflite", out / f"{stem}_float16.tflite")
    if all(p.is_file() for p in (result.fp32, result.fp16, out / "saved_model.pb")):
        return result
    sample = folder / ONNX2TF_SAMPLE
    if not sample.is_file():
        shared = Path(ctx.workdir) / ONNX2TF_SAMPLE
        shutil.copyfile(shared, sample) if shared.is_file() else write_onnx2tf_sample(ctx, sample)
    shutil.rmtree(out, ignore_errors=True)
    import onnx2tf

    source = folder / f"{stem}.onnx"  # a copy: onnx2tf may rewrite its input file (onnxsim) in place
    write_onnx2tf_input(Path(ctx.onnx_fp32), source)
    log = io.StringIO()
    try:
        with _working_directory(folder), contextlib.redirect_stdout(log):
            onnx2tf.convert(input_onnx_file_path=str(source), output_folder_path=str(out),
                            output_signaturedefs=True, non_verbose=True)
    except BaseException as exc:  # onnx2tf reports some failures with sys.exit
        if isinstance(exc, KeyboardInterrupt):
            raise
        tail = " | ".join(line for line in log.getvalue().strip().splitlines()[-5:] if line.strip())
        raise ConversionError(f"onnx2tf (ONNX -> TensorFlow SavedModel/TFLite) failed: {exc!r}"
                              + (f"; onnx2tf said: {tail}" if tail else "")) from exc
    missing = [p.name for p in (result.fp32, result.fp16, out / "saved_model.pb") if not p.is_file()]
    if missing:
        raise ConversionError(f"onnx2tf finished without writing {', '.join(missing)} in {out}")
    source.unlink()
    return result


def write_onnx2tf_input(onnx_path: Path, dest: Path) -> int:
    """Write the fp32 ONNX graph as onnx2tf gets it: pixel shuffles in TFLite's DCR channel order where the
    weights can absorb the permutation (:func:`salsdk.convert.depth_to_space.crd_to_dcr`), so that they become
    one ``DEPTH_TO_SPACE`` instead of three copies. Returns how many shuffles were switched."""
    import onnx

    model = onnx.load(str(onnx_path))
    if not any(node.op_type == "DepthToSpace" for node in model.graph.node):
        shutil.copyfile(onnx_path, dest)
        return 0
    from .depth_to_space import crd_to_dcr

    model = onnx.shape_inference.infer_shapes(model)
    switched = crd_to_dcr(model)
    onnx.save(model, str(dest))
    return switched


# ------------------------------------------------------------------------------------------ TFLite converter
def representative_dataset(ctx: ExportContext, limit: int | None = None) -> RepresentativeDataset:
    """The real calibration inputs, channels-last, one sample per step (TFLite's representative dataset)."""
    samples = frames_nhwc(ctx)[:limit]

    def generate() -> Iterator[list[np.ndarray]]:
        for sample in samples:
            yield [sample[None]]

    return generate


def _converter(ctx: ExportContext, step: str) -> Any:
    import tensorflow as tf

    try:
        converter = tf.lite.TFLiteConverter.from_saved_model(str(float_models(ctx).saved_model))
    except Exception as exc:
        raise ConversionError(f"TFLiteConverter.from_saved_model ({step}) failed: {exc}") from exc
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    return converter


def _convert(converter: Any, step: str) -> Content:
    try:
        return bytes(converter.convert())
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise ConversionError(f"TFLite converter ({step}) failed: {message[-1] if message else type(exc).__name__}"
                              ) from exc


def dynamic_range_model(ctx: ExportContext) -> Content:
    """Dynamic-range quantization: int8 weights, float activations computed on the fly."""
    return _convert(_converter(ctx, "dynamic-range int8"), "dynamic-range int8")


def calibrated_model(ctx: ExportContext) -> Content:
    """The SavedModel converted with activation ranges recorded on the calibration inputs (cached).

    This is the converter's own calibration step (``_experimental_calibrate_only``, as QuantizationDebugger
    uses it); quantization with any I/O type or denylist then reuses it without recalibrating.
    """
    import tensorflow as tf

    path = cache_dir(ctx) / "calibrated.tflite"
    if path.is_file():
        return path.read_bytes()
    converter = _converter(ctx, "int8 calibration")
    converter.representative_dataset = representative_dataset(ctx)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter._experimental_calibrate_only = True  # noqa: SLF001 (what QuantizationDebugger sets)
    content = _convert(converter, "int8 calibration")
    path.write_bytes(content)
    return content


def quantize_model(calibrated: Content, int8_io: bool, denylisted: Sequence[str] = (),
                   numeric_verify: bool = False) -> Content:
    """Quantize a calibrated model with the MLIR quantizer (the call TFLiteConverter itself makes)."""
    import tensorflow as tf
    from tensorflow.lite.python import convert

    io_type = tf.int8 if int8_io else tf.float32
    try:
        return bytes(convert.mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type,
                                           enable_numeric_verify=numeric_verify,
                                           denylisted_nodes=list(denylisted) or None))
    except Exception as exc:
        message = str(exc).strip().splitlines()
        raise ConversionError(f"TFLite MLIR quantizer (int8{'-io' if int8_io else ''}) failed: "
                              f"{message[-1] if message else type(exc).__name__}") from exc


def _float_by_design(ctx: ExportContext, fmt: Format) -> list[str]:
    """Output activations that ``int8`` (float I/O) leaves in float; none for ``int8-io``."""
    if fmt.precision != "int8":
        return []
    return _output_activations(calibrated_model(ctx), FLOAT_OUTPUT_OPS)


def _check_keep_float(ctx: ExportContext, keep_float: Sequence[str]) -> None:
    """Every name to keep in float must be a tensor of the calibrated model."""
    graph = read_model(calibrated_model(ctx)).subgraphs[0]
    known = {t.name.decode() for t in graph.tensors}
    unknown = [n for n in keep_float if n not in known]
    if unknown:
        raise ConversionError(f"keep_float names no tensor of the calibrated TFLite model: {unknown[:3]}; use names "
                              "from rank_tflite_sensitivity()")


def build(ctx: ExportContext, fmt: Format, keep_float: Sequence[str]) -> tuple[Content, dict[str, Any]]:
    """The ``.tflite`` bytes for ``fmt`` and the quantization record for the manifest."""
    if fmt.precision not in PRECISIONS:
        raise ConversionError(f"the TFLite exporter makes {', '.join(PRECISIONS)}, not {fmt.precision!r}")
    if keep_float and fmt.precision not in ("int8", "int8-io"):
        raise ConversionError(f"keep_float applies to int8 and int8-io TFLite formats, not {fmt.precision}")
    models = float_models(ctx)
    if fmt.precision == "fp32":
        return models.fp32.read_bytes(), {}
    if fmt.precision == "fp16":
        return models.fp16.read_bytes(), {"tool": "onnx2tf (TFLiteConverter, supported_types=[float16])",
                                          "weights": "float16 (dequantized to float32 at load)",
                                          "activations": "float32"}
    if fmt.precision == "int8-dynamic":
        return dynamic_range_model(ctx), {"tool": "tf.lite.TFLiteConverter (Optimize.DEFAULT, no data)",
                                          "weights": "int8 symmetric per-channel",
                                          "activations": "float32, quantized on the fly by hybrid kernels"}
    _check_keep_float(ctx, keep_float)
    by_design = _float_by_design(ctx, fmt)
    content = quantize_model(calibrated_model(ctx), fmt.precision == "int8-io", [*by_design, *keep_float])
    method = ctx.calibration_method if ctx.calibration_method == "minmax" else \
        f"minmax (the TFLite calibrator has no {ctx.calibration_method!r})"
    return content, {
        "tool": "tf.lite.TFLiteConverter.from_saved_model (calibrate) + MLIR quantizer",
        "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
        "io": "int8" if fmt.precision == "int8-io" else "float32",
        "calibration_method": method, "calibration_inputs": list(ctx.calibration_sources),
        "kept_float": list(keep_float), "float_by_design": by_design,
        "keep_float_mechanism": "denylisted_nodes (QuantizationDebugOptions) of the MLIR quantizer",
    }


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
        return TensorSpec(detail["name"], shape, tensor_layout(shape, channels, channels_last),
                          np.dtype(detail["dtype"]).name, float(scale) if quantized else None,
                          int(zero_point) if quantized else None)

    outputs = sorted((spec(d, 1) for d in loaded.get_output_details()),
                     key=lambda o: (o.name != SALIENCY_OUTPUT, o.name != CLASS_OUTPUT))
    return [spec(d, 3) for d in inputs], outputs


def _tool_versions() -> dict[str, str]:
    import onnx2tf
    import tensorflow as tf

    return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}


def export_tflite(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.tflite`` for ``fmt.precision`` (fp32, fp16, int8-dynamic, int8, int8-io) into ``dest``."""
    started = time.perf_counter()
    content, quantization = build(ctx, fmt, tuple(keep_float))
    content = name_io_tensors(content)
    path = Path(dest) / MODEL_FILE
    path.write_bytes(content)
    inputs, outputs = tensor_specs(path)
    ops = op_counts(content)
    first = ops_after_input(content)
    layout = inputs[0].layout
    notes = [f"ops: {ops}",
             f"TRANSPOSE ops: {ops.get('TRANSPOSE', 0)}; ops reading the input: {first}",
             f"input layout {layout}" + (" (onnx2tf folded the layout transposes into the weights)"
                                          if layout in ("NHWC", "NTHWC") and "TRANSPOSE" not in first else ""),
             f"exported in {time.perf_counter() - started:.1f}s (onnx2tf and calibration are cached per model)"]
    if ops.get("DEPTH_TO_SPACE"):
        notes.append(f"pixel shuffles as DEPTH_TO_SPACE: {ops['DEPTH_TO_SPACE']} (CRD shuffles re-expressed in "
                     "TFLite's DCR order by salsdk.convert.depth_to_space)")
    if "TRANSPOSE" in first:
        notes.append("WARNING: a TRANSPOSE reads the input directly (onnx2tf could not fold the layout change)")
    return ExportResult(model_file=MODEL_FILE, inputs=inputs, outputs=outputs, tool_versions=_tool_versions(),
                        quantization=quantization, graph_notes=notes)


# ----------------------------------------------------------------------------------------------- sensitivity
def _sqnr_db(float_values: np.ndarray, quantized: np.ndarray, scale: float, zero_point: int) -> float:
    """Signal-to-quantization-noise ratio (dB) of one layer output: float op vs its int8 twin."""
    dequantized = (quantized.astype(np.float32) - zero_point) * scale
    noise = float(np.mean((float_values.astype(np.float32) - dequantized) ** 2))
    signal = float(np.mean(float_values.astype(np.float32) ** 2))
    return float("inf") if noise == 0.0 else 10.0 * np.log10(max(signal, 1e-30) / noise)


def layer_statistics(ctx: ExportContext, fmt: Format) -> list[dict[str, Any]]:
    """QuantizationDebugger per-layer statistics of the int8 model on real calibration inputs.

    Each row is one quantized op output (``tensor_name``, usable in ``keep_float``) with the debugger's default
    metrics and two derived ones: ``rmse/scale`` (the error in quantization steps; ~0.29 is pure rounding) and
    ``sqnr_db`` (float output power over float-vs-int8 error power).
    """
    import tensorflow as tf

    calibrated = calibrated_model(ctx)
    debug_model = quantize_model(calibrated, fmt.precision == "int8-io", _float_by_design(ctx, fmt),
                                 numeric_verify=True)
    options = tf.lite.experimental.QuantizationDebugOptions(layer_direct_compare_metrics={"sqnr_db": _sqnr_db})
    try:
        with warnings.catch_warnings():  # the debugger uses tf.lite.Interpreter and keeps all tensors, on purpose
            warnings.filterwarnings("ignore", message=".*(deprecated|experimental_preserve_all_tensors).*")
            debugger = tf.lite.experimental.QuantizationDebugger(
                quant_debug_model_content=debug_model, debug_options=options,
                debug_dataset=representative_dataset(ctx, DEBUG_SAMPLES))
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


def rank_tflite_sensitivity(ctx: ExportContext, fmt: Format) -> list[str]:
    """Op output tensors, most quantization-sensitive first, for ``keep_float``.

    Ranked by the quantization noise power each layer adds (``mean_squared_error`` of QuantizationDebugger's
    per-layer verification: the float op and its int8 twin fed the same quantized input), ties broken by the
    lower SQNR. On a KDSalBox student, keeping the top 16 or 32 layers of this ranking in float recovered more
    map CC than rankings by SQNR, by RMSE/scale or at random.
    """
    rows = layer_statistics(ctx, fmt)
    rows.sort(key=lambda r: (-float(r["mean_squared_error"]), r["sqnr_db"]))
    graph = read_model(calibrated_model(ctx)).subgraphs[0]
    known = {t.name.decode() for t in graph.tensors}  # the debugger also reports outputs under signature names
    ranked: list[str] = []
    for row in rows:
        if row["tensor_name"] in known and row["tensor_name"] not in ranked:
            ranked.append(row["tensor_name"])
    return ranked


# ----------------------------------------------------------------------------------------------- manifest
def embed_manifest(path: Path, manifest_json: str) -> None:
    """Add (or replace) the ``salsdk_manifest`` metadata entry: a buffer holding the UTF-8 JSON; atomic write."""
    schema = _schema()
    path = Path(path)
    model = read_model(path.read_bytes())
    data = np.frombuffer(manifest_json.encode("utf-8"), dtype=np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name and m.name.decode() == MANIFEST_KEY), None)
    if entry is None:
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = MANIFEST_KEY.encode(), len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = data
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(write_model(model))
    os.replace(tmp, path)


def read_embedded_manifest(path: Path) -> str | None:
    """The manifest JSON embedded by :func:`embed_manifest`, or None."""
    schema = _schema()
    model = schema.Model.GetRootAs(Path(path).read_bytes(), 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() and entry.Name().decode() == MANIFEST_KEY:
            return model.Buffers(entry.Buffer()).DataAsNumpy().tobytes().decode("utf-8")
    return None
