"""ExecuTorch int8: PT2E static quantization with the XNNPACK quantizer, calibrated on real inputs.

``torch.export`` captures the model, ``prepare_pt2e`` inserts observers where XNNPACK has int8 kernels
(convolutions, linear layers, adds, concatenations, pooling, ReLU-family activations), the calibration inputs run
through it, and ``convert_pt2e`` replaces the observers by quantize/dequantize pairs that the XNNPACK partitioner
then lowers to int8 kernels. Weights are int8 symmetric per output channel, activations int8 per tensor.
Operators XNNPACK has no int8 kernel for (the output Sigmoid among them) stay float by design.

``keep_float`` (the fidelity fallback) names module groups (``encoder.17``, ``decoder.conv8_1``: the first two
levels of the module path, the unit the ONNX fallback keeps float too) left unannotated, so they run in float
between dequantize and quantize. :func:`rank_sensitivity` orders them by
:func:`~salsdk.quantize.ranking.recovery_order`, scoring each set on the quantized PyTorch graph (the numerics
the delegate reproduces), not on the lowered program, which is costlier to build.
"""
from __future__ import annotations

import copy
import warnings
from dataclasses import replace
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from salsdk.errors import ConversionError

from .calibration import CalibrationData
from .ranking import layer_groups, recovery_order

METHODS = ("histogram", "minmax")  # activation observers: XNNPACK's default (histogram), then min-max
RANK_SAMPLES = 4  # calibration inputs each ranking candidate is scored on
RANK_GREEDY_STEPS = 4  # fewer greedy steps than ONNX: each PT2E candidate costs a prepare/calibrate/convert


def _config(method: str):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import get_symmetric_quantization_config
    from torchao.quantization.pt2e import MinMaxObserver

    if method not in METHODS:
        raise ConversionError(f"PT2E calibration method {method!r} is not one of {', '.join(METHODS)}")
    config = get_symmetric_quantization_config(is_per_channel=True)
    if method == "minmax":
        act = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2**-12))
        config = replace(config, input_activation=act, output_activation=act)
    return config


def _quantizer(method: str, keep_float: Sequence[str]):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import XNNPACKQuantizer
    from torchao.quantization.pt2e.quantizer.utils import get_module_name_filter

    quantizer = XNNPACKQuantizer().set_global(_config(method))
    if keep_float:
        kept = [get_module_name_filter(name) for name in keep_float]
        quantizer.set_filter_function(lambda node: not any(f(node) for f in kept))
    return quantizer


def capture(model: nn.Module, input_shape: Sequence[int]) -> torch.fx.GraphModule:
    """The model as an exported graph module (``torch.export``), the form PT2E quantizes."""
    example = torch.zeros(tuple(input_shape)).contiguous()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.export.export(model.eval(), (example,)).module()


def quantize(graph: torch.fx.GraphModule, data: CalibrationData, method: str,
             keep_float: Sequence[str] = (), limit: int | None = None) -> torch.fx.GraphModule:
    """The PT2E int8 graph of ``graph`` (a copy; ``graph`` is left as it is), calibrated on ``data``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_pt2e(copy.deepcopy(graph), _quantizer(method, keep_float))
        with torch.no_grad():
            for sample in data.calibration_samples(limit):
                prepared(torch.from_numpy(sample))
        return convert_pt2e(prepared)


def rank_sensitivity(model: nn.Module, input_shape: Sequence[int], data: CalibrationData, method: str,
                     cost: Mapping[str, float] | None = None) -> list[str]:
    """Module groups in the order the fallback should keep them in float (see the module docstring)."""
    from salsdk.metrics import cc

    graph = capture(model, input_shape)
    samples = [torch.from_numpy(s) for s in data.calibration_samples(RANK_SAMPLES)]
    with torch.no_grad():
        reference = [_first(model(x)) for x in samples]

    def score(keep: list[str]) -> float:
        probe = quantize(graph, data, method, keep)
        with torch.no_grad():
            outputs = [_first(probe(x)) for x in samples]
        return min(cc(o.reshape(-1, o.shape[-1]), r.reshape(-1, r.shape[-1])) for o, r in zip(outputs, reference))

    return recovery_order(layer_groups(model), score, greedy_steps=RANK_GREEDY_STEPS, cost=cost)


def _first(output) -> np.ndarray:
    return (output[0] if isinstance(output, (tuple, list)) else output).numpy()
