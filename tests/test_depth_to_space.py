"""The CRD -> DCR pixel-shuffle pass (salsdk.convert.depth_to_space) keeps the function and folds the channel
permutation into the weights, and leaves shuffles it cannot fold alone."""
from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn.functional as F
from torch import nn

from salsdk.convert.depth_to_space import crd_to_dcr


class Shuffles(nn.Module):
    """Three shuffles: after conv + ReLU6; after a shuffled map (nested) that another conv also reads, through
    per-frame arithmetic; after a channel concatenation (cannot be folded)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.lateral = nn.Conv2d(3, 32, 3, padding=1), nn.Conv2d(8, 4, 3, padding=1)
        self.d, self.e = nn.Conv2d(3, 8, 1), nn.Conv2d(3, 8, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z = F.pixel_shuffle(F.relu6(self.a(x)), 2)  # 8 channels at 2x
        y = z * torch.tensor([0.5, 2.0]).view(2, 1, 1, 1) + 1.0  # a per-frame (batch-axis) constant
        nested = F.pixel_shuffle(y, 2)  # 2 channels at 4x: needs z in a new channel order
        concat = F.pixel_shuffle(torch.cat([self.d(x), self.e(x)], dim=1), 2)
        return nested, self.lateral(z), concat


def _export(module: nn.Module, x: torch.Tensor) -> onnx.ModelProto:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module.eval(), (x,), buffer, input_names=["input"], opset_version=17, dynamo=False)
    return onnx.shape_inference.infer_shapes(onnx.load_from_string(buffer.getvalue()))


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    return ort.InferenceSession(model.SerializeToString()).run(None, {"input": x})


def test_crd_shuffles_become_dcr_with_the_same_outputs():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 8, 10)
    model = _export(Shuffles(), x)
    expected = _run(model, x.numpy())
    modes = lambda: sorted(a.s.decode() for n in model.graph.node if n.op_type == "DepthToSpace"  # noqa: E731
                           for a in n.attribute if a.name == "mode")
    assert modes() == ["CRD", "CRD", "CRD"]
    assert crd_to_dcr(model) == 2  # the first folds into conv a; the nested one into a again and lateral's input
    onnx.checker.check_model(model)
    assert modes() == ["CRD", "DCR", "DCR"]
    for got, want in zip(_run(model, x.numpy()), expected):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_shuffle_after_conv_folds_into_its_weights():
    torch.manual_seed(1)
    module = nn.Sequential(nn.Conv2d(3, 12, 3, padding=1), nn.ReLU6(), nn.PixelShuffle(2), nn.Conv2d(3, 2, 1))
    x = torch.randn(1, 3, 6, 6)
    model = _export(module, x)
    expected = _run(model, x.numpy())[0]
    weight_before = {t.name: onnx.numpy_helper.to_array(t) for t in model.graph.initializer}
    assert crd_to_dcr(model) == 1
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    permuted = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == conv.input[1]))
    original = next(v for v in weight_before.values() if v.shape == (12, 3, 3, 3))
    assert not np.array_equal(permuted, original) and np.array_equal(np.sort(permuted.ravel()), np.sort(original.ravel()))
    np.testing.assert_allclose(_run(model, x.numpy())[0], expected, rtol=1e-5, atol=1e-6)


class ChannelsLastShuffles(nn.Module):
    """For the TFLite pass: a shuffle after conv + ReLU6; a shuffle added to a lateral conv of the first (the
    converter moves that ADD to NCHW), itself shuffled again (nested); a shuffle of the input itself (nothing to
    fold the order into)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 1)
        self.lateral = nn.Conv2d(4, 4, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        up = F.pixel_shuffle(F.relu6(self.a(x)), 2)
        added = F.pixel_shuffle(self.b(x), 2) + self.lateral(up)
        raw = F.pixel_shuffle(torch.cat([x, x, x, x], dim=1), 2)
        return up, added, raw, F.pixel_shuffle(added, 2)


def _litert(module: nn.Module, shape: tuple[int, ...], outputs: int = 4) -> bytes:
    import litert_torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wrapped = litert_torch.to_channel_last_io(module.eval(), args=[0], outputs=list(range(outputs)))
        example = torch.zeros(shape).permute(0, 2, 3, 1).contiguous()
        return litert_torch.convert(wrapped, (example,)).model_content()


def _int8(content: bytes, shape: tuple[int, ...], rng: np.random.Generator) -> bytes:
    """``content`` fully int8 through ai-edge-quantizer (salsdk's recipe), calibrated on 4 random inputs."""
    import contextlib

    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_quantizer import quantizer

    from salsdk.quantize.litert_int8 import recipe

    q = quantizer.Quantizer(bytearray(content))
    q.load_quantization_recipe(recipe("int8"))
    signatures = Interpreter(model_content=content).get_signature_list()
    key = next(iter(signatures))
    name = signatures[key]["inputs"][0]
    samples = [{name: rng.standard_normal(shape, dtype=np.float32)} for _ in range(4)]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        return bytes(q.quantize(q.calibrate({key: samples})).quantized_model)


def _tflite_run(content: bytes, x: np.ndarray) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=content, num_threads=1)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return [interpreter.get_tensor(d["index"]) for d in sorted(interpreter.get_output_details(),
                                                               key=lambda d: d["name"])]


def test_tflite_shuffle_chains_become_depth_to_space_with_identical_outputs():
    """fp32 and full int8 files: the foldable shuffles lose their transposes, outputs stay the same (fp32: to
    float rounding; the int8 file moves the same int8 values); the input's own shuffle keeps its transposes."""
    from salsdk.convert.tflite_depth_to_space import shuffles_to_depth_to_space
    from salsdk.tflite_model import op_counts, read_model

    torch.manual_seed(0)
    content = _litert(ChannelsLastShuffles(), (1, 3, 8, 10))
    rng = np.random.default_rng(0)
    int8 = _int8(content, (1, 8, 10, 3), rng)
    x = rng.standard_normal((1, 8, 10, 3), dtype=np.float32)
    for original in (content, int8):
        before = op_counts(original)
        rewritten, replaced = shuffles_to_depth_to_space(original)
        after = op_counts(rewritten)
        assert replaced == 3 and after.get("DEPTH_TO_SPACE") == 3 and "DEPTH_TO_SPACE" not in before
        assert 0 < after["TRANSPOSE"] < before["TRANSPOSE"] - 8, (before, after)  # the raw shuffle keeps its own
        assert len(rewritten) <= len(original)  # permuted weights replace the originals, no second copy
        for got, want in zip(_tflite_run(rewritten, x), _tflite_run(original, x)):
            if got.dtype == np.float32 and original is content:  # the ADD runs channels-last: float rounding
                np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
            else:
                np.testing.assert_array_equal(got, want)
    assert shuffles_to_depth_to_space(rewritten) == (rewritten, 0)  # nothing left that can be folded
    graph = read_model(rewritten).subgraphs[0]  # no tensor left behind that no op produces or reads
    used = {int(t) for op in graph.operators for t in [*op.inputs, *op.outputs] if t >= 0}
    assert used | {int(t) for t in graph.inputs} == set(range(len(graph.tensors)))
    _int8(shuffles_to_depth_to_space(content)[0], (1, 8, 10, 3), rng)  # so ai-edge-quantizer can calibrate it


class TimeBlendShuffles(nn.Module):
    """TinyHD-M's time up-sampling after a decoder ADD: frames on the batch axis, each output frame a blend of
    two input frames (slices, concatenations, SUB/MUL/ADD), then shuffled again. litert-torch runs the whole blend
    channels-first between transposes."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 16, 3, padding=1), nn.Conv2d(3, 16, 1)
        self.lateral = nn.Conv2d(4, 4, 3, padding=1)
        self.head = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        added = F.pixel_shuffle(self.b(x), 2) + self.lateral(F.pixel_shuffle(F.relu6(self.a(x)), 2))
        lo = torch.cat([added[i:i + 1] for i in (0, 0, 1, 1, 2, 2, 3, 3)])
        hi = torch.cat([added[i:i + 1] for i in (0, 1, 1, 2, 2, 3, 3, 3)])
        return self.head(F.pixel_shuffle(lo + (hi - lo) * 0.25, 2))


def test_tflite_channels_first_blends_between_shuffles_run_channels_last():
    """The blend between two shuffles moves to channels-last as a region (slice bounds permuted, concatenations on
    the batch axis), so the nested shuffle folds too: every TRANSPOSE goes, the outputs stay the same."""
    from salsdk.convert.tflite_depth_to_space import shuffles_to_depth_to_space
    from salsdk.tflite_model import op_counts

    torch.manual_seed(0)
    content = _litert(TimeBlendShuffles(), (4, 3, 8, 10), outputs=1)
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 8, 10, 3), dtype=np.float32)
    for original in (content, _int8(content, (4, 8, 10, 3), rng)):
        assert op_counts(original)["TRANSPOSE"] >= 8 and op_counts(original)["SLICE"] == 4
        rewritten, replaced = shuffles_to_depth_to_space(original)
        after = op_counts(rewritten)
        assert replaced == 3 and after["DEPTH_TO_SPACE"] == 3 and "TRANSPOSE" not in after, after
        assert after["SLICE"] == 4 and after["CONCATENATION"] == op_counts(original)["CONCATENATION"]
        np.testing.assert_array_equal(_tflite_run(rewritten, x)[0], _tflite_run(original, x)[0])
        assert shuffles_to_depth_to_space(rewritten) == (rewritten, 0)


def test_tflite_long_concatenations_become_trees_the_xnnpack_delegate_takes():
    """litert-torch merges the blend's concatenation tree into one of 8 inputs, which XNNPACK leaves to TFLite's
    kernel (three delegate partitions); split again, the whole file is one partition with the same outputs."""
    from ai_edge_litert.interpreter import Interpreter
    from ai_edge_litert.schema_py_generated import BuiltinOptions

    from salsdk.convert.tflite_concat import MAX_INPUTS, split_long_concatenations
    from salsdk.tflite_model import read_model

    def partitions(content: bytes) -> int:
        interpreter = Interpreter(model_content=content, num_threads=1)
        interpreter.allocate_tensors()
        return sum(op["op_name"] == "DELEGATE" for op in interpreter._get_ops_details())  # noqa: SLF001

    def longest(content: bytes) -> int:
        graph = read_model(content).subgraphs[0]
        return max(len(op.inputs) for op in graph.operators if op.builtinOptionsType == BuiltinOptions.ConcatenationOptions)

    torch.manual_seed(0)
    content = _litert(TimeBlendShuffles(), (4, 3, 8, 10), outputs=1)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((4, 8, 10, 3), dtype=np.float32)
    for original in (content, _int8(content, (4, 8, 10, 3), rng)):
        assert longest(original) == 8 and partitions(original) > 1
        split, count = split_long_concatenations(original)
        assert count == 2 and longest(split) <= MAX_INPUTS and partitions(split) == 1
        np.testing.assert_array_equal(_tflite_run(split, x)[0], _tflite_run(original, x)[0])
        assert split_long_concatenations(split) == (split, 0)


class FewChannels(nn.Module):
    """1x1 convolutions with few channels (folded in an int8 file), one wide enough not to be, a strided one and a
    3x3 one (never folded)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 6, 3, padding=1)
        self.narrow = nn.ModuleList([nn.Conv2d(6, 12, 1), nn.Conv2d(12, 40, 1), nn.Conv2d(40, 64, 1),
                                     nn.Conv2d(64, 2, 1)])
        self.strided = nn.Conv2d(2, 4, 1, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu6(self.stem(x))
        for conv in self.narrow:
            x = F.relu6(conv(x))
        return self.strided(x)


def test_tflite_few_channel_int8_pointwise_convs_fold_with_identical_outputs():
    """The int8 file's 1x1 convolutions whose smaller channel count is under MIN_CHANNELS read 2-8 neighbouring
    pixels as channels: block-diagonal weights with the same per-channel quantization, one RESHAPE on each side,
    bit-identical outputs; the 40 -> 64, strided and 3x3 convolutions and every float convolution stay."""
    from salsdk.convert.tflite_pointwise_fold import MIN_CHANNELS, fold_factor, fold_pointwise
    from salsdk.tflite_model import op_counts, read_model, tensor_name

    assert MIN_CHANNELS == 32 and fold_factor(6, 12, 16) == 8 and fold_factor(12, 40, 16) == 4
    assert fold_factor(40, 64, 16) == 1 and fold_factor(64, 2, 16) == 8 and fold_factor(2, 4, 6) == 2
    torch.manual_seed(0)
    content = _litert(FewChannels(), (2, 3, 8, 16), outputs=1)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 8, 16, 3), dtype=np.float32)
    int8 = _int8(content, (2, 8, 16, 3), rng)
    assert fold_pointwise(content) == (content, 0)  # float convolutions stay
    folded, count = fold_pointwise(int8)
    assert count == 3
    before, after = op_counts(int8), op_counts(folded)
    assert after["CONV_2D"] == before["CONV_2D"] and after["RESHAPE"] == before.get("RESHAPE", 0) + 2 * count
    np.testing.assert_array_equal(_tflite_run(folded, x)[0], _tflite_run(int8, x)[0])
    graph = read_model(folded).subgraphs[0]
    wide = {tensor_name(graph, int(t)): graph.tensors[t] for op in graph.operators for t in op.inputs[1:2]
            if tensor_name(graph, int(t)).endswith("/fold")}
    assert sorted(tuple(t.shape) for t in wide.values()) == [(16, 1, 1, 512), (96, 1, 1, 48), (160, 1, 1, 48)]
    for weight in wide.values():  # each block keeps its output channels' scales
        scales = np.asarray(weight.quantization.scale)
        blocks = scales.reshape(-1, len(scales) // {16: 8, 96: 8, 160: 4}[len(scales)])
        assert (blocks == blocks[0]).all()
    outputs = {tensor_name(graph, int(op.outputs[0])) for op in graph.operators}
    assert sum(name.endswith("/fold_out") for name in outputs) == count  # named after the convolution's output
