"""ExecuTorch ``.pte`` (XNNPACK-delegated) from the PyTorch model: ``torch.export``, then
``to_edge_transform_and_lower`` with the XNNPACK partitioner. No ONNX and no TensorFlow on this path.

fp32 exports the model as it is; int8 exports its PT2E-quantized graph (:mod:`salsdk.quantize.pte_int8`:
XNNPACK quantizer, calibrated on the real calibration inputs, module groups kept float by the fallback).

Clip models export their 2-D framewise graph (the format asks for the model's export rewrite), since grouped 3-D
convolutions are not delegated. The operator report counts what stays outside the delegate: a bundle with
undelegated operators says so in its graph notes, and the table shows the count.
"""
from __future__ import annotations

import struct
import warnings
from collections import Counter
from pathlib import Path
from typing import Sequence

import torch

from salsdk.artifact_metadata import PTE_TRAILER_MAGIC, read_pte
from salsdk.atomic import temporary_file
from salsdk.errors import ConversionError
from salsdk.manifest import EMBED_KEY, TensorSpec
from salsdk.quantize import pte_int8
from salsdk.quantize.ranking import check_keep_float

from .context import ExportContext, ExportResult
from .formats import Format

MODEL_FILE = "model.pte"
DELEGATE_CALL = "executorch_call_delegate"


def undelegated_ops(edge_program) -> dict[str, int]:
    """Operators of a lowered edge program that run outside any delegate, by name."""
    graph = edge_program.exported_program().graph_module.graph
    counts: Counter[str] = Counter()
    for node in graph.nodes:
        if node.op != "call_function":
            continue
        name = getattr(node.target, "__name__", str(node.target))
        if DELEGATE_CALL not in name and name != "getitem":
            counts[name] += 1
    return dict(sorted(counts.items()))


def _lower(module: torch.nn.Module, example: torch.Tensor, name: str):
    """``torch.export`` + XNNPACK lowering; returns (edge program, ExecuTorch program)."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exported = torch.export.export(module, (example,))
            edge = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()])
            return edge, edge.to_executorch()
    except Exception as exc:
        raise ConversionError(f"ExecuTorch export of {name} failed: {str(exc).splitlines()[0]}") from exc


def export_pte(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.pte`` (XNNPACK): the PyTorch model of ``ctx`` at its static input shape, fp32 or PT2E int8."""
    from importlib.metadata import version

    example = torch.zeros(ctx.input_shape).contiguous()
    quantization: dict = {}
    if fmt.precision == "fp32":
        module = ctx.model.eval()
    elif fmt.precision == "int8":
        check_keep_float(ctx.model, keep_float)
        method = ctx.calibration_method if ctx.calibration_method in pte_int8.METHODS else pte_int8.METHODS[0]
        module = pte_int8.quantize(pte_int8.capture(ctx.model, ctx.input_shape), ctx.data, method, keep_float,
                                   bias=ctx.bias_correction)
        quantization = {
            "tool": "torchao.quantization.pt2e (prepare_pt2e/convert_pt2e) + XNNPACKQuantizer", "format": "PT2E QDQ",
            "weights": "int8 symmetric per-channel", "activations": "int8 asymmetric per-tensor",
            "calibration_method": method, "calibration_inputs": list(ctx.calibration_sources),
            "kept_float": list(keep_float),
            "bias_correction": module.salsdk_bias_correction, "bias_correction_mode": module.salsdk_bias_mode}
    else:
        raise ConversionError(f"the ExecuTorch exporter does not make precision {fmt.precision}")
    edge, program = _lower(module, example, ctx.card.name)
    outside = undelegated_ops(edge)
    (dest / MODEL_FILE).write_bytes(program.buffer)
    with torch.no_grad():
        outputs = ctx.model(example)
    outputs = outputs if isinstance(outputs, tuple) else (outputs,)
    layout = "NCTHW" if len(ctx.input_shape) == 5 else "NCHW"
    specs = [TensorSpec(name, tuple(o.shape), "NC" if o.ndim == 2 else layout if o.ndim == len(ctx.input_shape)
                        else "NCHW", "float32", role="class_probs" if o.ndim == 2 else "saliency")
             for name, o in zip(ctx.output_names, outputs)]
    notes = [f"undelegated ops: {sum(outside.values())} {outside}" if outside else
             "every operator runs in the XNNPACK delegate (0 undelegated)"]
    versions = {"torch": torch.__version__, "executorch": version("executorch")}
    if quantization:
        versions["torchao"] = version("torchao")
    return ExportResult(model_file=MODEL_FILE,
                        inputs=[TensorSpec("input", tuple(ctx.input_shape), layout, "float32")], outputs=specs,
                        tool_versions=versions, quantization={**quantization, "undelegated_ops": outside},
                        graph_notes=notes)


def rank_int8(ctx: ExportContext, fmt: Format) -> list[str]:
    """The pte-int8 fallback's ranking of module groups (see :func:`salsdk.quantize.pte_int8.rank_sensitivity`)."""
    method = ctx.calibration_method if ctx.calibration_method in pte_int8.METHODS else pte_int8.METHODS[0]
    return pte_int8.rank_sensitivity(ctx.model, ctx.input_shape, ctx.data, method, cost=ctx.fallback_costs(),
                                     bias=ctx.bias_correction)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Append (or replace) the manifest trailer: JSON, :data:`PTE_TRAILER_MAGIC`, its length (uint64 LE)."""
    path = Path(path)
    data = path.read_bytes()
    old = read_pte(path, EMBED_KEY)
    if old is not None:
        data = data[:len(data) - 16 - len(old.encode("utf-8"))]
    text = manifest_json.encode("utf-8")
    with temporary_file(path) as tmp:
        tmp.write_bytes(data + text + PTE_TRAILER_MAGIC + struct.pack("<Q", len(text)))
