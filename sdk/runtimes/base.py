"""The one interface every inference engine implements.

A runtime takes a batch already pre-processed into the model's canonical layout (NCHW images or NCTHW clips,
float32) and returns the model's outputs as float32 arrays. Layout changes (NHWC), integer (de)quantisation and
engine options stay inside the adapter, so :class:`~salsdk.predictor.Predictor` is the same for all of them.
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np


class Runtime(ABC):
    """An inference engine bound to one model."""

    #: short engine name, e.g. ``"pytorch"``, ``"onnxruntime"``, ``"litert"``, ``"coreml"``
    name: str = ""
    #: static (height, width) of the model input, or None if the model accepts any size
    input_hw: tuple[int, int] | None = None
    #: largest batch the model accepts in one call (1 for static-batch artifacts), None for any
    max_batch: int | None = None

    @abstractmethod
    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Run the model on a float32 batch in canonical layout; return every output as float32."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """What actually executes: engine and version, device/provider/delegate, threads, precision."""
