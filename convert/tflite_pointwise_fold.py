"""TFLite pass: 1x1 convolutions on few channels read neighbouring pixels as channels.

XNNPACK's int8 kernels are slow on tensors with few channels: on an Intel Xeon with AVX-512 VNNI, TinyHD's 1x1
convolutions with 2-14 channels at 192x256 take 3-9x their fp32 time (8 frames, 7 -> 14 channels: 3.4 ms int8
against 2.3 ms fp32), the main reason TinyHD's int8 files were no faster than their fp32 ones there. A 1x1 convolution
treats every pixel alike, so on a channels-last tensor (N, H, W, C) it can read ``G`` neighbouring pixels of a row
as one pixel of ``G*C`` channels, a free reshape to (N, H, W/G, G*C), with the block-diagonal weight
``kron(I_G, W)``, and its output reshaped back. The same convolution then runs on ``G`` times wider tensors
(7 -> 14 with G = 4: 1.1 ms int8).

:func:`fold_pointwise` rewrites every full-int8 ``CONV_2D`` (int8 input and weights) whose kernel is 1x1 with stride
1 and whose smaller channel count is below :data:`MIN_CHANNELS`: ``G`` is the smallest power of two that brings it
there (at most :data:`MAX_FOLD`, and dividing the width). It runs on the quantized file, after the depth-to-space
pass, which reads the transpose chains next to some of these convolutions (and ai-edge-quantizer leaves
``DEPTH_TO_SPACE`` float, so neither pass can run before quantization). The weights gain zeros only and each output
channel keeps its scale, zero point and int32 bias, so the file moves and computes the same int8 values: its outputs
are bit-identical (tested). XNNPACK elides the reshapes. Float convolutions (fp32 files, layers an int8 file keeps
float) are left as they are: XNNPACK's fp32 kernels gain nothing, and the block-diagonal weight multiplies their
arithmetic by G (TinyHD-S x1/4 fp32: 83 -> 103 ms folded). The new tensors are named after the convolution's output,
so ``keep_float`` module groups still name all three ops.

Measured on 2 cores of an Intel Xeon (AVX-512 VNNI, AMX), TinyHD-S x1/4 int8: 80 of its 112 convolutions folded,
87-101 ms -> 68-70 ms per map side by side (its fp32 file: 87-96 ms); the int8 file grows 1.52 -> 2.21 MB.
"""
from __future__ import annotations

import copy
from typing import Any

import numpy as np

from salsdk.tflite_model import _schema, read_model, tensor_dtype, write_model

from .tflite_depth_to_space import Graph, Rewriter

MIN_CHANNELS = 32  # fold until the smaller channel count reaches this
MAX_FOLD = 8  # pixels folded into one at most


def fold_factor(in_channels: int, out_channels: int, width: int) -> int:
    """How many neighbouring pixels a 1x1 convolution of these channel counts on rows of ``width`` reads as one."""
    fold = 1
    while min(in_channels, out_channels) * fold < MIN_CHANNELS and fold < MAX_FOLD and width % (fold * 2) == 0:
        fold *= 2
    return fold


def fold_pointwise(content: bytes) -> tuple[bytes, int]:
    """``content`` (a ``.tflite``) with its few-channel int8 1x1 convolutions folded, and how many were."""
    model = read_model(content)
    g = Graph(model)
    rw = Rewriter(g)
    for i, op in enumerate(g.graph.operators):
        fold = _foldable(g, i, op)
        if fold > 1:
            rw.replace[i] = _folded(g, rw, op, fold)
    if not rw.replace:
        return content, 0
    rw.apply()
    return write_model(model), len(rw.replace)


def _foldable(g: Graph, index: int, op: Any) -> int:
    """The fold factor of op ``index`` (1: leave it)."""
    if g.names[index] != "CONV_2D":
        return 1
    weight = g.const(int(op.inputs[1]))
    opts = op.builtinOptions
    if weight is None or weight.dtype != np.int8 or tensor_dtype(g.tensor(int(op.inputs[0]))) != np.int8 \
            or weight.shape[1:3] != (1, 1) \
            or (opts.strideH, opts.strideW, opts.dilationHFactor, opts.dilationWFactor) != (1, 1, 1, 1):
        return 1
    return fold_factor(weight.shape[3], weight.shape[0], g.shape(int(op.inputs[0]))[2])


def _folded(g: Graph, rw: Rewriter, op: Any, fold: int) -> list[Any]:
    """RESHAPE, the block-diagonal CONV_2D and RESHAPE that replace ``op``."""
    source, output = int(op.inputs[0]), int(op.outputs[0])
    n, h, w, c = g.shape(source)
    weight = g.const(int(op.inputs[1]))
    cout = weight.shape[0]
    wide_in = rw.new_tensor(source, [n, h, w // fold, c * fold], "")
    g.tensor(wide_in).name = g.tensor(output).name + b"/fold_in"
    wide_out = rw.new_tensor(output, [n, h, w // fold, cout * fold], "/fold_out")
    block = np.kron(np.eye(fold, dtype=weight.dtype), weight[:, 0, 0, :]).reshape(cout * fold, 1, 1, c * fold)
    conv = _schema().OperatorT()
    conv.opcodeIndex, conv.builtinOptionsType, conv.builtinOptions = op.opcodeIndex, op.builtinOptionsType, \
        op.builtinOptions
    inputs = [wide_in, _tiled(g, rw, int(op.inputs[1]), block, fold)]
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        inputs.append(_tiled(g, rw, int(op.inputs[2]), np.tile(g.const(int(op.inputs[2])), fold), fold))
    conv.inputs, conv.outputs = inputs, [wide_out]
    return [rw.reshape(source, wide_in), conv, rw.reshape(wide_out, output)]


def _tiled(g: Graph, rw: Rewriter, like: int, value: np.ndarray, fold: int) -> int:
    """A weight or bias of the folded convolution: ``value``, with ``like``'s per-output-channel quantization
    repeated for each of the ``fold`` blocks."""
    tensor = rw.new_weight(like, value, "/fold")
    q = copy.copy(g.tensor(like).quantization)
    if q is not None and q.scale is not None and len(q.scale) > 1:
        q.scale = np.tile(np.asarray(q.scale), fold)
        q.zeroPoint = np.tile(np.asarray(q.zeroPoint), fold)
    g.tensor(tensor).quantization = q
    return tensor
