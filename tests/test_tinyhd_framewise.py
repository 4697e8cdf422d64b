"""The 3-D-convolution-free TinyHD export graph (salsdk.models.tinyhd.framewise) is the same function.

All six variants with random (well-conditioned) weights at batches of 1 and 2, each temporal configuration against
nn.Conv3d, the few-channel blocks run with frames beside channels, and the exported ONNX graph: no 3-D
convolution, no 5-D tensor after the input. Both public x1/4 checkpoints are checked in test_tinyhd_arch.py
(test_rewrite_reproduces_the_official_checkpoints).
"""
from __future__ import annotations

import copy
import warnings

import numpy as np
import onnx
import pytest
import torch

from salsdk.metrics import cc
from salsdk.models.tinyhd.zoo import TINYHD_FRAMES
from salsdk.models.tinyhd.framewise import (POINTWISE_CHAINS, FramesAsChannelsBlock, FramewiseConv3d, concat,
                                            _replace_convs, fold_batchnorm, framewise_tinyhd,
                                            merge_pointwise_pair)
from salsdk.registry import get_entry
from salsdk.standins import build_untrained

VARIANTS = [f"TinyHD-{m}-x{w}" for m in "SM" for w in ("1", "0.5", "0.25")]


def clips(batch: int, size: tuple[int, int] = (64, 96)) -> torch.Tensor:
    generator = torch.Generator().manual_seed(batch)
    return torch.randn(batch, 3, TINYHD_FRAMES, *size, generator=generator)


def min_cc(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.numpy().reshape(-1, *a.shape[-2:]), b.numpy().reshape(-1, *b.shape[-2:])
    return min(cc(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("name", VARIANTS)
def test_rewrite_reproduces_every_variant(name):
    model = build_untrained(name)
    rewritten = framewise_tinyhd(model)
    assert not any(isinstance(m, torch.nn.Conv3d) for m in rewritten.modules())
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in rewritten.modules())
    x = clips(2)
    with torch.no_grad():
        expected, got, single = model(x), rewritten(x), rewritten(x[1:])
    assert got.shape == expected.shape
    assert float((got - expected).abs().max()) < 5e-6
    assert float((single - expected[1:]).abs().max()) < 5e-6
    assert min_cc(got, expected) >= 0.9999


def test_temporal_taps_and_padding_are_exact():
    """Each temporal config (kernel, stride, padding) of TinyHD, depthwise and dense, against nn.Conv3d + BN."""
    torch.manual_seed(0)
    for (kt, st, pt), frames, groups in [((3, 2, 1), 16, 8), ((3, 1, 1), 4, 8), ((2, 1, 0), 2, 8), ((1, 1, 0), 8, 1),
                                         ((3, 1, 1), 1, 8), ((3, 2, 1), 2, 1)]:
        conv = torch.nn.Conv3d(8, 8, (kt, 3, 3), (st, 2, 2), (pt, 1, 1), groups=groups, bias=False)
        norm = torch.nn.BatchNorm3d(8).eval()
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
        layer = FramewiseConv3d(conv, norm, frames)
        for batch in (2, 1):  # one clip: frame selections are slices, zero frames are computed
            x = torch.randn(batch, 8, frames, 12, 10)
            with torch.no_grad():
                expected = norm(conv(x))
                got = layer(x.transpose(1, 2).reshape(-1, 8, 12, 10))
            got = got.reshape(batch, -1, 8, 6, 5).transpose(1, 2)
            assert got.shape == expected.shape, (kt, st, pt, frames)
            torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        if frames == 1 and kt == 3:
            assert len(layer.taps) == 1  # taps that only ever read the zero padding are dropped
        if groups == 1 and kt > 1:  # a dense layer reads its taps stacked as channels, no zero frames
            assert not layer.taps
            assert [conv.in_channels for conv in layer.stacked] == [8 * len(taps) for _, _, taps in layer.ranges]
            assert sum(count for _, count, _ in layer.ranges) == layer.frames_out


def test_few_channel_blocks_run_with_frames_beside_channels():
    """TinyHD-M's full-resolution blocks with 4 hidden channels on 16 frames (aggregator 33, 35, 36) run as
    (N, T*C, H, W): block-diagonal 1x1 convolutions, depthwise taps on all frames at once, the temporal sum as
    channel shifts. Same function (batches of 1 and 2, the clip's first and last frames included); TinyHD-S has no
    such block and keeps its graph."""
    from salsdk.models.tinyhd.network import T_KEEP, InvertedResidual3d

    torch.manual_seed(0)
    block = InvertedResidual3d(2, 3, 1, 2, T_KEEP, residual=False).eval()
    for norm in (m for m in block.modules() if isinstance(m, torch.nn.BatchNorm3d)):
        norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
    assert FramesAsChannelsBlock.applies(block, 16) and not FramesAsChannelsBlock.applies(block, 1)
    wide = InvertedResidual3d(8, 8, 1, 2, T_KEEP, residual=False)  # 16 hidden channels fill XNNPACK's lanes
    assert not FramesAsChannelsBlock.applies(wide, 16)
    rewritten = FramesAsChannelsBlock(block, 16)
    for batch in (1, 2):
        x = torch.randn(batch, 2, 16, 12, 10)
        with torch.no_grad():
            expected = block(x)
            got = rewritten(x.transpose(1, 2).reshape(-1, 2, 12, 10)).reshape(batch, 16, 3, 12, 10).transpose(1, 2)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
    chosen = {name: [i for i, b in enumerate(framewise_tinyhd(build_untrained(name)).aggregator.aggregate_adapter)
                     if isinstance(b, FramesAsChannelsBlock)] for name in ("TinyHD-S-x0.25", "TinyHD-M-x0.25")}
    assert chosen == {"TinyHD-S-x0.25": [], "TinyHD-M-x0.25": [33, 35, 36]}


def test_project_and_next_expand_merge_into_one_pointwise_conv():
    """A block's 1x1 project and the next block's 1x1 expand, with or without the pixel shuffle between them, are
    one 1x1 conv + ReLU6: same function as the 3-D blocks, one 1x1 convolution fewer per merged pair; blocks whose
    channels do not line up are refused; the zoo's TinyHD graphs merge every pair of POINTWISE_CHAINS."""
    from salsdk.models.tinyhd.network import T_KEEP, T_ONE, InvertedResidual3d

    def per_frame(fn, y):  # (N, C, T, H, W) -> fn on (N*T, C, H, W) -> back
        n, c, t, h, w = y.shape
        out = fn(y.transpose(1, 2).reshape(n * t, c, h, w))
        return out.reshape(n, t, *out.shape[1:]).transpose(1, 2)

    def pointwise(module):
        return sum(isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) for m in module.modules())

    torch.manual_seed(0)
    for shuffle in (1, 2):
        first = InvertedResidual3d(5, 6 * shuffle * shuffle, 1, 2, T_KEEP, residual=False).eval()
        second = InvertedResidual3d(6, 3, 1, 2, T_ONE, residual=False).eval()
        for norm in (m for b in (first, second) for m in b.modules() if isinstance(m, torch.nn.BatchNorm3d)):
            norm.running_mean.uniform_(-1, 1), norm.running_var.uniform_(0.5, 2), norm.bias.data.uniform_(-1, 1)
        x = torch.randn(2, 5, 4, 6, 8)
        up = (lambda y: torch.nn.functional.pixel_shuffle(y, shuffle)) if shuffle > 1 else (lambda y: y)
        merged = [copy.deepcopy(first), copy.deepcopy(second)]
        merge_pointwise_pair(*merged, shuffle)
        for block in merged:
            _replace_convs(block, {"conv.0.0": 4, "conv.1.0": 4, "conv.2": 4})
        with torch.no_grad():
            expected = second(per_frame(up, first(x)))
            got = per_frame(lambda y: merged[1](up(merged[0](y))), x)
        torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)
        assert isinstance(merged[1].conv[0], torch.nn.Identity)
        assert pointwise(merged[0]) + pointwise(merged[1]) == 3  # expand, merged, project (was 4)
    with pytest.raises(ValueError, match="sub-pixels"):
        merge_pointwise_pair(InvertedResidual3d(5, 7, 1, 2, T_KEEP, residual=False),
                             InvertedResidual3d(6, 3, 1, 2, T_ONE, residual=False), 2)
    for name in ("TinyHD-S-x0.25", "TinyHD-M-x1"):
        model = build_untrained(name)
        blocks = framewise_tinyhd(model).aggregator.aggregate_adapter
        assert all(isinstance(blocks[consumer].conv[0], torch.nn.Identity) for _, consumer, _ in POINTWISE_CHAINS)
        original = sum(isinstance(m, torch.nn.Conv3d) and m.kernel_size == (1, 1, 1)
                       for m in model.aggregator.modules())
        assert pointwise(blocks) == original - len(POINTWISE_CHAINS)


def test_batchnorm_folding_and_concat_tree():
    conv = torch.nn.Conv3d(4, 6, 1, bias=True)
    norm = torch.nn.BatchNorm3d(6).eval()
    norm.running_mean.fill_(0.5), norm.running_var.fill_(4.0)
    weight, bias = fold_batchnorm(conv, norm)
    x = torch.randn(1, 4, 2, 3, 3)
    with torch.no_grad():
        torch.testing.assert_close(torch.nn.functional.conv3d(x, weight, bias), norm(conv(x)), atol=1e-6, rtol=1e-6)
    parts = [torch.full((1, 2), float(i)) for i in range(7)]
    assert torch.equal(concat(parts, dim=0), torch.cat(parts, dim=0))


def test_exported_graph_has_no_3d_convolution(tmp_path):
    rewritten = get_entry("TinyHD-M-x0.25").rewrite(build_untrained("TinyHD-M-x0.25"))
    path = tmp_path / "framewise.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(rewritten, (clips(1),), str(path), input_names=["input"], opset_version=17, dynamo=False)
    import onnxslim

    model = onnx.shape_inference.infer_shapes(onnxslim.slim(onnx.load(str(path))))  # as salsdk's ONNX exporter
    weights = {i.name: i for i in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs and all(len(weights[n.input[1]].dims) == 4 for n in convs)
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in model.graph.value_info}
    five_d = [n.op_type for n in model.graph.node if any(ranks.get(o) == 5 for o in n.output)]
    assert len(five_d) <= 2 and set(five_d) <= {"Transpose", "Reshape"}, five_d  # the input fold, the MIMO unfold
    assert not {"Gather", "GatherElements"} & {n.op_type for n in model.graph.node}
    assert np.prod([d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]) == 16 * 64 * 96


def test_pixel_shuffles_of_the_export_graph_switch_to_dcr(tmp_path):
    """The TFLite exporter's CRD -> DCR pass folds all TinyHD-M shuffles but the 4 after channel concatenations
    (feature fusion) into the weights, and ONNX Runtime gives the same maps."""
    import onnxruntime as ort

    from salsdk.convert.onnx2tf_export import write_onnx2tf_input

    rewritten = get_entry("TinyHD-M-x0.25").rewrite(build_untrained("TinyHD-M-x0.25"))
    path = tmp_path / "framewise.onnx"
    x = clips(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(rewritten, (x,), str(path), input_names=["input"], opset_version=17, dynamo=False)
    import onnxslim

    onnx.save(onnxslim.slim(onnx.load(str(path))), str(path))  # as salsdk's ONNX exporter
    assert write_onnx2tf_input(path, tmp_path / "dcr.onnx") == 18
    modes = [a.s for n in onnx.load(str(tmp_path / "dcr.onnx")).graph.node if n.op_type == "DepthToSpace"
             for a in n.attribute if a.name == "mode"]
    assert modes.count(b"DCR") == 18 and modes.count(b"CRD") == 4
    before, after = (ort.InferenceSession(str(p)).run(None, {"input": x.numpy()})[0] for p in (path, tmp_path / "dcr.onnx"))
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
