"""The order in which the fidelity fallback keeps layer groups in float, from a score of each candidate set.

Shared by the quantizers whose tools can re-quantize a model with some groups left float (ONNX Runtime's QDQ,
PT2E): ``score(keep)`` quantizes the whole model *except* ``keep`` and returns its lowest map CC against fp32 on
calibration inputs (never the held-out ones), exactly as the fallback will use that set.
"""
from __future__ import annotations

from typing import Callable, Sequence

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
