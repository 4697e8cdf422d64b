"""First contact: the typical commands work as typed, and bad input ends in one clear line, never a traceback.

The conversions here are UniSal at 64x96, ONNX fp32 only (seconds). Official-weight handling uses a checkpoint
placed in a temporary cache exactly where the offline message says, with the network forbidden
(``SALSDK_OFFLINE=1``): nothing here touches the network.
"""
from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import salsdk
from salsdk.cli import main
from salsdk.errors import InputError, WeightsError

FAST = ["--format", "onnx-fp32", "--size", "64x96", "--n-calib", "2", "--n-eval", "2"]
OFFLINE = {**os.environ, "SALSDK_OFFLINE": "1"}


def _cli(args: list[str], cwd: Path, home: Path | None = None) -> subprocess.CompletedProcess:
    env = {**OFFLINE, "SALSDK_HOME": str(home)} if home is not None else OFFLINE
    return subprocess.run([sys.executable, "-m", "salsdk", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def _one_line_error(done: subprocess.CompletedProcess, says: str) -> None:
    err = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert "Traceback" not in done.stderr and len(err) == 1 and says in err[0], done.stderr[-2000:]


@pytest.fixture()
def official_cache(tmp_path) -> tuple[Path, Path]:
    """A SALSDK_HOME whose cache holds UniSal's 'official' checkpoint where the offline message says to put it:
    (home, file)."""
    home = tmp_path / "home"
    done = _cli(["convert", "--model", "UniSal", "--out", str(tmp_path / "o"), *FAST], tmp_path, home)
    assert done.returncode == 2
    _one_line_error(done, "salsdk is offline")
    target = Path(done.stderr.split("put it at ")[1].split()[0])
    assert "unisal.pth" in done.stderr and target.parent == home / "weights"
    target.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"student_model": salsdk.create_model("UniSal", weights=None, seed=3).state_dict()}, target)
    return home, target


def test_typical_use_converts_into_the_default_folder_from_any_directory(official_cache, tmp_path):
    """`salsdk convert --model UniSal --int8`-style use: no --out (default out/), weights from the cache (pinned
    on first use), relative paths resolved against the caller's folder, exit 0, no hidden folder left."""
    home, checkpoint = official_cache
    elsewhere = tmp_path / "work" / "deeper"
    elsewhere.mkdir(parents=True)
    done = _cli(["convert", "--model", "UniSal", *FAST], elsewhere, home)
    assert done.returncode == 0, done.stderr[-2000:]
    bundle = elsewhere / "out" / "UniSal-onnx-fp32"
    manifest = salsdk.read_manifest(bundle)
    assert manifest.weights.trained and manifest.weights.official
    assert json.loads((home / "weights" / "pins.json").read_text())[checkpoint.name] == manifest.weights.sha256
    assert not [p for p in (elsewhere / "out").iterdir() if p.name.startswith(".")]
    relative = _cli(["convert", "--model", "UniSal", "--random-init", "--out", "../rel/out/", *FAST], elsewhere)
    assert relative.returncode == 0 and (tmp_path / "work" / "rel" / "out" / "UniSal-onnx-fp32").is_dir()


def test_an_altered_cached_checkpoint_is_an_error_not_a_substitute(official_cache):
    home, checkpoint = official_cache
    cache = home / "weights"
    first = salsdk.create_model("UniSal", cache_dir=cache, offline=True)  # first use pins the file's hash
    assert first.salsdk_weights.official
    state = torch.load(checkpoint, weights_only=True)
    tensor = next(iter(state["student_model"]))
    state["student_model"][tensor] = state["student_model"][tensor] + 1
    torch.save(state, checkpoint)
    with pytest.raises(WeightsError, match="pin|SHA-256|changed"):
        salsdk.create_model("UniSal", cache_dir=cache, offline=True)


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path):
    state = salsdk.create_model("UniSal", weights=None).state_dict()
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name][0] = float("nan")
    torch.save({"student_model": state}, tmp_path / "nan.pth")
    with pytest.raises(WeightsError, match="NaN or infinite"):
        salsdk.create_model("UniSal", weights=tmp_path / "nan.pth")


@pytest.mark.parametrize("flags, says", [
    (["--min-cc", "2"], "--min-cc 2"), (["--min-cc", "nan"], "--min-cc nan"), (["--n-calib", "-3"], "--n-calib -3"),
    (["--n-eval", "0"], "--n-eval 0"), (["--size", "65x97"], "--size 65x97"), (["--format", "tensorrt"], "tensorrt"),
    (["--model", "NoSuchModel"], "NoSuchModel"), (["--weights", "."], "folder"), (["--weights", "missing.pth"], "missing.pth"),
])
def test_bad_convert_flags_are_refused_before_any_work(flags, says, tmp_path):
    args = ["convert", "--model", "UniSal", *FAST, "--out", "out"]
    for i in range(0, len(flags), 2):  # the flag under test replaces the default one
        if flags[i] in args:
            del args[args.index(flags[i]):args.index(flags[i]) + 2]
    done = _cli([*args, *flags] if "--weights" in flags else [*args, "--random-init", *flags], tmp_path)
    assert done.returncode == 2
    _one_line_error(done, says)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_stale_work_folders_of_killed_runs_are_removed(tmp_path):
    out = tmp_path / "out"
    stale = out / ".salsdk-999999999-work-abc"  # a pid that does not run
    stale.mkdir(parents=True)
    (stale / "model.onnx").write_bytes(b"0" * 1000)
    done = _cli(["convert", "--model", "UniSal", "--random-init", "--out", str(out), *FAST], tmp_path)
    assert done.returncode == 0 and not stale.exists() and "left by an interrupted conversion" in done.stdout


def _png_header(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def test_huge_images_are_refused_by_size_before_decoding(tmp_path):
    for w, h in [(20000, 20000), (12000, 9000)]:
        path = tmp_path / f"huge_{w}x{h}.png"
        path.write_bytes(_png_header(w, h))
        with pytest.raises(InputError, match="megapixels: downscale it first"):
            salsdk.imageio.load_image(path)


def test_native_resolution_refuses_what_memory_cannot_hold_and_max_side_is_the_way_out():
    predictor = salsdk.load("UniSal", weights=None)
    with pytest.raises(InputError, match="--max-side"):
        predictor.predict(np.zeros((9000, 9500, 3), np.uint8))  # ~60 GiB of activations at native size
    small = salsdk.load("UniSal", weights=None, max_side=128)
    image = np.random.default_rng(0).integers(0, 255, (300, 420, 3), dtype=np.uint8)
    assert small.predict(image).shape == (300, 420)
    with pytest.raises(InputError, match="max_side"):
        salsdk.load("UniSal", weights=None, max_side=-1)


@pytest.mark.parametrize("bad", [None, 123, object()])
def test_python_api_inputs_of_the_wrong_type_are_input_errors(bad):
    predictor = salsdk.load("UniSal", weights=None)
    with pytest.raises(InputError):
        predictor.predict(bad)
    with pytest.raises((InputError, WeightsError)):
        salsdk.load("UniSal", weights=bad if bad is not None else 1.5)


def test_a_folder_run_skips_and_lists_unreadable_files(tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "c.png"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(folder / name)
    (folder / "b.png").write_bytes(b"not an image")
    (folder / "d.png").write_bytes(_png_header(20000, 20000))
    status = main(["predict", str(folder), "--model", "UniSal", "--random-init", "--out", str(tmp_path / "out")])
    printed = capsys.readouterr().out
    assert status == 1 and "2 input(s) could not be used" in printed and "b.png" in printed and "d.png" in printed
    assert sorted(p.name for p in (tmp_path / "out").glob("*_saliency.png")) == ["a_saliency.png", "c_saliency.png"]


def test_predict_out_that_is_a_file_is_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert main(["predict", "x.png", "--model", "UniSal", "--random-init", "--out", str(tmp_path / "afile")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def _video(path: Path, frames: list[np.ndarray], pts: list[int] | None = None) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuvj444p"
        for i, frame in enumerate(frames):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
            if pts is not None:
                video_frame.pts = pts[i]
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode())
    return path


@pytest.fixture(scope="module")
def clip_frames() -> list[np.ndarray]:
    from skimage import data

    return [np.roll(data.astronaut()[::4, ::4], 3 * i, axis=1).copy() for i in range(30)]


def test_a_corrupt_video_frame_is_reported_with_its_index(tmp_path, clip_frames):
    from salsdk.imageio import iter_video_frames

    raw = bytearray(_video(tmp_path / "clip.avi", clip_frames).read_bytes())
    starts = [i for i in range(len(raw) - 1) if raw[i] == 0xFF and raw[i + 1] == 0xD8]  # one JPEG per frame
    for k in (12, 13):
        raw[starts[k]:starts[k] + 3000] = np.random.default_rng(k).integers(0, 256, 3000, dtype=np.uint8).tobytes()
    (tmp_path / "corrupt.avi").write_bytes(raw)
    with pytest.raises(InputError, match="frame 12 could not be decoded"):
        list(iter_video_frames(tmp_path / "corrupt.avi"))


def test_frames_a_decoder_skips_silently_are_reported(tmp_path, clip_frames):
    from salsdk.imageio import iter_video_frames

    pts = list(range(10)) + list(range(14, 30))  # frames 10..13 missing from the stream
    path = _video(tmp_path / "gap.avi", clip_frames[:26], pts)
    with pytest.raises(InputError, match="frame 10 could not be decoded"):
        list(iter_video_frames(path))
    assert len(list(iter_video_frames(_video(tmp_path / "ok.avi", clip_frames[:5])))) == 5
