"""ONNX pass for TFLite: pixel shuffles (``DepthToSpace`` in CRD mode) re-expressed in DCR mode.

PyTorch exports ``pixel_shuffle`` as ``DepthToSpace`` with ``mode="CRD"``; TFLite's ``DEPTH_TO_SPACE`` only has
the DCR channel order, so onnx2tf lowers every CRD shuffle to a reshape, a 6-D transpose and a reshape: three
full copies of the tensor (about 6 ms per full-size TinyHD-M shuffle here, against 1 ms for ``DEPTH_TO_SPACE``).

The two modes differ only by a fixed permutation of the input channels: DCR reads channel ``q * C' + c`` where
CRD reads ``c * b*b + q``. :func:`crd_to_dcr` switches a shuffle to DCR when that permutation can be folded
into the graph: it follows the shuffle's input back through channel-wise operations (activations,
element-wise arithmetic with per-tensor constants, slices, pads and concatenations along non-channel axes,
resizes, depthwise convolutions) to the convolutions that produce it, and permutes their output channels
(weights and bias); convolutions that also read a tensor of that region get their input channels permuted
alike. A shuffle whose region reaches anything else (a reshape, a graph input, a channel concatenation, another
kind of reader) is left in CRD mode. The function is unchanged: only data movement and weight order change.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper

CHANNEL_AXIS = 1
UNARY = {"Relu", "Clip", "Sigmoid", "LeakyRelu", "HardSigmoid", "HardSwish", "Tanh", "Identity", "Neg"}
BINARY = {"Add", "Sub", "Mul", "Div"}


def dcr_order(channels_out: int, block: int) -> np.ndarray:
    """``order[k]``: the CRD input channel that DCR input channel ``k`` must hold."""
    area = block * block
    return np.array([c * area + q for q in range(area) for c in range(channels_out)], dtype=np.int64)


def _shuffle_input_order(node: onnx.NodeProto, g: "_Graph", order: np.ndarray) -> np.ndarray:
    """Channel order a DepthToSpace's input needs so that its output comes out in ``order``."""
    area = int(g.attr(node, "blocksize")) ** 2
    channels = len(order)
    if _mode(node) == "CRD":  # output channel c reads input channels c*area .. c*area + area-1
        return np.array([order[k] * area + q for k in range(channels) for q in range(area)], dtype=np.int64)
    return np.array([q * channels + order[k] for q in range(area) for k in range(channels)], dtype=np.int64)


class _Graph:
    """Lookups over an ONNX graph: producer and readers of each tensor, constants, attributes."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.graph = model.graph
        self.producer = {out: node for node in self.graph.node for out in node.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
        for node in self.graph.node:
            for name in node.input:
                self.consumers[name].append(node)
        self.init = {t.name: t for t in self.graph.initializer}
        self.outputs = {o.name for o in self.graph.output}

    def const(self, name: str) -> np.ndarray | None:
        if name in self.init:
            return numpy_helper.to_array(self.init[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            return numpy_helper.to_array(node.attribute[0].t)
        return None

    @staticmethod
    def attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
        for a in node.attribute:
            if a.name == name:
                return onnx.helper.get_attribute_value(a)
        return default

    def slice_axes(self, node: onnx.NodeProto) -> list[int] | None:
        """Axes a Slice node cuts (None if they are not constant)."""
        if len(node.input) > 3 and node.input[3]:
            axes = self.const(node.input[3])
            return None if axes is None else [int(a) for a in axes.ravel()]
        starts = self.const(node.input[1])
        return None if starts is None else list(range(starts.size))


class _Region:
    """The tensors upstream of a shuffle that must take a new channel order, and the weights that absorb it.

    ``orders[t][k]`` is the old channel of tensor ``t`` that its new channel ``k`` holds.
    """

    def __init__(self, g: _Graph) -> None:
        self.g = g
        self.orders: dict[str, np.ndarray] = {}
        self.edits: list[tuple[onnx.NodeProto, int, int, np.ndarray]] = []  # (node, input index, axis, order)

    def add(self, tensor: str, order: np.ndarray) -> bool:
        """Give ``tensor`` the channel ``order``, and its producers what that needs; False if impossible."""
        g = self.g
        if tensor in self.orders:
            return bool(np.array_equal(self.orders[tensor], order))
        node = g.producer.get(tensor)
        if node is None or tensor in g.outputs or tensor in g.init:
            return False  # a graph input, output or constant
        self.orders[tensor] = order
        op = node.op_type
        if op == "Conv":
            group = int(g.attr(node, "group", 1))
            weight = g.const(node.input[1])
            if weight is None or (group != 1 and (group != weight.shape[0] or weight.shape[1] != 1)):
                return False  # grouped but not depthwise: output channels are tied to input groups
            self.edits += [(node, i, 0, order) for i in (1, 2) if len(node.input) > i and node.input[i]]
            return group == 1 or self.add(node.input[0], order)  # depthwise: the input follows the order
        if op == "DepthToSpace":
            return self.add(node.input[0], _shuffle_input_order(node, g, order))
        if op in UNARY:
            return self.add(node.input[0], order)
        if op in BINARY:
            return all(self._operand(node, i, order) for i in range(len(node.input)))
        if op == "Slice":
            axes = g.slice_axes(node)
            return axes is not None and all(a >= 0 and a != CHANNEL_AXIS for a in axes) and \
                self.add(node.input[0], order)
        if op == "Concat":
            return 0 <= int(g.attr(node, "axis")) != CHANNEL_AXIS and \
                all(self.add(name, order) for name in node.input)
        if op == "Pad":
            pads = g.const(node.input[1])
            return pads is not None and pads.size == 8 and pads[1] == pads[5] == 0 and self.add(node.input[0], order)
        if op == "Resize":
            scales = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            return scales is not None and scales.size == 4 and scales[CHANNEL_AXIS] == 1 and \
                self.add(node.input[0], order)
        return False

    def _operand(self, node: onnx.NodeProto, index: int, order: np.ndarray) -> bool:
        value = self.g.const(node.input[index])
        if value is None:
            return self.add(node.input[index], order)
        if value.ndim < 3 or value.shape[-3] == 1:
            return True  # the same for every channel
        if value.ndim != 4:
            return False
        self.edits.append((node, index, 1, order))
        return True

    def outside_readers(self, shuffle: onnx.NodeProto) -> bool:
        """Let every reader take the new order: plain convolutions permute their weights' input axis, ops of the
        region already follow it; False if any other node reads a region tensor."""
        inside = {id(self.g.producer[t]) for t in self.orders} | {id(shuffle)}
        for tensor, order in self.orders.items():
            for reader in self.g.consumers[tensor]:
                plain_conv = reader.op_type == "Conv" and reader.input[0] == tensor and \
                    int(self.g.attr(reader, "group", 1)) == 1 and self.g.const(reader.input[1]) is not None
                if plain_conv:
                    self.edits.append((reader, 1, 1, order))
                elif id(reader) not in inside:
                    return False
        return True

    def apply(self) -> None:
        """Write the permuted constants as new initializers (the originals may be shared)."""
        graph, values = self.g.graph, {}
        for node, index, axis, order in self.edits:
            name = node.input[index]
            value = np.take(values[name] if name in values else self.g.const(name), order, axis=axis)
            node.input[index] = f"{name.split('_dcr')[0]}_dcr{len(graph.initializer)}"
            values[node.input[index]] = value
            graph.initializer.append(numpy_helper.from_array(value, node.input[index]))


def crd_to_dcr(model: onnx.ModelProto) -> int:
    """Switch CRD ``DepthToSpace`` nodes of ``model`` to DCR in place where the channel permutation folds into
    the weights (see the module docstring); returns how many were switched. Needs shape information
    (``onnx.shape_inference.infer_shapes``) for the shuffles' channel counts."""
    shapes = {v.name: v.type.tensor_type.shape.dim for v in list(model.graph.value_info) + list(model.graph.output)}
    switched = 0
    for node in list(model.graph.node):
        if node.op_type != "DepthToSpace" or _mode(node) != "CRD":
            continue
        dims = shapes.get(node.output[0])
        if dims is None or len(dims) != 4 or not dims[CHANNEL_AXIS].dim_value:
            continue
        g = _Graph(model)  # fresh maps: earlier switches replaced initializers
        region = _Region(g)
        order = dcr_order(dims[CHANNEL_AXIS].dim_value, int(g.attr(node, "blocksize")))
        if not region.add(node.input[0], order) or not region.outside_readers(node):
            continue
        region.apply()
        for a in node.attribute:
            if a.name == "mode":
                a.s = b"DCR"
        switched += 1
    if switched:
        used = {name for node in model.graph.node for name in node.input}
        kept = [t for t in model.graph.initializer if t.name in used]
        del model.graph.initializer[:]
        model.graph.initializer.extend(kept)
    return switched


def _mode(node: onnx.NodeProto) -> str:
    """A DepthToSpace node's mode (ONNX's default is DCR)."""
    for a in node.attribute:
        if a.name == "mode":
            return a.s.decode()
    return "DCR"
