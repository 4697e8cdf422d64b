"""Reading images and videos into RGB uint8 arrays, with clear errors for anything unusable.

Images: a path, a PIL image or an array. EXIF orientation is applied; grayscale, palette, RGBA/LA (composited
over white, as viewers show them), CMYK and 16-bit files are converted to 8-bit RGB. Videos are decoded with PyAV.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterator, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import InputError

ImageLike = Union[str, Path, Image.Image, np.ndarray]
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
VIDEO_SUFFIXES = {".avi", ".mp4", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}
MAX_IMAGE_PIXELS = 100_000_000  # larger images are refused before decoding (e.g. 10000x10000); downscale them first


def load_image(source: ImageLike) -> np.ndarray:
    """Return ``source`` as an (H, W, 3) uint8 RGB array.

    Arrays may be (H, W) or (H, W, 1/3/4) of uint8, uint16 (scaled by 1/257) or float in [0, 1].
    Raises :class:`~salsdk.errors.InputError` for missing, truncated or non-image files and bad arrays.
    """
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    if isinstance(source, Image.Image):
        _check_size(source.size, "<PIL image>")
        return _pil_to_rgb(source, "<PIL image>")
    if not isinstance(source, (str, Path)):
        raise InputError(f"an image is a path, a PIL image or an array, got {type(source).__name__}")
    path = Path(source)
    if not path.exists():
        raise InputError(f"image {path} does not exist")
    if path.is_dir():
        raise InputError(f"{path} is a folder, not an image (use predict on its files, or the CLI on the folder)")
    try:
        with Image.open(path) as image:
            _check_size(image.size, str(path))
            image.load()
            return _pil_to_rgb(image, str(path))
    except Image.DecompressionBombError as exc:
        raise InputError(f"{path}: {exc}; salsdk reads images up to {MAX_IMAGE_PIXELS // 10**6} megapixels: "
                         "downscale it first (e.g. to 4000 pixels on the longer side)") from None
    except PermissionError:
        raise InputError(f"{path} cannot be read (permission denied)") from None
    except UnidentifiedImageError:
        raise InputError(f"{path} is not an image file PIL can read (supported: PNG, JPEG, BMP, GIF, TIFF, WebP)") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{path} could not be decoded, the file is probably truncated or corrupted: {exc}") from None


def _check_size(size: tuple[int, int], name: str) -> None:
    """Refuse images over :data:`MAX_IMAGE_PIXELS` before their pixels are decoded."""
    w, h = size
    if w * h > MAX_IMAGE_PIXELS:
        raise InputError(f"{name} is {w}x{h} pixels; salsdk reads images up to {MAX_IMAGE_PIXELS // 10**6} megapixels: "
                         "downscale it first (e.g. to 4000 pixels on the longer side)")


def _pil_to_rgb(image: Image.Image, name: str) -> np.ndarray:
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        data = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or data.max() > 255 else 255.0
        gray = np.clip(np.round(data * (255.0 / peak)), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        return _array_to_rgb(np.asarray(image, dtype=np.float32))
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        image = image.convert("RGBA")
        canvas = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(canvas, image)
    rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise InputError(f"{name} is empty ({rgb.shape[1]}x{rgb.shape[0]} pixels)")
    return rgb


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise InputError(f"an image array must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {array.shape}")
    if array.shape[0] < 1 or array.shape[1] < 1:
        raise InputError(f"the image array is empty: shape {array.shape}")
    if array.dtype == np.uint8:
        pixels = array
    elif array.dtype == np.uint16:
        pixels = np.round(array / 257.0).astype(np.uint8)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise InputError("the image array contains NaN or infinite values")
        if array.min() < 0.0 or array.max() > 1.0:
            raise InputError(
                f"a float image array must hold values in [0, 1]; got [{array.min():.3g}, {array.max():.3g}] "
                "(pass uint8 pixels for 0..255 data)"
            )
        pixels = np.round(array * 255.0).astype(np.uint8)
    else:
        raise InputError(f"unsupported image array dtype {array.dtype}; use uint8, uint16 or float in [0, 1]")
    if pixels.ndim == 2:
        return np.repeat(pixels[..., None], 3, axis=2)
    if pixels.shape[2] == 4:
        alpha = pixels[..., 3:4].astype(np.float32) / 255.0
        blended = pixels[..., :3].astype(np.float32) * alpha + 255.0 * (1.0 - alpha)
        return np.round(blended).astype(np.uint8)
    return np.ascontiguousarray(pixels)


def is_video_path(path: str | Path) -> bool:
    """True if ``path`` has a video file suffix."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def video_frame_count(path: str | Path) -> int | None:
    """Number of frames the container declares (None if it does not say), for progress bars."""
    container = _open_video(path)
    with container:
        return container.streams.video[0].frames or None


def iter_video_frames(path: str | Path, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """Yield the frames of a video file as (H, W, 3) uint8 RGB arrays, in order.

    A frame FFmpeg cannot decode raises :class:`~salsdk.errors.InputError` naming its index, whether the decoder
    fails or silently skips it (seen from the frame timestamps, or from fewer frames than the container declares).
    """
    from av.video.reformatter import VideoReformatter

    container = _open_video(path)
    # Our own RGB converter, freed with this generator. ``frame.to_ndarray(format=...)`` would keep one per thread
    # in PyAV's thread-local storage, with FFmpeg worker threads inside; a process that a library forks from
    # another thread then frees it while clearing this thread's state, deadlocks in FFmpeg's thread-pool teardown,
    # and holds the parent at exit (seen in `salsdk convert` of TinyHD once OpenVINO ran in the same process).
    reformatter = VideoReformatter()
    count = 0
    with container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        declared = stream.frames or None
        try:
            for frame in container.decode(video=0):
                index = _frame_index(frame, stream.time_base, rate, stream.start_time)
                if index is not None and index > count:
                    raise InputError(f"{path}: frame {count} could not be decoded (the next readable frame is "
                                     f"{index}); the video is corrupt there: re-encode or cut it")
                yield reformatter.reformat(frame, format="rgb24").to_ndarray()
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except InputError:
            raise
        except Exception as exc:  # PyAV raises FFmpeg errors of many types
            raise InputError(f"{path}: frame {count} could not be decoded ({exc}); the video is corrupt there: "
                             "re-encode or cut it") from None
    if count == 0:
        raise InputError(f"{path} contains no decodable video frames")
    if declared is not None and count < declared and max_frames is None:
        raise InputError(f"{path}: the container declares {declared} frames but only {count} could be decoded: "
                         f"frame {count} onwards is corrupt or missing; re-encode the video")


def _frame_index(frame, time_base, rate, start) -> int | None:
    """The frame's index in the stream from its timestamp, or None where the container gives no usable one."""
    if frame.pts is None or not time_base or not rate:
        return None
    return round(float((frame.pts - (start or 0)) * time_base * rate))


def _open_video(path: str | Path):
    import av

    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {path} does not exist")
    try:
        container = av.open(str(path))
    except Exception as exc:
        raise InputError(f"{path} is not a video file FFmpeg can read: {exc}") from None
    if not container.streams.video:
        container.close()
        raise InputError(f"{path} has no video stream")
    return container
