"""ExecuTorch int8: PT2E static quantization with the XNNPACK quantizer, calibrated on real inputs.

``torch.export`` captures the model, ``prepare_pt2e`` inserts observers where XNNPACK has int8 kernels
(convolutions, linear layers, adds, concatenations, pooling, ReLU-family activations), the calibration inputs run
through it, and ``convert_pt2e`` replaces the observers by quantize/dequantize pairs that the XNNPACK partitioner
then lowers to int8 kernels. Weights are int8 symmetric per output channel, activations int8 per tensor.
Operators XNNPACK has no int8 kernel for (the output Sigmoid among them) stay float by design. Each int8
convolution's float bias (XNNPACK quantizes it to int32 at lowering) is corrected for the rounding of its weights
(:func:`bias_shifts`, :mod:`salsdk.quantize.bias_correction`): the folded float weights and the input means come
from the prepared graph during calibration, the int8 weights from the converted one; the correction is applied,
per tap or per channel, in the mode that raises the lowest map CC of the fully int8 graph on calibration inputs
most, or not at all if neither raises it, decided once per calibration and applied alike to the fallback's graphs
(TinyHD-S x1/4 lost CC with it: 0.9972 -> 0.9940 on the held-out clips, while the UniSal stand-in gained,
0.9825 -> 0.9868 at 240x320).

``keep_float`` (the fidelity fallback) names module groups (``encoder.17``, ``decoder.conv8_1``: the first two
levels of the module path, the unit the ONNX fallback keeps float too) left unannotated, so they run in float
between dequantize and quantize. :func:`rank_sensitivity` orders them by
:func:`~salsdk.quantize.ranking.recovery_order`, scoring each set on the quantized PyTorch graph (the numerics
the delegate reproduces), not on the lowered program, which is costlier to build.
"""
from __future__ import annotations

import copy
import hashlib
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from salsdk.errors import ConversionError

from .calibration import CalibrationData
from .ranking import layer_groups, recovery_order

METHODS = ("histogram", "minmax")  # activation observers: XNNPACK's default (histogram), then min-max
RANK_SAMPLES = 4  # calibration inputs each ranking candidate is scored on
RANK_GREEDY_STEPS = 4  # fewer greedy steps than ONNX: each PT2E candidate costs a prepare and a convert


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


@contextmanager
def _pt2e() -> Iterator[None]:
    """Around PT2E calls: silence their warnings, and afterwards clear the device lookups they memoize per module
    (``functools.lru_cache`` keyed by the graph module, in torchao and ``torch.ao``), which otherwise keep every
    graph they prepared or converted alive: two model copies per ranking candidate, 17 GB on UMSI before this."""
    import torchao.utils
    from torch.ao.quantization.fx import utils as fx_utils

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lookup in (getattr(torchao.utils, "_assert_and_get_unique_device", None),
                       getattr(fx_utils, "assert_and_get_unique_device", None)):
            if hasattr(lookup, "cache_clear"):
                lookup.cache_clear()


@dataclass
class _Calibration:
    """A fully annotated PT2E graph with calibrated observers, and what bias correction needs from that run."""

    prepared: torch.fx.GraphModule
    means: dict[str, np.ndarray]  # per-pixel input mean of every convolution
    singles: dict[str, nn.Module]  # a private observer per tensor that shares one, which saw that tensor alone
    float_weights: dict[str, torch.Tensor]  # every convolution's folded float weight
    bias_correction: tuple[str, str] | None = None  # the mode that helps most or "none", and the CCs (once decided)


_CALIBRATIONS: dict[str, _Calibration] = {}  # graph + data + method digest -> its calibration (the latest len(METHODS))


def quantize(graph: torch.fx.GraphModule, data: CalibrationData, method: str, keep_float: Sequence[str] = (),
             limit: int | None = None, bias: str = "auto") -> torch.fx.GraphModule:
    """The PT2E int8 graph of ``graph`` (a copy; ``graph`` is left as it is), calibrated on ``data``, its biases
    corrected in the mode ``bias`` names (``none``: not corrected), with ``"auto"`` in the one that helps the fully
    int8 graph most (:func:`_bias_correction_mode`); its attributes ``salsdk_bias_correction`` and
    ``salsdk_bias_mode`` say what was done.

    The calibration inputs run once per graph, data and method (:func:`_calibrated`); a graph with ``keep_float``
    groups takes its observers' statistics from that run (:func:`_observers_from`), which gives the statistics
    calibrating it would, at a fraction of the cost (a ranking quantizes dozens of such graphs).
    """
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    full = _calibrated(graph, data, method, limit)
    with _pt2e():
        if keep_float:
            prepared = prepare_pt2e(copy.deepcopy(graph), _quantizer(method, keep_float))
            if not _observers_from(full, prepared):
                _calibrate(prepared, data, limit)
        else:
            prepared = copy.deepcopy(full.prepared)
        converted = convert_pt2e(prepared)
    converted.salsdk_bias_correction, converted.salsdk_bias_mode = _corrected(converted, full, graph, data, bias)
    return converted


def _calibrated(graph: torch.fx.GraphModule, data: CalibrationData, method: str, limit: int | None) -> _Calibration:
    """``graph`` prepared with every group annotated and calibrated on ``data`` (cached: the latest few)."""
    from torchao.quantization.pt2e.quantize_pt2e import prepare_pt2e

    digest = hashlib.sha256(f"{graph.code}|{method}|{limit}".encode())
    for value in graph.state_dict().values():
        digest.update(value.detach().contiguous().numpy().tobytes())
    digest.update(np.ascontiguousarray(data.calibration[:limit], dtype=np.float32).tobytes())
    key = digest.hexdigest()
    if key not in _CALIBRATIONS:
        with _pt2e():
            prepared = prepare_pt2e(copy.deepcopy(graph), _quantizer(method, ()))
        recorder = _calibrate(prepared, data, limit)
        float_weights = {n.name: _value(prepared, n.args[1]).detach().clone() for n in _convolutions(prepared)}
        if len(_CALIBRATIONS) >= len(METHODS):  # the ranking reuses the best method's run: keep one per method
            del _CALIBRATIONS[next(iter(_CALIBRATIONS))]
        _CALIBRATIONS[key] = _Calibration(prepared, recorder.means(), recorder.singles, float_weights)
    return _CALIBRATIONS[key]


def _calibrate(prepared: torch.fx.GraphModule, data: CalibrationData, limit: int | None) -> _CalibrationRecorder:
    """Run the calibration inputs through ``prepared`` (its observers record them); what else they showed."""
    recorder = _CalibrationRecorder(prepared)
    with torch.no_grad():
        for sample in data.calibration_samples(limit):
            recorder.run(torch.from_numpy(sample))
    return recorder


def _observers_from(full: _Calibration, target: torch.fx.GraphModule) -> bool:
    """Give each observer of ``target`` the statistics calibrating ``target`` would give it, from the fully annotated
    graph's calibration ``full``; False, with nothing loaded, where they cannot be had without calibrating.

    PT2E shares one observer between tensors that must have the same quantization (a convolution's output and the
    ReLU6 after it, an add and the ReLU after it), so observers are matched by the set of tensors they observe: an
    observer of ``target`` observing the same set as one of ``full.prepared`` takes its state; one observing a
    single tensor whose shared observer the kept groups split (the ReLU6 of a convolution kept float) takes the
    state of the private observer that saw that tensor alone during the calibration (:class:`_CalibrationRecorder`).
    Any other set (none seen so far) is calibrated by the caller.
    """
    states = {frozenset([name]): module.state_dict() for name, module in full.singles.items()}
    states.update({names: module.state_dict() for names, module in _observer_groups(full.prepared).items()})
    wanted = _observer_groups(target)
    if any(names not in states for names in wanted):
        return False
    for names, module in wanted.items():
        module.load_state_dict(states[names])
    return True


def _observer_groups(graph: torch.fx.GraphModule) -> dict[frozenset[str], nn.Module]:
    """Each observer instance of ``graph`` by the set of node names whose output it observes."""
    members: dict[int, tuple[nn.Module, set[str]]] = {}
    for node, module in _observer_nodes(graph):
        members.setdefault(id(module), (module, set()))[1].add(node.args[0].name)
    return {frozenset(names): module for module, names in members.values()}


def _observer_nodes(graph: torch.fx.GraphModule) -> list[tuple[torch.fx.Node, nn.Module]]:
    from torchao.quantization.pt2e import ObserverBase

    nodes = [(n, graph.get_submodule(n.target)) for n in graph.graph.nodes if n.op == "call_module"]
    return [(n, m) for n, m in nodes if isinstance(m, ObserverBase) and n.args]


def _bias_correction_mode(full: _Calibration, graph: torch.fx.GraphModule, data: CalibrationData) -> tuple[str, str]:
    """The bias correction mode (:data:`~salsdk.quantize.bias_correction.MODES`, :func:`bias_shifts`) that raises
    the lowest map CC of the fully int8 graph against the float one most on :data:`RANK_SAMPLES` calibration inputs
    (never the held-out ones), or ``"none"``, and the CCs that say so; decided once per calibration and applied
    alike to every graph quantized from it."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    from .bias_correction import MODES

    if full.bias_correction is None:
        with _pt2e():
            converted = convert_pt2e(copy.deepcopy(full.prepared))
        samples = [torch.from_numpy(s) for s in data.calibration_samples(RANK_SAMPLES)]
        with torch.no_grad():
            reference = [_first(graph(x)) for x in samples]
        scores = {"none": _lowest_cc(converted, samples, reference)}
        for mode in MODES:
            shifts = bias_shifts(converted, full.float_weights, full.means, mode)
            _shift_biases(shifts, 1.0)
            scores[mode] = _lowest_cc(converted, samples, reference)
            _shift_biases(shifts, -1.0)
        full.bias_correction = (max(scores, key=scores.__getitem__),
                                f"lowest map CC of the fully int8 graph on {len(samples)} calibration inputs: "
                                + ", ".join(f"{name} {value:.4f}" for name, value in scores.items()))
    return full.bias_correction


def _corrected(converted: torch.fx.GraphModule, full: _Calibration, graph: torch.fx.GraphModule,
               data: CalibrationData, bias: str) -> tuple[str, str]:
    """Correct ``converted``'s int8 convolution biases in mode ``bias`` (``auto``: the one that helps most,
    :func:`_bias_correction_mode`, if one does); says what was done, and the mode applied."""
    if bias == "none":
        return "not applied, as asked", "none"
    if not bias_shifts(converted, full.float_weights, full.means):
        return "0 int8 convolutions with a bias", "none"
    chosen, measured = _bias_correction_mode(full, graph, data)
    mode = chosen if bias == "auto" else bias
    if mode == "none":
        return f"not applied: no mode raised the {measured}", mode
    shifts = bias_shifts(converted, full.float_weights, full.means, mode)
    _shift_biases(shifts, 1.0)
    how = "" if bias == "auto" else ", as asked"
    return (f"{len(shifts)} int8 convolutions, {mode}{how}: biases absorb the mean shift of their rounded weights on "
            f"the calibration inputs ({measured})"), mode


def _lowest_cc(module: torch.fx.GraphModule, samples: Sequence[torch.Tensor], reference: Sequence[np.ndarray]) -> float:
    from salsdk.metrics import cc

    with torch.no_grad():
        outputs = [_first(module(x)) for x in samples]
    return min(cc(o.reshape(-1, o.shape[-1]), r.reshape(-1, r.shape[-1])) for o, r in zip(outputs, reference))


def _shift_biases(shifts: Sequence[tuple[torch.Tensor, torch.Tensor]], sign: float) -> None:
    with torch.no_grad():
        for bias, shift in shifts:
            bias.sub_(sign * shift)


def _convolutions(graph: torch.fx.GraphModule) -> list[torch.fx.Node]:
    return [n for n in graph.graph.nodes if n.target == torch.ops.aten.conv2d.default]


def _value(graph: torch.fx.GraphModule, node) -> torch.Tensor:
    """The constant a node of ``graph`` computes: a stored tensor (``get_attr``, the tensor itself, so that it can be
    changed in place), an observer of one (which passes it through) or an op on constants (dequantize)."""
    if node.op == "get_attr":
        value = graph
        for part in node.target.split("."):
            value = getattr(value, part)
        return value
    if node.op == "call_module":
        return _value(graph, node.args[0])
    args = [_value(graph, a) if isinstance(a, torch.fx.Node) else a for a in node.args]
    return node.target(*args)


class _CalibrationRecorder(torch.fx.Interpreter):
    """Runs a prepared PT2E graph and records what bias correction and :func:`_observers_from` need: the mean of
    every 2-D convolution's input over the batch, per pixel and channel, and, for every tensor whose observer is
    shared with other tensors, a private copy of that observer (made before calibration) fed that tensor alone."""

    def __init__(self, graph: torch.fx.GraphModule) -> None:
        super().__init__(graph)
        self.sums: dict[str, torch.Tensor] = {}
        self.count = 0
        self.singles: dict[str, nn.Module] = {}
        self.shared: set[int] = set()  # ids of the shared observers
        for names, module in _observer_groups(graph).items():
            if len(names) > 1:
                self.shared.add(id(module))
                self.singles.update({name: copy.deepcopy(module) for name in names})

    def run(self, *args):
        self.count += 1
        return super().run(*args)

    def call_function(self, target, args, kwargs):
        if target == torch.ops.aten.conv2d.default:
            mean = args[0].detach().double().mean(dim=0)  # (C, H, W)
            name = self.current_node.name
            self.sums[name] = self.sums.get(name, 0) + mean
        return super().call_function(target, args, kwargs)

    def call_module(self, target, args, kwargs):
        if id(self.fetch_attr(target)) in self.shared:
            self.singles[self.current_node.args[0].name](args[0])
        return super().call_module(target, args, kwargs)

    def run_node(self, n):
        self.current_node = n
        return super().run_node(n)

    def means(self) -> dict[str, np.ndarray]:
        """Each convolution's input mean (H, W, C), keyed by its node name."""
        count = max(self.count, 1)
        return {name: (total / count).permute(1, 2, 0).float().numpy() for name, total in self.sums.items()}


def bias_shifts(converted: torch.fx.GraphModule, float_weights: Mapping[str, torch.Tensor],
                means: Mapping[str, np.ndarray], mode: str = "per-tap") -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(float bias tensor, its correction) of every int8 convolution of ``converted`` with a bias: the mean shift
    its rounded weights cause, from what each tap reads (``mode`` ``"per-tap"``) or the input's channel means
    (``"per-channel"``) (:mod:`salsdk.quantize.bias_correction`). XNNPACK quantizes these biases to int32 at
    lowering, so a correction subtracted from them reaches the ``.pte``."""
    from .bias_correction import mean_shift, tap_means

    shifts = []
    for node in _convolutions(converted):
        weight, bias = node.args[1], node.args[2] if len(node.args) > 2 else None
        if node.name not in float_weights or node.name not in means or not isinstance(bias, torch.fx.Node):
            continue
        if weight.op == "get_attr":
            continue  # a convolution the fallback keeps float
        error = (_value(converted, weight) - float_weights[node.name]).detach()
        stride, padding, dilation = (_pair(node.args[i] if len(node.args) > i else [default])
                                     for i, default in ((3, 1), (4, 0), (5, 1)))
        taps = (tap_means(means[node.name], tuple(error.shape[2:]), stride, dilation, padding)
                if mode == "per-tap" else means[node.name].mean(axis=(0, 1)))
        shift = mean_shift("CONV_2D", error.permute(0, 2, 3, 1).numpy(), taps)
        shifts.append((_value(converted, bias), torch.from_numpy(shift).to(torch.float32)))
    return shifts


def _pair(value: Sequence[int]) -> tuple[int, int]:
    """An ``aten.conv2d`` stride, padding or dilation argument ([v] or [h, w]) as (h, w)."""
    return int(value[0]), int(value[-1])


def rank_sensitivity(model: nn.Module, input_shape: Sequence[int], data: CalibrationData, method: str,
                     cost: Mapping[str, float] | None = None, bias: str = "auto") -> list[str]:
    """Module groups in the order the fallback should keep them in float (see the module docstring)."""
    from salsdk.metrics import cc

    graph = capture(model, input_shape)
    samples = [torch.from_numpy(s) for s in data.calibration_samples(RANK_SAMPLES)]
    with torch.no_grad():
        reference = [_first(model(x)) for x in samples]

    def score(keep: list[str]) -> float:
        probe = quantize(graph, data, method, keep, bias=bias)
        with torch.no_grad():
            outputs = [_first(probe(x)) for x in samples]
        return min(cc(o.reshape(-1, o.shape[-1]), r.reshape(-1, r.shape[-1])) for o, r in zip(outputs, reference))

    return recovery_order(layer_groups(model), score, greedy_steps=RANK_GREEDY_STEPS, cost=cost)


def _first(output) -> np.ndarray:
    return (output[0] if isinstance(output, (tuple, list)) else output).numpy()
