"""PyTorch eager runtime (CPU, or CUDA when present)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from .base import Runtime


class TorchRuntime(Runtime):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``."""

    name = "pytorch"

    def __init__(self, model: nn.Module, device: str | None = None, threads: int | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().to(self.device)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [o.float().cpu().numpy() for o in outputs]

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "version": torch.__version__, "device": str(self.device),
                "threads": torch.get_num_threads(), "precision": "fp32"}
