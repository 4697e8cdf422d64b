"""The pre/post-processing contract between a model and whoever runs it.

A :class:`Contract` is what a predictor needs beyond the network itself: how to build inputs, what the outputs
mean, and how to slide over a video. It comes from a model card (PyTorch) or from an artifact manifest
(ONNX/TFLite/CoreML), so every runtime pre- and post-processes identically.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from .cards import ModelCard, Preprocessing


@dataclass(frozen=True)
class Contract:
    """Input/output semantics of one model (or one artifact of it)."""

    model: str
    task: str
    preprocessing: Preprocessing
    temporal: Literal["miso", "mimo"] | None = None
    class_names: tuple[str, ...] = ()
    trained: bool = True

    @property
    def is_video(self) -> bool:
        """True for clip models (TinyHD): input (B, 3, T, H, W)."""
        return self.preprocessing.frames > 1

    @classmethod
    def from_card(cls, card: ModelCard, size: tuple[int, int] | None = None, trained: bool = True) -> "Contract":
        """Contract of a zoo model; ``size`` fixes the input size (turning ``native`` into ``stretch``)."""
        pre = card.preprocessing
        if size is not None:
            pre = replace(pre, size=tuple(size), resize="stretch" if pre.resize == "native" else pre.resize)
        return cls(card.name, card.task, pre, card.temporal, card.class_names, trained)
