"""TFLite pass: pixel shuffles that litert-torch lowers to chains of transposes become ``DEPTH_TO_SPACE`` ops.

litert-torch lowers ``F.pixel_shuffle`` (CRD channel order) on a channels-last graph to a transpose to NCHW, three
reshape/transpose pairs and a transpose back: four full copies of the tensor where ``DEPTH_TO_SPACE`` makes one.
Where a shuffled map is added to another, the converter also moves that ADD to NCHW, with a transpose on each
side. :func:`shuffles_to_depth_to_space` rewrites the file:

* every maximal chain of TRANSPOSE/RESHAPE ops is simulated on an index array; one whose result is exactly a
  depth-to-space of its 4-D input (channels-last, or channels-first when what reads it can run channels-last) is
  a candidate. The layout-free ops downstream of a channels-first result (that ADD; TinyHD-M's time up-sampling
  blends of frame slices, concatenations and SUB/MUL/ADD) then run channels-last as a region, and readers that
  start another chain keep a channels-first copy, which the next round folds (shuffles of shuffled maps);
* TFLite's ``DEPTH_TO_SPACE`` has DCR channel order only, so a CRD shuffle needs its input channels permuted:
  as in the ONNX pass (:mod:`salsdk.convert.depth_to_space`) the permutation is folded into the weights of the
  convolutions that produce the input, following it back through channel-wise ops (activations, (de)quantize,
  element-wise arithmetic, batch-axis slices, pads and concatenations, resizes, depthwise convolutions, earlier
  ``DEPTH_TO_SPACE`` ops); plain convolutions that also read a tensor of that region take the permutation on their
  input axis. A shuffle whose region reaches anything else (e.g. a channel concatenation of features that other
  layers read) keeps its transposes.

Only data movement, weight order and the layout of those regions change: fp32 files compute the same function up to
float rounding (the maps of TinyHD-S x1/4 differ by at most 1e-8), int8 files move the same int8 values (the chain's
tensors must share one scale and zero point, which transposes keep). Works on float, fp16 (weights behind
DEQUANTIZE), dynamic-range and full int8 files alike.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from salsdk.tflite_model import _schema, builtin_op_names, drop_unused_tensors, read_model, tensor_dtype, write_model

from .depth_to_space import dcr_order

CHANNEL_AXIS = 3  # channels-last
TO_NCHW, TO_NHWC = (0, 3, 1, 2), (0, 2, 3, 1)
UNARY = {"QUANTIZE", "DEQUANTIZE", "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH",
         "HARD_SWISH", "LEAKY_RELU"}
BINARY = {"ADD", "SUB", "MUL", "MAXIMUM", "MINIMUM"}
CHAIN_OPS = {"TRANSPOSE", "RESHAPE"}


def _depth_to_space(x: np.ndarray, block: int, mode: str) -> np.ndarray:
    """Depth-to-space of a channels-last array in ``mode`` ("DCR": TFLite's, "CRD": PyTorch's pixel shuffle)."""
    n, h, w, c = x.shape
    out = c // (block * block)
    if mode == "DCR":
        return x.reshape(n, h, w, block, block, out).transpose(0, 1, 3, 2, 4, 5).reshape(n, h * block, w * block, out)
    return x.reshape(n, h, w, out, block, block).transpose(0, 1, 4, 2, 5, 3).reshape(n, h * block, w * block, out)


class Graph:
    """Lookups over the main subgraph of a ``ModelT``: op names, producers, readers, constants."""

    def __init__(self, model: Any) -> None:
        self.model, self.graph = model, model.subgraphs[0]
        self.names = builtin_op_names(model)
        self.producer = {int(t): i for i, op in enumerate(self.graph.operators) for t in op.outputs}
        self.readers: dict[int, list[int]] = defaultdict(list)
        for i, op in enumerate(self.graph.operators):
            for t in op.inputs:
                if t >= 0:
                    self.readers[int(t)].append(i)
        self.boundary = {int(t) for t in self.graph.inputs} | {int(t) for t in self.graph.outputs}

    def tensor(self, index: int) -> Any:
        return self.graph.tensors[index]

    def shape(self, index: int) -> list[int]:
        return [int(d) for d in self.tensor(index).shape]

    def const(self, index: int) -> np.ndarray | None:
        """The stored value of tensor ``index`` (None for an activation)."""
        tensor = self.tensor(index)
        data = self.model.buffers[tensor.buffer].data if tensor.buffer > 0 else None
        if data is None or len(data) == 0:
            return None
        return np.frombuffer(np.asarray(data, dtype=np.uint8).tobytes(), tensor_dtype(tensor)).reshape(self.shape(index))

    def weight_source(self, index: int) -> int | None:
        """The stored tensor behind weight ``index``: itself, or the constant a DEQUANTIZE (fp16 files) reads."""
        if self.const(index) is not None:
            return index
        op = self.producer.get(index)
        if op is not None and self.names[op] == "DEQUANTIZE" and len(self.readers[index]) == 1:
            source = int(self.graph.operators[op].inputs[0])
            return source if self.const(source) is not None and len(self.readers[source]) == 1 else None
        return None


def _quant(tensor: Any) -> tuple[tuple[float, ...], tuple[int, ...]]:
    q = tensor.quantization
    if q is None or q.scale is None or len(q.scale) == 0:
        return (), ()
    return tuple(float(s) for s in q.scale), tuple(int(z) for z in (q.zeroPoint if q.zeroPoint is not None else ()))


class _Region:
    """The tensors upstream of a shuffle that take a new channel order, and the weights that absorb it
    (``edits``: stored tensor, axis, order). ``orders[t][k]`` is the old channel that new channel ``k`` holds."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.orders: dict[int, np.ndarray] = {}
        self.edits: list[tuple[int, int, np.ndarray]] = []

    def add(self, tensor: int, order: np.ndarray) -> bool:
        g = self.g
        if tensor in self.orders:
            return bool(np.array_equal(self.orders[tensor], order))
        op_index = g.producer.get(tensor)
        if op_index is None or tensor in g.boundary or len(g.shape(tensor)) != 4:
            return False
        if len(_quant(g.tensor(tensor))[0]) > 1:
            return False  # per-channel activation parameters would need permuting too
        self.orders[tensor] = order
        op, name = g.graph.operators[op_index], g.names[op_index]
        inputs = [int(t) for t in op.inputs]
        if name in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            axis = 0 if name == "CONV_2D" else 3
            if name == "DEPTHWISE_CONV_2D" and g.shape(inputs[0])[CHANNEL_AXIS] != len(order):
                return False  # a channel multiplier ties output channels to input groups
            if not self._weight(inputs[1], axis, order) or (len(inputs) > 2 and inputs[2] >= 0
                                                            and not self._weight(inputs[2], 0, order)):
                return False
            return name == "CONV_2D" or self.add(inputs[0], order)
        if name in UNARY:
            return self.add(inputs[0], order)
        if name == "DEPTH_TO_SPACE":  # made by an earlier round (DCR): input channel q*C + k feeds output k
            area, channels = op.builtinOptions.blockSize ** 2, len(order)
            return self.add(inputs[0], np.array([q * channels + order[k] for q in range(area)
                                                 for k in range(channels)], dtype=np.int64))
        if name in BINARY:
            return all(self._operand(t, order) for t in inputs)
        if name == "CONCATENATION":
            return op.builtinOptions.axis % 4 != CHANNEL_AXIS and all(self.add(t, order) for t in inputs)
        if name == "SLICE":
            begin, size = g.const(inputs[1]), g.const(inputs[2])
            return begin is not None and size is not None and begin[CHANNEL_AXIS] == 0 and \
                size[CHANNEL_AXIS] in (-1, len(order)) and self.add(inputs[0], order)
        if name in ("PAD", "PADV2"):
            pads = g.const(inputs[1])
            return pads is not None and not pads[CHANNEL_AXIS].any() and self.add(inputs[0], order)
        if name in ("RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR"):
            return self.add(inputs[0], order)
        return False

    def _weight(self, tensor: int, axis: int, order: np.ndarray) -> bool:
        source = self.g.weight_source(tensor)
        if source is None or len(self.g.readers[tensor]) != 1:
            return False
        self.edits.append((source, axis, order))
        return True

    def _operand(self, tensor: int, order: np.ndarray) -> bool:
        value = self.g.const(tensor)
        if value is None:
            return self.add(tensor, order)
        return value.size == 1 or (value.ndim >= 1 and value.shape[-1] == 1)  # the same for every channel

    def outside_readers(self, chain_start: int) -> bool:
        """Plain convolutions reading a region tensor permute their input axis; any other outside reader fails."""
        g = self.g
        inside = {g.producer[t] for t in self.orders} | {chain_start}
        for tensor, order in self.orders.items():
            for reader in g.readers[tensor]:
                op = g.graph.operators[reader]
                if reader in inside:
                    continue
                if g.names[reader] != "CONV_2D" or int(op.inputs[0]) != tensor or \
                        not self._weight(int(op.inputs[1]), CHANNEL_AXIS, order):
                    return False
        return True


class Rewriter:
    """Applies the chain replacements to a ``ModelT``: new ops, dropped ops, aliased tensors, permuted weights."""

    def __init__(self, g: Graph) -> None:
        self.g = g
        self.replace: dict[int, list[Any]] = {}  # op index -> the ops that take its place
        self.drop: set[int] = set()
        self.alias: dict[int, int] = {}
        self.edits: list[tuple[int, int, np.ndarray]] = []
        self.touched: set[int] = set()
        self.pending_after: dict[int, list[Any]] = defaultdict(list)  # op index -> new ops right after it
        self.consts: dict[bytes, int] = {}

    def opcode(self, builtin: int) -> int:
        codes = self.g.model.operatorCodes
        for i, code in enumerate(codes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        schema = _schema()
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = builtin
        code.version = 1
        codes.append(code)
        return len(codes) - 1

    def depth_to_space(self, source: int, dest: int, block: int) -> Any:
        schema = _schema()
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(schema.BuiltinOperator.DEPTH_TO_SPACE)
        op.inputs, op.outputs = [source], [dest]
        op.builtinOptionsType = schema.BuiltinOptions.DepthToSpaceOptions
        op.builtinOptions = schema.DepthToSpaceOptionsT()
        op.builtinOptions.blockSize = block
        return op

    def new_tensor(self, like: int, shape: list[int], suffix: str) -> int:
        schema, old = _schema(), self.g.tensor(like)
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = np.array(shape, dtype=np.int32), old.type, 0
        tensor.name, tensor.quantization = old.name + suffix.encode(), old.quantization
        self.g.graph.tensors.append(tensor)
        return len(self.g.graph.tensors) - 1

    def new_const(self, value: np.ndarray) -> int:
        """An int32 constant tensor holding ``value`` (slice bounds, transpose permutations), one per value."""
        data = np.ascontiguousarray(value, dtype=np.int32).tobytes()
        if data in self.consts:
            return self.consts[data]
        schema = _schema()
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data, np.uint8)
        self.g.model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape, tensor.type = np.array([len(value)], dtype=np.int32), schema.TensorType.INT32
        tensor.buffer, tensor.name = len(self.g.model.buffers) - 1, f"salsdk/const{len(self.g.graph.tensors)}".encode()
        self.g.graph.tensors.append(tensor)
        self.consts[data] = len(self.g.graph.tensors) - 1
        return self.consts[data]

    def transpose(self, source: int, dest: int, perm: tuple[int, ...]) -> Any:
        schema = _schema()
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(schema.BuiltinOperator.TRANSPOSE)
        op.inputs, op.outputs = [source, self.new_const(np.array(perm))], [dest]
        op.builtinOptionsType = schema.BuiltinOptions.TransposeOptions
        op.builtinOptions = schema.TransposeOptionsT()
        return op

    def reshape(self, source: int, dest: int) -> Any:
        """A RESHAPE of ``source`` to the shape of ``dest``."""
        schema = _schema()
        op = schema.OperatorT()
        op.opcodeIndex = self.opcode(schema.BuiltinOperator.RESHAPE)
        shape = self.g.shape(dest)
        op.inputs, op.outputs = [source, self.new_const(np.array(shape))], [dest]
        op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
        op.builtinOptions = schema.ReshapeOptionsT()
        op.builtinOptions.newShape = shape
        return op

    def new_weight(self, like: int, value: np.ndarray, suffix: str) -> int:
        """A constant tensor holding ``value``, of ``like``'s type, named after it with ``suffix``."""
        schema, old = _schema(), self.g.tensor(like)
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(np.ascontiguousarray(value, dtype=tensor_dtype(old)).tobytes(), np.uint8)
        self.g.model.buffers.append(buffer)
        tensor = schema.TensorT()
        tensor.shape, tensor.type, tensor.buffer = np.array(value.shape, dtype=np.int32), old.type, \
            len(self.g.model.buffers) - 1
        tensor.name = old.name + suffix.encode()
        self.g.graph.tensors.append(tensor)
        return len(self.g.graph.tensors) - 1

    def apply(self) -> None:
        g, model = self.g, self.g.model
        users = defaultdict(int)
        for tensor in g.graph.tensors:
            users[tensor.buffer] += 1
        for source, axis, order in self.edits:
            tensor = g.tensor(source)
            data = np.frombuffer(np.ascontiguousarray(np.take(g.const(source), order, axis=axis)).tobytes(), np.uint8)
            if users[tensor.buffer] > 1:  # a buffer shared with another tensor: the permuted copy is a new one
                users[tensor.buffer] -= 1
                model.buffers.append(_schema().BufferT())
                tensor.buffer = len(model.buffers) - 1
                users[tensor.buffer] = 1
            model.buffers[tensor.buffer].data = data
            q = tensor.quantization
            if q is not None and q.scale is not None and len(q.scale) > 1 and q.quantizedDimension == axis:
                q.scale = np.asarray(q.scale)[order]
                q.zeroPoint = np.asarray(q.zeroPoint)[order]
        ops = []
        for i, op in enumerate(g.graph.operators):
            for new in ([] if i in self.drop else self.replace.get(i, [op])) + self.pending_after.get(i, []):
                new.inputs = [self.alias.get(int(t), int(t)) for t in new.inputs]
                ops.append(new)
        g.graph.operators = ops
        drop_unused_tensors(model)


def _chains(g: Graph) -> list[tuple[list[int], int, int]]:
    """Maximal TRANSPOSE/RESHAPE chains: (op indices, input tensor, output tensor), inner tensors read once."""
    found = []
    for i, op in enumerate(g.graph.operators):
        if g.names[i] not in CHAIN_OPS:
            continue
        source = int(op.inputs[0])
        before = g.producer.get(source)
        if before is not None and g.names[before] in CHAIN_OPS and len(g.readers[source]) == 1 \
                and source not in g.boundary:
            continue  # inside a chain
        chain, tensor = [i], int(op.outputs[0])
        while len(g.readers[tensor]) == 1 and g.names[g.readers[tensor][0]] in CHAIN_OPS and tensor not in g.boundary:
            chain.append(g.readers[tensor][0])
            tensor = int(g.graph.operators[chain[-1]].outputs[0])
        found.append((chain, source, tensor))
    return found


def _shuffle_of(g: Graph, chain: list[int], source: int, dest: int) -> tuple[int, str, bool] | None:
    """(block, mode, channels_first) if ``chain`` computes a depth-to-space of ``source``, else None."""
    shape, out = g.shape(source), g.shape(dest)
    if len(shape) != 4 or len(out) != 4 or shape[0] != out[0] or _quant(g.tensor(source)) != _quant(g.tensor(dest)):
        return None
    x = np.arange(int(np.prod(shape))).reshape(shape)
    y = x
    for i in chain:
        op = g.graph.operators[i]
        if g.names[i] == "TRANSPOSE":
            perm = g.const(int(op.inputs[1]))
            if perm is None:
                return None
            y = y.transpose([int(p) for p in perm])
        y = y.reshape(g.shape(int(op.outputs[0])))
    for channels_first in (False, True):
        height, width, channels = (out[2], out[3], out[1]) if channels_first else (out[1], out[2], out[3])
        block = height // shape[1]
        if block < 2 or (height, width, channels * block * block) != (shape[1] * block, shape[2] * block, shape[3]):
            continue
        for mode in ("DCR", "CRD"):
            expected = _depth_to_space(x, block, mode)
            if np.array_equal(expected.transpose(TO_NCHW) if channels_first else expected, y):
                return block, mode, channels_first
    return None


def _is_transpose(g: Graph, op_index: int, perm: tuple[int, ...]) -> bool:
    if g.names[op_index] != "TRANSPOSE":
        return False
    value = g.const(int(g.graph.operators[op_index].inputs[1]))
    return value is not None and tuple(int(p) for p in value) == perm


def _const_operand_is_layout_free(value: np.ndarray) -> bool:
    """A constant operand broadcasts the same way channels-first and channels-last: one value, or one per frame."""
    return value.size == 1 or (value.ndim == 4 and value.shape[1:] == (1, 1, 1))


def _back_to_channels_last(g: Graph, rw: Rewriter, dest: int, nhwc: int) -> bool:
    """Make everything downstream of the channels-first shuffle output ``dest`` read its channels-last twin ``nhwc``.

    litert-torch runs the ops between a shuffle and the next convolution channels-first (TinyHD: the ADD of a
    decoder branch, and the time up-sampling blends of frame slices, concatenations, SUB/MUL/ADD). Those ops are
    layout-free, so they move to channels-last as a region: operands transposed from channels-last read the
    original tensor, transposes back to channels-last disappear (their readers read the region's result), slices
    take permuted bounds and concatenations the matching axis. A reader that starts another transpose/reshape
    chain (a nested shuffle) reads a channels-first copy, which the next round folds. Any other reader, or a graph
    output inside the region, leaves the graph as it is (False).
    """
    twins, changes, copies, swapped = {dest: nhwc}, {}, [], set()
    first = min(g.readers[dest], default=len(g.graph.operators))
    for i in range(first, len(g.graph.operators)):
        op, name = g.graph.operators[i], g.names[i]
        inputs = [int(t) for t in op.inputs]
        if not any(t in twins for t in inputs):
            continue
        if i in rw.replace or i in rw.drop:
            return False  # already part of another rewrite this round
        out = int(op.outputs[0])
        if _is_transpose(g, i, TO_NHWC):
            if twins[inputs[0]] == out:
                changes[i] = ("drop",)  # the region op writes this tensor itself
            elif out in g.boundary or _quant(g.tensor(out)) != _quant(g.tensor(twins[inputs[0]])):
                return False
            else:
                changes[i] = ("alias", out, twins[inputs[0]])
        elif name in CHAIN_OPS:
            copies.extend(t for t in inputs[:1] if t not in copies)
        elif name in UNARY | BINARY | {"SLICE", "CONCATENATION"} and len(g.shape(out)) == 4 and out not in g.boundary:
            operands = _channels_last_operands(g, name, inputs, twins, swapped)
            if operands is None:
                return False
            backs = sorted((int(g.graph.operators[r].outputs[0]) for r in g.readers[out] if _is_transpose(g, r, TO_NHWC)
                            and _quant(g.tensor(int(g.graph.operators[r].outputs[0]))) == _quant(g.tensor(out))),
                           key=lambda t: t not in g.boundary)  # a graph output among them is written directly
            shape = g.shape(out)
            twins[out] = backs[0] if backs else rw.new_tensor(out, [shape[0], shape[2], shape[3], shape[1]], "/nhwc")
            changes[i] = ("op", operands, twins[out])
        else:
            return False
    if any(t in g.boundary for t in twins):
        return False
    _apply_channels_last(g, rw, twins, changes, copies, swapped)
    rw.touched.update(twins)  # a channel-order fold through these waits for the next round
    return True


def _channels_last_operands(g: Graph, name: str, inputs: list[int], twins: dict[int, int],
                            swapped: set[int]) -> list[Any] | None:
    """The inputs of a layout-free op in its channels-last form (tensor indices, or arrays for new constants)."""
    operands: list[Any] = []
    for position, t in enumerate(inputs):
        value = g.const(t) if t >= 0 else None
        before = g.producer.get(t)
        if t in twins:
            operands.append(twins[t])
        elif name == "SLICE" and position > 0 and value is not None:
            operands.append(np.asarray(value)[list(TO_NHWC)])  # begin / size in channels-last axis order
        elif name in BINARY and value is not None and _const_operand_is_layout_free(value):
            operands.append(t)
        elif before is not None and _is_transpose(g, before, TO_NCHW) and t not in g.boundary:
            swapped.add(before)  # read the channels-last tensor the transpose was made from
            operands.append(int(g.graph.operators[before].inputs[0]))
        else:
            return None
    return operands


def _apply_channels_last(g: Graph, rw: Rewriter, twins: dict[int, int], changes: dict[int, tuple],
                         copies: list[int], swapped: set[int]) -> None:
    schema = _schema()
    for i, (kind, *args) in changes.items():
        op = g.graph.operators[i]
        if kind in ("alias", "drop"):
            rw.alias.update([args] if args else [])
            rw.drop.add(i)
            continue
        operands, out = args
        new = schema.OperatorT()
        new.opcodeIndex, new.builtinOptionsType, new.builtinOptions = op.opcodeIndex, op.builtinOptionsType, \
            op.builtinOptions
        if g.names[i] == "CONCATENATION":
            new.builtinOptions = schema.ConcatenationOptionsT()
            new.builtinOptions.axis = TO_NHWC.index(op.builtinOptions.axis % 4)
            new.builtinOptions.fusedActivationFunction = op.builtinOptions.fusedActivationFunction
        new.inputs = [rw.new_const(a) if isinstance(a, np.ndarray) else a for a in operands]
        new.outputs = [out]
        rw.replace[i] = [new]
    for t in copies:  # channels-first copies for the chains that read region tensors
        producer = g.producer[t]
        copy = rw.transpose(twins[t], t, TO_NCHW)
        if producer in rw.replace:
            rw.replace[producer].append(copy)
        else:
            rw.pending_after[producer].append(copy)
    for before in swapped:  # transposes to channels-first that nothing reads any more
        if all(r in changes for r in g.readers[int(g.graph.operators[before].outputs[0])]):
            rw.drop.add(before)


def shuffles_to_depth_to_space(content: bytes, max_rounds: int = 4) -> tuple[bytes, int]:
    """``content`` with its pixel-shuffle transpose chains replaced by ``DEPTH_TO_SPACE`` where that is exact
    (see the module docstring), and how many were replaced. Rounds repeat while they replace something: a
    shuffle of a shuffled map folds once the inner one is a ``DEPTH_TO_SPACE``."""
    total = 0
    for _ in range(max_rounds):
        content, replaced = _one_round(content)
        total += replaced
        if not replaced:
            break
    return content, total


def _one_round(content: bytes) -> tuple[bytes, int]:
    model = read_model(content)
    g = Graph(model)
    rw = Rewriter(g)
    replaced = 0
    for chain, source, dest in _chains(g):
        found = _shuffle_of(g, chain, source, dest)
        if found is None or any(i in rw.drop or i in rw.replace for i in chain):
            continue
        block, mode, channels_first = found
        region = _Region(g)
        if mode == "CRD":
            order = dcr_order(g.shape(source)[CHANNEL_AXIS] // (block * block), block)
            if not region.add(source, order) or not region.outside_readers(chain[0]):
                continue
            if any(source_ in rw.touched for source_, _, _ in region.edits) or set(region.orders) & rw.touched:
                continue  # overlaps a region already folded
        out_shape = [g.shape(source)[0], *(d * block for d in g.shape(source)[1:3]), g.shape(source)[3] // block ** 2]
        tensors = len(g.graph.tensors)
        target = rw.new_tensor(dest, out_shape, "/depth_to_space") if channels_first else dest
        if channels_first and not _back_to_channels_last(g, rw, dest, target):
            del g.graph.tensors[tensors:]  # the twins of a region that stays as it is
            continue
        rw.replace[chain[0]] = [rw.depth_to_space(source, target, block)]
        rw.drop.update(chain[1:])
        rw.edits += region.edits
        rw.touched.update(region.orders)
        rw.touched.update(s for s, _, _ in region.edits)
        replaced += 1
    if not replaced:
        return content, 0
    rw.apply()
    return write_model(model), replaced
