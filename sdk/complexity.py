"""Parameter and MAC counts of zoo models, computed from the networks themselves.

MACs are counted with ``torch.utils.flop_counter.FlopCounterMode`` (FLOPs / 2) on the ``meta`` device, so no
memory is allocated and no arithmetic is run: counting even the largest model takes a fraction of a second.
That counter charges convolutions and matrix products only. Papers that used ptflops-style counters (TinyHD)
also charge 2 per BatchNorm output element, 1 per ReLU/ReLU6 output element, 1 per convolution-bias output
element and 1 per interpolated output element: :func:`count_macs_paper_style` adds those, and reproduces
TinyHD's Table 1a / 5a figures (5.57 GMACs per map for S x1, 7.95 per 16 maps for M x1).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import FlopCounterMode

from .cards import ModelCard
from .registry import get_entry


@dataclass(frozen=True)
class Complexity:
    """Cost of one forward pass at ``input_shape``."""

    params: int
    macs: int  # per forward pass, convolutions and matrix products
    macs_paper_style: int  # per forward pass, also charging normalisation, activations, biases, resizing
    maps_per_pass: int  # output maps produced by one pass (16 for TinyHD-M, else 1)
    input_shape: tuple[int, ...]

    @property
    def gmacs_per_map(self) -> float:
        """Giga-MACs per output saliency map."""
        return self.macs / self.maps_per_pass / 1e9

    @property
    def gmacs_per_map_paper_style(self) -> float:
        """Giga-MACs per output map counted as ptflops does (see :func:`count_macs_paper_style`)."""
        return self.macs_paper_style / self.maps_per_pass / 1e9


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


def layer_macs(module: nn.Module, inputs, output) -> int:
    """MACs of one convolution or linear layer's call, from a forward hook's ``inputs`` and ``output``."""
    out = output[0] if isinstance(output, (tuple, list)) else output
    if isinstance(module, nn.Linear):
        return out.numel() * module.in_features
    kernel = 1
    for k in module.kernel_size:
        kernel *= k
    if module.transposed:  # every input element meets every kernel weight of its group
        return inputs[0].numel() * (module.out_channels // module.groups) * kernel
    return out.numel() * (module.in_channels // module.groups) * kernel


class _ElementwiseCharges(TorchDispatchMode):
    """Counts what ptflops charges beyond convolutions, from the ATen ops a forward pass dispatches."""

    ACTIVATIONS = frozenset({"relu", "relu_", "hardtanh", "hardtanh_"})

    def __init__(self) -> None:
        super().__init__()
        self.macs = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        name = func.overloadpacket.__name__
        first = out[0] if isinstance(out, (tuple, list)) else out
        if "batch_norm" in name:
            self.macs += 2 * first.numel()
        elif name in self.ACTIVATIONS or "upsample" in name:
            self.macs += first.numel()
        elif name == "convolution" and args[2] is not None:
            self.macs += first.numel()
        return out


def count_macs_paper_style(model: nn.Module, input_shape: tuple[int, ...]) -> int:
    """:func:`count_macs` plus ptflops' charges: 2 per BatchNorm, 1 per activation, bias and resized element."""
    device = next(model.parameters()).device
    charges = _ElementwiseCharges()
    with charges, torch.no_grad():
        model(torch.zeros(input_shape, device=device))
    return count_macs(model, input_shape) + charges.macs


def default_input_shape(card: ModelCard, size: tuple[int, int] | None = None) -> tuple[int, ...]:
    """The input shape costs are reported at: ``size``, else the card's fixed size, else its export size."""
    from .contract import Contract

    h, w = size or card.preprocessing.size or tuple(card.extra.get("export_size", (480, 640)))
    return Contract.from_card(card).input_shape((h, w))


def model_complexity(name: str, size: tuple[int, int] | None = None) -> Complexity:
    """Params and MACs of zoo model ``name`` at its default input (or ``size``)."""
    entry = get_entry(name)
    with torch.device("meta"):
        model = entry.build().eval()
    shape = default_input_shape(entry.card, size)
    from .contract import Contract

    maps = Contract.from_card(entry.card).maps_per_clip
    return Complexity(count_params(model), count_macs(model, shape), count_macs_paper_style(model, shape), maps,
                      shape)
