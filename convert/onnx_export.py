"""ONNX exporter: fp32 (static shapes by default, optional dynamic batch, simplified), fp16, and static int8.

int8 is ONNX Runtime's static QDQ quantization of the fp32 graph (:mod:`salsdk.quantize.onnx_int8`).
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Sequence

import onnx
import torch

from salsdk.atomic import temporary_file
from salsdk.errors import ConversionError
from salsdk.manifest import CLASS_PROBS, EMBED_KEY, INPUT_NAME, SALIENCY, TensorSpec
from salsdk.quantize import onnx_int8

from .context import ExportContext, ExportResult
from .formats import Format

MODEL_FILE = "model.onnx"
LAYOUTS = {4: "NCHW", 5: "NCTHW", 2: "NC"}


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def tensor_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Input/output specs read from an ONNX graph (outputs get their role from salsdk's names, else the rank)."""
    def spec(v: onnx.ValueInfoProto, role: str | None) -> TensorSpec:
        dims = _dims(v)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        return TensorSpec(v.name, tuple(dims), LAYOUTS[len(dims)], dtype, role=role)

    def role(v: onnx.ValueInfoProto) -> str:
        return v.name if v.name in (SALIENCY, CLASS_PROBS) else CLASS_PROBS if len(_dims(v)) == 2 else SALIENCY

    initializers = {i.name for i in model.graph.initializer}
    return ([spec(v, None) for v in model.graph.input if v.name not in initializers],
            [spec(v, role(v)) for v in model.graph.output])


def export_fp32(ctx: ExportContext, path: Path) -> None:
    """Trace the PyTorch model to ONNX at ``ctx.input_shape`` and simplify the graph with onnxslim."""
    example = torch.zeros(ctx.input_shape)
    dynamic = {INPUT_NAME: {0: "batch"}, **{n: {0: "batch"} for n in ctx.output_names}} if ctx.dynamic_batch else None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(ctx.model.eval(), (example,), str(path), input_names=[INPUT_NAME],
                              output_names=list(ctx.output_names), opset_version=ctx.opset,
                              dynamic_axes=dynamic, dynamo=False, do_constant_folding=True)
    except Exception as exc:
        raise ConversionError(f"ONNX export of {ctx.card.name} failed: {exc}") from exc
    import onnxslim

    slim = onnxslim.slim(onnx.load(str(path)))
    onnx.checker.check_model(slim)
    onnx.save(slim, str(path))


def _fp32_source(ctx: ExportContext) -> Path:
    if ctx.onnx_fp32 is None or not Path(ctx.onnx_fp32).is_file():
        raise ConversionError("this ONNX format derives from the fp32 ONNX model, which was not exported")
    return Path(ctx.onnx_fp32)


def export_onnx(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.onnx``: fp32; fp16 converted from the fp32 graph (fp32 I/O); or static QDQ int8."""
    path = dest / MODEL_FILE
    quantization: dict = {}
    if fmt.precision == "fp32":
        export_fp32(ctx, path)
    elif fmt.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        half = convert_float_to_float16(onnx.load(str(_fp32_source(ctx))), keep_io_types=True,
                                        node_block_list=list(keep_float))
        onnx.save(half, str(path))
    elif fmt.precision == "int8":
        source = onnx_int8.preprocessed(_fp32_source(ctx), ctx.workdir)
        onnx_int8.quantize_qdq(source, path, ctx.data, ctx.calibration_method, ctx.workdir, keep_float)
        quantization = {
            "tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "weights": "int8 symmetric per-channel", "activations": "uint8 asymmetric per-tensor",
            "calibration_method": ctx.calibration_method, "calibration_inputs": list(ctx.calibration_sources),
            "kept_float": list(keep_float), "float_by_design": onnx_int8.output_sigmoids(onnx.load(str(path)))}
    else:
        raise ConversionError(f"the ONNX exporter does not make precision {fmt.precision}")
    model = onnx.load(str(path))
    inputs, outputs = tensor_specs(model)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    import onnxruntime

    return ExportResult(
        model_file=path.name, inputs=inputs, outputs=outputs,
        tool_versions={"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                       "opset": str(model.opset_import[0].version)},
        quantization=quantization or ({"kept_float": list(keep_float)} if keep_float else {}),
        graph_notes=[f"ops: {dict(sorted(ops.items()))}"])


def rank_int8(ctx: ExportContext, fmt: Format) -> list[str]:
    """The ONNX int8 fallback's ranking of layer groups (see :func:`salsdk.quantize.onnx_int8.rank_sensitivity`)."""
    source = onnx_int8.preprocessed(_fp32_source(ctx), ctx.workdir)
    return onnx_int8.rank_sensitivity(source, ctx.data, ctx.calibration_method, ctx.workdir,
                                      cost=ctx.fallback_costs())


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the ONNX file's ``metadata_props`` (key :data:`EMBED_KEY`), atomically."""
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != EMBED_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key=EMBED_KEY, value=manifest_json)
    with temporary_file(path) as tmp:
        onnx.save(model, str(tmp))
