"""The order in which the fidelity fallback keeps layer groups in float, from a score of each candidate set.

The unit kept float is a module group (:func:`layer_groups`: the first two levels of a module path, e.g.
``encoder.17``). Shared by the quantizers whose tools can re-quantize a model with some groups left float (ONNX
Runtime's QDQ, PT2E, ai-edge-quantizer): ``score(keep)`` quantizes the whole model *except* ``keep`` and returns its lowest map CC against fp32 on
calibration inputs (never the held-out ones), exactly as the fallback will use that set.
"""
from __future__ import annotations

from typing import Callable, Sequence

from torch import nn

from salsdk.errors import ConversionError

WEIGHTED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose2d, nn.Linear)
GREEDY_STEPS = 8  # the first fallback steps are chosen greedily, each among ...
GREEDY_WIDTH = 6  # ... the best-ranked remaining groups

Score = Callable[[list[str]], float]


def recovery_order(groups: Sequence[str], score: Score, greedy_steps: int = GREEDY_STEPS,
                   greedy_width: int = GREEDY_WIDTH) -> list[str]:
    """``groups``, the ones whose float copy recovers most first.

    Each group is first kept alone; then, because kept groups interact, the first ``greedy_steps`` entries each add,
    among the ``greedy_width`` best remaining groups, the one that recovers most together with those already
    chosen. The rest follow by their single-group score. Costs ``len(groups) + greedy_steps * greedy_width``
    scores at most.
    """
    pool = [g for _, g in sorted(((score([g]), g) for g in groups), reverse=True)]
    order: list[str] = []
    while pool and len(order) < greedy_steps:
        best = max(pool[:greedy_width], key=lambda g: score(order + [g]))
        order.append(best)
        pool.remove(best)
    return order + pool


def layer_groups(model: nn.Module) -> list[str]:
    """Module groups that hold a convolution or linear layer: the first two levels of each one's module path."""
    groups: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, WEIGHTED) and name:
            group = ".".join(name.split(".")[:2])
            if group not in groups:
                groups.append(group)
    return groups


def check_keep_float(model: nn.Module, keep_float: Sequence[str]) -> None:
    """Refuse ``keep_float`` entries that name no module group of ``model``."""
    unknown = sorted(set(keep_float) - set(layer_groups(model)))
    if unknown:
        raise ConversionError(f"keep_float names no module group of the model: {', '.join(unknown)}")
