"""ExecuTorch adapter: a ``.pte`` program (XNNPACK-delegated) run by ExecuTorch's Python runtime."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .base import Runtime


class ExecuTorchRuntime(Runtime):
    """Runs the ``forward`` method of a ``.pte`` file; canonical layout (NCHW / NCTHW), float32, static batch."""

    name = "executorch"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import torch
        from executorch.runtime import Runtime as Engine

        self._torch = torch
        program = Engine.get().load_program(str(path))
        meta = program.metadata("forward")
        shape = tuple(meta.input_tensor_meta(0).sizes())
        self.method = program.load_method("forward")
        self.input_hw = (int(shape[-2]), int(shape[-1]))
        self.max_batch = int(shape[0])
        self.threads = threads  # XNNPACK's thread pool is sized by ExecuTorch; recorded for the report

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = []
        for i in range(0, batch.shape[0], self.max_batch):
            inputs = [self._torch.from_numpy(batch[i:i + self.max_batch].copy())]
            parts.append([o.detach().numpy().astype(np.float32) for o in self.method.execute(inputs)])
        return [np.concatenate([p[k] for p in parts]) for k in range(len(parts[0]))]

    def describe(self) -> dict[str, Any]:
        from importlib.metadata import version

        return {"runtime": self.name, "version": version("executorch"), "delegate": "xnnpack",
                "threads": self.threads or "default"}
