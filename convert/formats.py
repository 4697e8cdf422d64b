"""The one table of artifact formats: what each is, which tool makes it, which runtime checks it.

Formats whose row sets ``graph_rewrite`` are exported from the model's registered export rewrite when it has one
(TinyHD: :mod:`salsdk.models.tinyhd_framewise`, because TFLite has no grouped 3-D convolution); measured on this
machine, ONNX Runtime runs the original 3-D graph faster, and Core ML has native grouped 3-D convolutions, so
those rows keep the original graph (``salsdk convert --graph`` overrides the choice).

Adding a format means one exporter function (``module:function`` taking ``(ExportContext, Format, dest_dir)``
and returning an :class:`~salsdk.convert.context.ExportResult`) and one row here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Literal

Family = Literal["onnx", "tflite", "coreml"]


@dataclass(frozen=True)
class Format:
    """One artifact format."""

    key: str  # e.g. "tflite-int8"
    family: Family
    precision: str  # fp32 | fp16 | int8 | int8-dynamic | int8-io | w8
    suffix: str
    runtime: str  # runtime that validates it ("onnxruntime", "litert", "coreml")
    exporter: str  # "module:function"
    quantized: bool  # goes through calibration and the fidelity fallback
    group: Literal["base", "fp16", "int8"]  # selected by default / --fp16 / --int8
    description: str
    sensitivity: str | None = None  # "module:function" ranking layers for the fidelity fallback
    graph_rewrite: bool = False  # export the model's registered rewrite, if it has one (faster on this runtime)
    calibration_methods: tuple[str, ...] = ("minmax",)  # activation-range methods its tool offers, default first

    def load_exporter(self) -> Callable:
        """Import the exporter function (heavy dependencies load only when a format is used)."""
        module, function = self.exporter.split(":")
        return getattr(importlib.import_module(module), function)

    def load_sensitivity(self) -> Callable | None:
        """Import the layer-sensitivity ranking used by the fidelity fallback (quantized formats only)."""
        if self.sensitivity is None:
            return None
        module, function = self.sensitivity.split(":")
        return getattr(importlib.import_module(module), function)

    def embed_manifest(self, path, manifest_json: str) -> None:
        """Embed the manifest into the model file with the exporter module's ``embed_manifest``."""
        module = importlib.import_module(self.exporter.split(":")[0])
        embed = getattr(module, "embed_manifest", None) or getattr(
            importlib.import_module("salsdk.convert.onnx_export"), "embed_manifest")
        embed(path, manifest_json)


FORMATS: tuple[Format, ...] = (
    Format("onnx-fp32", "onnx", "fp32", ".onnx", "onnxruntime", "salsdk.convert.onnx_export:export_onnx", False,
           "base", "ONNX fp32, static shapes, simplified"),
    Format("onnx-fp16", "onnx", "fp16", ".onnx", "onnxruntime", "salsdk.convert.onnx_export:export_onnx", False,
           "fp16", "ONNX with fp16 weights and compute (fp32 input/output)"),
    Format("onnx-int8", "onnx", "int8", ".onnx", "onnxruntime", "salsdk.quantize.onnx_int8:export_onnx_int8", True,
           "int8", "ONNX static QDQ int8, per-channel weights, calibrated on real images",
           "salsdk.quantize.onnx_int8:rank_onnx_sensitivity", calibration_methods=("minmax", "percentile", "entropy")),
    Format("tflite-fp32", "tflite", "fp32", ".tflite", "litert", "salsdk.convert.tflite_export:export_tflite", False,
           "base", "TFLite fp32 via onnx2tf, NHWC input", graph_rewrite=True),
    Format("tflite-fp16", "tflite", "fp16", ".tflite", "litert", "salsdk.convert.tflite_export:export_tflite", False,
           "base", "TFLite with fp16 weights (float compute)", graph_rewrite=True),
    Format("tflite-dr8", "tflite", "int8-dynamic", ".tflite", "litert",
           "salsdk.convert.tflite_export:export_tflite", False, "int8", "TFLite dynamic-range int8 weights", graph_rewrite=True),
    Format("tflite-int8", "tflite", "int8", ".tflite", "litert", "salsdk.convert.tflite_export:export_tflite", True,
           "int8", "TFLite full int8 (float input/output), calibrated on real images",
           "salsdk.convert.tflite_export:rank_tflite_sensitivity", graph_rewrite=True),
    Format("tflite-int8-io", "tflite", "int8-io", ".tflite", "litert",
           "salsdk.convert.tflite_export:export_tflite", True, "int8",
           "TFLite full int8 with int8 input/output tensors", "salsdk.convert.tflite_export:rank_tflite_sensitivity", graph_rewrite=True),
    Format("coreml-fp16", "coreml", "fp16", ".mlpackage", "coreml", "salsdk.convert.coreml_export:export_coreml",
           False, "base", "CoreML ML Program, fp16 compute"),
    Format("coreml-w8", "coreml", "w8", ".mlpackage", "coreml", "salsdk.convert.coreml_export:export_coreml", True,
           "int8", "CoreML ML Program with 8-bit linear-quantised weights",
           "salsdk.convert.coreml_export:rank_coreml_sensitivity"),
)

FORMATS_BY_KEY = {f.key: f for f in FORMATS}
FAMILIES: tuple[str, ...] = ("onnx", "tflite", "coreml")


def select_formats(families: str, int8: bool, fp16: bool) -> list[Format]:
    """Formats for ``--format onnx,tflite,coreml|all`` (or explicit keys) with the ``--int8``/``--fp16`` flags."""
    wanted: list[str] = []
    for item in (s.strip().lower() for s in families.split(",") if s.strip()):
        if item == "all":
            wanted += FAMILIES
        elif item in FAMILIES or item in FORMATS_BY_KEY:
            wanted.append(item)
        else:
            raise ValueError(f"unknown format {item!r}; use {', '.join(FAMILIES)}, all, or one of "
                             f"{', '.join(FORMATS_BY_KEY)}")
    groups = {"base"} | ({"int8"} if int8 else set()) | ({"fp16"} if fp16 else set())
    chosen = [f for f in FORMATS if f.key in wanted or (f.family in wanted and f.group in groups)]
    if chosen and "onnx-fp32" not in [f.key for f in chosen]:
        chosen.insert(0, FORMATS_BY_KEY["onnx-fp32"])  # every other format is derived from it
    return chosen
