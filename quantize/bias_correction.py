"""Bias correction for int8 convolution weights (Nagel et al. 2019, "Data-Free Quantization", section 4.2).

Rounding a convolution's weights to int8 changes each output channel's mean: with input channel means
``E[x]``, the output of channel ``o`` moves by ``sum(dW[o] * E[x])`` where ``dW`` is the rounding error. Inputs
after a ReLU have a large positive mean, so this shift is systematic, the same at every pixel, and it adds up from
layer to layer; subtracting it from the float bias (int8 files keep biases in int32, at a far finer step) removes
it before quantization.

The shift is averaged over the output pixels as the convolution computes them: each kernel tap reads its own
window of the input (stride, dilation) and reads zeros where that window falls in the ``SAME`` padding. So the
input means are kept per pixel (averaged over the calibration inputs) and each tap gets the mean of the pixels it
actually reads (:func:`tap_means`). One mean per channel would over-correct the convolutions whose taps read much
padding: on UMSI's ASPP (dilations 6, 12 and 18 on a 30x40 map) most taps do.

Tool-exact: ``dW`` is read from the int8 file the quantizer itself made (its int8 weights and per-channel scales,
against the float weights), ``E[x]`` from the float file run on the calibration inputs, and each op is matched
between the two files by the name of its output tensor. Only the convolutions that are quantized get a correction
(those a fallback keeps float keep their biases), and a convolution without a bias tensor is left as it is.
Measured on the UniSal stand-in at 480x640 (6 held-out images, ai-edge-quantizer ``static_wi8_ai8``): CC min
0.9859 without, 0.9897 with bias correction.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from salsdk.tflite_model import builtin_op_names, read_model, tensor_dtype, tensor_name, write_model

CONVOLUTIONS = ("CONV_2D", "DEPTHWISE_CONV_2D")


@dataclass(frozen=True)
class ConvSite:
    """One convolution of a float ``.tflite``: its scope (output tensor name), tensor indices and geometry."""

    scope: str
    kind: str
    input: int
    weight: int
    bias: int  # -1: no bias tensor
    stride: tuple[int, int] = (1, 1)
    dilation: tuple[int, int] = (1, 1)
    padding: str = "VALID"  # TFLite's SAME or VALID


def conv_sites(model: Any) -> list[ConvSite]:
    """The convolutions of the main subgraph of ``model`` (a ``ModelT``) in execution order."""
    graph = model.subgraphs[0]
    sites = []
    for op, kind in zip(graph.operators, builtin_op_names(model)):
        if kind in CONVOLUTIONS:
            bias = op.inputs[2] if len(op.inputs) > 2 else -1
            options = op.builtinOptions
            sites.append(ConvSite(tensor_name(graph, op.outputs[0]), kind, op.inputs[0], op.inputs[1], bias,
                                  stride=(options.strideH, options.strideW),
                                  dilation=(options.dilationHFactor, options.dilationWFactor),
                                  padding="SAME" if options.padding == _padding_same() else "VALID"))
    return sites


def _array(model: Any, index: int) -> np.ndarray:
    """The constant data of tensor ``index`` (float32, or its stored integer type), in its shape."""
    tensor = model.subgraphs[0].tensors[index]
    raw = np.asarray(model.buffers[tensor.buffer].data, dtype=np.uint8).tobytes()
    return np.frombuffer(raw, dtype=tensor_dtype(tensor)).reshape(tensor.shape)


def _dequantized(model: Any, index: int) -> np.ndarray:
    """Tensor ``index`` of a quantized model as float: ``(q - zero_point) * scale`` along its quantized axis."""
    tensor = model.subgraphs[0].tensors[index]
    data = _array(model, index).astype(np.float32)
    params = tensor.quantization
    if params is None or params.scale is None or not len(params.scale):
        return data  # a weight the quantizer left float
    shape = [1] * data.ndim
    shape[params.quantizedDimension] = -1
    scale = np.asarray(params.scale, np.float32).reshape(shape if len(params.scale) > 1 else [1] * data.ndim)
    zero = np.asarray(params.zeroPoint if params.zeroPoint is not None else [0], np.float32)
    return (data - zero.reshape(scale.shape)) * scale


def _padding_same() -> int:
    from ai_edge_litert import schema_py_generated as schema

    return schema.Padding.SAME


def input_means(float_content: bytes, samples: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Mean of every convolution's input over ``samples`` (channels-last) and its batch, per pixel and channel
    (H, W, C), keyed by its scope."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    sites = conv_sites(read_model(float_content))
    interpreter = Interpreter(model_content=float_content, experimental_preserve_all_tensors=True, num_threads=2,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    feed = interpreter.get_input_details()[0]["index"]
    sums: dict[str, np.ndarray] = {}
    count = 0
    for x in samples:
        interpreter.set_tensor(feed, x)
        interpreter.invoke()
        count += 1
        for site in sites:
            values = interpreter.get_tensor(site.input)
            sums[site.scope] = sums.get(site.scope, 0.0) + values.mean(0, dtype=np.float64)
    return {scope: (total / max(count, 1)).astype(np.float32) for scope, total in sums.items()}


def _visited(size: int, kernel: int, stride: int, dilation: int, padding: str | int) -> np.ndarray:
    """(kernel, size) matrix: which input rows (or columns) each kernel tap reads over the output positions, each
    position weighing 1/outputs. ``padding``: TFLite's ``"SAME"`` (output ``ceil(size / stride)``, the odd padding
    row after) or ``"VALID"``, or PyTorch's explicit zero rows on each side (an int)."""
    span = (kernel - 1) * dilation + 1
    if padding == "SAME":
        out = -(-size // stride)
        before = max((out - 1) * stride + span - size, 0) // 2
    else:
        before = 0 if padding == "VALID" else int(padding)
        out = (size + 2 * before - span) // stride + 1
    rows = np.arange(out)[None, :] * stride + np.arange(kernel)[:, None] * dilation - before  # (kernel, out)
    visited = np.zeros((kernel, size))
    for tap, positions in enumerate(rows):
        inside = positions[(positions >= 0) & (positions < size)]
        visited[tap, inside] = 1.0
    return visited / out


def tap_means(spatial_mean: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
              dilation: tuple[int, int] = (1, 1), padding: str | tuple[int, int] = "VALID") -> np.ndarray:
    """(kh, kw, C): what each kernel tap reads on average over the output pixels, padding included as zeros, from
    the input's per-pixel mean ``spatial_mean`` (H, W, C). ``padding``: ``"SAME"``, ``"VALID"`` or PyTorch's
    explicit (rows, columns) on each side."""
    height, width, _ = spatial_mean.shape
    pads = (padding, padding) if isinstance(padding, str) else padding
    rows = _visited(height, kernel[0], stride[0], dilation[0], pads[0])
    columns = _visited(width, kernel[1], stride[1], dilation[1], pads[1])
    return np.einsum("ih,hwc,jw->ijc", rows, spatial_mean, columns)


def mean_shift(kind: str, error: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Per-output-channel mean shift ``sum(dW[o] * E[x])`` of a convolution whose weights moved by ``error``.

    CONV_2D weights are (O, kh, kw, I/groups); DEPTHWISE_CONV_2D weights (1, kh, kw, C*multiplier). ``mean`` is
    the input's mean per channel (C,), or per tap and channel (kh, kw, C) (:func:`tap_means`).
    """
    mean = np.broadcast_to(mean, (*error.shape[1:3], mean.shape[-1]))  # (kh, kw, C)
    if kind == "DEPTHWISE_CONV_2D":
        channels = error.shape[-1]
        per_input = mean[..., np.arange(channels) * mean.shape[-1] // channels]
        return (error[0] * per_input).sum(axis=(0, 1))
    out_channels, group_in = error.shape[0], error.shape[-1]
    groups = mean.shape[-1] // group_in
    group_of = np.arange(out_channels) // (out_channels // groups)
    means = mean.reshape(*mean.shape[:2], groups, group_in)[:, :, group_of].transpose(2, 0, 1, 3)  # (O, kh, kw, I/g)
    return (error * means).sum(axis=(1, 2, 3))


MODES = ("per-tap", "per-channel")  # what input mean a correction multiplies the weights' rounding errors by


def correct(float_content: bytes, quantized_content: bytes, means: dict[str, np.ndarray],
            skip: Callable[[str], bool] = lambda scope: False, mode: str = "per-tap") -> tuple[bytes, int]:
    """``float_content`` with each quantized convolution's bias corrected for its int8 weights' rounding.

    ``quantized_content`` is the quantizer's int8 file of the same float model; ``skip(scope)`` is true for the
    convolutions the coming quantization keeps float. ``mode`` ``"per-tap"`` uses what each kernel tap reads on
    average, borders and padding included (:func:`tap_means`); ``"per-channel"`` the input's mean per channel,
    as if every tap read the same. Returns the new float file and the number corrected.
    """
    if mode not in MODES:
        raise ValueError(f"bias correction mode {mode!r} is not one of {MODES}")
    model = read_model(float_content)
    quantized = read_model(quantized_content)
    weights_of = {site.scope: site.weight for site in conv_sites(quantized)}
    graph = model.subgraphs[0]
    users: dict[int, int] = {}
    for tensor in graph.tensors:
        users[tensor.buffer] = users.get(tensor.buffer, 0) + 1
    corrected = 0
    for site in conv_sites(model):
        if site.bias < 0 or skip(site.scope) or site.scope not in weights_of or site.scope not in means:
            continue
        error = _dequantized(quantized, weights_of[site.scope]) - _array(model, site.weight).astype(np.float32)
        if not error.any():
            continue  # weights left float in the quantized file
        taps = (tap_means(means[site.scope], error.shape[1:3], site.stride, site.dilation, site.padding)
                if mode == "per-tap" else means[site.scope].mean(axis=(0, 1)))
        bias = _array(model, site.bias).astype(np.float32) - mean_shift(site.kind, error, taps)
        _set_data(model, site.bias, bias.astype(np.float32), shared=users.get(graph.tensors[site.bias].buffer, 0) > 1)
        corrected += 1
    return write_model(model), corrected


def _set_data(model: Any, index: int, values: np.ndarray, shared: bool) -> None:
    """Store ``values`` as tensor ``index``'s data, in a buffer of its own when its buffer is shared."""
    from ai_edge_litert import schema_py_generated as schema

    tensor = model.subgraphs[0].tensors[index]
    if shared:
        model.buffers.append(schema.BufferT())
        tensor.buffer = len(model.buffers) - 1
    model.buffers[tensor.buffer].data = np.frombuffer(values.tobytes(), dtype=np.uint8)
