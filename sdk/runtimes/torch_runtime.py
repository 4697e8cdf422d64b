"""PyTorch eager runtime (CPU, or CUDA when present)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import InputError
from ..memory import available_bytes, gib
from .base import Runtime

PROBE_HW = (64, 64)  # input size of the one-off forward that measures activation memory per input pixel
ACTIVATION_HEADROOM = 3  # a layer's input, its output and a temporary of the same size live at once


class TorchRuntime(Runtime):
    """Runs an ``nn.Module`` in eval mode under ``torch.inference_mode``."""

    name = "pytorch"

    def __init__(self, model: nn.Module, device: str | None = None, threads: int | None = None) -> None:
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if threads:
            torch.set_num_threads(threads)
        self.model = model.eval().to(self.device)
        self._bytes_per_pixel: float | None = None

    def activation_bytes(self, shape: tuple[int, ...]) -> float:
        """Estimated peak activation memory of one forward pass on an input of ``shape`` (N, C, [T,] H, W),
        scaled from the largest layer output of a small probe forward (measured once)."""
        if self._bytes_per_pixel is None:
            largest = 0

            def hook(_module, _inputs, output) -> None:
                nonlocal largest
                tensors = output if isinstance(output, tuple) else (output,)
                largest = max(largest, *(t.numel() for t in tensors if isinstance(t, torch.Tensor)))

            probe = (1, *shape[1:-2], *PROBE_HW)
            leaves = [m for m in self.model.modules() if not list(m.children())]
            handles = [m.register_forward_hook(hook) for m in leaves]
            try:
                with torch.inference_mode():
                    self.model(torch.zeros(probe, device=self.device))
            finally:
                for handle in handles:
                    handle.remove()
            self._bytes_per_pixel = ACTIVATION_HEADROOM * 4 * largest / (PROBE_HW[0] * PROBE_HW[1])
        return self._bytes_per_pixel * shape[0] * shape[-2] * shape[-1]

    def check_fits(self, shape: tuple[int, ...]) -> None:
        """Refuse, before allocating, an input whose activations would not fit in the memory available now."""
        free = available_bytes()
        need = self.activation_bytes(shape)
        if free is not None and self.device.type == "cpu" and need > free:
            h, w = shape[-2:]
            raise InputError(f"an input of {w}x{h} pixels needs about {gib(need)} of memory at native resolution, "
                             f"{gib(free)} are available: downscale it (salsdk predict --max-side 2048, or "
                             f"salsdk.load(..., max_side=2048)) or predict fewer images at once (--batch-size)")

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        if self.input_hw is None:  # native resolution: the size is the image's, so check it first
            self.check_fits(batch.shape)
        with torch.inference_mode():
            outputs = self.model(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)).to(self.device))
        if isinstance(outputs, torch.Tensor):
            outputs = (outputs,)
        return [o.float().cpu().numpy() for o in outputs]

    def describe(self) -> dict[str, Any]:
        return {"runtime": self.name, "version": torch.__version__, "device": str(self.device),
                "threads": torch.get_num_threads(), "precision": "fp32"}
