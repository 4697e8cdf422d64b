"""TFLite pass: concatenations with more inputs than the XNNPACK delegate takes become trees of short ones.

The XNNPACK delegate accepts a ``CONCATENATION`` of at most :data:`MAX_INPUTS` inputs; a longer one runs on
TFLite's own kernel, one thread, and splits the delegated graph into separate partitions around it. TinyHD's
framewise graph builds its frame selections and time blends as trees of short concatenations
(:func:`salsdk.models.tinyhd.framewise.concat`), but the converters merge nested concatenations back into one
(TinyHD-M x1/4: 20 of 8-16 inputs, five XNNPACK partitions). :func:`split_long_concatenations` rewrites the file:
each long concatenation concatenates runs of at most :data:`MAX_INPUTS` inputs first, then those runs.

Only data movement changes: outputs are bit-identical. The intermediate tensors take the output's quantization
parameters (a concatenation only copies values when its inputs share them, as ai-edge-quantizer's files do).
"""
from __future__ import annotations

from typing import Any

from salsdk.tflite_model import _schema, read_model, write_model

from .tflite_depth_to_space import Graph, Rewriter

MAX_INPUTS = 5  # the XNNPACK delegate of ai-edge-litert 2.x delegates CONCATENATION of 2 to 5 inputs


def split_long_concatenations(content: bytes, max_inputs: int = MAX_INPUTS) -> tuple[bytes, int]:
    """``content`` with every ``CONCATENATION`` of more than ``max_inputs`` inputs made a tree of concatenations
    of at most ``max_inputs`` each, and how many were split."""
    model = read_model(content)
    g = Graph(model)
    rw = Rewriter(g)
    for i, op in enumerate(g.graph.operators):
        if g.names[i] == "CONCATENATION" and len(op.inputs) > max_inputs:
            rw.replace[i] = _tree(g, rw, op, max_inputs)
    if not rw.replace:
        return content, 0
    rw.apply()
    return write_model(model), len(rw.replace)


def _tree(g: Graph, rw: Rewriter, op: Any, max_inputs: int) -> list[Any]:
    """The ops that replace the long concatenation ``op``: runs of inputs first, the original op last."""
    axis = op.builtinOptions.axis % len(g.shape(int(op.outputs[0])))
    parts, ops = [int(t) for t in op.inputs], []
    while len(parts) > max_inputs:
        runs = [parts[k:k + max_inputs] for k in range(0, len(parts), max_inputs)]
        parts = []
        for run in runs:
            if len(run) == 1:
                parts.append(run[0])
                continue
            shape = g.shape(run[0])
            shape[axis] = sum(g.shape(t)[axis] for t in run)
            out = rw.new_tensor(int(op.outputs[0]), shape, f"/part{len(g.graph.tensors)}")
            ops.append(_concatenation(op, run, out))
            parts.append(out)
    ops.append(_concatenation(op, parts, int(op.outputs[0])))
    return ops


def _concatenation(like: Any, inputs: list[int], output: int) -> Any:
    schema = _schema()
    new = schema.OperatorT()
    new.opcodeIndex, new.builtinOptionsType = like.opcodeIndex, like.builtinOptionsType
    new.builtinOptions = schema.ConcatenationOptionsT()
    new.builtinOptions.axis = like.builtinOptions.axis
    new.builtinOptions.fusedActivationFunction = like.builtinOptions.fusedActivationFunction
    new.inputs, new.outputs = inputs, [output]
    return new
