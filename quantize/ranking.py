"""The order in which the fidelity fallback keeps layer groups in float, from a score of each candidate set.

The unit kept float is a module group (:func:`layer_groups`: the first two levels of a module path, e.g.
``encoder.17``, or one level deeper where those two name a ``Sequential``/``ModuleList`` of several weighted blocks,
e.g. TinyHD's ``aggregator.aggregate_adapter.14``). Shared by the quantizers whose tools can re-quantize a model
with some groups left float (ONNX Runtime's QDQ, PT2E, ai-edge-quantizer): ``score(keep)`` quantizes the whole model
*except* ``keep`` and returns its lowest map CC against fp32 on calibration inputs (never the held-out ones),
exactly as the fallback will use that set.

What the fallback is for decides the order (``salsdk convert --prefer``): ``fidelity`` keeps the groups that
recover most map CC first; ``speed`` and ``size`` weigh that recovery against what keeping a group float costs
(:func:`group_costs`: its share of the model's MACs, which int8 kernels would have sped up, or of its weights,
which int8 would have shrunk), so a cheap group that recovers nearly as much goes before an expensive one.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from salsdk.errors import ConversionError

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
CONTAINERS = (nn.Sequential, nn.ModuleList)
GREEDY_STEPS = 8  # the first fallback steps are chosen greedily, each among ...
GREEDY_WIDTH = 6  # ... the best-ranked remaining groups
PREFER_CHOICES = ("speed", "size", "fidelity")  # what int8 is for (salsdk convert --prefer)
COST_FLOOR = 0.02  # a group's cost share counts as at least this much, so near-free groups need real gains too

Score = Callable[[list[str]], float]


def recovery_order(groups: Sequence[str], score: Score, greedy_steps: int = GREEDY_STEPS,
                   greedy_width: int = GREEDY_WIDTH, cost: Mapping[str, float] | None = None) -> list[str]:
    """``groups``, the ones whose float copy recovers most (per unit of ``cost``, when given) first.

    Each group is first kept alone; then, because kept groups interact, the first ``greedy_steps`` entries each add,
    among the ``greedy_width`` best remaining groups, the one that recovers most together with those already
    chosen. The rest follow by their single-group score. ``cost`` maps groups (see :func:`cost_of`) to their
    share of what keeping them float costs; with it, a candidate's value is its CC gain over the set without it
    divided by that share (at least :data:`COST_FLOOR`). Costs ``len(groups) + greedy_steps * greedy_width``
    scores at most (plus one for the fully quantized model when ``cost`` is given).
    """
    def share(g: str) -> float:
        return max(cost_of(cost, g), COST_FLOOR) if cost else 1.0

    base = score([]) if cost else 0.0
    single = {g: score([g]) for g in groups}
    pool = sorted(groups, key=lambda g: ((single[g] - base) / share(g), single[g]), reverse=True)
    order: list[str] = []
    while pool and len(order) < greedy_steps:
        scored = {g: score(order + [g]) for g in pool[:greedy_width]}
        best = max(scored, key=lambda g: ((scored[g] - base) / share(g), scored[g]))
        order.append(best)
        pool.remove(best)
        base = scored[best] if cost else base
    return order + pool


def cost_of(cost: Mapping[str, float] | None, group: str) -> float:
    """``group``'s cost share; ONNX group names (``/encoder/encoder.17``) are looked up by their module path."""
    if not cost:
        return 0.0
    return cost.get(group, cost.get(group.strip("/").split("/")[-1], 0.0))


def group_costs(model: nn.Module, input_shape: Sequence[int], prefer: str) -> dict[str, float] | None:
    """Each module group's share of what keeping it float costs: MACs (``speed``), weights (``size``); None for
    ``fidelity``. MACs are counted with forward hooks on one pass over zeros of ``input_shape``."""
    if prefer not in PREFER_CHOICES:
        raise ConversionError(f"--prefer {prefer!r}: choose one of {', '.join(PREFER_CHOICES)}")
    if prefer == "fidelity":
        return None
    from salsdk.complexity import layer_macs

    totals: dict[str, float] = {}
    hooks = []
    for name, group in _weighted_groups(model).items():
        module = model.get_submodule(name)
        if prefer == "size":
            totals[group] = totals.get(group, 0.0) + sum(p.numel() for p in module.parameters())
        else:
            def hook(mod, inputs, output, group=group):
                totals[group] = totals.get(group, 0.0) + layer_macs(mod, inputs, output)

            hooks.append(module.register_forward_hook(hook))
    if hooks:
        device = next(model.parameters()).device
        try:
            with torch.no_grad():
                model(torch.zeros(tuple(input_shape), device=device))
        finally:
            for h in hooks:
                h.remove()
    total = sum(totals.values()) or 1.0
    return {g: v / total for g, v in totals.items()}


def layer_groups(model: nn.Module) -> list[str]:
    """Module groups that hold a convolution or linear layer, in model order (see :func:`group_of`)."""
    return list(dict.fromkeys(_weighted_groups(model).values()))


def group_of(model: nn.Module, name: str) -> str:
    """The group of module path ``name``: its first two levels, one level deeper for as long as that prefix is a
    ``Sequential``/``ModuleList`` with weighted layers in more than one child (a stack of blocks is not one unit:
    TinyHD's ``encoder.encoder`` holds all 19 encoder blocks)."""
    parts = name.split(".")
    depth = min(2, len(parts))
    while depth < len(parts):
        prefix = model.get_submodule(".".join(parts[:depth]))
        weighted_children = sum(any(isinstance(m, WEIGHTED) for m in child.modules()) for child in prefix.children())
        if not isinstance(prefix, CONTAINERS) or weighted_children < 2:
            break
        depth += 1
    return ".".join(parts[:depth])


def _weighted_groups(model: nn.Module) -> dict[str, str]:
    """Every convolution or linear layer's module path -> its group."""
    return {name: group_of(model, name) for name, module in model.named_modules()
            if isinstance(module, WEIGHTED) and name}


def check_keep_float(model: nn.Module, keep_float: Sequence[str]) -> None:
    """Refuse ``keep_float`` entries that name no module group of ``model``."""
    unknown = sorted(set(keep_float) - set(layer_groups(model)))
    if unknown:
        raise ConversionError(f"keep_float names no module group of the model: {', '.join(unknown)}")
