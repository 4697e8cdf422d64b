"""The onnx2tf TFLite route (optional, ``onnx2tf`` extra; the ``-onnx2tf`` format keys): fp32, fp16, dynamic-range int8, full int8 (float or int8 I/O).

One onnx2tf run per model turns the fp32 ONNX graph into a channels-last TensorFlow SavedModel (NCHW -> NHWC,
NCTHW -> NTHWC; the layout transposes are folded into the weights, so the graph starts with the first real op)
together with fp32 and fp16-weight ``.tflite`` files. Before it runs, pixel shuffles are switched to TFLite's
DCR channel order where the weights absorb the permutation (:mod:`salsdk.convert.depth_to_space`). The integer
variants are made from that SavedModel by TensorFlow's converter (:mod:`salsdk.quantize.onnx2tf_int8`).

All conversions of one :class:`ExportContext` share a cache folder in ``ctx.workdir`` (the onnx2tf output and
the calibrated model), so the TFLite formats and the fallback steps cost one onnx2tf run and one calibration.
onnx2tf runs in that folder (it resolves relative paths against its working directory and looks there for its
calibration sample, which is written from the real calibration images so that it never reaches the network).
Needs the ``onnx2tf`` extra (onnx2tf and TensorFlow); the default TFLite formats come from
:mod:`salsdk.convert.tflite_export` (litert-torch) and need neither. Kept to compare the two routes side by side.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from salsdk.errors import ConversionError
from salsdk.quantize import onnx2tf_int8
from salsdk.quantize.calibration import ONNX2TF_SAMPLE

from .context import ExportContext, ExportResult
from .formats import Format
from .tflite_export import finish

PRECISIONS = ("fp32", "fp16", "int8-dynamic", "int8", "int8-io")


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
    if not (folder / ONNX2TF_SAMPLE).is_file():
        ctx.data.write_onnx2tf_sample(ctx.contract, folder / ONNX2TF_SAMPLE)
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


def build(ctx: ExportContext, fmt: Format, keep_float: Sequence[str]) -> tuple[bytes, dict[str, Any]]:
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
        return onnx2tf_int8.dynamic_range(models.saved_model)
    return onnx2tf_int8.full_int8(models.saved_model, ctx.data, cache_dir(ctx), fmt.precision == "int8-io",
                                 ctx.calibration_method, keep_float)


def _tool_versions() -> dict[str, str]:
    import onnx2tf
    import tensorflow as tf

    return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}


def export_onnx2tf(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.tflite`` for ``fmt.precision`` (fp32, fp16, int8-dynamic, int8, int8-io) through onnx2tf."""
    started = time.perf_counter()
    content, quantization = build(ctx, fmt, tuple(keep_float))
    return finish(content, dest, _tool_versions(), quantization, started,
                  "onnx2tf (ONNX -> TensorFlow SavedModel -> TFLite; layout transposes folded into the weights)")


def rank_int8(ctx: ExportContext, fmt: Format) -> list[str]:
    """The TFLite int8 fallback's ranking of op outputs (:func:`salsdk.quantize.onnx2tf_int8.rank_sensitivity`)."""
    return onnx2tf_int8.rank_sensitivity(float_models(ctx).saved_model, ctx.data, cache_dir(ctx),
                                        fmt.precision == "int8-io")
