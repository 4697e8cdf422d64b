"""Where the work of a model goes: MACs per layer type and per block, counted on the ``meta`` device.

Used to explain benchmark results: a model dominated by dense 3x3 convolutions at full resolution is
compute-bound (its lower bound is MACs / GEMM peak), one dominated by depthwise convolutions and upsampling is
memory-bound and far from the GEMM peak whatever the runtime does.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any


@dataclass
class MacBreakdown:
    """MACs of one forward pass, by layer type, by top-level block, and the heaviest layers."""

    model: str
    input_shape: tuple[int, ...]
    params: int
    macs: int  # FlopCounter total / 2 (what every table reports)
    state_dict_bytes: int  # fp32 weights and buffers, as a PyTorch checkpoint stores them
    activation_elements: int = 0  # tensor elements the convolution/linear layers read and write, one pass
    by_type: list[dict[str, Any]] = field(default_factory=list)
    by_block: list[dict[str, Any]] = field(default_factory=list)
    top_layers: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "input_shape": list(self.input_shape), "params": self.params, "macs": self.macs,
                "state_dict_bytes": self.state_dict_bytes, "activation_elements": self.activation_elements,
                "by_type": self.by_type, "by_block": self.by_block,
                "top_layers": self.top_layers}

    def summary(self, n: int = 3) -> str:
        """``'dense conv 3x3 78% of MACs, pointwise conv 1x1 17%, depthwise conv 3x3 2%'``."""
        parts = [f"{t['type']} {100 * t['share']:.0f}%" for t in self.by_type[:n]]
        return ", ".join(parts) + " of MACs" if parts else "no MACs counted"


def layer_type(module) -> str | None:
    """Category of a MAC-carrying layer: ``dense conv 3x3``, ``depthwise conv 3x3``, ``pointwise conv 1x1`` ..."""
    from torch import nn

    if isinstance(module, nn.Linear):
        return "linear"
    if not isinstance(module, nn.modules.conv._ConvNd):
        return None
    kernel = "x".join(str(k) for k in module.kernel_size)
    conv = ("transposed " if module.transposed else "") + ("conv3d" if len(module.kernel_size) == 3 else "conv")
    if module.groups > 1 and module.groups == module.in_channels:
        kind = "depthwise"
    elif all(k == 1 for k in module.kernel_size):
        kind = "pointwise"
    elif module.groups > 1:
        kind = "grouped"
    else:
        kind = "dense"
    return f"{kind} {conv} {kernel}"


#: bytes per element (activations, weights) an artifact of each precision moves; int8 ones move 1-byte tensors,
#: dynamic-range ones float activations and int8 weights, fp16 ones (float compute on CPUs) fp16 weights, bf16
#: ones (OpenVINO's bf16 inference) bf16 tensors and weights
ELEMENT_BYTES = {"fp32": (4, 4), "fp16": (4, 2), "bf16": (2, 2), "int8": (1, 1), "int8-io": (1, 1), "int8-dynamic": (4, 1),
                 "w8": (2, 1)}


def bytes_moved(breakdown: MacBreakdown, precision: str) -> int:
    """A lower bound on the bytes one pass must move through memory at ``precision``: every convolution/linear
    layer reads its input and writes its output once (activations, BatchNorm and elementwise ops fused into them),
    and every weight is read once. Concatenations, resizes and layout copies a runtime does not fuse add to it."""
    activation, weight = ELEMENT_BYTES.get(precision, ELEMENT_BYTES["fp32"])
    return breakdown.activation_elements * activation + breakdown.params * weight


def mac_breakdown(model: str, input_shape: tuple[int, ...]) -> MacBreakdown:
    """Count MACs per layer of zoo model ``model`` at ``input_shape`` (no weights or memory needed)."""
    from salsdk.registry import get_entry

    entry = get_entry(model)
    result = _breakdown(entry.architecture.name, tuple(input_shape))  # one count per architecture
    return MacBreakdown(**{**result.__dict__, "model": entry.card.name})


@lru_cache(maxsize=32)
def _breakdown(architecture: str, input_shape: tuple[int, ...]) -> MacBreakdown:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from salsdk.complexity import count_params, layer_macs
    from salsdk.registry import get_entry, list_models

    entry = next(get_entry(n) for n in list_models() if get_entry(n).architecture.name == architecture)
    with torch.device("meta"):
        net = entry.build().eval()
    layers: list[tuple[str, str, int, tuple[int, ...]]] = []
    touched = [0]  # elements read and written by the layers
    hooks = []
    for name, module in net.named_modules():
        kind = layer_type(module)
        if kind is None:
            continue

        def hook(mod, inputs, output, name=name, kind=kind):
            out = output[0] if isinstance(output, (tuple, list)) else output
            layers.append((name, kind, layer_macs(mod, inputs, output), tuple(out.shape)))
            touched[0] += inputs[0].numel() + out.numel()

        hooks.append(module.register_forward_hook(hook))
    counter = FlopCounterMode(display=False)  # the same count as salsdk.complexity, in the same forward pass
    try:
        with counter, torch.no_grad():
            net(torch.zeros(input_shape, device="meta"))
    finally:
        for h in hooks:
            h.remove()
    total = counter.get_total_flops() // 2
    counted = sum(m for _, _, m, _ in layers) or 1
    by_type: dict[str, list[int]] = {}
    by_block: dict[str, int] = {}
    for name, kind, macs, _ in layers:
        entry_ = by_type.setdefault(kind, [0, 0])
        entry_[0] += macs
        entry_[1] += 1
        block = name.split(".")[0]
        by_block[block] = by_block.get(block, 0) + macs
    state_bytes = sum(t.numel() * t.element_size() for t in net.state_dict().values())
    return MacBreakdown(
        model="", input_shape=tuple(input_shape), params=count_params(net), macs=total,
        state_dict_bytes=state_bytes, activation_elements=touched[0],
        by_type=[{"type": k, "macs": v[0], "layers": v[1], "share": v[0] / counted}
                 for k, v in sorted(by_type.items(), key=lambda kv: -kv[1][0])],
        by_block=[{"block": k, "macs": v, "share": v / counted}
                  for k, v in sorted(by_block.items(), key=lambda kv: -kv[1])],
        top_layers=[{"layer": n, "type": k, "macs": m, "share": m / counted, "output": list(s)}
                    for n, k, m, s in sorted(layers, key=lambda t: -t[2])[:6]],
    )
