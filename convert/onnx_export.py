"""ONNX exporter: fp32 (static shapes by default, optional dynamic batch, simplified) and fp16."""
from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch

from salsdk.errors import ConversionError

from .context import INPUT_NAME, ExportContext, ExportResult, TensorSpec
from .formats import Format


def _layout(ndim: int) -> str:
    return {4: "NCHW", 5: "NCTHW", 2: "NC"}[ndim]


def _dims(value_info: onnx.ValueInfoProto) -> list[int | str]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def tensor_specs(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Float32 input/output specs read from an ONNX graph."""
    def spec(v: onnx.ValueInfoProto) -> TensorSpec:
        dims = _dims(v)
        dtype = onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type).name
        return TensorSpec(v.name, dims, _layout(len(dims)), dtype)

    initializers = {i.name for i in model.graph.initializer}
    return ([spec(v) for v in model.graph.input if v.name not in initializers],
            [spec(v) for v in model.graph.output])


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


def export_onnx(ctx: ExportContext, fmt: Format, dest: Path, keep_float: tuple[str, ...] = ()) -> ExportResult:
    """Write ``model.onnx`` (fp32, or fp16 converted from the fp32 graph keeping fp32 input/output)."""
    path = dest / "model.onnx"
    if fmt.precision == "fp32":
        export_fp32(ctx, path)
    elif fmt.precision == "fp16":
        from onnxruntime.transformers.float16 import convert_float_to_float16

        if ctx.onnx_fp32 is None:
            raise ConversionError("the fp16 ONNX model is derived from the fp32 one, which was not exported")
        half = convert_float_to_float16(onnx.load(str(ctx.onnx_fp32)), keep_io_types=True,
                                        node_block_list=list(keep_float))
        onnx.save(half, str(path))
    else:
        raise ConversionError(f"ONNX exporter does not make precision {fmt.precision}")
    model = onnx.load(str(path))
    inputs, outputs = tensor_specs(model)
    ops: dict[str, int] = {}
    for node in model.graph.node:
        ops[node.op_type] = ops.get(node.op_type, 0) + 1
    return ExportResult(
        model_file=path.name, inputs=inputs, outputs=outputs,
        tool_versions={"torch": torch.__version__, "onnx": onnx.__version__,
                       "opset": str(model.opset_import[0].version)},
        quantization={"kept_float": list(keep_float)} if keep_float else {},
        graph_notes=[f"ops: {dict(sorted(ops.items()))}"],
    )


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest in the ONNX file's ``metadata_props`` (key ``salsdk_manifest``), atomically."""
    import os

    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key != "salsdk_manifest"]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    model.metadata_props.add(key="salsdk_manifest", value=manifest_json)
    tmp = path.with_name(f".{path.name}.tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)


def read_embedded_manifest(path: Path) -> str | None:
    """The manifest embedded in an ONNX file, if any."""
    for prop in onnx.load(str(path), load_external_data=False).metadata_props:
        if prop.key == "salsdk_manifest":
            return prop.value
    return None
