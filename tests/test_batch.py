"""``salsdk batch``: same outputs from every engine, exactly-once resume after kill -9, inputs from lists and globs.

Runs on the session's small UniSal ONNX bundle, real photographs (scikit-image) with corrupt files mixed in, and a
local Ray instance with 2 CPUs, started and stopped by the engine itself.
"""
from __future__ import annotations

import csv
import filecmp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from salsdk.batch import BatchSpec, run_batch
from salsdk.batch.stats import best_crop, map_stats
from salsdk.errors import InputError

VARYING = ("latency_ms", "engine", "sequence")  # what may differ between two runs of the same inputs


@pytest.fixture(scope="module")
def collection(tmp_path_factory) -> Path:
    from skimage import data

    folder = tmp_path_factory.mktemp("collection")
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(24):
        rgb = photos[i % 4]
        step = 3 + i % 3
        Image.fromarray(np.ascontiguousarray(rgb[::step, ::step])).save(folder / f"photo{i:02d}.png")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    (folder / "empty.jpg").write_bytes(b"")
    return folder


def _spec(bundle: Path, out: Path, **extra) -> BatchSpec:
    return BatchSpec(model=str(bundle), out=str(out), crops=("1:1", "16:9"), **extra)


def _index(out: Path) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in VARYING} for row in pq.read_table(out / "index.parquet").to_pylist()]


def _same_outputs(a: Path, b: Path) -> None:
    assert _index(a) == _index(b)
    names = sorted(p.name for p in (a / "maps").iterdir())
    assert names == sorted(p.name for p in (b / "maps").iterdir())
    assert all(filecmp.cmp(a / "maps" / n, b / "maps" / n, shallow=False) for n in names)


@pytest.fixture(scope="module")
def local_run(unisal_bundles, collection, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("batch") / "local1"
    summary = run_batch(_spec(unisal_bundles / "UniSal-onnx-fp32", out), [str(collection)], progress=False,
                        log=lambda _: None)
    assert (summary.total, summary.processed, summary.failed) == (26, 26, 2) and not summary.ok
    return out


def test_rows_record_maps_statistics_and_errors(local_run, collection):
    rows = {Path(r["input"]).name: r for r in pq.read_table(local_run / "index.parquet").to_pylist()}
    assert rows["corrupt.png"]["status"] == rows["empty.jpg"]["status"] == "failed"
    assert "not an image file" in rows["corrupt.png"]["error"] or "could not be decoded" in rows["corrupt.png"]["error"]
    ok = rows["photo00.png"]
    assert ok["status"] == "ok" and ok["runtime"] == "onnxruntime" and len(ok["bundle_sha256"]) == 64
    assert (ok["height"], ok["width"]) == (171, 171)  # astronaut (512x512), every 3rd pixel
    level = np.asarray(Image.open(local_run / "maps" / ok["map_files"]))
    assert level.dtype == np.uint16 and level.shape == (171, 171) and level.max() == 65535
    assert level[ok["peak_y"], ok["peak_x"]] == 65535 and 0 < ok["mean"] < 1 and ok["entropy_bits"] > 0
    import json

    crops = json.loads(ok["crops"])
    assert crops["1:1"] == [0, 0, 171, 171] and crops["16:9"][2] - crops["16:9"][0] == 171


def test_engines_give_identical_maps_and_index(local_run, unisal_bundles, collection, tmp_path):
    for engine, workers in (("local", 2), ("ray", 2)):
        out = tmp_path / f"{engine}{workers}"
        summary = run_batch(_spec(unisal_bundles / "UniSal-onnx-fp32", out), [str(collection)], engine=engine,
                            workers=workers, batch_size=4, progress=False, log=lambda _: None)
        assert summary.failed == 2
        _same_outputs(local_run, out)


def test_a_rerun_skips_what_is_done_and_retries_failures_on_request(local_run, unisal_bundles, collection):
    spec = _spec(unisal_bundles / "UniSal-onnx-fp32", local_run)
    again = run_batch(spec, [str(collection)], progress=False, log=lambda _: None)
    assert (again.skipped, again.processed) == (26, 0) and again.ok
    retried = run_batch(spec, [str(collection)], retry_failed=True, progress=False, log=lambda _: None)
    assert (retried.skipped, retried.processed, retried.failed) == (24, 2, 2)
    assert len(_index(local_run)) == 26


def test_kill_9_then_resume_gives_exactly_one_output_per_input(local_run, unisal_bundles, collection, tmp_path):
    """A job killed with SIGKILL part-way, resumed: the same index and maps as the uninterrupted run."""
    out = tmp_path / "killed"
    many = tmp_path / "inputs.txt"
    many.write_text("\n".join(str(p) for p in sorted(collection.iterdir())) + "\n")
    cmd = [sys.executable, "-m", "salsdk", "batch", str(many), "--model", str(unisal_bundles / "UniSal-onnx-fp32"),
           "--out", str(out), "--crop", "1:1,16:9", "--workers", "2", "--batch-size", "1", "--quiet"]
    job = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "maps").glob("*.png")) if (out / "maps").is_dir() else []) < 6:
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    assert not (out / "index.parquet").exists() or len(_index(out)) < 26, "the job finished before it was killed"
    assert subprocess.run(cmd, capture_output=True, timeout=300).returncode == 1  # the two corrupt files
    _same_outputs(local_run, out)
    leftovers = [p for p in out.rglob("*") if p.name.startswith(".")]
    assert not leftovers and not list((out / "index").glob("*"))


def test_inputs_from_lists_globs_and_videos(unisal_bundles, collection, tmp_path, tinyhd_s_bundles, shared_video):
    first = sorted(collection.glob("photo0*.png"))[:3]
    with open(tmp_path / "list.csv", "w", newline="") as handle:
        csv.writer(handle).writerows([["path"], *[[str(p)] for p in first]])
    pq.write_table(pa.table({"path": [str(first[0]), str(tmp_path / "missing.png")]}), tmp_path / "list.parquet")
    out = tmp_path / "out"
    summary = run_batch(_spec(unisal_bundles / "UniSal-onnx-fp32", out),
                        [str(tmp_path / "list.csv"), str(tmp_path / "list.parquet"), str(collection / "photo1[0-1].png")],
                        progress=False, log=lambda _: None)
    assert (summary.total, summary.failed) == (6, 1)  # duplicates once; the missing file is a failed row
    rows = {Path(r["input"]).name: r for r in _index(out)}
    assert rows["missing.png"]["status"] == "failed" and "photo11.png" in rows
    with pytest.raises(InputError, match="matches no file"):
        run_batch(_spec(unisal_bundles / "UniSal-onnx-fp32", out), [str(tmp_path / "nothing*.png")], progress=False)

    clip = tmp_path / "clip.avi"
    import av

    with av.open(str(clip), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 128, 72, "yuvj444p"
        from salsdk.imageio import iter_video_frames

        for frame in iter_video_frames(shared_video, max_frames=18):
            small = np.asarray(Image.fromarray(frame).resize((128, 72)))
            container.mux(stream.encode(av.VideoFrame.from_ndarray(small, format="rgb24")))
        container.mux(stream.encode())
    tinyhd, _, _ = tinyhd_s_bundles
    video_out = tmp_path / "video"
    done = run_batch(BatchSpec(model=str(tinyhd / "TinyHD-S-x0.25-onnx-fp32"), out=str(video_out)), [str(clip)],
                     progress=False, log=lambda _: None)
    row = _index(video_out)[0]
    assert done.ok and row["kind"] == "video" and row["frames"] == 18 and (row["height"], row["width"]) == (72, 128)
    assert len(list((video_out / "maps" / row["map_files"]).glob("*.png"))) == 18


def test_crop_boxes_and_statistics():
    saliency = np.zeros((90, 160))
    saliency[10:20, 130:140] = 1.0
    assert best_crop(saliency, (1, 1)) == (50, 0, 140, 90)  # the largest square, the first that holds the peak
    assert best_crop(saliency, (16, 9)) == (0, 0, 160, 90)
    x0, y0, x1, y1 = best_crop(saliency, (1, 4))
    assert (x1 - x0, y1 - y0) == (22, 88) and x0 <= 130 and x1 >= 140  # exactly 1:4
    stats = map_stats(saliency, ("1:1",))
    assert (stats["peak_y"], stats["peak_x"]) == (10, 130) and stats["entropy_bits"] == pytest.approx(np.log2(100))
    with pytest.raises(InputError, match="W:H"):
        map_stats(saliency, ("square",))
