"""TinyHD video prediction with the official x1/4 weights: windowing, streaming and per-frame maps."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import salsdk
from salsdk.imageio import iter_video_frames
from salsdk.metrics import cc
from salsdk.preprocess import preprocess_clip

N_FRAMES = 20  # 16 + a partial MIMO block


@pytest.fixture(scope="module")
def frames(shared_video):
    return list(iter_video_frames(shared_video, max_frames=N_FRAMES))


@pytest.fixture(scope="module")
def miso(tinyhd_s_weights):
    return salsdk.load("TinyHD-S-x0.25", weights=tinyhd_s_weights)


@pytest.fixture(scope="module")
def mimo(tinyhd_m_weights):
    return salsdk.load("TinyHD-M-x0.25", weights=tinyhd_m_weights)


def clip_tensor(predictor, frames):
    return torch.from_numpy(preprocess_clip(frames, predictor.contract.preprocessing)[0][None])


def test_official_weights_are_recognised(miso, mimo):
    assert miso.contract.trained and miso.runtime.model.salsdk_weights.official
    assert mimo.runtime.model.salsdk_weights.official


def test_miso_one_map_per_frame_from_the_last_frame_of_each_window(miso, frames):
    maps = list(miso.predict_video(frames))
    assert len(maps) == N_FRAMES and maps[0].shape == frames[0].shape[:2]
    assert all(np.isfinite(m).all() and m.std() > 1e-3 for m in maps)
    with torch.no_grad():  # frame 17's map = the model on frames 2..17
        direct = miso.runtime.model(clip_tensor(miso, frames[2:18]))[0, 0].numpy()
    resized = salsdk.preprocess.resize_bilinear(direct, frames[0].shape[:2])
    assert np.allclose(maps[17], resized, atol=1e-5)
    with torch.no_grad():  # frame 3's map = frame 0 repeated 12 times, then frames 0..3 (official padding)
        padded = miso.runtime.model(clip_tensor(miso, [frames[0]] * 12 + frames[:4]))[0, 0].numpy()
    assert np.allclose(maps[3], salsdk.preprocess.resize_bilinear(padded, frames[0].shape[:2]), atol=1e-5)


def test_mimo_blocks_and_partial_tail(mimo, frames):
    stream = mimo.stream()
    emitted = [len(stream.push(f)) for f in frames]
    assert emitted[:15] == [0] * 15 and emitted[15] == 16 and sum(emitted) == 16
    tail = stream.flush()
    assert len(tail) == N_FRAMES - 16
    with torch.no_grad():  # the tail comes from the last 16 frames (4..19): their last 4 maps
        block = mimo.runtime.model(clip_tensor(mimo, frames[4:20]))[0, 0].numpy()
    expected = salsdk.preprocess.resize_bilinear(block[-1], frames[0].shape[:2])
    assert np.allclose(tail[-1], expected, atol=1e-5)


def test_mimo_and_miso_agree_roughly(miso, mimo, frames):
    """Two differently trained heads of the same paper: their maps correlate on real video."""
    a = list(miso.predict_video(frames[:16]))[-1]
    b = list(mimo.predict_video(frames[:16]))[-1]
    assert cc(a, b) > 0.5


def test_image_model_refuses_video(frames):
    with pytest.raises(salsdk.InputError, match="image model"):
        list(salsdk.load("UniSal", weights=None).predict_video(frames[:2]))
