"""TFLite flatbuffers as data: read, inspect, rename tensors, embed metadata, write back; no TensorFlow.

Uses the flatbuffer schema module ``ai_edge_litert`` ships (``schema_py_generated``, the object API ``ModelT``)
and the ``flatbuffers`` package, both installed with LiteRT. Converters (onnx2tf, litert-torch) produce the
files; this module gives them salsdk's tensor names and embedded manifest, and counts their operators.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .atomic import write_bytes
from .manifest import CLASS_PROBS, EMBED_KEY, INPUT_NAME, SALIENCY, SALIENCY_LOGITS

Content = bytes


def _schema() -> Any:
    from ai_edge_litert import schema_py_generated

    return schema_py_generated


def read_model(content: Content) -> Any:
    """The flatbuffer as a mutable ``ModelT`` (TensorFlow's generated object API).

    Buffers stored after the flatbuffer (``offset``/``size``, as ai-edge-quantizer writes them) are read into the
    model, so that :func:`write_model` writes one self-contained flatbuffer (files under 2 GB).
    """
    schema = _schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(content, 0))
    for index, buffer in enumerate(model.buffers or []):
        if getattr(buffer, "offset", 0) > 1:  # stored after the flatbuffer (ai-edge-quantizer writes files so)
            end = buffer.offset + buffer.size
            if end > len(content):
                raise ValueError(f"TFLite buffer {index} lies outside the file (bytes {buffer.offset}..{end} of "
                                 f"{len(content)}): the file is truncated or corrupt")
            buffer.data = np.frombuffer(content[buffer.offset:end], dtype=np.uint8)
            buffer.offset = buffer.size = 0
    return model


def write_model(model: Any) -> Content:
    """Serialise a ``ModelT`` back to ``.tflite`` bytes."""
    import flatbuffers

    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def builtin_op_names(model: Any) -> list[str]:
    """Builtin op name of every operator of the main subgraph, in execution order."""
    schema = _schema()
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    result = []
    for op in model.subgraphs[0].operators:
        code = model.operatorCodes[op.opcodeIndex]
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        result.append(names.get(builtin, str(builtin)) if builtin != schema.BuiltinOperator.CUSTOM
                      else f"CUSTOM:{code.customCode.decode()}")
    return result


def op_counts(content: Content) -> dict[str, int]:
    """How many operators of each builtin type the model has."""
    return dict(sorted(Counter(builtin_op_names(read_model(content))).items()))


def ops_after_input(content: Content) -> list[str]:
    """Op types that read the graph input directly (a TRANSPOSE here means onnx2tf left a layout change)."""
    model = read_model(content)
    graph, names = model.subgraphs[0], builtin_op_names(model)
    return [names[i] for i, op in enumerate(graph.operators) if set(op.inputs) & set(graph.inputs)]


def single_op_models(content: Content) -> Iterator[tuple[str, str, Content]]:
    """Each operator of the main subgraph as a model of its own: ``(op type, output tensor name, .tflite bytes)``.

    The operator's stored inputs (weights, shapes, constants) stay stored; its other inputs become the model's
    inputs, its outputs the model's outputs. For timing operators one by one (``salsdk bench``'s LiteRT profile):
    a delegate cannot fuse across models, so an op it would have folded into its neighbour (XNNPACK: a PAD into
    the next convolution) is timed as if it ran alone.
    """
    import copy

    schema = _schema()
    model = read_model(content)
    graph = model.subgraphs[0]
    names = builtin_op_names(model)

    def stored(t: int) -> bool:
        data = model.buffers[graph.tensors[t].buffer].data if graph.tensors[t].buffer > 0 else None
        return data is not None and len(data) > 0

    for i, op in enumerate(graph.operators):
        single = schema.ModelT()
        single.version, single.operatorCodes, single.description = model.version, model.operatorCodes, b"one op"
        single.buffers = [schema.BufferT()]
        sub = schema.SubGraphT()
        sub.tensors, index = [], {}
        for t in [int(t) for t in op.inputs if t >= 0] + [int(t) for t in op.outputs]:
            if t in index:
                continue
            tensor = copy.copy(graph.tensors[t])
            single.buffers.append(model.buffers[tensor.buffer] if stored(t) else schema.BufferT())
            tensor.buffer = len(single.buffers) - 1
            sub.tensors.append(tensor)
            index[t] = len(sub.tensors) - 1
        one = copy.copy(op)
        one.inputs = [index[int(t)] if t >= 0 else -1 for t in op.inputs]
        one.outputs = [index[int(t)] for t in op.outputs]
        sub.operators = [one]
        sub.inputs = list(dict.fromkeys(index[int(t)] for t in op.inputs if t >= 0 and not stored(int(t))))
        sub.outputs = list(one.outputs)
        single.subgraphs = [sub]
        yield names[i], tensor_name(graph, int(op.outputs[0])), write_model(single)


def tensor_name(graph: Any, index: int) -> str:
    """The name of tensor ``index`` of subgraph ``graph`` (a ``SubGraphT``)."""
    return graph.tensors[index].name.decode()


_NUMPY_TYPES = {"FLOAT32": np.float32, "FLOAT16": np.float16, "INT8": np.int8, "UINT8": np.uint8,
                "INT16": np.int16, "INT32": np.int32, "INT64": np.int64}


def tensor_dtype(tensor: Any) -> np.dtype:
    """The numpy dtype of a ``TensorT``'s stored data."""
    names = {v: k for k, v in vars(_schema().TensorType).items() if not k.startswith("_")}
    name = names.get(tensor.type, str(tensor.type))
    if name not in _NUMPY_TYPES:
        raise ValueError(f"TFLite tensor type {name} is not read here")
    return np.dtype(_NUMPY_TYPES[name])


def output_activations(content: Content, op_types: Sequence[str]) -> list[str]:
    """Names of graph-output tensors produced by an op of one of ``op_types`` (e.g. the final Sigmoid)."""
    model = read_model(content)
    graph, names = model.subgraphs[0], builtin_op_names(model)
    return [tensor_name(graph, out) for i, op in enumerate(graph.operators) if names[i] in op_types
            for out in op.outputs if out in set(graph.outputs)]


def _role(tensor: Any) -> str:
    """salsdk's name for an output: rank 2 is class probabilities, a map is the saliency (or its logits, when
    :func:`saliency_logits` made it so)."""
    if tensor.name and tensor.name.decode() == SALIENCY_LOGITS:
        return SALIENCY_LOGITS
    return CLASS_PROBS if len(tensor.shape) == 2 else SALIENCY


LAYOUT_OPS = ("RESHAPE", "TRANSPOSE", "SQUEEZE", "EXPAND_DIMS")  # ops a sigmoid commutes with exactly


def _final_sigmoid(model: Any) -> tuple[int, int] | None:
    """(index of the LOGISTIC op, the map output tensor) when the graph's one map output is a sigmoid followed by
    nothing but layout ops (TinyHD-M reshapes its frames after it), each tensor on the way read by one op only."""
    graph, names = model.subgraphs[0], builtin_op_names(model)
    maps = [t for t in graph.outputs if len(graph.tensors[t].shape) in (4, 5)]
    if len(maps) != 1:
        return None
    producer = {t: i for i, op in enumerate(graph.operators) for t in op.outputs}
    readers = Counter(t for op in graph.operators for t in op.inputs if t >= 0)
    tensor = maps[0]
    while tensor in producer:
        index = producer[tensor]
        if names[index] == "LOGISTIC":
            return index, maps[0]
        if names[index] not in LAYOUT_OPS:
            return None
        tensor = graph.operators[index].inputs[0]
        if readers[tensor] != 1 or tensor in graph.outputs:
            return None
    return None


def ends_in_sigmoid(content: Content) -> bool:
    """Whether the saliency map output is a sigmoid (up to layout ops), which :func:`saliency_logits` removes."""
    return _final_sigmoid(read_model(content)) is not None


def saliency_logits(content: Content) -> Content:
    """The model with its final sigmoid removed: what read the sigmoid's output reads its input, and the map
    output, named ``saliency_logits``, holds logits (the manifest then gives it ``activation: "sigmoid"``).

    Saliency maps are mostly small values (TinyHD's peak near 0.14): an int8 sigmoid output, whose scale TFLite
    fixes at 1/256, holds a few dozen levels of them, while int8 logits span their own calibrated range.
    """
    model = read_model(content)
    found = _final_sigmoid(model)
    if found is None:
        raise ValueError("the TFLite graph's map output is not a sigmoid (followed only by layout ops)")
    graph = model.subgraphs[0]
    index, map_output = found
    op = graph.operators[index]
    logits, output = op.inputs[0], op.outputs[0]
    named = logits if map_output == output else map_output
    graph.tensors[named].name = SALIENCY_LOGITS.encode()
    for reader in graph.operators:  # what read the sigmoid's output reads its input
        reader.inputs = [logits if i == output else i for i in reader.inputs]
    graph.outputs = [logits if i == output else i for i in graph.outputs]
    for signature in model.signatureDefs or []:
        for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
            entry.tensorIndex = logits if entry.tensorIndex == output else entry.tensorIndex
    del graph.operators[index]
    drop_unused_tensors(model)
    return write_model(model)


def drop_unused_tensors(model: Any) -> None:
    """Remove the tensors of the main subgraph that no operator, graph input or output refers to, and the
    buffers only they held, renumbering the rest (signatures included).

    Graph rewrites leave such tensors behind (an op's old output, a replaced weight); tools that walk every
    tensor fail on one that no op produces (ai-edge-quantizer's calibration: "Tensor data is null"), and a dropped
    weight's buffer would still be stored in the file.
    """
    graph = model.subgraphs[0]
    refs = [*graph.inputs, *graph.outputs]
    for op in graph.operators:
        refs += [*op.inputs, *op.outputs, *(op.intermediates if op.intermediates is not None else [])]
    kept = sorted({int(i) for i in refs if i >= 0})
    new = {old: k for k, old in enumerate(kept)}

    def moved(i: int) -> int:
        return new[int(i)] if i >= 0 else int(i)

    graph.tensors = [graph.tensors[i] for i in kept]
    for op in graph.operators:
        op.inputs = [moved(i) for i in op.inputs]
        op.outputs = [moved(i) for i in op.outputs]
        op.intermediates = [moved(i) for i in op.intermediates] if op.intermediates is not None else None
    graph.inputs = [moved(i) for i in graph.inputs]
    graph.outputs = [moved(i) for i in graph.outputs]
    for signature in model.signatureDefs or []:
        if signature.subgraphIndex == 0:
            for entry in [*(signature.inputs or []), *(signature.outputs or [])]:
                entry.tensorIndex = moved(entry.tensorIndex)
    held = {0} | {t.buffer for sub in model.subgraphs for t in sub.tensors} | {m.buffer for m in model.metadata or []}
    for index, buffer in enumerate(model.buffers):
        if index not in held:
            buffer.data = None  # an empty buffer: indices of the others stay as they are


def name_io_tensors(content: Content) -> Content:
    """Rename the graph input to ``input`` and outputs to ``saliency``/``class_probs``, signature included
    (``saliency_logits`` keeps its name).

    onnx2tf and the SavedModel route name them ``Identity``/``serving_default_input:0``/``PartitionedCall:0``;
    with the ONNX names the file documents itself and runtimes can pick outputs by name.
    """
    schema = _schema()
    model = read_model(content)
    graph = model.subgraphs[0]
    if len(graph.inputs) != 1:
        raise ValueError(f"the TFLite graph has {len(graph.inputs)} inputs; salsdk models have one")
    new_names = {graph.inputs[0]: INPUT_NAME}
    roles = [_role(graph.tensors[i]) for i in graph.outputs]
    if len(set(roles)) != len(roles):
        raise ValueError(f"cannot tell the TFLite outputs apart by rank: {roles}")
    new_names.update(zip(graph.outputs, roles))
    for index, name in new_names.items():
        graph.tensors[index].name = name.encode()

    def tensor_map(index: int) -> Any:
        entry = schema.TensorMapT()
        entry.name, entry.tensorIndex = new_names[index].encode(), index
        return entry

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = b"serving_default", 0
    signature.inputs = [tensor_map(i) for i in graph.inputs]
    signature.outputs = [tensor_map(i) for i in graph.outputs]
    model.signatureDefs = [signature]
    return write_model(model)


def embed_manifest(path: Path, manifest_json: str) -> None:
    """Add (or replace) the ``salsdk_manifest`` metadata entry: a buffer holding the UTF-8 JSON; atomic write."""
    schema = _schema()
    path = Path(path)
    model = read_model(path.read_bytes())
    data = np.frombuffer(manifest_json.encode("utf-8"), dtype=np.uint8)
    model.metadata = model.metadata or []
    entry = next((m for m in model.metadata if m.name and m.name.decode() == EMBED_KEY), None)
    if entry is None:
        buffer = schema.BufferT()
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = EMBED_KEY.encode(), len(model.buffers) - 1
        model.metadata.append(entry)
    model.buffers[entry.buffer].data = data
    write_bytes(path, write_model(model))
