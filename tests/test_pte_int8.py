"""ExecuTorch int8 (PT2E, XNNPACK quantizer): module groups kept float, delegation, the fallback's ranking.

The pte-int8 bundle itself is made, gated and run with every other format by the session's UniSal bundles
(tests/test_zoo_and_formats.py); these tests check what the fallback relies on.
"""
from __future__ import annotations

import copy
import re

import numpy as np
import pytest
import torch
from torch import nn

pytest.importorskip("executorch")

from salsdk.convert.formats import FORMATS_BY_KEY, select_formats  # noqa: E402
from salsdk.convert.pipeline import ConvertOptions, prepare  # noqa: E402
from salsdk.errors import ConversionError  # noqa: E402
from salsdk.metrics import cc  # noqa: E402
from salsdk.quantize import pte_int8  # noqa: E402
from salsdk.quantize.calibration import image_calibration  # noqa: E402
from salsdk.quantize.ranking import layer_groups  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """The pipeline's export context of the UniSal stand-in at 64x96 (real photographs and designs)."""
    opts = ConvertOptions(model="UniSal", weights=None, size=(64, 96), formats=select_formats("pte-int8"),
                          out=tmp_path_factory.mktemp("pte_out"), n_calib=3, n_eval=2)
    context, reference = prepare(opts, tmp_path_factory.mktemp("pte_work"), log=lambda _: None)
    return context, reference


def test_groups_are_the_network_blocks(ctx):
    groups = layer_groups(ctx[0].model)
    assert groups[:2] == ["encoder.0", "encoder.1"] and groups[-1] == "decoder.output"
    assert len(groups) == 27 and len(set(groups)) == 27  # 19 encoder blocks, 8 decoder convolutions


def _quantize_ops(graph: torch.fx.GraphModule) -> int:
    return sum(1 for n in graph.graph.nodes if n.op == "call_function" and "quantize_per" in str(n.target)
               and "dequantize" not in str(n.target))


def test_kept_groups_run_float_and_stay_delegated(ctx, tmp_path):
    """Keeping two groups float removes their quantize nodes; the lowered program stays fully XNNPACK-delegated
    and matches fp32 on the held-out inputs through the ExecuTorch runtime."""
    from salsdk.convert.pte_export import export_pte
    from salsdk.runtimes import open_runtime

    context, reference = ctx
    graph = pte_int8.capture(context.model, context.input_shape)
    keep = ("encoder.1", "decoder.output")
    full = _quantize_ops(pte_int8.quantize(graph, context.data, "minmax"))
    kept = _quantize_ops(pte_int8.quantize(graph, context.data, "minmax", keep))
    assert 0 < kept < full
    result = export_pte(context, FORMATS_BY_KEY["pte-int8"], tmp_path, keep_float=keep)
    assert result.quantization["kept_float"] == list(keep) and result.quantization["undelegated_ops"] == {}
    runtime = open_runtime("executorch", tmp_path / result.model_file)
    for x, ref in zip(context.data.evaluation, reference):
        out = runtime.run(x[None])[0]
        assert cc(out[0, 0], ref[0, 0]) >= 0.99
    with pytest.raises(ConversionError, match="no module group"):
        export_pte(context, FORMATS_BY_KEY["pte-int8"], tmp_path, keep_float=("encoder.99",))


class _Tiny(nn.Module):
    """Three convolution blocks and a sigmoid head: small enough to rank in seconds."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.body(x)))


def test_ranking_orders_every_group_by_recovery(ctx):
    """The ranking is a permutation of the groups, led by one whose float copy recovers at least as much as any
    other single group (scored as the fallback uses it: everything else quantized)."""
    context = ctx[0]
    data = image_calibration(context.contract, None, (32, 32), n_calib=3, n_eval=1)
    model = _Tiny().eval()
    shape = (1, 3, 32, 32)
    ranking = pte_int8.rank_sensitivity(model, shape, data, "minmax")
    assert sorted(ranking) == sorted(layer_groups(model)) == ["body.0", "body.2", "head"]
    graph = pte_int8.capture(model, shape)
    samples = [torch.from_numpy(s) for s in data.calibration_samples(pte_int8.RANK_SAMPLES)]

    def single(group: str) -> float:
        probe = pte_int8.quantize(graph, data, "minmax", [group])
        with torch.no_grad():
            return min(cc(probe(x).numpy()[0, 0], model(x).numpy()[0, 0]) for x in samples)

    scores = {g: single(g) for g in ranking}
    assert np.isfinite(list(scores.values())).all() and len(set(scores.values())) > 1, scores
    assert scores[ranking[0]] == pytest.approx(max(scores.values()), abs=1e-6), scores


def test_int8_biases_are_corrected_only_where_it_helps(ctx):
    """Every int8 convolution with a bias gets a correction (none of a kept-float group's); :func:`quantize` applies
    it in the mode (per tap, per channel) that raises the lowest map CC on calibration inputs most, or not at all,
    and says which it did with every score."""
    context, _ = ctx
    graph = pte_int8.capture(context.model, context.input_shape)
    convolutions = sum(isinstance(m, nn.Conv2d) for m in context.model.modules())
    plain = pte_int8.quantize(graph, context.data, "minmax", bias="none")
    assert (plain.salsdk_bias_correction, plain.salsdk_bias_mode) == ("not applied, as asked", "none")
    samples = [torch.from_numpy(s) for s in context.data.calibration_samples(pte_int8.RANK_SAMPLES)]
    with torch.no_grad():
        reference = [context.model(x).numpy() for x in samples]
    for keep, expected in (((), convolutions), (("encoder.17",), convolutions - 3)):  # expand, depthwise, project
        quantized = pte_int8.quantize(graph, context.data, "minmax", keep)
        record = quantized.salsdk_bias_correction
        scores = {m: float(v) for m, v in re.findall(r"(none|per-tap|per-channel) (\d\.\d+)", record)}
        chosen = max(scores, key=scores.__getitem__)
        assert set(scores) == {"none", "per-tap", "per-channel"}, record
        assert record.startswith(f"{expected} int8 convolutions, {chosen}:" if chosen != "none" else "not applied")
        assert quantized.salsdk_bias_mode == chosen
        if not keep:
            lowest = pte_int8._lowest_cc(quantized, samples, reference)
            assert lowest == pytest.approx(scores[chosen], abs=1e-4)
            assert lowest >= pte_int8._lowest_cc(plain, samples, reference)
            for mode in ("per-tap", "per-channel"):  # asked for: applied whatever the scores say, and scored as such
                asked = pte_int8.quantize(graph, context.data, "minmax", bias=mode)
                assert asked.salsdk_bias_mode == mode
                assert asked.salsdk_bias_correction.startswith(f"{expected} int8 convolutions, {mode}, as asked:")
                assert pte_int8._lowest_cc(asked, samples, reference) == pytest.approx(scores[mode], abs=1e-4)


@pytest.mark.parametrize("method", pte_int8.METHODS)
def test_kept_float_graphs_take_the_statistics_calibrating_them_would_give(ctx, method):
    """The calibration inputs run once per graph and method; a graph with groups kept float loads its observers'
    statistics from that run, and must come out exactly as if it had been calibrated itself."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    context, _ = ctx
    graph = pte_int8.capture(context.model, context.input_shape)
    keep = ("encoder.0", "encoder.17")  # encoder.0 kept float splits the observer its conv shared with its ReLU6
    reused = pte_int8.quantize(graph, context.data, method, keep, bias="none")
    direct = prepare_pt2e(copy.deepcopy(graph), pte_int8._quantizer(method, keep))
    pte_int8._calibrate(direct, context.data, None)
    direct = convert_pt2e(direct)
    x = torch.from_numpy(context.data.evaluation[:1])
    with torch.no_grad():
        assert torch.equal(reused(x), direct(x))
        full = pte_int8.quantize(graph, context.data, method, bias="none")
        assert not torch.equal(full(x), direct(x))  # the kept groups do run float
    assert _quantize_ops(reused) < _quantize_ops(full)


class _Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + x


class _SharedAcrossGroups(nn.Module):
    """An add (inside group ``res.0``) read by a convolution and by a ReLU outside that group, which PT2E observes
    with one observer shared by the add and the ReLU while both are quantized: keeping ``res.0`` float leaves the
    ReLU observed alone."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.res = nn.Sequential(_Residual(8))
        self.act = nn.ReLU()
        self.head = nn.Conv2d(8, 1, 3, padding=1)
        self.side = nn.Conv2d(8, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shared = self.res(self.stem(x) - 0.5)
        return self.head(self.act(shared)) + self.side(shared)


@pytest.mark.parametrize("method", pte_int8.METHODS)
def test_an_observer_split_by_the_kept_groups_gets_what_calibration_gives(ctx, method):
    """Where keeping groups float splits an observer PT2E shared (an add and its ReLU), the split ones must get
    their own statistics, not the shared one's, without calibrating again (each tensor of a shared observer has a
    private one in the calibration)."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    context, _ = ctx
    torch.manual_seed(0)
    graph = pte_int8.capture(_SharedAcrossGroups().eval(), context.input_shape)
    keep = ("res.0",)
    with pte_int8._pt2e():
        full = prepare_pt2e(copy.deepcopy(graph), pte_int8._quantizer(method, ()))
        direct = prepare_pt2e(copy.deepcopy(graph), pte_int8._quantizer(method, keep))
    split = set(pte_int8._observer_groups(direct)) - set(pte_int8._observer_groups(full))
    assert split and any(len(names) > 1 for names in pte_int8._observer_groups(full))
    reused = pte_int8.quantize(graph, context.data, method, keep, bias="none")
    probe = prepare_pt2e(copy.deepcopy(graph), pte_int8._quantizer(method, keep))
    loaded = pte_int8._observers_from(pte_int8._calibrated(graph, context.data, method, None), probe)
    assert loaded
    pte_int8._calibrate(direct, context.data, None)
    with pte_int8._pt2e():
        direct = convert_pt2e(direct)
    x = torch.from_numpy(context.data.evaluation[:1])
    with torch.no_grad():
        assert torch.equal(reused(x), direct(x))


def test_quantizing_leaves_no_graph_behind(ctx):
    """A ranking quantizes dozens of graphs: none of them may outlive its use (PT2E memoizes a device lookup per
    module, which held two model copies per candidate and took UMSI's fallback to 17 GB)."""
    import gc

    context, _ = ctx
    graph = pte_int8.capture(context.model, context.input_shape)
    size = len(graph.graph.nodes)

    def model_sized() -> int:
        gc.collect()
        return sum(1 for o in gc.get_objects() if isinstance(o, torch.fx.GraphModule) and len(o.graph.nodes) >= size)

    pte_int8.quantize(graph, context.data, "minmax", ("encoder.1",))  # the calibration it caches stays, by design
    alive = model_sized()
    for keep in (("encoder.2",), ("encoder.3", "decoder.output")):
        pte_int8.quantize(graph, context.data, "minmax", keep)
    assert model_sized() == alive
