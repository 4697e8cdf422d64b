"""The one table of artifact formats: what each is, which exporter makes it, which runtime runs it.

Formats whose row sets ``graph_rewrite`` are exported from the model's registered export rewrite when it has one
(TinyHD: :mod:`salsdk.models.tinyhd.framewise`, because TFLite has no grouped 3-D convolution). Each row takes
the graph that runs fastest for it, measured side by side here (TinyHD-S x1/4, ONNX Runtime, 2 threads): fp32
ONNX runs the original 3-D graph faster (157 vs 178 ms), int8 ONNX the framewise one (169 vs 231 ms: MLAS has
fast int8 2-D convolutions, not 3-D ones), and Core ML has native grouped 3-D convolutions, so onnx-fp32/fp16 and
Core ML keep the original graph (``salsdk convert --graph`` overrides the choice).

Adding a format means one exporter function (``module:function`` taking ``(ExportContext, Format, dest_dir,
keep_float=())`` and returning an :class:`~salsdk.convert.context.ExportResult`) and one row here; a quantized
format also names its layer ranking (``(ExportContext, Format) -> [layer names]``) for the fidelity fallback.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal

from salsdk.errors import InputError
from salsdk.registry import resolve

Family = Literal["onnx", "tflite", "coreml", "pte", "openvino"]

#: how each format family embeds the manifest into its model file ("module:function(path, json_text)")
EMBEDDERS = {
    "onnx": "salsdk.convert.onnx_export:embed_manifest",
    "tflite": "salsdk.tflite_model:embed_manifest",
    "coreml": "salsdk.convert.coreml_export:embed_manifest",
    "pte": "salsdk.convert.pte_export:embed_manifest",
    "openvino": "salsdk.convert.openvino_export:embed_manifest",
}


@dataclass(frozen=True)
class Format:
    """One artifact format."""

    key: str  # e.g. "tflite-int8"
    family: Family
    precision: str  # fp32 | fp16 | bf16 | int8 | int8-dynamic | int8-io | w8
    runtime: str  # runtime that validates it (a key of salsdk.runtimes.RUNTIMES)
    exporter: str  # "module:function"
    group: Literal["base", "fp16", "int8", "onnx2tf"]  # selected by default / --fp16 / --int8 / by key only
    description: str
    sensitivity: str | None = None  # "module:function" ranking layers for the fidelity fallback (quantized formats)
    graph_rewrite: bool = False  # export the model's registered rewrite, if it has one (faster on this runtime)
    calibration_methods: tuple[str, ...] = ("minmax",)  # activation-range methods its tool offers, default first
    bias_modes: tuple[str, ...] = ()  # bias-correction modes its exporter offers (salsdk.quantize.bias_correction)

    @property
    def quantized(self) -> bool:
        """Goes through calibration and the fidelity fallback."""
        return self.sensitivity is not None

    @property
    def derives_from_onnx(self) -> bool:
        """Made from the fp32 ONNX export of its graph (the other ONNX formats, OpenVINO and the onnx2tf route)."""
        return self.family in ("onnx", "openvino") or self.group == "onnx2tf"

    def load_exporter(self) -> Callable:
        """Import the exporter function (heavy dependencies load only when a format is used)."""
        return resolve(self.exporter)

    def load_sensitivity(self) -> Callable | None:
        """Import the layer ranking used by the fidelity fallback (quantized formats only)."""
        return resolve(self.sensitivity) if self.sensitivity else None

    def embed_manifest(self, path, manifest_json: str) -> None:
        """Embed the manifest JSON into the model file at ``path``."""
        resolve(EMBEDDERS[self.family])(path, manifest_json)


_ONNX = "salsdk.convert.onnx_export"
_TFLITE = "salsdk.convert.tflite_export"
_ONNX2TF = "salsdk.convert.onnx2tf_export"
_COREML = "salsdk.convert.coreml_export"
_PTE = "salsdk.convert.pte_export"
_OPENVINO = "salsdk.convert.openvino_export"
BIAS_MODES = ("per-tap", "per-channel", "none")  # the modes the LiteRT and PT2E int8 exporters can be asked for

FORMATS: tuple[Format, ...] = (
    Format("onnx-fp32", "onnx", "fp32", "onnxruntime", f"{_ONNX}:export_onnx", "base",
           "ONNX fp32, static shapes, simplified"),
    Format("onnx-fp16", "onnx", "fp16", "onnxruntime", f"{_ONNX}:export_onnx", "fp16",
           "ONNX with fp16 weights and compute (fp32 input/output)"),
    Format("onnx-int8", "onnx", "int8", "onnxruntime", f"{_ONNX}:export_onnx", "int8",
           "ONNX static QDQ int8, per-channel weights, calibrated on real images", f"{_ONNX}:rank_int8",
           graph_rewrite=True, calibration_methods=("minmax", "percentile", "entropy")),
    Format("tflite-fp32", "tflite", "fp32", "litert", f"{_TFLITE}:export_tflite", "base",
           "TFLite fp32 via litert-torch (PyTorch -> TFLite, no TensorFlow), NHWC input", graph_rewrite=True),
    Format("tflite-fp16", "tflite", "fp16", "litert", f"{_TFLITE}:export_tflite", "base",
           "TFLite with fp16 weights (float compute), ai-edge-quantizer", graph_rewrite=True),
    Format("tflite-dr8", "tflite", "int8-dynamic", "litert", f"{_TFLITE}:export_tflite", "int8",
           "TFLite dynamic-range int8 weights, ai-edge-quantizer", graph_rewrite=True),
    Format("tflite-int8", "tflite", "int8", "litert", f"{_TFLITE}:export_tflite", "int8",
           "TFLite full int8 (float input/output), ai-edge-quantizer, calibrated on real images",
           f"{_TFLITE}:rank_int8", graph_rewrite=True, bias_modes=BIAS_MODES),
    Format("tflite-int8-io", "tflite", "int8-io", "litert", f"{_TFLITE}:export_tflite", "int8",
           "TFLite full int8 with int8 input/output tensors, ai-edge-quantizer", f"{_TFLITE}:rank_int8",
           graph_rewrite=True, bias_modes=BIAS_MODES),
    Format("tflite-fp32-onnx2tf", "tflite", "fp32", "litert", f"{_ONNX2TF}:export_onnx2tf", "onnx2tf",
           "TFLite fp32 via ONNX and onnx2tf (optional onnx2tf extra, for comparison)", graph_rewrite=True),
    Format("tflite-int8-onnx2tf", "tflite", "int8", "litert", f"{_ONNX2TF}:export_onnx2tf", "onnx2tf",
           "TFLite full int8 via onnx2tf and TensorFlow's converter (optional onnx2tf extra, for comparison)",
           f"{_ONNX2TF}:rank_int8", graph_rewrite=True),
    Format("coreml-fp16", "coreml", "fp16", "coreml", f"{_COREML}:export_coreml", "base",
           "CoreML ML Program, fp16 compute"),
    Format("coreml-w8", "coreml", "w8", "coreml", f"{_COREML}:export_coreml", "int8",
           "CoreML ML Program with 8-bit linear-quantised weights", f"{_COREML}:rank_w8"),
    Format("pte-fp32", "pte", "fp32", "executorch", f"{_PTE}:export_pte", "base",
           "ExecuTorch .pte, XNNPACK-delegated, from torch.export (no ONNX, no TensorFlow)", graph_rewrite=True),
    Format("pte-int8", "pte", "int8", "executorch", f"{_PTE}:export_pte", "int8",
           "ExecuTorch .pte, PT2E static int8 (XNNPACK quantizer, per-channel weights), calibrated on real images",
           f"{_PTE}:rank_int8", graph_rewrite=True, calibration_methods=("histogram", "minmax"),
           bias_modes=BIAS_MODES),
    Format("openvino-bf16", "openvino", "bf16", "openvino", f"{_OPENVINO}:export_openvino", "base",
           "OpenVINO IR (fp32 weights) compiled for bfloat16 inference on CPUs with AMX / AVX512-BF16",
           graph_rewrite=True),
)

FORMATS_BY_KEY = {f.key: f for f in FORMATS}
FAMILIES: tuple[str, ...] = ("onnx", "tflite", "coreml", "pte", "openvino")


def select_formats(families: str, int8: bool = False, fp16: bool = False) -> list[Format]:
    """Formats for ``--format onnx,tflite,coreml|all`` (or explicit keys) with the ``--int8``/``--fp16`` flags.

    Explicit keys are always selected; a family selects its ``base`` formats plus those of the requested groups
    (the ``onnx2tf`` group, the optional onnx2tf route, only by key). ``onnx-fp32`` is always included: it is the
    reference artifact of every conversion and the source of the other ONNX formats and of the onnx2tf route.
    """
    wanted: list[str] = []
    for item in (s.strip().lower() for s in str(families).split(",") if s.strip()):
        if item == "all":
            wanted += FAMILIES
        elif item in FAMILIES or item in FORMATS_BY_KEY:
            wanted.append(item)
        else:
            raise InputError(f"--format: unknown format {item!r}; use {', '.join(FAMILIES)}, all, or one of "
                             f"{', '.join(FORMATS_BY_KEY)}")
    if not wanted:
        raise InputError("--format is empty: give onnx, tflite, coreml, all or format keys")
    groups = {"base"} | ({"int8"} if int8 else set()) | ({"fp16"} if fp16 else set())
    chosen = [f for f in FORMATS if f.key in wanted or (f.family in wanted and f.group in groups)]
    if "onnx-fp32" not in [f.key for f in chosen]:
        chosen.insert(0, FORMATS_BY_KEY["onnx-fp32"])
    return chosen
