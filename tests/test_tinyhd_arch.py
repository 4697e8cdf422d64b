"""TinyHD port: parameter counts (paper Table 5a), official checkpoints, shapes, and an oracle from the official code.

The real x1/4 checkpoints come from ``../shared/weights/tinyhd`` (override with ``SALSDK_SHARED``); tests that need
them skip where that folder is absent. The oracle numbers were produced by the official ``FastSalA`` (public
feiyanhu/tinyHD code, run outside this repository) on :func:`smooth_clip`; this port matched that model bit for bit
on all six variants.
"""
from __future__ import annotations

import pytest
import torch

from salsdk.metrics import cc
from salsdk.models.tinyhd.network import TinyHD, aggregator_channels, build_tinyhd
from salsdk.models.tinyhd.zoo import TINYHD_FRAMES, TINYHD_MEAN, TINYHD_SIZE, TINYHD_STD
from salsdk.weights import unwrap_state_dict

# (mode, width) -> exact parameter count, and the paper's rounded figure (Table 5a) with its unit.
PARAMS = {
    ("S", 1.0): (3_940_981, 3.94, 1e6),
    ("S", 0.5): (1_370_291, 1.37, 1e6),
    ("S", 0.25): (513_121, 513.1, 1e3),
    ("M", 1.0): (3_922_405, 3.92, 1e6),
    ("M", 0.5): (1_366_979, 1.37, 1e6),
    ("M", 0.25): (515_281, 515.3, 1e3),
}
VARIANTS = sorted(PARAMS)
SMALL = (64, 96)  # multiples of 32: fast forwards of random-init variants

# Official FastSalA outputs on smooth_clip(): mean, then values at fixed positions.
ORACLE = {
    "S": (4.85505592e-03, {(0, 0): 4.36738861e-04, (96, 128): 3.48593593e-02, (150, 40): 6.54832053e-04}),
    "M": (3.09613383e-03, {(0, 0, 0): 3.21080035e-04, (7, 96, 128): 1.81750823e-02, (15, 150, 40): 3.65930318e-04}),
}


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def smooth_clip(size: tuple[int, int] = TINYHD_SIZE) -> torch.Tensor:
    """A deterministic (1, 3, 16, H, W) clip that needs no RNG (same on every platform)."""
    t = torch.linspace(0, 1, TINYHD_FRAMES)[:, None, None]
    h = torch.linspace(-1, 1, size[0])[None, :, None]
    w = torch.linspace(-1, 1, size[1])[None, None, :]
    base = torch.stack([torch.sin(6 * h + 4 * w + 3 * t), torch.cos(5 * h * w - 2 * t), torch.sin(9 * w - 7 * h * t)])
    return (2 * base)[None]


def load_official(path) -> TinyHD:
    mode = "S" if "d123s" in path.name else "M"
    model = build_tinyhd(mode, 0.25).eval()
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == ["student_model"]
    model.load_state_dict(unwrap_state_dict(state, "student_model"), strict=True)
    return model


@pytest.mark.parametrize("mode,width", VARIANTS)
def test_parameter_counts_match_paper(mode, width):
    exact, paper, unit = PARAMS[(mode, width)]
    model = build_tinyhd(mode, width)
    count = n_params(model)
    assert count == exact
    digits = 2 if unit == 1e6 else 1
    assert round(count / unit, digits) == paper


@pytest.mark.parametrize("mode,width", VARIANTS)
def test_random_init_shapes_and_finite(mode, width):
    torch.manual_seed(0)
    model = build_tinyhd(mode, width).eval()
    with torch.inference_mode():
        y = model(torch.randn(1, 3, TINYHD_FRAMES, *SMALL))
    expected = (1, 1, *SMALL) if mode == "S" else (1, 1, TINYHD_FRAMES, *SMALL)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all()
    assert ((y > 0) & (y < 1)).all()  # final sigmoid


def test_aggregator_tables_chain():
    # Official inv_config_{1,2,4} spot checks (first / last blocks of each decoder).
    assert aggregator_channels(1)[:1] + aggregator_channels(1)[16:17] + aggregator_channels(1)[-1:] == [
        (28, 24), (520, 544), (2, 1)]  # fmt: skip
    assert aggregator_channels(2)[12] == (65, 136) and aggregator_channels(2)[23] == (14, 1)
    assert aggregator_channels(4)[12] == (130, 136) and aggregator_channels(4)[24] == (7, 6)


def test_constants_and_bad_arguments():
    assert TINYHD_MEAN == (0.485, 0.456, 0.406) and TINYHD_STD == (0.229, 0.224, 0.225)
    assert TINYHD_FRAMES == 16 and TINYHD_SIZE == (192, 256)
    with pytest.raises(ValueError):
        build_tinyhd("X", 1.0)
    with pytest.raises(ValueError):
        build_tinyhd("S", 0.3)
    model = build_tinyhd("S", 0.25).eval()
    with pytest.raises(ValueError, match="16"):
        model(torch.zeros(1, 3, 8, 64, 64))
    with pytest.raises(ValueError, match="32"):
        model(torch.zeros(1, 3, 16, 60, 64))


def test_unwrap_state_dict_is_pure():
    w = torch.zeros(1)
    assert unwrap_state_dict({"student_model": {"module.a.b": w}}, "student_model") == {"a.b": w}
    raw = {"a.b": w}
    assert unwrap_state_dict(raw, "student_model") == raw and unwrap_state_dict(raw, "student_model") is not raw


@pytest.fixture(scope="session")
def official_outputs(tinyhd_s_weights, tinyhd_m_weights):
    """Both official x1/4 models and their outputs on smooth_clip() at the official 192x256."""
    x = smooth_clip()
    out = {}
    for mode, path in (("S", tinyhd_s_weights), ("M", tinyhd_m_weights)):
        model = load_official(path)
        with torch.inference_mode():
            out[mode] = (model, model(x))
    return out


@pytest.mark.parametrize("mode,count", [("S", 513_121), ("M", 515_281)])
def test_official_checkpoints_load_strictly(official_outputs, mode, count):
    model, _ = official_outputs[mode]
    assert n_params(model) == count
    assert len(model.state_dict()) == 980  # parameters + BatchNorm buffers, no extra or missing key


@pytest.mark.parametrize("mode", ["S", "M"])
def test_official_outputs_match_reference(official_outputs, mode):
    _, y = official_outputs[mode]
    expected = (1, 1, *TINYHD_SIZE) if mode == "S" else (1, 1, TINYHD_FRAMES, *TINYHD_SIZE)
    assert tuple(y.shape) == expected
    assert torch.isfinite(y).all() and ((y > 0) & (y < 1)).all()
    mean, points = ORACLE[mode]
    assert y.double().mean().item() == pytest.approx(mean, rel=1e-4)
    for pos, value in points.items():
        assert y[0, 0][pos].item() == pytest.approx(value, rel=1e-3, abs=1e-7)


@pytest.mark.parametrize("mode", ["S", "M"])
def test_rewrite_reproduces_the_official_checkpoints(official_outputs, mode):
    from salsdk.models.tinyhd.framewise import framewise_tinyhd, max_abs_error

    model, expected = official_outputs[mode]
    rewritten = framewise_tinyhd(model)
    with torch.inference_mode():
        got = rewritten(smooth_clip())
    error = max_abs_error(model, rewritten, [smooth_clip()])
    assert error == pytest.approx(float((got - expected).abs().max()), abs=1e-7)
    maps = got.reshape(-1, got.shape[-1]).numpy(), expected.reshape(-1, got.shape[-1]).numpy()
    assert error < 2e-6 and cc(*maps) >= 0.9999


@pytest.mark.parametrize("name,paper_gmacs_per_map", [
    ("TinyHD-S-x1", 5.57), ("TinyHD-S-x0.5", 3.72), ("TinyHD-S-x0.25", 2.34),
    ("TinyHD-M-x1", 7.95 / 16), ("TinyHD-M-x0.5", 6.92 / 16), ("TinyHD-M-x0.25", 4.06 / 16)])
def test_ptflops_style_macs_reproduce_the_paper(name, paper_gmacs_per_map):
    """Tables 1a / 5a: convolutions plus BatchNorm (2), activations, biases and resizing (1 per element)."""
    from salsdk.complexity import model_complexity

    c = model_complexity(name)
    assert c.gmacs_per_map_paper_style == pytest.approx(paper_gmacs_per_map, rel=0.005)
    assert c.gmacs_per_map < c.gmacs_per_map_paper_style  # convolutions alone count less
