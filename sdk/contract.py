"""The pre/post-processing contract between a model and whoever runs it.

A :class:`Contract` is what a predictor needs beyond the network itself: how to build inputs, what the outputs
mean, and how to slide over a video. It comes from a model card (PyTorch) or from a bundle's manifest
(:meth:`salsdk.manifest.Manifest.contract`), so every runtime pre- and post-processes identically.
"""
from __future__ import annotations

from dataclasses import dataclass

from .cards import ModelCard, Preprocessing, Temporal


@dataclass(frozen=True)
class Contract:
    """Input/output semantics of one model (or one artifact of it)."""

    model: str
    task: str
    preprocessing: Preprocessing
    temporal: Temporal | None = None
    class_names: tuple[str, ...] = ()
    trained: bool = True

    @property
    def is_video(self) -> bool:
        """True for clip models (TinyHD): input (B, 3, T, H, W)."""
        return self.temporal is not None

    def input_shape(self, size_hw: tuple[int, int], batch: int = 1) -> tuple[int, ...]:
        """Canonical input shape at ``size_hw``: (B, 3, H, W) for images, (B, 3, T, H, W) for clips."""
        frames = (self.temporal.frames,) if self.temporal else ()
        return (batch, 3, *frames, *size_hw)

    @property
    def maps_per_clip(self) -> int:
        """Maps one run of a single input gives: the frames of a MIMO block, else 1."""
        return self.temporal.frames if self.temporal and self.temporal.mode == "mimo" else 1

    @classmethod
    def from_card(cls, card: ModelCard, trained: bool = True) -> "Contract":
        """Contract of a zoo model."""
        return cls(card.name, card.task, card.preprocessing, card.temporal, card.class_names, trained)
