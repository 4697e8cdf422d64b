"""Core ML adapter: ``.mlpackage`` ML Programs, executed by Core ML on macOS, validated everywhere.

Core ML predictions need Apple's framework, so on other systems :class:`CoreMLRuntime` loads and validates the
package (its spec, inputs, outputs and weights) and then raises :class:`~salsdk.errors.BundleError` saying so;
:func:`validate_mlpackage` does the validation alone.

Inputs: salsdk's image models are exported with an ``ImageType`` input when their normalisation is a scale and
a per-channel bias (Core ML then takes an 8-bit RGB/BGR image and normalises inside the model); the package's
``salsdk_input`` metadata records that transform, and :meth:`CoreMLRuntime.run` turns the canonical float batch
back into 8-bit pixels with it. Other models (per-channel std, clips) take a float ``TensorType`` in canonical
layout. Outputs are float32 in canonical layout (``saliency`` (N,1,H,W) / (N,1,T,H,W), ``class_probs`` (N,K)).
"""
from __future__ import annotations

import json
import os
import platform
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from salsdk.errors import BundleError

from .base import Runtime

INPUT_TRANSFORM_KEY = "salsdk_input"
QUANTIZED_WEIGHT_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale")
OUTPUT_ORDER = ("saliency", "class_probs")


def package_paths(path: str | Path) -> tuple[Path, Path | None]:
    """``(spec file, weights folder or None)`` of an ``.mlpackage``, from its ``Manifest.json``."""
    path = Path(path)
    manifest = path / "Manifest.json"
    if not manifest.is_file():
        raise BundleError(f"{path} is not an .mlpackage (no Manifest.json)")
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        entries = info["itemInfoEntries"]
        spec_file = path / "Data" / entries[info["rootModelIdentifier"]]["path"]
    except (KeyError, ValueError) as exc:
        raise BundleError(f"{manifest} is unreadable or incomplete: {exc}") from exc
    weights = [path / "Data" / e["path"] for e in entries.values() if e.get("name") == "weights"]
    if not spec_file.is_file():
        raise BundleError(f"{path}: the model spec {spec_file.relative_to(path)} named by Manifest.json is missing")
    return spec_file, (weights[0] if weights else None)


def load_package_spec(path: str | Path) -> Any:
    """The package's ``Model`` protobuf (``coremltools.proto.Model_pb2``), parsed without Core ML."""
    from coremltools.proto import Model_pb2

    spec_file, _ = package_paths(path)
    spec = Model_pb2.Model()
    try:
        spec.ParseFromString(spec_file.read_bytes())
    except Exception as exc:  # protobuf's DecodeError
        raise BundleError(f"{spec_file} is not a valid Core ML model spec: {exc}") from exc
    return spec


def save_package_spec(path: str | Path, spec: Any) -> None:
    """Write a modified spec back into the package, atomically (tmp file + ``os.replace``)."""
    spec_file, _ = package_paths(path)
    tmp = spec_file.with_name(f".{spec_file.name}.tmp")
    tmp.write_bytes(spec.SerializeToString())
    os.replace(tmp, spec_file)


def _feature(description: Any) -> dict[str, Any]:
    """One input/output of the spec as a plain dict."""
    kind = description.type.WhichOneof("Type")
    if kind == "imageType":
        image = description.type.imageType
        color = type(image).ColorSpace.Name(image.colorSpace)
        return {"name": description.name, "kind": "image", "shape": [1, 3, int(image.height), int(image.width)],
                "color_space": color, "dtype": "uint8"}
    if kind == "multiArrayType":
        array = description.type.multiArrayType
        dtype = type(array).ArrayDataType.Name(array.dataType).lower()
        return {"name": description.name, "kind": "tensor", "shape": [int(d) for d in array.shape], "dtype": dtype}
    return {"name": description.name, "kind": kind or "unknown"}


def program_ops(spec: Any) -> dict[str, int]:
    """How many operations of each type the ML Program's ``main`` function has (read from the spec alone)."""
    main = spec.mlProgram.functions["main"]
    counts: Counter[str] = Counter()
    for block in main.block_specializations.values():
        counts.update(op.type for op in block.operations)
    return dict(sorted(counts.items()))


def validate_mlpackage(path: str | Path) -> dict[str, Any]:
    """Check an ``.mlpackage`` without Core ML; returns a summary (inputs, outputs, ops, metadata).

    Checks: the package manifest and spec parse, the model is an ML Program with a ``main`` function, it has at
    least one input and output, every output has a static shape, and the weights file exists and is not empty.
    """
    spec = load_package_spec(path)
    _, weights = package_paths(path)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise BundleError(f"{path}: expected a Core ML ML Program, found {kind!r}")
    if "main" not in spec.mlProgram.functions:
        raise BundleError(f"{path}: the ML Program has no 'main' function")
    inputs = [_feature(f) for f in spec.description.input]
    outputs = [_feature(f) for f in spec.description.output]
    if not inputs or not outputs:
        raise BundleError(f"{path}: the model declares {len(inputs)} inputs and {len(outputs)} outputs")
    blobs = sorted(weights.glob("*.bin")) if weights and weights.is_dir() else []
    ops = program_ops(spec)
    has_weights = ops.get("const", 0) + sum(ops.get(op, 0) for op in QUANTIZED_WEIGHT_OPS) > 0
    if has_weights and (not blobs or any(b.stat().st_size == 0 for b in blobs)):
        raise BundleError(f"{path}: the weights file (Data/.../weights/*.bin) is missing or empty")
    metadata = dict(spec.description.metadata.userDefined)
    return {"path": str(path), "model_type": "mlProgram", "specification_version": spec.specificationVersion,
            "inputs": inputs, "outputs": outputs, "ops": ops,
            "weights_bytes": sum(b.stat().st_size for b in blobs),
            "quantized_weights": sum(ops.get(op, 0) for op in QUANTIZED_WEIGHT_OPS),
            "input_transform": json.loads(metadata[INPUT_TRANSFORM_KEY]) if INPUT_TRANSFORM_KEY in metadata else None,
            "metadata_keys": sorted(metadata)}


def _summary(features: list[dict[str, Any]]) -> str:
    return ", ".join(f"{f['name']} {f.get('kind')} {f.get('shape')} {f.get('dtype', '')}".strip() for f in features)


class CoreMLRuntime(Runtime):
    """Runs an ``.mlpackage`` with Core ML (macOS only); canonical float32 batches in and out."""

    name = "coreml"

    def __init__(self, path: str | Path, threads: int | None = None, compute_units: str = "ALL") -> None:
        self.path = Path(path)
        self.info = validate_mlpackage(self.path)
        first = self.info["inputs"][0]
        self.input_name = first["name"]
        self.input_kind = first["kind"]
        self.input_hw = tuple(first["shape"][-2:])
        self.max_batch = 1
        self.transform = self.info["input_transform"]
        self.compute_units = compute_units
        self.threads = threads  # Core ML schedules its own threads; recorded for describe() only
        if platform.system() != "Darwin":
            raise BundleError(
                f"CoreML prediction needs macOS (Core ML framework); this is {platform.system()}. The bundle itself "
                f"was validated: inputs {_summary(self.info['inputs'])}; outputs {_summary(self.info['outputs'])}")
        import coremltools as ct

        try:
            self.model = ct.models.MLModel(str(self.path), compute_units=ct.ComputeUnit[compute_units])
        except Exception as exc:
            raise BundleError(f"Core ML cannot load {self.path}: {exc}") from exc
        names = [o["name"] for o in self.info["outputs"]]
        self.output_names = sorted(names, key=lambda n: OUTPUT_ORDER.index(n) if n in OUTPUT_ORDER else len(names))

    def _feed(self, sample: np.ndarray) -> Any:
        """One canonical sample as Core ML input: a PIL image for ImageType inputs, else a float array."""
        if self.input_kind != "image":
            return np.ascontiguousarray(sample[None], dtype=np.float32)
        from PIL import Image

        if not self.transform:
            raise BundleError(f"{self.path}: image input without the '{INPUT_TRANSFORM_KEY}' metadata salsdk writes")
        scale, bias = self.transform["scale"], np.asarray(self.transform["bias"], np.float32)
        pixels = (sample.transpose(1, 2, 0) - bias) / scale  # x = scale * pixel + bias
        pixels = np.clip(np.round(pixels), 0, 255).astype(np.uint8)
        if self.transform.get("color_layout") == "BGR":
            pixels = pixels[..., ::-1]  # PIL images are RGB; Core ML reorders for a BGR model
        return Image.fromarray(np.ascontiguousarray(pixels), mode="RGB")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        results: list[list[np.ndarray]] = [[] for _ in self.output_names]
        for sample in np.asarray(batch, dtype=np.float32):
            prediction = self.model.predict({self.input_name: self._feed(sample)})
            for k, name in enumerate(self.output_names):
                results[k].append(np.asarray(prediction[name], dtype=np.float32))
        return [np.concatenate(parts) for parts in results]

    def describe(self) -> dict[str, Any]:
        import coremltools as ct

        weights = "int8 linear-quantised weights" if self.info["quantized_weights"] else "fp16 weights"
        return {"runtime": self.name, "version": ct.__version__, "compute_units": self.compute_units,
                "threads": "managed by Core ML", "precision": f"{weights}, fp16 compute",
                "input": {"name": self.input_name, "kind": self.input_kind}}
