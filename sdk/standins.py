"""Untrained stand-ins: zoo models with seeded random weights that behave like trained networks.

Official weights are not always at hand; converting, quantizing and benchmarking still need a model whose
activations are normalised and whose maps are smooth, input-dependent functions of the input, as a trained
network's are. :func:`build_untrained` makes one (same seed, same model); everything it builds is marked
untrained wherever it goes.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .cards import ModelCard
from .registry import get_entry

RESIDUAL_BRANCH_GAIN = 0.3  # gain of the BatchNorm closing each residual branch of an untrained stand-in
BATCHNORM_SHIFT = 2.0  # shift of every BatchNorm of an untrained stand-in, in standard deviations
OUTPUT_COVERAGE = 0.4  # share of a ReLU-output stand-in's map that is positive (official UMSI maps: 0.25-0.6)


def build_untrained(name: str, seed: int = 0) -> nn.Module:
    """Build ``name`` with seeded random weights, normalised like a trained network (same seed, same model).

    PyTorch's default initialisation, with BatchNorm statistics at identity, makes deep networks' activations
    vanish (constant maps) or, in residual ones like UMSI's Xception, explode. So convolutions get He-normal
    (fan-in) weights and every BatchNorm's running statistics are then estimated on a few real photographs
    (scikit-image's, through the model's own pre-processing): each layer's activations come out normalised, as
    in a trained network, and the maps are structured and input-dependent.

    Random deep networks are also chaotic: a perturbation as small as fp16 rounding can change the map
    completely, which trained networks do not do and which would make every quantized stand-in fail the fidelity
    gate. Two choices tame that: each residual branch's closing BatchNorm starts at gain
    :data:`RESIDUAL_BRANCH_GAIN` and shift 0 (the damped-residual initialisation of Goyal et al. 2017, which uses
    gain 0), so the identity paths dominate and the residual stream does not drift; and every other BatchNorm's
    shift is :data:`BATCHNORM_SHIFT` standard deviations, so most ReLUs work in their linear range. Layers without
    a BatchNorm of their own (``convs_without_batchnorm``, e.g. UMSI's decoder) are normalised from the same
    photographs (:func:`normalise_conv`), and a ReLU output (``relu_output_conv``, UMSI's heatmap) gets the bias that
    makes :data:`OUTPUT_COVERAGE` of the map positive, as in the official model's maps. The maps stay
    input-dependent (UniSal stand-in: CC 0.6 between the maps of two unrelated photos) and become smooth functions
    of the input: fp16 weights leave them at CC 1.000, and int8 per-channel weights at CC >= 0.993 (UniSal) and
    >= 0.997 (UMSI) on held-out images, against 0.96 for UMSI when branch shifts accumulated along its residual
    stream (to 20 standard deviations by block 12) and its decoder and output were left unnormalised.

    Such models are useful stand-ins for converting, quantizing and benchmarking when official weights are
    absent; they are still untrained and are marked so everywhere.
    """
    entry = get_entry(name)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = entry.build()
        for module in model.modules():
            if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                nn.init.constant_(module.bias, BATCHNORM_SHIFT)
        branch_norms = [getattr(m, "residual_branch_norm", None) for m in model.modules()]
        for norm in filter(None, branch_norms):  # after the loop above, which also visits these norms
            nn.init.constant_(norm.weight, RESIDUAL_BRANCH_GAIN)
            nn.init.zeros_(norm.bias)
    calibrate_batchnorm(model, entry.card)
    batch = standin_calibration_batch(entry.card)
    for conv in getattr(model, "convs_without_batchnorm", ()):
        normalise_conv(model, conv, batch)
    output_conv = getattr(model, "relu_output_conv", None)
    if output_conv is not None:
        calibrate_output_coverage(model, output_conv, batch)
    return model.eval()


def standin_calibration_batch(card: ModelCard, size: tuple[int, int] = (192, 256)) -> torch.Tensor:
    """Four scikit-image photographs through the model's pre-processing (video models: slowly panning clips)."""
    from skimage import data

    from .imageio import load_image
    from .preprocess import preprocess_image

    pre = card.preprocessing
    hw = pre.size or size
    images = [load_image(getattr(data, n)()) for n in ("astronaut", "coffee", "chelsea", "rocket")]
    batch = torch.from_numpy(np.stack([preprocess_image(im, pre, hw)[0] for im in images]))
    if card.temporal is not None:
        batch = torch.stack([torch.roll(batch, shifts=2 * t, dims=3) for t in range(card.temporal.frames)], dim=2)
    return batch


def _output_on(model: nn.Module, module: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """What ``module`` outputs while ``model`` (in eval mode) runs on ``batch``."""
    captured: list[torch.Tensor] = []
    hook = module.register_forward_hook(lambda _module, _inputs, output: captured.append(output.detach()))
    try:
        with torch.no_grad():
            model.eval()(batch)
    finally:
        hook.remove()
    return captured[0]


def normalise_conv(model: nn.Module, conv: nn.Conv2d, batch: torch.Tensor) -> None:
    """Scale ``conv``'s weights and set its bias so that each output channel has unit standard deviation and mean
    :data:`BATCHNORM_SHIFT` on ``batch``: what a calibrated BatchNorm gives the other layers (a data-dependent
    initialisation, Krähenbühl et al. 2016)."""
    output = _output_on(model, conv, batch).transpose(0, 1).flatten(1)
    mean, std = output.mean(dim=1), output.std(dim=1).clamp_min(1e-6)
    with torch.no_grad():
        conv.weight /= std.view(-1, *[1] * (conv.weight.ndim - 1))
        conv.bias.copy_((conv.bias - mean) / std + BATCHNORM_SHIFT)


def calibrate_output_coverage(model: nn.Module, output_conv: nn.Conv2d, batch: torch.Tensor) -> None:
    """Set the bias of ``output_conv`` (whose ReLU is the map) so that :data:`OUTPUT_COVERAGE` of the map is
    positive on ``batch``, as in the official model's maps, instead of a few peaks."""
    values = _output_on(model, output_conv, batch).flatten()
    threshold = torch.kthvalue(values, max(1, round(len(values) * (1 - OUTPUT_COVERAGE)))).values
    with torch.no_grad():
        output_conv.bias -= threshold


def calibrate_batchnorm(model: nn.Module, card: ModelCard) -> None:
    """Set every BatchNorm's running mean/variance to their averages over four scikit-image photographs."""
    batch = standin_calibration_batch(card)
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration pass
    model.train()
    with torch.no_grad():
        model(batch)
    for bn in norms:
        bn.momentum = 0.1
    model.eval()


