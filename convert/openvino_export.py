"""OpenVINO IR from the fp32 ONNX export: ``openvino.convert_model`` then ``openvino.save_model``, in a
``model.openvino`` folder holding ``model.xml`` (the graph) and ``model.bin`` (fp32 weights).

The format's precision is an *inference* precision: OpenVINO's CPU plugin compiles the fp32 graph to run in
bfloat16 (``openvino-bf16``) on CPUs with bf16 arithmetic (AMX or AVX512-BF16; elsewhere it falls back to fp32).
The IR records it under ``rt_info/runtime_options/INFERENCE_PRECISION_HINT``, OpenVINO's own place for the
properties a model wants, and :class:`~salsdk.runtimes.openvino_runtime.OpenVINORuntime` compiles with it; the
fidelity gate measures the artifact as that runtime runs it. Clip models use their 2-D framewise graph (the format
asks for the model's export rewrite): OpenVINO runs TinyHD-S x1/4's framewise graph in bf16 faster than its 3-D one
(42 against 46 ms per clip, 2 threads, measured side by side).

The manifest is embedded as the network-level ``rt_info`` entry :data:`~salsdk.manifest.EMBED_KEY` of
``model.xml`` with the SHA-256 of ``model.bin`` beside it, so that neither file can be swapped alone (read back and
checked by :func:`salsdk.artifact_metadata.read_openvino` without OpenVINO).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Sequence

import onnx

from salsdk.artifact_metadata import OPENVINO_BIN, OPENVINO_WEIGHTS_KEY, OPENVINO_XML
from salsdk.errors import ConversionError
from salsdk.hashing import file_sha256
from salsdk.manifest import EMBED_KEY
from salsdk.runtimes.openvino_runtime import PRECISION_HINT

from .context import ExportContext, ExportResult
from .formats import Format
from .onnx_export import tensor_specs

MODEL_FOLDER = "model.openvino"
HINTS = {"bf16": "bf16"}  # format precision -> the INFERENCE_PRECISION_HINT it asks OpenVINO for


def export_openvino(ctx: ExportContext, fmt: Format, dest: Path, keep_float: Sequence[str] = ()) -> ExportResult:
    """Write ``model.openvino/`` (IR with fp32 weights) from ``ctx``'s fp32 ONNX file, marked for ``fmt``'s
    inference precision."""
    from importlib.metadata import version

    import openvino as ov

    if keep_float:
        raise ConversionError(f"{fmt.key} has no per-layer precision choice (keep_float={list(keep_float)})")
    if fmt.precision not in HINTS:
        raise ConversionError(f"the OpenVINO exporter does not make precision {fmt.precision}")
    if ctx.onnx_fp32 is None or not Path(ctx.onnx_fp32).is_file():
        raise ConversionError("OpenVINO IR is converted from the fp32 ONNX model, which was not exported")
    try:
        model = ov.convert_model(str(ctx.onnx_fp32))
    except Exception as exc:
        raise ConversionError(f"OpenVINO cannot convert {ctx.card.name}'s ONNX graph: "
                              f"{str(exc).strip().splitlines()[0]}") from exc
    model.set_rt_info(HINTS[fmt.precision], list(PRECISION_HINT))
    folder = dest / MODEL_FOLDER
    folder.mkdir()
    ov.save_model(model, str(folder / OPENVINO_XML), compress_to_fp16=False)
    inputs, outputs = tensor_specs(onnx.load(str(ctx.onnx_fp32)))
    return ExportResult(model_file=MODEL_FOLDER, inputs=inputs, outputs=outputs,
                        tool_versions={"openvino": version("openvino")},
                        graph_notes=[f"OpenVINO IR of the fp32 ONNX graph; compiled with inference precision "
                                     f"{HINTS[fmt.precision]} (fp32 where the CPU has no {fmt.precision})"])


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Store the manifest as ``rt_info`` entry :data:`EMBED_KEY` of the IR in folder ``path``, beside the SHA-256
    of its ``model.bin`` (:data:`OPENVINO_WEIGHTS_KEY`, which ties the weights to the manifest): the IR is saved
    again into a temporary folder beside it and its two files are renamed into place."""
    import openvino as ov

    folder = Path(path)
    weights = file_sha256(folder / OPENVINO_BIN)
    model = ov.Core().read_model(str(folder / OPENVINO_XML), str(folder / OPENVINO_BIN))
    model.set_rt_info(weights, OPENVINO_WEIGHTS_KEY)
    model.set_rt_info(manifest_json, EMBED_KEY)
    with tempfile.TemporaryDirectory(prefix=".ir-", dir=folder.parent) as staged:
        ov.save_model(model, str(Path(staged) / OPENVINO_XML), compress_to_fp16=False)
        if file_sha256(Path(staged) / OPENVINO_BIN) != weights:
            raise ConversionError(f"OpenVINO saved different weights for {folder} the second time")
        for name in (OPENVINO_BIN, OPENVINO_XML):
            os.replace(Path(staged) / name, folder / name)
