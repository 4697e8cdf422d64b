"""Untrained stand-ins (``--random-init``): normalised from photographs like trained networks, so that 8-bit
rounding perturbs their maps as little as it perturbs a trained network's, while the maps still depend on the input.

UMSI is the hard case: before its residual branches closed without offset and its decoder and output were
normalised, 8-bit weights alone moved its maps to CC 0.96.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import salsdk
from salsdk.contract import Contract
from salsdk.convert.formats import select_formats
from salsdk.convert.pipeline import ConvertOptions, convert
from salsdk.metrics import agreement
from salsdk.quantize.calibration import image_calibration
from salsdk.quantize.fidelity import LETTERBOX_NOTE
from salsdk.standins import BATCHNORM_SHIFT, OUTPUT_COVERAGE, RESIDUAL_BRANCH_GAIN, standin_calibration_batch


@pytest.fixture(scope="module")
def umsi() -> torch.nn.Module:
    return salsdk.create_model("UMSI", weights=None)


@pytest.fixture(scope="module")
def held_out(umsi) -> np.ndarray:
    """Held-out real inputs of the built-in set (designs and photos), as the conversion gate uses them."""
    card = umsi.salsdk_card
    hw = tuple(card.preprocessing.size)
    return image_calibration(Contract.from_card(card, trained=False), None, hw, n_calib=2, n_eval=4).evaluation


def _outputs(model: torch.nn.Module, modules: dict[str, torch.nn.Module], batch: torch.Tensor) -> dict[str, torch.Tensor]:
    captured: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda _m, _i, out, key=key: captured.__setitem__(key, out.detach()))
             for key, m in modules.items()]
    try:
        with torch.no_grad():
            model(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return captured


def _heatmaps(model: torch.nn.Module, inputs: np.ndarray | torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return model(torch.as_tensor(inputs))[0][:, 0].numpy()


def test_residual_branches_close_without_offset(umsi):
    """Branch shifts would pile up along the residual stream (UMSI's reached 20 standard deviations by block 12)."""
    norms = [m.residual_branch_norm for m in umsi.modules() if hasattr(m, "residual_branch_norm")]
    assert len(norms) == 12
    for norm in norms:
        assert torch.all(norm.weight == RESIDUAL_BRANCH_GAIN) and torch.all(norm.bias == 0)
    blocks = {n: getattr(umsi.encoder, n) for n in ("block4", "block8", "block12")}
    means = {n: float(out.mean()) for n, out in _outputs(umsi, blocks, standin_calibration_batch(umsi.salsdk_card)).items()}
    assert max(means.values()) - min(means.values()) < 0.5, means


def test_umsi_decoder_and_heatmap_are_normalised_from_photos(umsi):
    convs = {f"c{i}": conv for i, conv in enumerate(umsi.convs_without_batchnorm, start=1)}
    convs["out"] = umsi.relu_output_conv
    outputs = _outputs(umsi, convs, standin_calibration_batch(umsi.salsdk_card))
    for name in ("c1", "c2", "c3", "c4", "c5"):
        channels = outputs[name].transpose(0, 1).flatten(1)
        np.testing.assert_allclose(channels.mean(dim=1), BATCHNORM_SHIFT, atol=1e-3, err_msg=name)
        np.testing.assert_allclose(channels.std(dim=1), 1.0, atol=1e-3, err_msg=name)
    assert float((outputs["out"] > 0).float().mean()) == pytest.approx(OUTPUT_COVERAGE, abs=0.005)


def test_umsi_maps_survive_int8_weights_and_depend_on_the_input(umsi, held_out):
    reference = _heatmaps(umsi, held_out)
    pairs = [agreement(reference[i], reference[j])["cc"] for i in range(len(reference)) for j in range(i)]
    assert max(pairs) < 0.9, f"maps of different inputs are too alike: {np.round(pairs, 3)}"
    originals = {}
    try:
        for name, module in umsi.named_modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                w = originals.setdefault(name, module.weight.data.clone())
                scale = w.abs().amax(dim=tuple(range(1, w.ndim)), keepdim=True).clamp_min(1e-12) / 127
                module.weight.data = torch.round(w / scale) * scale  # symmetric per-channel int8
        rounded = _heatmaps(umsi, held_out)
    finally:
        for name, module in umsi.named_modules():
            if name in originals:
                module.weight.data = originals[name]
    ccs = [agreement(r, q)["cc"] for r, q in zip(reference, rounded)]
    assert min(ccs) >= 0.99, np.round(ccs, 4)


def test_umsi_gate_measures_the_image_content_only(tmp_path):
    """UMSI letterboxes its input: the gate compares only the map's image content, as users receive it. (A gate
    of 0.95 accepts the first min-max artifact, so the test does not pay for a fallback ranking of UMSI.)"""
    outcomes = convert(ConvertOptions(model="UMSI", weights=None, formats=select_formats("onnx-int8", True, False),
                                      out=tmp_path, n_calib=8, n_eval=4, calibration_method="minmax", max_float=0.05,
                                      min_cc=0.95),
                       log=lambda _line: None)
    outcome = next(o for o in outcomes if o.format.key == "onnx-int8")
    assert LETTERBOX_NOTE in outcome.fidelity.notes and outcome.fidelity.n_inputs == 4
    assert outcome.fidelity.top_class_agreement == 1.0
