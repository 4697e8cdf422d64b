"""Shared fixtures: real images (scikit-image + ../shared), the shared TinyHD weights and video.

Data in ``../shared`` (override with ``SALSDK_SHARED``) is read where it lies; tests that need it skip with a
clear reason where it is absent, so the suite still passes on a machine that has only the project.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
TINYHD_S_FORMATS = "onnx-fp32,onnx-int8,tflite-fp32,tflite-int8,tflite-int8-io,openvino-bf16"


def shared_dir() -> Path:
    return Path(os.environ.get("SALSDK_SHARED", REPO.parent / "shared"))


def shared_file(relative: str) -> Path:
    path = shared_dir() / relative
    if not path.exists():
        pytest.skip(f"shared data {path} is absent (set SALSDK_SHARED to the shared/ folder)")
    return path


@pytest.fixture(scope="session")
def tinyhd_s_weights() -> Path:
    return shared_file("weights/tinyhd/d123s_rc4_rc1T.pth")


@pytest.fixture(scope="session")
def tinyhd_m_weights() -> Path:
    return shared_file("weights/tinyhd/d123m_rc4_rc1T.pth")


@pytest.fixture(scope="session")
def shared_video() -> Path:
    return shared_file("data/video/dhf1k_0068.avi")


@pytest.fixture(scope="session")
def natural_images() -> list[np.ndarray]:
    from skimage import data

    return [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]


def convert_bundles(out: Path, model: str, formats: str, **options) -> tuple[Path, list, list[str]]:
    """Run the conversion pipeline (as ``salsdk convert`` does); returns (out, outcomes, log lines)."""
    from salsdk.convert.formats import select_formats
    from salsdk.convert.pipeline import ConvertOptions, convert

    log: list[str] = []
    opts = ConvertOptions(model=model, formats=select_formats(formats, True, False), out=out, **options)
    return out, convert(opts, log=log.append), log


@pytest.fixture(scope="session")
def tinyhd_s_bundles(tmp_path_factory, tinyhd_s_weights, shared_video):
    """ONNX fp32/int8, TFLite fp32/int8/int8-io and OpenVINO bf16 bundles of TinyHD-S-x1/4 (official weights),
    calibrated on the video."""
    return convert_bundles(tmp_path_factory.mktemp("bundles_s"), "TinyHD-S-x0.25", TINYHD_S_FORMATS,
                           weights=str(tinyhd_s_weights), calib=str(shared_video), n_calib=4, n_eval=2)


def all_format_keys() -> str:
    from salsdk.convert.formats import FORMATS

    return ",".join(f.key for f in FORMATS)


@pytest.fixture(scope="session")
def unisal_bundles(tmp_path_factory) -> Path:
    """Small real image bundles (UniSal random init, 96x128) in every format of the format table; converted once
    per session (about 40 s) and shared by the format, runtime, contract, bench and Android tests (copy before
    changing one)."""
    out, outcomes, _ = convert_bundles(tmp_path_factory.mktemp("bundles_unisal"), "UniSal", all_format_keys(),
                                       weights=None, size=(96, 128), n_calib=4, n_eval=2)
    assert all(o.status.startswith("accepted") for o in outcomes), [(o.format.key, o.status, o.message) for o in outcomes]
    return out


@pytest.fixture(scope="session")
def umsi_bundles(tmp_path_factory) -> Path:
    """UMSI (random init, 96x128: letterboxed, BGR, design classes) as ONNX and TFLite fp32, converted once per
    session and shared by the Android and browser tests."""
    out, outcomes, _ = convert_bundles(tmp_path_factory.mktemp("bundles_umsi"), "UMSI", "onnx-fp32,tflite-fp32",
                                       weights=None, size=(96, 128), n_calib=2, n_eval=2)
    assert all(o.status.startswith("accepted") for o in outcomes), [(o.format.key, o.status, o.message) for o in outcomes]
    return out


@pytest.fixture(scope="session")
def tinyhd_m_bundles(tmp_path_factory, tinyhd_m_weights, shared_video) -> Path:
    """TinyHD-M-x1/4 (official weights; MIMO, 16 frames in, 16 maps out) as ONNX and TFLite fp32."""
    out, outcomes, _ = convert_bundles(tmp_path_factory.mktemp("bundles_m"), "TinyHD-M-x0.25", "onnx-fp32,tflite-fp32",
                                       weights=str(tinyhd_m_weights), calib=str(shared_video), n_calib=2, n_eval=2)
    assert all(o.status.startswith("accepted") for o in outcomes), [(o.format.key, o.status, o.message) for o in outcomes]
    return out


def reseal(bundle: Path, edit) -> None:
    """Re-publish ``bundle`` with ``edit(document)`` applied to its manifest, as a conversion would write it: the
    edited manifest embedded in the model file and the file pinned again (so it verifies; a plain edit does not)."""
    import json

    from salsdk.convert.formats import FORMATS_BY_KEY
    from salsdk.manifest import MANIFEST_NAME, embedded_part, pin_files, read_manifest

    manifest = read_manifest(bundle)
    document = embedded_part(manifest.to_dict())
    edit(document)
    FORMATS_BY_KEY[manifest.format.key].embed_manifest(bundle / manifest.model_file, json.dumps(document, sort_keys=True))
    (bundle / MANIFEST_NAME).write_text(pin_files(document, bundle).to_json(), encoding="utf-8")
