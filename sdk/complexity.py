"""Parameter and MAC counts of zoo models, computed from the networks themselves.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on the ``meta`` device, so no
memory is allocated and no arithmetic is run: counting even the largest model takes a fraction of a second.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from .cards import ModelCard
from .registry import get_entry


@dataclass(frozen=True)
class Complexity:
    """Cost of one forward pass at ``input_shape``."""

    params: int
    macs: int  # per forward pass
    maps_per_pass: int  # output maps produced by one pass (16 for TinyHD-M, else 1)
    input_shape: tuple[int, ...]

    @property
    def gmacs_per_map(self) -> float:
        """Giga-MACs per output saliency map."""
        return self.macs / self.maps_per_pass / 1e9


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters (BatchNorm running statistics excluded, as papers count)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """Multiply-accumulates of one forward pass on an input of ``input_shape`` (model may live on ``meta``)."""
    device = next(model.parameters()).device
    x = torch.zeros(input_shape, device=device)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(x)
    return counter.get_total_flops() // 2


def default_input_shape(card: ModelCard, size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The input shape costs are reported at: ``size``, else the card's fixed size, else its export size."""
    pre = card.preprocessing
    h, w = size or pre.size or tuple(card.extra.get("export_size", (480, 640)))
    return (1, 3, pre.frames, h, w) if pre.frames > 1 else (1, 3, h, w)


def model_complexity(name: str, size: tuple[int, int] | None = None) -> Complexity:
    """Params and MACs of zoo model ``name`` at its default input (or ``size``)."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.build().eval()
    shape = default_input_shape(entry.card, size)
    maps = entry.card.preprocessing.frames if entry.card.temporal == "mimo" else 1
    return Complexity(count_params(model), count_macs(model, shape), maps, shape)
