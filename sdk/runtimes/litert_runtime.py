"""LiteRT (TensorFlow Lite) adapter: canonical NCHW/NCTHW float32 in, canonical float32 out.

The ``.tflite`` files salsdk writes are channels-last (litert-torch with ``to_channel_last_io``; onnx2tf folds the
layout transposes into the weights), and int8 variants may have int8 input/output tensors. This adapter hides both:

* **Layout rule** (:func:`tensor_layout`), decided from each tensor's shape alone:
  rank 2 is ``NC`` (class probabilities); a rank-4/5 tensor is channels-last (``NHWC`` / ``NTHWC``) when its
  last dimension is the channel count (3 for the image input, 1 for a saliency map) and its second dimension is
  not, channels-first (``NCHW`` / ``NCTHW``) in the opposite case; when both dimensions match (e.g. an image
  3 pixels high) the tensor follows the model input's layout, and a channels-last input is assumed.
* **Quantization**: a float batch is quantized with the input tensor's own ``scale``/``zero_point``
  (``q = clip(round(x / scale) + zero_point)``); int8/uint8 outputs are dequantized the same way. An output
  named ``saliency_logits`` (int8-I/O files store the map before its final sigmoid, see
  :func:`salsdk.tflite_model.saliency_logits`) gets the sigmoid after dequantization, as its manifest says.
* **Batch**: artifacts with a static batch of 1 run one sample per ``invoke``; a dynamic batch dimension is
  resized to the batch.

Outputs come back in the order ``[saliency, class_probs]`` (by tensor name when the file uses salsdk's names,
else saliency is the rank-4/5 output and class probabilities the rank-2 one).
"""
from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from salsdk.errors import BundleError

from .base import Runtime

SALIENCY = "saliency"
SALIENCY_LOGITS = "saliency_logits"
CLASS_PROBS = "class_probs"
_CHANNELS_LAST = {4: "NHWC", 5: "NTHWC"}
_CHANNELS_FIRST = {4: "NCHW", 5: "NCTHW"}
_TO_CANONICAL = {"NHWC": (0, 3, 1, 2), "NTHWC": (0, 4, 1, 2, 3)}
_FROM_CANONICAL = {"NHWC": (0, 2, 3, 1), "NTHWC": (0, 2, 3, 4, 1)}


def tensor_layout(shape: Sequence[int], channels: int, prefer_last: bool = True) -> str:
    """Layout of a tensor from its shape (see the module docstring); ``channels`` is 3 (image) or 1 (map)."""
    rank = len(shape)
    if rank == 2:
        return "NC"
    if rank not in _CHANNELS_LAST:
        raise BundleError(f"cannot tell the layout of a rank-{rank} tensor of shape {list(shape)}")
    last, second = shape[-1] == channels, shape[1] == channels
    if last and not second:
        return _CHANNELS_LAST[rank]
    if second and not last:
        return _CHANNELS_FIRST[rank]
    return (_CHANNELS_LAST if prefer_last else _CHANNELS_FIRST)[rank]


def load_interpreter() -> tuple[Any, Any, str, str]:
    """The first available engine: ``ai_edge_litert``, then ``tflite_runtime``, then ``tensorflow.lite``.

    Returns ``(Interpreter class, OpResolverType enum or None, engine name, version)``.
    """
    for module, package in (("ai_edge_litert.interpreter", "ai_edge_litert"),
                            ("tflite_runtime.interpreter", "tflite_runtime")):
        try:
            found = importlib.import_module(module)
        except ImportError:
            continue
        version = getattr(importlib.import_module(package), "__version__", "unknown")
        return found.Interpreter, getattr(found, "OpResolverType", None), package, version
    try:
        import tensorflow as tf
    except ImportError as exc:
        raise BundleError("running a .tflite file needs ai-edge-litert (pip install ai-edge-litert), "
                          "tflite-runtime or tensorflow; none is installed") from exc
    return tf.lite.Interpreter, getattr(tf.lite.experimental, "OpResolverType", None), "tensorflow.lite", \
        tf.__version__


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Float array to the integer dtype of ``detail`` with its scale/zero point (round half to even, clipped)."""
    scale, zero_point = detail["quantization"]
    if not scale:
        raise BundleError(f"integer input tensor {detail['name']!r} has no quantization scale")
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """Integer output to float32 with the tensor's scale/zero point (float tensors pass through)."""
    if not np.issubdtype(q.dtype, np.integer):
        return q.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    if not scale:
        raise BundleError(f"integer output tensor {detail['name']!r} has no quantization scale")
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function in float32, without overflow for large negative inputs."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


def precision_of(interpreter: Any) -> str:
    """Precision of a loaded model, read from its tensor dtypes (activations = tensors some op produces)."""
    produced = {i for op in interpreter._get_ops_details() for i in op["outputs"]}  # noqa: SLF001
    tensors = interpreter.get_tensor_details()
    dtype = {t["index"]: np.dtype(t["dtype"]).name for t in tensors}
    if dtype[interpreter.get_input_details()[0]["index"]] in ("int8", "uint8"):
        return "int8 (int8 input/output)"
    if any(dtype[t["index"]] in ("int8", "uint8") and t["index"] in produced for t in tensors):
        return "int8 (float input/output)"
    if "float16" in dtype.values():
        return "fp16 weights, fp32 compute"
    if "int8" in dtype.values():
        return "dynamic-range int8 weights, fp32 activations"
    return "fp32"


class LiteRTRuntime(Runtime):
    """Runs a ``.tflite`` file on CPU (XNNPACK delegate by default); canonical float32 in and out."""

    name = "litert"

    def __init__(self, path: str | Path, threads: int | None = None, xnnpack: bool = True) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise BundleError(f"TFLite model {self.path} does not exist")
        interpreter, resolver, self.engine, self.version = load_interpreter()
        options: dict[str, Any] = {"model_path": str(self.path), "num_threads": threads}
        if resolver is not None:
            options["experimental_op_resolver_type"] = (
                resolver.AUTO if xnnpack else resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        elif not xnnpack:
            raise BundleError(f"{self.engine} cannot disable the default XNNPACK delegate")
        try:
            self.interpreter = interpreter(**options)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise BundleError(f"LiteRT cannot load {self.path}: {exc}") from exc
        self.threads = threads
        self.xnnpack_requested = xnnpack
        self.input = self.interpreter.get_input_details()[0]
        shape = [int(d) for d in self.input["shape"]]
        self.input_layout = tensor_layout(shape, channels=3)
        channels_last = self.input_layout in _FROM_CANONICAL
        self.input_hw = tuple(shape[-3:-1] if channels_last else shape[-2:])
        signature = self.input.get("shape_signature", self.input["shape"])
        self.max_batch = None if int(signature[0]) == -1 else shape[0]
        details = self.interpreter.get_output_details()
        self.outputs = sorted(details, key=self._output_order)
        self.output_layouts = [tensor_layout([int(d) for d in o["shape"]], channels=1, prefer_last=channels_last)
                               for o in self.outputs]

    @staticmethod
    def _output_order(detail: dict[str, Any]) -> int:
        """Sort key putting saliency first, class probabilities second."""
        name = detail["name"].split(":")[0]
        if name in (SALIENCY, SALIENCY_LOGITS, CLASS_PROBS):
            return 1 if name == CLASS_PROBS else 0
        return 0 if len(detail["shape"]) >= 4 else 1

    def _to_model(self, batch: np.ndarray) -> np.ndarray:
        """Canonical float batch -> the input tensor's layout and dtype."""
        x = batch.transpose(_FROM_CANONICAL[self.input_layout]) if self.input_layout in _FROM_CANONICAL else batch
        if np.issubdtype(self.input["dtype"], np.integer):
            return quantize(x, self.input)
        return np.ascontiguousarray(x, dtype=self.input["dtype"])

    def _invoke(self, x: np.ndarray) -> list[np.ndarray]:
        if self.max_batch is None and tuple(self.input["shape"]) != x.shape:
            self.interpreter.resize_tensor_input(self.input["index"], list(x.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        results = []
        for detail, layout in zip(self.outputs, self.output_layouts):
            y = dequantize(self.interpreter.get_tensor(detail["index"]), detail)
            if detail["name"] == SALIENCY_LOGITS:
                y = sigmoid(y)
            results.append(y.transpose(_TO_CANONICAL[layout]) if layout in _TO_CANONICAL else y)
        return results

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        expected = 4 if self.input_layout in ("NHWC", "NCHW") else 5
        if batch.ndim != expected:
            raise BundleError(f"{self.path.name} expects a rank-{expected} canonical batch, got shape {batch.shape}")
        x = self._to_model(np.asarray(batch, dtype=np.float32))
        expected_sample = tuple(int(d) for d in self.input["shape"][1:])
        if self.max_batch is not None and x.shape[1:] != expected_sample:
            raise BundleError(f"{self.path.name} takes {self.input_layout} samples of shape {expected_sample} "
                              f"(input_hw {self.input_hw}); the canonical batch {batch.shape} does not match")
        step = self.max_batch or len(x)
        parts = [self._invoke(x[i:i + step]) for i in range(0, len(x), step)]
        return [np.ascontiguousarray(np.concatenate([p[k] for p in parts]), dtype=np.float32)
                for k in range(len(self.outputs))]

    def delegates(self) -> int:
        """Number of delegate kernels in the execution plan (XNNPACK partitions when it was applied)."""
        return sum(1 for op in self.interpreter._get_ops_details() if op["op_name"] == "DELEGATE")  # noqa: SLF001

    def describe(self) -> dict[str, Any]:
        partitions = self.delegates()
        return {"runtime": self.name, "engine": self.engine, "version": self.version,
                "threads": self.threads or "default", "xnnpack": partitions > 0,
                "delegate_partitions": partitions, "precision": precision_of(self.interpreter),
                "input": {"name": self.input["name"], "layout": self.input_layout,
                          "dtype": np.dtype(self.input["dtype"]).name}}
