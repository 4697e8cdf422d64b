"""KDSalBox students: architecture, parameter names, official checkpoint format, prediction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import salsdk
from salsdk.complexity import count_params
from salsdk.models.kdsalbox.zoo import STUDENTS
from salsdk.weights import WeightsError

NAMES = [s[0] for s in STUDENTS]


def test_all_ten_students_registered_case_insensitively():
    assert salsdk.list_models("kdsalbox") == ["AIM", "IKN", "GBVS", "BMS", "IMSIG", "RARE2012", "SUN", "UniSal",
                                              "SAM", "DGII"]
    assert salsdk.get_card("unisal").name == "UniSal"
    assert salsdk.get_card("rare2012").name == "RARE2012"


def test_torchvision_parameter_names_and_counts():
    model = salsdk.create_model("AIM", weights=None)
    keys = list(model.state_dict())
    # torchvision's mobilenet_v2().features names, as the official student checkpoints store them
    for key in ("encoder.0.0.weight", "encoder.0.1.running_var", "encoder.1.conv.0.0.weight", "encoder.1.conv.1.weight",
                "encoder.2.conv.0.0.weight", "encoder.2.conv.3.running_mean", "encoder.18.0.weight",
                "decoder.conv7_3.weight", "decoder.bn10_2.bias", "decoder.output.weight"):
        assert key in keys
    assert count_params(model.encoder) == 2_223_872  # torchvision MobileNetV2 features
    assert count_params(model) == 10_448_833
    assert sum(t.numel() for t in model.state_dict().values() if t.dtype == torch.float32) == 10_485_761  # + BN running stats: 41.9 MB as float32


def test_output_geometry_follows_the_official_runner():
    model = salsdk.create_model("SUN", weights=None)
    with torch.no_grad():
        out = model(torch.rand(1, 3, 100, 150))
    assert out.shape == (1, 1, 128, 160)  # 32*ceil(H/32) x 32*ceil(W/32)
    assert float(out.min()) > 0 and float(out.max()) < 1  # sigmoid


def test_official_checkpoint_format_round_trip(tmp_path):
    source = salsdk.create_model("BMS", weights=None, seed=3)
    path = tmp_path / "bms.pth"
    torch.save({"student_model": source.state_dict()}, path)
    loaded = salsdk.create_model("BMS", weights=path)
    assert loaded.salsdk_weights.trained and not loaded.salsdk_weights.official
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(source(x), loaded(x))


def test_wrong_checkpoint_is_refused_and_named(tmp_path, tinyhd_s_weights):
    with pytest.raises(WeightsError, match="does not fit model UniSal.*TinyHD-S-x0.25"):
        salsdk.create_model("UniSal", weights=tinyhd_s_weights)


def test_random_init_is_seeded_and_marked_untrained():
    a = salsdk.create_model("GBVS", weights=None, seed=1)
    b = salsdk.create_model("GBVS", weights=None, seed=1)
    assert not a.salsdk_weights.trained and "UNTRAINED" in a.salsdk_weights.label
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.parametrize("name", NAMES)
def test_every_student_predicts_a_structured_map(name, natural_images):
    predictor = salsdk.load(name, weights=None)
    image = natural_images[1][::2, ::2]  # coffee, 200x300
    saliency = predictor.predict(image)
    assert saliency.shape == image.shape[:2] and saliency.dtype == np.float32
    assert np.isfinite(saliency).all() and saliency.std() > 1e-3
