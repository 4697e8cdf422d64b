"""Tests that grow with the registry and the format table: a new zoo entry or format is covered without a new test.

For every model of :func:`salsdk.list_models`: its card is complete, its network runs on a small input and gives
the outputs its card promises, a checkpoint written in the official format loads strictly (the same numbers
come back) and it exports to ONNX with the same outputs. For every format of
:data:`salsdk.convert.formats.FORMATS`: the session's small UniSal bundle of that format verifies, names the
format's runtime, and runs (or, for CoreML off macOS, validates) with maps close to fp32 PyTorch.
"""
from __future__ import annotations

import platform
from pathlib import Path

import numpy as np
import pytest
import torch

import salsdk
from salsdk.contract import Contract
from salsdk.convert.formats import FORMATS
from salsdk.registry import get_entry, list_models

MODELS = list_models()
SMALL = (64, 96)  # image models; multiples of 32, as every architecture needs


def small_shape(name: str) -> tuple[int, ...]:
    card = get_entry(name).card
    return Contract.from_card(card).input_shape(SMALL)


def write_official_checkpoint(name: str, model: torch.nn.Module, path: Path) -> Path:
    """``model``'s weights in the format its official checkpoint is published in (the card's checkpoint format)."""
    checkpoint = get_entry(name).card.checkpoint
    if checkpoint.format == "torch":
        state = model.state_dict()
        torch.save({checkpoint.state_key: state} if checkpoint.state_key else state, path)
    elif checkpoint.format == "keras-h5":
        from test_umsi_arch import KERAS22_NAMES, write_keras_layout_h5

        write_keras_layout_h5(model, path, KERAS22_NAMES)
    else:
        pytest.fail(f"no official-format writer for {checkpoint.format!r}: add one here for the new architecture")
    return path


def _outputs(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = model(x)
    return out if isinstance(out, tuple) else (out,)


def test_the_zoo_lists_every_family():
    assert len(MODELS) == 17 and {get_entry(m).card.family for m in MODELS} == {"kdsalbox", "tinyhd", "umsi"}
    assert len({get_entry(m).card.architecture for m in MODELS if get_entry(m).card.family == "kdsalbox"}) == 1


@pytest.mark.parametrize("name", MODELS)
def test_card_is_complete(name):
    card = get_entry(name).card
    assert card.name == name and card.paper and card.summary and card.licence and card.licence_short
    assert card.checkpoint.url.startswith(("https://", "http://")) and card.checkpoint.filename
    assert card.checkpoint.sha256 is None or len(card.checkpoint.sha256) == 64
    assert card.architecture in salsdk.registry.list_architectures()
    assert len(card.outputs) == (2 if card.class_names else 1)
    assert (card.temporal is not None) == (card.task == "video-saliency")
    assert card.to_dict()["name"] == name and salsdk.get_card(name.lower()) == card  # names are case-insensitive


@pytest.fixture(scope="module")
def built() -> dict[str, torch.nn.Module]:
    return {}


def _model(built: dict, name: str) -> torch.nn.Module:
    if name not in built:
        built[name] = salsdk.create_model(name, weights=None, seed=1).eval()
    return built[name]


@pytest.mark.parametrize("name", MODELS)
def test_forward_gives_what_the_card_promises(name, built):
    card = get_entry(name).card
    shape = small_shape(name)
    outputs = _outputs(_model(built, name), torch.from_numpy(np.random.default_rng(0).normal(size=shape)).float())
    saliency = outputs[0]
    assert saliency.shape[:2] == (1, 1) and torch.isfinite(saliency).all() and saliency.std() > 0
    if card.temporal is not None and card.temporal.mode == "mimo":
        assert saliency.shape[2] == card.temporal.frames  # one map per frame
    if card.class_names:
        probs = outputs[1]
        assert probs.shape == (1, len(card.class_names)) and torch.allclose(probs.sum(), torch.tensor(1.0), atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_official_format_checkpoint_loads_strictly(name, built, tmp_path):
    model = _model(built, name)
    path = write_official_checkpoint(name, model, tmp_path / get_entry(name).card.checkpoint.filename)
    loaded = salsdk.create_model(name, weights=path).eval()
    assert loaded.salsdk_weights.trained and loaded.salsdk_weights.sha256
    x = torch.from_numpy(np.random.default_rng(1).normal(size=small_shape(name))).float()
    for a, b in zip(_outputs(model, x), _outputs(loaded, x)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    wrong = {k: v for k, v in list(model.state_dict().items())[1:]}  # one tensor missing: a strict load refuses
    if get_entry(name).card.checkpoint.format == "torch":
        torch.save({"student_model": wrong}, tmp_path / "partial.pth")
        with pytest.raises(salsdk.errors.WeightsError):
            salsdk.create_model(name, weights=tmp_path / "partial.pth")


@pytest.mark.parametrize("name", MODELS)
def test_exports_to_onnx_with_the_same_outputs(name, built, tmp_path):
    import onnxruntime as ort

    model = _model(built, name)
    x = np.random.default_rng(2).normal(size=small_shape(name)).astype(np.float32)
    path = tmp_path / "model.onnx"
    names = ["saliency", "class_probs"][: len(get_entry(name).card.outputs)]
    torch.onnx.export(model, (torch.from_numpy(x),), str(path), input_names=["input"], output_names=names,
                      opset_version=17, dynamo=False)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for ours, theirs in zip(session.run(None, {"input": x}), _outputs(model, torch.from_numpy(x))):
        np.testing.assert_allclose(ours, theirs.numpy(), rtol=1e-3, atol=1e-4)


# ---------------------------------------------------------------------------------------------- the format table
@pytest.mark.parametrize("fmt", FORMATS, ids=[f.key for f in FORMATS])
def test_every_format_makes_a_bundle_that_runs(fmt, unisal_bundles):
    from salsdk.metrics import cc
    from salsdk.parity import reference_predictor

    bundle = unisal_bundles / f"UniSal-{fmt.key}"
    manifest = salsdk.read_manifest(bundle)
    assert manifest.format.key == fmt.key and manifest.format.runtime == fmt.runtime
    assert manifest.format.precision == fmt.precision and manifest.fidelity.cc_min >= manifest.gate
    from skimage import data

    image = data.chelsea()[::3, ::3]
    if fmt.runtime == "coreml" and platform.system() != "Darwin":
        with pytest.raises(salsdk.errors.BundleError, match="macOS"):
            salsdk.load(bundle)
        return
    reference, _ = reference_predictor(manifest)
    got = salsdk.load(bundle).predict(image)
    assert got.shape == image.shape[:2] and cc(got, reference.predict(image)) >= manifest.gate - 0.01
