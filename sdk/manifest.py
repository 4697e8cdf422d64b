"""The one manifest type of artifact bundles, shared by every client (Python, Kotlin, the browser, batch jobs).

A bundle is a folder ``<model>-<format>/`` (:func:`bundle_name`) holding one model file (or a model folder: a Core
ML ``.mlpackage``, an OpenVINO IR ``.openvino`` with its ``model.xml`` and ``model.bin``) and
``manifest.json``. The manifest says what the model is (card, licence, weights provenance), how to feed it
(input tensor, layout, dtype, pre-processing, temporal windowing), how to read it (outputs, post-processing),
how it was made (format, quantization, tool versions, graph) and how faithful it is (the fidelity gate it passed
and what was measured). This module is the only code that reads or writes a manifest: everything else goes
through :class:`Manifest`'s typed accessors.

Trust: a bundle is input, so :func:`read_manifest` refuses with a :class:`~salsdk.errors.BundleError` naming the
bundle, the field and what to do, before anything is allocated or executed:

* ``manifest.json`` must parse and follow the schema (:data:`SCHEMA`, also in
  ``sdk/schemas/salsdk-manifest-2.schema.json``): every declared size is bounded (dimensions, frames, file
  bytes, input elements), every enum known;
* every file it names is a plain name inside the bundle (no path separator, no ``..``, no absolute path) and not
  a symlink (nor is anything inside a model folder); ``files`` is mandatory, covers the model file, and each
  file's size and SHA-256 must equal the pins;
* the manifest embedded in the (hash-pinned) model file under :data:`EMBED_KEY` must equal ``manifest.json``
  without its ``files`` entry, so editing either one is detected;
* a manifest of a newer schema asks for the salsdk version that wrote it; ``salsdk-manifest/1`` bundles still
  load (checked against their own embedded copy, then upgraded in memory by :func:`upgrade_v1`).
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from types import MappingProxyType
from typing import Any, Mapping

from .cards import Preprocessing, Temporal
from .contract import Contract
from .errors import BundleError
from .hashing import file_sha256
from .schema_check import SchemaViolation, validate

SCHEMA_VERSION = 2
SCHEMA_NAME = f"salsdk-manifest/{SCHEMA_VERSION}"
MANIFEST_NAME = "manifest.json"
PENDING_MANIFEST = ".manifest.json.pending"  # renamed to manifest.json as the very last step of publishing
EMBED_KEY = "salsdk_manifest"  # key of the manifest copy inside every model file
SCHEMA_FILE = Path(__file__).with_name("schemas") / f"salsdk-manifest-{SCHEMA_VERSION}.schema.json"

MAX_MANIFEST_BYTES = 16 * 2**20
MAX_DIM = 16384  # largest tensor dimension a manifest may declare
MAX_FRAMES = 64  # largest temporal window
MAX_INPUT_ELEMENTS = 2**26  # 256 MB of float32 per input
MAX_FILE_BYTES = 4 * 2**30
MAX_CLASSES = 1000
RUNTIME_OF_FAMILY = {"onnx": "onnxruntime", "tflite": "litert", "coreml": "coreml", "pte": "executorch",
                     "openvino": "openvino"}
SUFFIX_OF_FAMILY = {"onnx": ".onnx", "tflite": ".tflite", "coreml": ".mlpackage", "pte": ".pte",
                    "openvino": ".openvino"}
LAYOUTS = ("NCHW", "NHWC", "NCTHW", "NTHWC")
FILE_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"  # a plain name inside the bundle folder
INPUT_NAME = "input"  # tensor names every artifact uses
SALIENCY = "saliency"
SALIENCY_LOGITS = "saliency_logits"  # a saliency output stored before its final sigmoid (activation "sigmoid")
CLASS_PROBS = "class_probs"
ACTIVATIONS = ("sigmoid",)  # what a client applies to an output after dequantizing it
REDO = "convert the model again with `salsdk convert` (a bundle must not be edited by hand)"


# ---------------------------------------------------------------------------------------------------- naming
def bundle_name(model: str, format_key: str) -> str:
    """Folder name of a bundle, e.g. ``TinyHD-S-x0.25-tflite-int8``."""
    return f"{model}-{format_key}"


def rejection_report_name(model: str, format_key: str) -> str:
    """File name of the report a conversion writes instead of a bundle when the gate rejects an artifact."""
    return f"{bundle_name(model, format_key)}.rejected.json"


def is_bundle(path: str | Path) -> bool:
    """Whether ``path`` is a folder holding a ``manifest.json`` (not whether it verifies)."""
    return (Path(path) / MANIFEST_NAME).is_file()


# ---------------------------------------------------------------------------------------------------- schema
def _array(items: dict[str, Any], n: int | None = None, **limits: Any) -> dict[str, Any]:
    exact = {"minItems": n, "maxItems": n} if n is not None else {}
    return {"type": "array", "items": items, **exact, **limits}


_NUMBER = {"type": "number"}
_STRING = {"type": "string", "maxLength": 100_000}
_NAME = {"type": "string", "minLength": 1, "maxLength": 256}
_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
_DIM = {"type": ["integer", "string"], "minimum": 1, "maximum": MAX_DIM, "maxLength": 64}

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": f"https://salsdk.org/schemas/salsdk-manifest-{SCHEMA_VERSION}.schema.json",
    "title": SCHEMA_NAME,
    "description": "Manifest of a salsdk artifact bundle (sdk/manifest.py is its reference implementation).",
    "type": "object",
    "required": ["schema", "salsdk_version", "created", "status", "licence", "model", "weights", "format",
                 "model_file", "input", "preprocessing", "temporal", "outputs", "postprocessing", "fidelity",
                 "files"],
    "additionalProperties": False,
    "$defs": {
        "tensor": {
            "type": "object", "required": ["name", "shape", "layout", "dtype", "scale", "zero_point"],
            "additionalProperties": False,
            "properties": {
                "name": _NAME, "shape": _array({"$ref": "#/$defs/dim"}, minItems=2, maxItems=5),
                "layout": {"enum": [*LAYOUTS, "NC"]}, "dtype": {"enum": ["float32", "float16", "int8", "uint8"]},
                "scale": {"type": ["number", "null"], "exclusiveMinimum": 0},
                "zero_point": {"type": ["integer", "null"], "minimum": -128, "maximum": 255},
                "role": {"enum": ["saliency", "class_probs"]},
                "activation": {"enum": list(ACTIVATIONS)},
            },
        },
        "dim": _DIM,
        "rgb": _array(_NUMBER, 3),
    },
    "properties": {
        "schema": {"const": SCHEMA_NAME},
        "salsdk_version": {"type": "string", "pattern": r"^\d+\.\d+\.\d+"},
        "created": {"type": "string", "maxLength": 64},
        "status": {"type": "string", "pattern": "^accepted", "maxLength": 200},
        "licence": _STRING,
        "model": {
            "type": "object", "required": ["name", "family", "architecture", "task", "class_names", "card"],
            "additionalProperties": False,
            "properties": {
                "name": {**_NAME, "maxLength": 64}, "family": _NAME, "architecture": _NAME,
                "task": {"enum": ["image-saliency", "video-saliency", "design-importance"]},
                "class_names": _array({**_NAME, "maxLength": 64}, maxItems=MAX_CLASSES),
                "card": {"type": "object"},
            },
        },
        "weights": {
            "type": "object", "required": ["trained", "sha256", "official", "seed"],
            "properties": {"trained": {"type": "boolean"}, "sha256": {"type": ["string", "null"],
                                                                          "pattern": "^[0-9a-f]{64}$"},
                           "official": {"type": "boolean"}, "seed": {"type": ["integer", "null"]},
                           "path": {"type": ["string", "null"], "maxLength": 4096},
                           "model": _NAME, "label": _STRING},
        },
        "format": {
            "type": "object", "required": ["key", "family", "precision", "runtime"], "additionalProperties": False,
            "properties": {"key": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"},
                           "family": {"enum": list(RUNTIME_OF_FAMILY)}, "precision": {**_NAME, "maxLength": 32},
                           "runtime": {"enum": list(RUNTIME_OF_FAMILY.values())}, "description": _STRING},
        },
        "model_file": {"type": "string", "pattern": FILE_NAME},
        "input": {"$ref": "#/$defs/tensor"},
        "preprocessing": {
            "type": "object", "additionalProperties": False,
            "required": ["resize", "size", "channel_order", "scale", "mean", "std", "interpolation", "pad_value"],
            "properties": {
                "resize": {"enum": ["stretch", "letterbox"]},
                "size": _array({"type": "integer", "minimum": 1, "maximum": MAX_DIM}, 2),
                "channel_order": {"enum": ["RGB", "BGR"]},
                "scale": {"type": "number", "exclusiveMinimum": 0},
                "mean": {"$ref": "#/$defs/rgb"},
                "std": _array({"type": "number", "exclusiveMinimum": 0}, 3),
                "interpolation": {"enum": ["bilinear"]},
                "pad_value": _array({"type": "number", "minimum": 0, "maximum": 255}, 3),
                "resize_rule": _STRING,
            },
        },
        "temporal": {
            "type": ["object", "null"], "required": ["mode", "frames"], "additionalProperties": False,
            "properties": {"mode": {"enum": ["miso", "mimo"]},
                           "frames": {"type": "integer", "minimum": 1, "maximum": MAX_FRAMES}},
        },
        "outputs": _array({"$ref": "#/$defs/tensor"}, minItems=1, maxItems=4),
        "postprocessing": {
            "type": "object", "required": ["restore"],
            "properties": {"restore": {"enum": ["resize", "letterbox-uncrop"]}, "output_range": _STRING,
                           "saliency": _STRING},
        },
        "quantization": {"type": "object"},
        "fallback_attempts": {"type": "array", "maxItems": 10_000},
        "fidelity": {
            "type": "object", "required": ["min_cc", "cc_min", "cc_mean", "passed", "method", "n_inputs"],
            "properties": {"min_cc": {"type": "number", "minimum": -1, "maximum": 1},
                           "cc_min": {"type": "number", "minimum": -1, "maximum": 1},
                           "cc_mean": {"type": "number", "minimum": -1, "maximum": 1},
                           "passed": {"const": True}, "method": {"enum": ["executed", "simulated"]},
                           "n_inputs": {"type": "integer", "minimum": 1},
                           "top_class_agreement": {"type": ["number", "null"]},
                           "inputs": _array({"type": "string"})},
        },
        "tool_versions": {"type": "object", "additionalProperties": {"type": "string", "maxLength": 256}},
        "graph": {"type": "object"},
        "graph_notes": _array(_STRING),
        "speed": {  # an int8 artifact timed against its fp32 sibling at conversion (salsdk.convert.speed_check)
            "type": "object", "required": ["vs"], "additionalProperties": False,
            "properties": {
                "vs": {"type": "string", "pattern": "^[a-z0-9][a-z0-9-]{0,31}$"},
                "ms": {"type": "number", "exclusiveMinimum": 0}, "fp32_ms": {"type": "number", "exclusiveMinimum": 0},
                "speedup": {"type": "number", "exclusiveMinimum": 0}, "runs": {"type": "integer", "minimum": 1},
                "slower_than_fp32": {"type": "boolean"}, "threads": {"type": "integer", "minimum": 1},
                "measured_on": {"type": "string", "maxLength": 256}, "note": {"type": "string", "maxLength": 1000},
                "input": _array({"type": "integer", "minimum": 1}, maxItems=5),
                "predicted": {
                    "type": "object", "additionalProperties": False,
                    "properties": {"speedup": {"type": "number", "exclusiveMinimum": 0},
                                   "float_mac_share": {"type": "number", "minimum": 0, "maximum": 1},
                                   "gemm_int8_over_fp32": {"type": "number", "exclusiveMinimum": 0}},
                },
            },
        },
        "files": {
            "type": "object", "minProperties": 1, "maxProperties": 64,
            "propertyNames": {"type": "string", "pattern": FILE_NAME},
            "additionalProperties": {
                "type": "object", "required": ["sha256", "bytes"], "additionalProperties": False,
                "properties": {"sha256": _SHA256, "bytes": {"type": "integer", "minimum": 1,
                                                            "maximum": MAX_FILE_BYTES}},
            },
        },
    },
}


def schema_json() -> str:
    """The JSON Schema of the current manifest version, as written to :data:`SCHEMA_FILE`."""
    return json.dumps(SCHEMA, indent=2, sort_keys=True) + "\n"


def write_schema(path: Path = SCHEMA_FILE) -> Path:
    """Write :func:`schema_json` to ``path`` (``python -m salsdk.manifest`` regenerates the repository copy)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_json(), encoding="utf-8")
    return path


# ---------------------------------------------------------------------------------------------- typed parts
@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor of an artifact: name, shape, layout, dtype, int8 parameters, role, activation.

    ``activation`` (outputs only, usually absent) is a function every client applies to the output after
    dequantizing it: ``"sigmoid"`` for an int8 map stored as logits (``tflite-int8-io``), whose 256 levels then
    span the logits' calibrated range rather than the sigmoid's [0, 1].
    """

    name: str
    shape: tuple[int | str, ...]
    layout: str  # NCHW, NHWC, NCTHW, NTHWC, NC (class probabilities)
    dtype: str  # float32, float16, int8, uint8
    scale: float | None = None
    zero_point: int | None = None
    role: str | None = None  # outputs: "saliency" or "class_probs"
    activation: str | None = None  # outputs: applied after dequantization (ACTIVATIONS)

    @property
    def quantized(self) -> bool:
        """An integer tensor with its quantization parameters."""
        return self.dtype in ("int8", "uint8")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["shape"] = list(self.shape)
        return {k: v for k, v in data.items() if v is not None or k not in ("role", "activation")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "TensorSpec":
        return cls(data["name"], tuple(data["shape"]), data["layout"], data["dtype"], data.get("scale"),
                   data.get("zero_point"), data.get("role"), data.get("activation"))


@dataclass(frozen=True)
class FileEntry:
    """A pinned file of a bundle."""

    sha256: str
    bytes: int


@dataclass(frozen=True)
class WeightsRecord:
    """Which weights the artifact was made from."""

    trained: bool
    sha256: str | None
    official: bool
    seed: int | None
    file_name: str | None
    label: str


@dataclass(frozen=True)
class FormatRecord:
    """The artifact format: key (``tflite-int8``), family, precision, the runtime that executes it."""

    key: str
    family: str
    precision: str
    runtime: str
    description: str


@dataclass(frozen=True)
class FidelityRecord:
    """The fidelity gate the artifact passed at conversion and what was measured on held-out real inputs."""

    min_cc: float
    cc_min: float
    cc_mean: float
    method: str  # "executed", or "simulated" (CoreML off macOS)
    n_inputs: int
    top_class_agreement: float | None
    inputs: tuple[str, ...] = ()  # names of the held-out inputs the gate measured


# ------------------------------------------------------------------------------------------------- manifest
class Manifest:
    """A validated manifest (schema :data:`SCHEMA_NAME`), read-only, with typed accessors.

    Create one with :func:`read_manifest` (from a bundle, verified) or :func:`build_manifest` (at conversion).
    """

    def __init__(self, data: Mapping[str, Any], source: str = "manifest", stored_schema: str = SCHEMA_NAME) -> None:
        self._data = json.loads(json.dumps(data))  # a private deep copy: accessors cannot be used to mutate it
        self.source = source
        self.stored_schema = stored_schema  # the schema the file was written in (older ones are upgraded on read)
        check_document(self._data, source)

    # -- identity
    @property
    def model_name(self) -> str:
        return self._data["model"]["name"]

    @property
    def family(self) -> str:
        return self._data["model"]["family"]

    @property
    def architecture(self) -> str:
        return self._data["model"]["architecture"]

    @property
    def task(self) -> str:
        return self._data["model"]["task"]

    @property
    def class_names(self) -> tuple[str, ...]:
        return tuple(self._data["model"]["class_names"])

    @property
    def card(self) -> Mapping[str, Any]:
        """The model card as recorded at conversion (read-only)."""
        return MappingProxyType(self._data["model"]["card"])

    @property
    def licence(self) -> str:
        return self._data["licence"]

    @property
    def status(self) -> str:
        return self._data["status"]

    @property
    def salsdk_version(self) -> str:
        return self._data["salsdk_version"]

    @property
    def weights(self) -> WeightsRecord:
        w = self._data["weights"]
        return WeightsRecord(w["trained"], w["sha256"], w["official"], w["seed"], w.get("path"),
                             w.get("label", ""))

    @property
    def format(self) -> FormatRecord:
        f = self._data["format"]
        return FormatRecord(f["key"], f["family"], f["precision"], f["runtime"], f.get("description", ""))

    @property
    def bundle_name(self) -> str:
        return bundle_name(self.model_name, self.format.key)

    # -- feeding the model
    @property
    def model_file(self) -> str:
        return self._data["model_file"]

    @property
    def input(self) -> TensorSpec:
        return TensorSpec.from_dict(self._data["input"])

    @property
    def preprocessing(self) -> Preprocessing:
        p = self._data["preprocessing"]
        return Preprocessing(resize=p["resize"], size=tuple(p["size"]), channel_order=p["channel_order"],
                             scale=float(p["scale"]), mean=tuple(p["mean"]), std=tuple(p["std"]),
                             interpolation=p["interpolation"], pad_value=tuple(p["pad_value"]))

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) of the static model input."""
        return tuple(self._data["preprocessing"]["size"])

    @property
    def temporal(self) -> Temporal | None:
        t = self._data["temporal"]
        return None if t is None else Temporal(t["mode"], t["frames"])

    @property
    def is_clip(self) -> bool:
        """A clip model (input (B, 3, T, H, W))."""
        return self._data["temporal"] is not None

    @property
    def batch(self) -> int:
        """The artifact's static batch (1 when the batch dimension is dynamic)."""
        first = self._data["input"]["shape"][0]
        return first if isinstance(first, int) else 1

    def canonical_input_shape(self, batch: int | None = None) -> tuple[int, ...]:
        """The input in canonical layout (NCHW / NCTHW): what :class:`~salsdk.runtimes.base.Runtime` s take."""
        return self.contract().input_shape(self.input_size, self.batch if batch is None else batch)

    # -- reading the outputs
    @property
    def outputs(self) -> tuple[TensorSpec, ...]:
        return tuple(TensorSpec.from_dict(o) for o in self._data["outputs"])

    @property
    def saliency_output(self) -> TensorSpec:
        return next(o for o in self.outputs if o.role == "saliency")

    @property
    def restore(self) -> str:
        """How maps return onto the image: ``resize`` or ``letterbox-uncrop`` (:mod:`salsdk.geometry`)."""
        return self._data["postprocessing"]["restore"]

    @property
    def maps_per_run(self) -> int:
        """Saliency maps one run of the artifact gives (batch x 16 for TinyHD-M)."""
        return self.batch * self.contract().maps_per_clip

    def contract(self) -> Contract:
        """The pre/post-processing contract a runtime follows for this bundle."""
        return Contract(self.model_name, self.task, self.preprocessing, self.temporal, self.class_names,
                        self.weights.trained)

    # -- how it was made, how faithful it is
    @property
    def fidelity(self) -> FidelityRecord:
        f = self._data["fidelity"]
        return FidelityRecord(float(f["min_cc"]), float(f["cc_min"]), float(f["cc_mean"]), f["method"],
                              int(f["n_inputs"]), f.get("top_class_agreement"), tuple(f.get("inputs") or ()))

    @property
    def gate(self) -> float:
        """The minimum CC against fp32 PyTorch the artifact was accepted at."""
        return self.fidelity.min_cc

    @property
    def quantization(self) -> Mapping[str, Any]:
        """The quantization record (tool, method, layers kept float, ...), informational and read-only."""
        return MappingProxyType(self._data.get("quantization") or {})

    @property
    def calibration_inputs(self) -> tuple[str, ...]:
        """Names of the real inputs used for calibration (held-out checks must avoid them)."""
        return tuple((self._data.get("quantization") or {}).get("calibration_inputs") or ())

    @property
    def graph_rewrite(self) -> str | None:
        """Name of the export rewrite the artifact was made from (e.g. ``tinyhd-framewise-2d``), if any."""
        return (self._data.get("graph") or {}).get("rewrite")

    @property
    def tool_versions(self) -> Mapping[str, str]:
        return MappingProxyType(self._data.get("tool_versions") or {})

    @property
    def speed(self) -> Mapping[str, Any]:
        """Speed measured at conversion (int8 artifacts against their fp32 sibling), if recorded."""
        return MappingProxyType(self._data.get("speed") or {})

    @property
    def files(self) -> dict[str, FileEntry]:
        return {name: FileEntry(e["sha256"], e["bytes"]) for name, e in self._data["files"].items()}

    @property
    def model_bytes(self) -> int:
        """Pinned size of the model file (bytes of all files for a model folder)."""
        return self.files[self.model_file].bytes

    # -- serialisation
    def to_dict(self) -> dict[str, Any]:
        """A deep copy of the JSON document."""
        return json.loads(json.dumps(self._data))

    def to_json(self) -> str:
        """``manifest.json`` as written to bundles."""
        return json.dumps(self._data, indent=2, sort_keys=True) + "\n"

    def embedded_json(self) -> str:
        """What the model file embeds: the manifest without ``files`` (which pins the model file itself)."""
        return json.dumps(embedded_part(self._data), sort_keys=True)


def embedded_part(document: Mapping[str, Any]) -> dict[str, Any]:
    """A manifest document without its ``files`` entry (the part the model file embeds)."""
    return {k: v for k, v in document.items() if k != "files"}


def check_document(document: Any, source: str) -> None:
    """Validate a v2 manifest document: the schema, then the cross-field rules; :class:`BundleError` if broken."""
    if not isinstance(document, dict):
        raise BundleError(f"{source}: a manifest is a JSON object, this is a {type(document).__name__}; {REDO}")
    try:
        validate(document, SCHEMA)
    except SchemaViolation as exc:
        raise BundleError(f"{source}: field {exc.path or '(top level)'}: {exc.message}; {REDO}") from None
    problem = _cross_field_problem(document)
    if problem:
        field, message = problem
        raise BundleError(f"{source}: field {field}: {message}; {REDO}")


def _cross_field_problem(d: dict[str, Any]) -> tuple[str, str] | None:
    """The first inconsistency between fields that a schema cannot express, as (field, message)."""
    family, runtime = d["format"]["family"], d["format"]["runtime"]
    if RUNTIME_OF_FAMILY[family] != runtime:
        return "format.runtime", f"{runtime!r} does not run {family} files (expected {RUNTIME_OF_FAMILY[family]!r})"
    if not d["model_file"].endswith(SUFFIX_OF_FAMILY[family]):
        return "model_file", f"{d['model_file']!r} is not a {SUFFIX_OF_FAMILY[family]} file"
    if d["model_file"] not in d["files"]:
        return "files", f"does not pin the model file {d['model_file']!r}"
    temporal, tensor = d["temporal"], d["input"]
    rank = 5 if temporal is not None else 4
    if len(tensor["shape"]) != rank or len(tensor["layout"]) != rank:
        return "input.shape", (f"a {'clip' if temporal else 'image'} model takes a rank-{rank} input, the manifest "
                               f"declares {tensor['layout']} {tensor['shape']}")
    dims = dict(zip(tensor["layout"], tensor["shape"]))
    if any(isinstance(v, str) for k, v in dims.items() if k != "N"):
        return "input.shape", "only the batch dimension may be dynamic"
    if [dims["H"], dims["W"]] != d["preprocessing"]["size"] or dims["C"] != 3:
        return "input.shape", f"{tensor['shape']} does not match preprocessing.size {d['preprocessing']['size']}"
    if temporal is not None and dims["T"] != temporal["frames"]:
        return "temporal.frames", f"{temporal['frames']} frames, but the input has {dims['T']}"
    elements = 1
    for v in tensor["shape"]:
        elements *= v if isinstance(v, int) else 1
    if elements > MAX_INPUT_ELEMENTS:
        return "input.shape", f"{elements} elements per input exceed the limit {MAX_INPUT_ELEMENTS}"
    quantized = [("input", tensor), *((f"outputs[{i}]", o) for i, o in enumerate(d["outputs"]))]
    for label, spec in quantized if family != "coreml" else ():  # Core ML images are 8-bit pixels, not int8 tensors
        if spec["dtype"] in ("int8", "uint8") and (spec["scale"] is None or spec["zero_point"] is None):
            return f"{label}.scale", "an integer tensor needs its scale and zero point"
    roles = [o.get("role") for o in d["outputs"]]
    if roles.count("saliency") != 1:
        return "outputs", "exactly one output must have the role 'saliency'"
    if "activation" in tensor:
        return "input.activation", "only outputs have an activation"
    if "class_probs" in roles:
        probs = d["outputs"][roles.index("class_probs")]
        if len(probs["shape"]) != 2 or probs["shape"][1] != len(d["model"]["class_names"]):
            return "outputs", f"class_probs {probs['shape']} does not match {len(d['model']['class_names'])} classes"
    letterbox = d["preprocessing"]["resize"] == "letterbox"
    if (d["postprocessing"]["restore"] == "letterbox-uncrop") != letterbox:
        return "postprocessing.restore", "letterboxed inputs are restored by 'letterbox-uncrop', others by 'resize'"
    return None


# ---------------------------------------------------------------------------------------------- v1 -> v2
def upgrade_v1(v1: Mapping[str, Any], source: str) -> dict[str, Any]:
    """A ``salsdk-manifest/1`` document in the current layout (pre-processing and windowing moved to their own
    entries, output roles made explicit). Missing or mistyped fields raise :class:`BundleError` naming them."""
    def get(path: str, kind: type | tuple[type, ...]) -> Any:
        value: Any = v1
        for part in path.split("."):
            if not isinstance(value, Mapping) or part not in value:
                raise BundleError(f"{source}: field {path} is missing (salsdk-manifest/1); {REDO}")
            value = value[part]
        if not isinstance(value, kind):
            raise BundleError(f"{source}: field {path} has the wrong type ({type(value).__name__}); {REDO}")
        return value

    pre = dict(get("input.preprocessing", Mapping))
    frames = pre.pop("frames", 1)
    temporal_mode = get("model", Mapping).get("temporal")
    outputs = []
    for i, output in enumerate(get("outputs", list)):
        if not isinstance(output, Mapping) or not isinstance(output.get("shape"), list):
            raise BundleError(f"{source}: field outputs[{i}] is malformed; {REDO}")
        role = "class_probs" if len(output["shape"]) == 2 else "saliency"
        outputs.append({**output, "name": str(output.get("name", "")).split(":")[0] or role, "role": role})
    tensor = {k: v for k, v in get("input", Mapping).items() if k not in ("preprocessing", "resize_rule")}
    pre.setdefault("resize_rule", get("input", Mapping).get("resize_rule", ""))
    model = get("model", Mapping)
    document = {k: v for k, v in v1.items() if k not in ("input", "outputs", "postprocessing", "model")}
    document.update(
        schema=SCHEMA_NAME, input=tensor, preprocessing=pre, outputs=outputs,
        temporal={"mode": temporal_mode, "frames": frames} if temporal_mode else None,
        postprocessing={"restore": "letterbox-uncrop" if pre.get("resize") == "letterbox" else "resize",
                        "output_range": get("postprocessing", Mapping).get("output_range", "")},
        model={"name": model.get("name"), "family": model.get("family"), "task": model.get("task"),
               "architecture": model.get("family"), "class_names": model.get("class_names", []),
               "card": model.get("card", {})})
    document.setdefault("status", "accepted")
    return document


# ---------------------------------------------------------------------------------------------- files
def tree_sha256(path: Path) -> str:
    """SHA-256 of a file, or of a folder (``.mlpackage``, ``.openvino``) as the hash of its sorted (relative path, file hash) list."""
    if path.is_file():
        return file_sha256(path)
    digest = hashlib.sha256()
    for item in sorted(p for p in path.rglob("*") if p.is_file()):
        digest.update(f"{item.relative_to(path).as_posix()}\0{file_sha256(item)}\n".encode())
    return digest.hexdigest()


def tree_size(path: Path) -> int:
    """Bytes of a file or of all files in a folder."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _confined(bundle: Path, name: str) -> Path:
    """``bundle / name`` after checking it is a plain entry of the bundle folder, with no symlink anywhere."""
    if not re.match(FILE_NAME, name) or name in (".", ".."):
        raise BundleError(f"{bundle}: file name {name!r} in the manifest is not a plain name inside the bundle; {REDO}")
    target = bundle / name
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        raise BundleError(f"{bundle}: {name}, named by the manifest, is missing; {REDO}") from None
    if stat.S_ISLNK(mode):
        raise BundleError(f"{bundle}: {name} is a symbolic link; bundles hold their files themselves. Replace the "
                          "link by the file it points to, or convert again")
    if stat.S_ISDIR(mode):
        for root, dirs, files in os.walk(target):
            for entry in [*dirs, *files]:
                if os.path.islink(os.path.join(root, entry)):
                    rel = Path(root, entry).relative_to(bundle)
                    raise BundleError(f"{bundle}: {rel} is a symbolic link inside {name}; bundles must hold their "
                                      "files themselves")
    elif not stat.S_ISREG(mode):
        raise BundleError(f"{bundle}: {name} is not a regular file")
    return target


def verify_files(bundle: Path, manifest: Manifest) -> None:
    """Every pinned file: confined to the bundle, its size and SHA-256 equal to the pins."""
    for name, pinned in manifest.files.items():
        target = _confined(bundle, name)
        size = tree_size(target)
        if size != pinned.bytes:
            raise BundleError(f"{bundle}: {name} has {size} bytes, the manifest pins {pinned.bytes}: the file was "
                              f"truncated, edited or swapped; {REDO}")
        actual = tree_sha256(target)
        if actual != pinned.sha256:
            raise BundleError(f"{bundle}: {name} has SHA-256 {actual}, but the manifest pins {pinned.sha256}: the "
                              f"file was edited or swapped; {REDO}")


def verify_embedded(bundle: Path, manifest: Manifest, stored: Mapping[str, Any]) -> None:
    """The model file's embedded manifest must equal ``stored`` (manifest.json as read) without ``files``."""
    from .artifact_metadata import read_embedded

    path = bundle / manifest.model_file
    try:
        text = read_embedded(manifest.format.family, path, EMBED_KEY)
    except (ValueError, OSError, UnicodeDecodeError) as exc:
        raise BundleError(f"{bundle}: {manifest.model_file} is not a readable {manifest.format.family} file: "
                          f"{exc}; {REDO}") from None
    if text is None:
        raise BundleError(f"{bundle}: {manifest.model_file} carries no embedded manifest ({EMBED_KEY}): it was not "
                          f"written by salsdk convert, or it was replaced; {REDO}")
    try:
        embedded = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BundleError(f"{bundle}: the manifest embedded in {manifest.model_file} is not valid JSON ({exc})") from None
    expected = embedded_part(stored)
    if embedded != expected:
        changed = sorted(k for k in set(embedded) | set(expected) if embedded.get(k) != expected.get(k))
        raise BundleError(f"{bundle}: manifest.json differs from the manifest embedded in {manifest.model_file} "
                          f"(fields: {', '.join(changed)}): one of them was edited; {REDO}")


def read_manifest(bundle: str | Path, verify: bool = True) -> Manifest:
    """Read a bundle's manifest; with ``verify`` (the default) check it completely (module docstring).

    Raises :class:`BundleError` naming the bundle, the field and what to do.
    """
    bundle = Path(bundle)
    path = bundle / MANIFEST_NAME
    if not bundle.is_dir():
        raise BundleError(f"{bundle} is not a bundle folder (expected a folder with {MANIFEST_NAME})")
    if not path.is_file() or path.is_symlink():
        raise BundleError(f"{bundle} has no {MANIFEST_NAME} (or it is a link): not a salsdk bundle, or an "
                          "interrupted conversion")
    if path.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{path} is {path.stat().st_size} bytes; manifests are at most {MAX_MANIFEST_BYTES}")
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{path} is not valid JSON: {exc}; {REDO}") from None
    if not isinstance(stored, dict):
        raise BundleError(f"{path}: a manifest is a JSON object, this is a {type(stored).__name__}; {REDO}")
    manifest = Manifest(_current(stored, str(path)), str(path), str(stored["schema"]))
    if verify:
        verify_files(bundle, manifest)
        verify_embedded(bundle, manifest, stored)
    return manifest


def _current(stored: dict[str, Any], source: str) -> dict[str, Any]:
    """``stored`` in the current schema: as is, upgraded from v1, or refused when it is newer than this salsdk."""
    from . import __version__

    name = stored.get("schema")
    match = re.fullmatch(r"salsdk-manifest/(\d+)", name) if isinstance(name, str) else None
    if match is None:
        raise BundleError(f"{source}: field schema is {name!r}, not a salsdk manifest schema; {REDO}")
    version = int(match.group(1))
    if version > SCHEMA_VERSION:
        writer = stored.get("salsdk_version", "a newer release")
        raise BundleError(f"{source} uses {name}, written by salsdk {writer}; this salsdk {__version__} reads up to "
                          f"{SCHEMA_NAME}: this bundle needs salsdk >= {writer} (pip install -U salsdk)")
    if version == 1:
        if "files" not in stored:
            raise BundleError(f"{source}: field files is missing (required): the model file is unpinned; {REDO}")
        return upgrade_v1(stored, source)
    if version != SCHEMA_VERSION:
        raise BundleError(f"{source}: {name} was never a salsdk manifest schema; {REDO}")
    return stored


def read_rejection_report(path: str | Path) -> FidelityRecord:
    """The fidelity a conversion measured for an artifact the gate rejected (its ``.rejected.json`` report)."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        f = report["fidelity"]
        return FidelityRecord(float(f["min_cc"]), float(f["cc_min"]), float(f["cc_mean"]), str(f["method"]),
                              int(f["n_inputs"]), f.get("top_class_agreement"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{path} is not a readable rejection report ({exc}); convert again") from None


# ---------------------------------------------------------------------------------------------- building
def build_manifest(*, card: Any, weights: Any, format_record: FormatRecord, model_file: str, input_spec: TensorSpec,
                   outputs: list[TensorSpec], preprocessing: Preprocessing, temporal: Temporal | None,
                   fidelity: dict[str, Any], status: str, quantization: dict[str, Any] | None = None,
                   fallback_attempts: list[dict[str, Any]] | None = None, tool_versions: dict[str, str] | None = None,
                   graph: dict[str, Any] | None = None, graph_notes: list[str] | None = None,
                   speed: dict[str, Any] | None = None) -> dict[str, Any]:
    """The manifest document of a new artifact, before :func:`pin_files` (the model file is not final yet).

    ``card`` is the model's :class:`~salsdk.cards.ModelCard`, ``weights`` its
    :class:`~salsdk.weights.WeightsInfo`. Returns the JSON document (validated once pinned).
    """
    from . import __version__
    from .preprocess import RESIZE_RULE

    pre = asdict(preprocessing)
    pre["size"], pre["resize_rule"] = list(preprocessing.size), RESIZE_RULE
    return {
        "schema": SCHEMA_NAME, "salsdk_version": __version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "status": status,
        "model": {"name": card.name, "family": card.family, "architecture": card.architecture, "task": card.task,
                  "class_names": list(card.class_names), "card": json.loads(json.dumps(card.to_dict(), default=str))},
        "licence": card.licence,
        "weights": {"model": weights.model, "trained": weights.trained, "sha256": weights.sha256,
                    "official": weights.official, "seed": weights.seed,
                    "path": Path(weights.path).name if weights.path else None, "label": weights.label},
        "format": asdict(format_record), "model_file": model_file, "input": input_spec.to_dict(),
        "preprocessing": pre, "temporal": asdict(temporal) if temporal else None,
        "outputs": [o.to_dict() for o in outputs],
        "postprocessing": {
            "restore": "letterbox-uncrop" if preprocessing.resize == "letterbox" else "resize",
            "saliency": "output with role 'saliency', channel 0: one map per input (per frame for MIMO clips); "
                        "dequantize it and apply its 'activation' if it has one, then restore it onto the image "
                        "as 'restore' says (salsdk.geometry)",
            "output_range": card.output_range},
        "quantization": quantization or {}, "fallback_attempts": fallback_attempts or [], "fidelity": fidelity,
        "tool_versions": tool_versions or {}, "graph": graph or {}, "graph_notes": graph_notes or [],
        **({"speed": speed} if speed else {}),
    }


def pin_files(document: dict[str, Any], bundle: Path) -> Manifest:
    """``document`` with ``files`` pinning its model file in ``bundle`` (size and SHA-256), validated."""
    name = document["model_file"]
    target = bundle / name
    pinned = {**document, "files": {name: {"sha256": tree_sha256(target), "bytes": tree_size(target)}}}
    return Manifest(pinned, f"{bundle / MANIFEST_NAME}")


if __name__ == "__main__":
    print(f"wrote {write_schema()}")
