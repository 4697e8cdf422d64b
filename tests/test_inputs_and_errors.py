"""Images of every kind are read correctly; bad inputs and checkpoints give clear, specific errors."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

import salsdk
from salsdk.cli import main
from salsdk.errors import InputError, UnknownModelError, WeightsError
from salsdk.imageio import load_image


@pytest.fixture(scope="module")
def rgb():
    from skimage import data

    return data.astronaut()[::4, ::4].copy()  # 128x128


def test_modes_are_converted_to_rgb(tmp_path, rgb):
    gray = Image.fromarray(rgb).convert("L")
    assert load_image(gray).shape == (128, 128, 3)
    rgba = Image.fromarray(rgb).convert("RGBA")
    rgba.putalpha(0)  # fully transparent: composited over white
    assert (load_image(rgba) == 255).all()
    palette = Image.fromarray(rgb).convert("P")
    assert np.abs(load_image(palette).astype(int) - rgb).mean() < 20
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)  # 16-bit grayscale
    path16 = tmp_path / "g16.png"
    sixteen.save(path16)
    assert np.array_equal(load_image(path16)[..., 0], np.asarray(gray))


def test_exif_rotation_is_applied(tmp_path, rgb):
    wide = Image.fromarray(rgb[:, :96])  # 128 high, 96 wide
    exif = wide.getexif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "rot.jpg"
    wide.save(path, exif=exif.tobytes())
    assert load_image(path).shape == (96, 128, 3)


def test_arrays(rgb):
    assert np.array_equal(load_image(rgb.astype(np.float32) / 255.0), rgb)
    assert load_image(rgb[..., 0]).shape == (128, 128, 3)
    with pytest.raises(InputError, match="float image array must hold values in"):
        load_image(rgb.astype(np.float32))
    with pytest.raises(InputError, match="must be"):
        load_image(np.zeros((4, 4, 2), np.uint8))


def test_bad_files(tmp_path, rgb):
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InputError, match="not an image file"):
        load_image(text)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="JPEG")
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(InputError, match="truncated or corrupted"):
        load_image(truncated)


def test_bad_checkpoints(tmp_path):
    with pytest.raises(WeightsError, match="does not exist"):
        salsdk.create_model("UniSal", weights=tmp_path / "nope.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00" * 1000)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        salsdk.create_model("UniSal", weights=garbage)
    wrong_key = tmp_path / "wrong_key.pth"
    torch.save({"model": {"w": torch.zeros(1)}, "epoch": 3}, wrong_key)
    with pytest.raises(WeightsError, match="under 'student_model'"):
        salsdk.create_model("UniSal", weights=wrong_key)
    state = salsdk.create_model("UniSal", weights=None).state_dict()
    state["decoder.output.weight"] = torch.zeros(2, 64, 1, 1)
    bad_shape = tmp_path / "bad_shape.pth"
    torch.save({"student_model": state}, bad_shape)
    with pytest.raises(WeightsError, match="1 shape mismatches: decoder.output.weight"):
        salsdk.create_model("UniSal", weights=bad_shape)
    with pytest.raises(WeightsError, match="not in the cache"):
        salsdk.create_model("UniSal", cache_dir=tmp_path / "empty-cache")


def test_pickled_code_is_not_executed(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.pth"
    torch.save({"student_model": Evil()}, path)
    with pytest.raises(WeightsError, match="not a readable PyTorch checkpoint"):
        salsdk.create_model("UniSal", weights=path)


def test_unknown_model_lists_choices():
    with pytest.raises(UnknownModelError, match="available models: AIM"):
        salsdk.create_model("NoSuchNet", weights=None)


def test_convert_sizes_are_checked_per_model():
    """Other sizes must be multiples of 32; a model's own fixed size (UMSI's letterbox, 240x320) always converts."""
    from salsdk.convert.formats import select_formats
    from salsdk.convert.pipeline import ConvertOptions

    def options(model, size):
        return ConvertOptions(model=model, weights=None, size=size, formats=select_formats("onnx-fp32"), out="out")

    options("UMSI", (240, 320)).validate()
    options("UniSal", (64, 96)).validate()
    for model, size in (("UniSal", (240, 320)), ("UMSI", (250, 320)), ("UniSal", (0, 64))):
        with pytest.raises(InputError, match=f"--size {size[0]}x{size[1]}: height and width must be positive multiples"):
            options(model, size).validate()


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    code = main(["predict", "--model", "UniSal", "--random-init", str(tmp_path / "missing.jpg"), "--out",
                 str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and "missing.jpg does not exist" in err and "Traceback" not in err


def test_cli_predict_writes_maps_and_overlays(tmp_path, rgb):
    Image.fromarray(rgb).save(tmp_path / "a.png")
    assert main(["predict", "--model", "unisal", "--random-init", str(tmp_path), "--out", str(tmp_path / "o")]) == 0
    saliency = Image.open(tmp_path / "o" / "a_saliency.png")
    assert saliency.size == (128, 128) and saliency.info["salsdk_trained"] == "False"
    assert (tmp_path / "o" / "a_overlay.png").is_file()
