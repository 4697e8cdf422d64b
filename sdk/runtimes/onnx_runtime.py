"""ONNX Runtime adapter (CPU execution provider with thread settings; CUDA when present)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Runtime


class OnnxRuntime(Runtime):
    """Runs an ``.onnx`` file; input in canonical layout (NCHW / NCTHW), float32."""

    name = "onnxruntime"

    def __init__(self, path: str | Path, threads: int | None = None, device: str | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        available = ort.get_available_providers()
        wanted = ["CUDAExecutionProvider"] if device in (None, "cuda") and "CUDAExecutionProvider" in available else []
        self.session = ort.InferenceSession(str(path), options, providers=wanted + ["CPUExecutionProvider"])
        self.threads = threads
        first = self.session.get_inputs()[0]
        self.input_name = first.name
        shape = first.shape
        self.input_hw = tuple(shape[-2:]) if all(isinstance(d, int) for d in shape[-2:]) else None
        self.max_batch = shape[0] if isinstance(shape[0], int) else None
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if self.max_batch and batch.shape[0] > self.max_batch:
            parts = [self.session.run(self.output_names, {self.input_name: batch[i:i + self.max_batch]})
                     for i in range(0, batch.shape[0], self.max_batch)]
            return [np.concatenate([p[k] for p in parts]).astype(np.float32) for k in range(len(self.output_names))]
        return [o.astype(np.float32) for o in self.session.run(self.output_names, {self.input_name: batch})]

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        return {"runtime": self.name, "version": ort.__version__, "providers": self.session.get_providers(),
                "threads": self.threads or "default"}
