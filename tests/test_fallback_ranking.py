"""The order in which the fidelity fallback keeps layer groups float, and what an int8 artifact is expected to gain.

``recovery_order`` is shared by the ONNX, PT2E and ai-edge-quantizer fallbacks; with ``--prefer speed`` (the
default) or ``size`` it weighs each group's recovery against its share of the model's MACs or weights.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from salsdk.convert.formats import FORMATS_BY_KEY
from salsdk.convert.speed_check import fp32_sibling, predicted_speedup, speed_summary
from salsdk.errors import ConversionError
from salsdk.quantize.ranking import cost_of, group_costs, recovery_order


def test_recovery_order_adds_the_group_that_recovers_most_with_those_chosen():
    """Single scores put ``a`` then ``b`` first, but ``b`` adds nothing to ``a`` while ``c`` completes it."""
    singles = {"a": 0.90, "b": 0.89, "c": 0.80, "d": 0.70, "e": 0.60}
    calls: list[list[str]] = []

    def score(keep: list[str]) -> float:
        calls.append(keep)
        if len(keep) == 1:
            return singles[keep[0]]
        return 0.99 if set(keep) >= {"a", "c"} else 0.91

    order = recovery_order(list(singles), score, greedy_steps=2, greedy_width=3)
    assert order == ["a", "c", "b", "d", "e"]
    assert len(calls) == len(singles) + 3 + 3  # the singles, then at most greedy_width per greedy step



def test_speed_preference_keeps_a_cheap_group_float_before_a_costly_one():
    """``big`` recovers a little more CC than ``small`` but holds 90% of the MACs: keeping it float would
    leave most of the arithmetic in fp32, so the speed order puts ``small`` first; the fidelity order does not."""
    gains = {"big": 0.010, "small": 0.008, "none": 0.0}
    cost = {"big": 0.90, "small": 0.05, "none": 0.05}

    def score(keep: list[str]) -> float:
        return 0.98 + sum(gains[g] for g in keep)

    assert recovery_order(list(gains), score, greedy_steps=2, greedy_width=3)[:2] == ["big", "small"]
    assert recovery_order(list(gains), score, greedy_steps=2, greedy_width=3, cost=cost)[:2] == ["small", "big"]
    assert recovery_order(list(gains), score, greedy_steps=0, cost=cost) == ["small", "big", "none"]


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1))
        self.head = nn.Conv2d(8, 1, 3, padding=1)

    def forward(self, x):
        return self.head(self.encoder(x))


def test_group_costs_are_mac_or_weight_shares_per_group():
    net = _Net().eval()
    macs = group_costs(net, (1, 3, 4, 4), "speed")
    # MACs per output element: 3*9 (encoder.0), 8 (encoder.1) on 8 channels; 8*9 on 1 channel (head)
    expected = {"encoder.0": 27 * 8, "encoder.1": 8 * 8, "head": 72}
    total = sum(expected.values())
    assert macs == pytest.approx({g: v / total for g, v in expected.items()})
    weights = group_costs(net, (1, 3, 4, 4), "size")
    params = {g: sum(p.numel() for n, p in net.named_parameters() if n.startswith(g + ".")) for g in expected}
    assert weights == pytest.approx({g: v / sum(params.values()) for g, v in params.items()})
    assert group_costs(net, (1, 3, 4, 4), "fidelity") is None
    assert cost_of(macs, "/encoder/encoder.1") == macs["encoder.1"]  # ONNX group names
    with pytest.raises(ConversionError, match="--prefer"):
        group_costs(net, (1, 3, 4, 4), "fast")
    assert not any(p.grad is not None for p in net.parameters()) and torch.is_grad_enabled()


def test_int8_formats_are_compared_with_the_fp32_file_of_the_same_converter():
    assert fp32_sibling(FORMATS_BY_KEY["tflite-int8"]).key == "tflite-fp32"
    assert fp32_sibling(FORMATS_BY_KEY["tflite-dr8"]).key == "tflite-fp32"
    assert fp32_sibling(FORMATS_BY_KEY["tflite-int8-onnx2tf"]).key == "tflite-fp32-onnx2tf"
    assert fp32_sibling(FORMATS_BY_KEY["onnx-int8"]).key == "onnx-fp32"
    assert fp32_sibling(FORMATS_BY_KEY["pte-int8"]).key == "pte-fp32"
    assert fp32_sibling(FORMATS_BY_KEY["tflite-fp32"]) is None and fp32_sibling(FORMATS_BY_KEY["coreml-w8"]) is None


def test_predicted_speedup_follows_the_share_kept_float():
    share = {"a": 0.5, "b": 0.5}
    full, half = predicted_speedup([], share), predicted_speedup(["a"], share)
    ratio = full["gemm_int8_over_fp32"]
    assert full["speedup"] == pytest.approx(ratio, rel=0.01) and half["float_mac_share"] == 0.5
    assert half["speedup"] == pytest.approx(1 / (0.5 + 0.5 / ratio), rel=0.01)
    assert predicted_speedup(["a", "b"], share)["speedup"] == pytest.approx(1.0)
    slower = {"vs": "onnx-fp32", "ms": 12.0, "fp32_ms": 10.0, "speedup": 0.83, "slower_than_fp32": True}
    assert speed_summary(slower) == "0.83x onnx-fp32: SLOWER than fp32"
