"""Calibration and held-out evaluation inputs built from real images through the model's own pre-processing.

Sources: a folder of images, a video, or — only when none is given — the built-in set, which is named in full
in every report: the natural images scikit-image ships, the design screenshots and the DHF1K clip of
``../shared`` (``SALSDK_SHARED``) when present. Inputs are split deterministically into a calibration part and a
held-out evaluation part that shares no image (or, for video, no frame) with it.

:class:`CalibrationData` is the one reader of these inputs; each toolchain takes them in its own form through
its methods: canonical batches (ONNX Runtime, PyTorch), channels-last samples (TFLite, ai-edge-quantizer), and
onnx2tf's 20-image sample file.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from salsdk.contract import Contract
from salsdk.errors import InputError
from salsdk.geometry import Geometry
from salsdk.imageio import IMAGE_SUFFIXES, is_video_path, iter_video_frames, load_image
from salsdk.samples import builtin_images, builtin_video
from salsdk.preprocess import preprocess_clip, preprocess_image, resize_bilinear

STREAM_START_FRAMES = (1, 4, 8, 12)  # real frames in the stream-start windows of MISO calibration/evaluation


ONNX2TF_SAMPLE = "calibration_image_sample_data_20x128x128x3_float32.npy"  # onnx2tf downloads one when absent
CHANNELS_LAST = {4: (0, 2, 3, 1), 5: (0, 2, 3, 4, 1)}


@dataclass
class CalibrationData:
    """Pre-processed inputs (canonical layout) for calibration and for held-out evaluation, with their names."""

    calibration: np.ndarray
    calibration_sources: list[str]
    evaluation: np.ndarray
    evaluation_sources: list[str]
    evaluation_geometry: list[Geometry] | None = None  # where each held-out image lies in its input (letterbox)

    def calibration_samples(self, limit: int | None = None, channels_last: bool = False) -> Iterator[np.ndarray]:
        """The calibration inputs one by one as batches of 1, canonical or channels-last (NHWC / NTHWC)."""
        for sample in self.calibration[:limit]:
            x = np.ascontiguousarray(sample[None], dtype=np.float32)
            yield np.ascontiguousarray(x.transpose(CHANNELS_LAST[x.ndim])) if channels_last else x

    def write_onnx2tf_sample(self, contract: Contract, path: Path) -> Path:
        """onnx2tf's 20x128x128x3 test sample, made from the calibration inputs (so it never downloads one):
        pixels recovered from the normalised inputs (``(x * std + mean) / scale / 255``), RGB, 128x128."""
        pre = contract.preprocessing
        x = self.calibration.transpose(CHANNELS_LAST[self.calibration.ndim])
        frames = x.reshape(-1, *x.shape[-3:])  # clips -> frames
        pixels = (frames * np.asarray(pre.std, np.float32) + np.asarray(pre.mean, np.float32)) / pre.scale / 255.0
        if pre.channel_order == "BGR":
            pixels = pixels[..., ::-1]
        chosen = [resize_bilinear(pixels[i], (128, 128)) for i in np.resize(np.arange(len(pixels)), 20)]
        np.save(path, np.clip(np.stack(chosen), 0.0, 1.0).astype(np.float32))
        return path


def _images_from(source: Path) -> list[tuple[str, np.ndarray]]:
    files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise InputError(f"calibration folder {source} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return [(str(p), load_image(p)) for p in files]


def _split(items: list, n_calib: int, n_eval: int) -> tuple[list, list]:
    """Every k-th item goes to evaluation, the rest to calibration (deterministic, disjoint)."""
    if len(items) < 2:
        raise InputError(f"need at least 2 calibration inputs (one to calibrate, one held out), got {len(items)}")
    step = max(2, len(items) // max(1, n_eval))
    evaluation = items[step - 1::step][:n_eval]
    chosen = {id(x) for x in evaluation}
    calibration = [x for x in items if id(x) not in chosen][:n_calib]
    return calibration, evaluation


def image_calibration(contract: Contract, source: str | Path | None, input_hw: tuple[int, int],
                      n_calib: int = 16, n_eval: int = 6) -> CalibrationData:
    """Calibration/evaluation inputs for an image model at its static ``input_hw``."""
    if source is None:
        images = builtin_images(prefer_designs=contract.task == "design-importance")
    elif Path(source).is_dir():
        images = _images_from(Path(source))
    elif is_video_path(source):
        frames = list(iter_video_frames(source))
        images = [(f"{source}#frame{i}", f) for i, f in enumerate(frames[:: max(1, len(frames) // 40)])]
    else:
        raise InputError(f"--calib {source}: give a folder of images or a video file")
    calib, evaluation = _split(images, n_calib, n_eval)

    def prepare(pairs: list[tuple[str, np.ndarray]]) -> tuple[np.ndarray, list[Geometry]]:
        tensors, geometry = zip(*(preprocess_image(rgb, contract.preprocessing, input_hw) for _, rgb in pairs))
        return np.stack(tensors), list(geometry)

    (calib_inputs, _), (eval_inputs, eval_geometry) = prepare(calib), prepare(evaluation)
    return CalibrationData(calib_inputs, [n for n, _ in calib], eval_inputs, [n for n, _ in evaluation], eval_geometry)


def clip_calibration(contract: Contract, source: str | Path | None, n_calib: int = 8,
                     n_eval: int = 8) -> CalibrationData:
    """Calibration/evaluation clips for a video model: disjoint windows of consecutive frames.

    ``n_calib + n_eval`` windows are spread evenly over the whole video (so calibration sees every scene), and
    every other one is held out for evaluation as :func:`_split` does for images; no frame is in two windows.
    For MISO models (which slide over a stream from its first frame) a quarter of the windows of each part are
    *stream starts* (the 2nd, 6th, ... of each), as :class:`~salsdk.video.VideoStream` builds them: the window's
    first frame repeated, then its first ``k`` frames (``k`` cycling through :data:`STREAM_START_FRAMES`), so int8
    ranges and the fidelity gate also cover the first maps of every stream.
    """
    from salsdk.imageio import video_frame_count

    video = Path(source) if source is not None else builtin_video()
    if video is None:
        raise InputError("video models calibrate on a video: pass --calib VIDEO (the shared DHF1K clip is absent)")
    if not is_video_path(video):
        raise InputError(f"--calib {video}: video models need a video file")
    if contract.temporal is None:
        raise InputError(f"{contract.model} is an image model: calibrate it on images")
    t, n = contract.temporal.frames, n_calib + n_eval
    total = video_frame_count(video) or sum(1 for _ in iter_video_frames(video))
    if total < t * n:
        raise InputError(f"{video} has {total} frames; {n_calib} calibration and {n_eval} held-out windows of {t} "
                         f"frames need {t * n}")
    starts = np.linspace(0, total - t, n).round().astype(int).tolist()
    wanted = {i for s in starts for i in range(s, s + t)}
    frames = {i: f for i, f in enumerate(iter_video_frames(video, max_frames=starts[-1] + t)) if i in wanted}
    calib_starts, eval_starts = _split(starts, n_calib, n_eval)

    def clips(part: list[int]) -> list[tuple[str, np.ndarray]]:
        made = []
        for position, s in enumerate(part):
            k = t
            if contract.temporal.mode == "miso" and position % 4 == 1:
                k = STREAM_START_FRAMES[(position // 4) % len(STREAM_START_FRAMES)]
            picked = [frames[s]] * (t - k) + [frames[i] for i in range(s, s + k)]
            note = f" (stream start: frame {s} repeated {t - k}x first)" if k < t else ""
            made.append((f"{video}#frames{s}-{s + k - 1}{note}", preprocess_clip(picked, contract.preprocessing, t)[0]))
        return made

    calib, evaluation = clips(calib_starts), clips(eval_starts)
    return CalibrationData(np.stack([c for _, c in calib]), [n for n, _ in calib],
                           np.stack([c for _, c in evaluation]), [n for n, _ in evaluation])
