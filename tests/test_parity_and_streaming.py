"""One predict API over every runtime: bundles stream video like PyTorch, ``salsdk check``, ``salsdk predict BUNDLE``.

TinyHD-M-x1/4 (official weights) is converted once to ONNX fp32 and TFLite fp32 (the 2-D rewrite) and streamed frame
by frame on ONNX Runtime and LiteRT against the PyTorch stream; the TinyHD-S bundles of ``conftest.py`` (fp32 and
int8) stream MISO windows and feed the parity check; an untrained UniSal converted to ONNX and CoreML covers image
bundles, ``salsdk predict`` on folders and CoreML's validated-only path off macOS.
"""
from __future__ import annotations

import json
import platform
import re

import numpy as np
import pytest
from conftest import TINYHD_S_FORMATS, convert_bundles, reseal
from PIL import Image

import salsdk
from salsdk.cli import main
from salsdk.errors import InputError, WeightsError
from salsdk.imageio import iter_video_frames
from salsdk.manifest import read_manifest
from salsdk.metrics import cc
from salsdk.parity import check_bundles, format_report, reference_predictor

N_FRAMES = 20  # one MIMO block of 16 and a partial block of 4
M_MODEL, S_MODEL = "TinyHD-M-x0.25", "TinyHD-S-x0.25"


@pytest.fixture(scope="module")
def frames(shared_video):
    return list(iter_video_frames(shared_video, max_frames=N_FRAMES))


@pytest.fixture(scope="module")
def m_bundles(tmp_path_factory, tinyhd_m_weights, shared_video):
    out, outcomes, _ = convert_bundles(tmp_path_factory.mktemp("bundles_m"), M_MODEL, "onnx-fp32,tflite-fp32",
                                       weights=str(tinyhd_m_weights), calib=str(shared_video), n_calib=2, n_eval=1)
    assert all(o.status == "accepted" for o in outcomes), [(o.format.key, o.status, o.message) for o in outcomes]
    return out


@pytest.fixture(scope="module")
def pytorch_m_maps(tinyhd_m_weights, frames):
    return list(salsdk.load(M_MODEL, weights=tinyhd_m_weights).predict_video(frames))


def _stream(predictor, frames) -> tuple[list[int], list[np.ndarray]]:
    """Push frames one by one; the number of maps each push returned, and every map (flush included)."""
    stream, counts, maps = predictor.stream(), [], []
    for frame in frames:
        got = stream.push(frame)
        counts.append(len(got))
        maps += got
    return counts, maps + stream.flush()


@pytest.mark.parametrize("key", ["onnx-fp32", "tflite-fp32"])
def test_mimo_bundle_streams_one_map_per_frame_like_pytorch(key, m_bundles, frames, pytorch_m_maps):
    predictor = salsdk.load(m_bundles / f"{M_MODEL}-{key}")
    assert predictor.runtime.name == {"onnx-fp32": "onnxruntime", "tflite-fp32": "litert"}[key]
    counts, maps = _stream(predictor, frames)
    assert counts == [0] * 15 + [16] + [0] * (N_FRAMES - 16)  # a 16-frame block, then the tail at flush
    assert len(maps) == N_FRAMES == len(pytorch_m_maps)
    for mine, reference in zip(maps, pytorch_m_maps):
        assert mine.shape == frames[0].shape[:2]
        assert cc(mine, reference) > 0.9999 and np.abs(mine - reference).max() < 1e-3
    if key == "tflite-fp32":
        assert predictor.manifest.graph_rewrite == "tinyhd-framewise-2d"
        assert predictor.describe()["xnnpack"]


@pytest.mark.parametrize("key", TINYHD_S_FORMATS.split(","))
def test_miso_bundles_stream_within_their_manifest_fidelity(key, tinyhd_s_bundles, tinyhd_s_weights, frames):
    out, _, _ = tinyhd_s_bundles
    predictor = salsdk.load(out / f"{S_MODEL}-{key}")
    few = frames[:6]
    counts, maps = _stream(predictor, few)
    assert counts == [1] * len(few)  # MISO: a map for every pushed frame, from the first one on
    reference = list(salsdk.load(S_MODEL, weights=tinyhd_s_weights).predict_video(few))
    fidelity = predictor.manifest.fidelity
    measured = min(cc(a, b) for a, b in zip(maps, reference))
    if fidelity.cc_min > 0.9999:  # fp32: the same numbers up to float rounding
        assert measured > 0.9999
    else:  # int8: what the gate measured on its held-out windows (stream starts included) holds here too
        assert measured >= fidelity.cc_min - 0.01


def test_check_prints_the_agreement_matrix_on_frames_not_used_for_calibration(tinyhd_s_bundles, tinyhd_s_weights):
    out, _, _ = tinyhd_s_bundles
    bundles = [out / f"{S_MODEL}-{k}" for k in TINYHD_S_FORMATS.split(",")]
    report = check_bundles(bundles, n_frames=6, weights=tinyhd_s_weights)
    assert report.labels == ["pytorch", *TINYHD_S_FORMATS.split(",")]
    calibrated = {n for b in bundles for n in read_manifest(b).calibration_inputs}
    windows = [tuple(map(int, re.search(r"#frames(\d+)-(\d+)", n).groups())) for n in calibrated]
    checked = [int(n.rsplit("#frame", 1)[1]) for n in report.inputs.names]
    assert windows and checked == list(range(checked[0], checked[0] + 6))
    assert not any(first <= frame <= last for frame in checked for first, last in windows)
    matrix = report.cc.mean(axis=2)
    sides = len(bundles) + 1  # PyTorch and every bundle
    assert matrix.shape == (sides, sides) and np.allclose(matrix, matrix.T) and np.allclose(np.diag(matrix), 1.0)
    rows = {row.label: row for row in report.rows}
    assert rows["onnx-fp32"].measured_cc_min > 0.9999 and rows["tflite-fp32"].measured_cc_min > 0.9999
    for row in report.rows:  # int8 maps stay close; each verdict is the gate applied to what was measured here
        assert row.measured_cc_min > 0.97
        assert row.verdict == ("ok" if row.measured_cc_min >= row.gate else "BELOW GATE")
    assert report.passed == all(row.verdict == "ok" for row in report.rows)
    text = format_report(report)
    assert "agreement matrix" in text and "XNNPACK" in text and "CPUExecutionProvider" in text


def test_check_cli_flags_a_bundle_below_its_gate(tinyhd_s_bundles, tinyhd_s_weights, tmp_path, capsys):
    """A bundle published with a gate the artifact cannot hold here: exit status 1 and a BELOW GATE verdict."""
    import shutil

    out, _, _ = tinyhd_s_bundles
    strict = tmp_path / "strict-int8"
    shutil.copytree(out / f"{S_MODEL}-onnx-int8", strict)
    reseal(strict, lambda document: document["fidelity"].update(min_cc=0.999999))
    report_path, plot_path = tmp_path / "parity.json", tmp_path / "parity.png"
    rejected = tmp_path / f"{S_MODEL}-tflite-int8-io.rejected.json"  # what a glob like out/Model-* also matches
    rejected.write_text("{}")
    status = main(["check", str(out / f"{S_MODEL}-onnx-fp32"), str(strict), str(rejected), "--frames", "3",
                   "--weights", str(tinyhd_s_weights),
                   "--json", str(report_path), "--plot", str(plot_path)])
    printed = capsys.readouterr().out
    assert status == 1 and "BELOW GATE" in printed and "below their fidelity gate here: onnx-int8" in printed
    assert f"skipping {rejected}: a conversion's rejection report" in printed
    report = json.loads(report_path.read_text())
    assert report["passed"] is False and [b["ok"] for b in report["bundles"]] == [True, False]
    assert Image.open(plot_path).size[0] > 200


def test_check_refuses_other_weights_and_mixed_models(tinyhd_s_bundles, m_bundles, tinyhd_s_weights, tmp_path):
    import torch

    out, _, _ = tinyhd_s_bundles
    checkpoint = torch.load(tinyhd_s_weights, map_location="cpu", weights_only=True)
    tensors = checkpoint["student_model"]  # the official TinyHD layout
    first = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[first] = tensors[first] * 1.01  # a fine-tuned variant: loads fine, but is not what was converted
    torch.save(checkpoint, tmp_path / "tuned.pth")
    with pytest.raises(WeightsError, match="compare against the same weights"):
        check_bundles([out / f"{S_MODEL}-onnx-fp32"], weights=tmp_path / "tuned.pth", n_frames=2)
    with pytest.raises(InputError, match="one model"):
        check_bundles([out / f"{S_MODEL}-onnx-fp32", m_bundles / f"{M_MODEL}-onnx-fp32"], n_frames=2,
                      reference=False)


def test_predict_cli_streams_a_video_through_a_bundle(m_bundles, frames, pytorch_m_maps, tmp_path):
    import av

    video = tmp_path / "clip.avi"
    with av.open(str(video), "w") as container:  # near-lossless MJPEG, so decoded frames stay close
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = frames[0].shape[1], frames[0].shape[0], "yuvj444p"
        stream.options = {"qscale": "1"}
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    bundle = m_bundles / f"{M_MODEL}-tflite-fp32"
    assert main(["predict", str(video), "--model", str(bundle), "--out", str(tmp_path / "out")]) == 0
    written = sorted((tmp_path / "out" / "clip").glob("*_saliency.png"))
    assert len(written) == N_FRAMES and len(list((tmp_path / "out" / "clip").glob("*_overlay.png"))) == N_FRAMES
    png = Image.open(written[-1])
    assert png.info["salsdk_format"] == "tflite-fp32" and png.info["salsdk_runtime"] == "litert"
    assert cc(np.asarray(png, np.float32), pytorch_m_maps[-1]) > 0.98  # re-encoded video, 8-bit PNG


def test_mimo_sigmoid_behind_a_reshape_comes_off_exactly(m_bundles, frames):
    """TinyHD-M's TFLite file reshapes its 16 frames after the final sigmoid; :func:`saliency_logits` removes the
    sigmoid through that reshape (what ``tflite-int8-io`` is quantized from) and the runtime's sigmoid gives the
    fp32 maps back to float rounding."""
    from salsdk.preprocess import preprocess_clip
    from salsdk.runtimes.litert_runtime import LiteRTRuntime
    from salsdk.tflite_model import ends_in_sigmoid, op_counts, saliency_logits

    fp32 = m_bundles / f"{M_MODEL}-tflite-fp32" / "model.tflite"
    content = fp32.read_bytes()
    assert ends_in_sigmoid(content)
    logits = saliency_logits(content)
    assert op_counts(logits)["LOGISTIC"] == op_counts(content)["LOGISTIC"] - 1 and not ends_in_sigmoid(logits)
    path = fp32.parent.parent / "logits.tflite"
    path.write_bytes(logits)
    runtime = LiteRTRuntime(path)
    assert runtime.interpreter.get_output_details()[0]["name"] == "saliency_logits"
    x = preprocess_clip(frames[:16], read_manifest(m_bundles / f"{M_MODEL}-tflite-fp32").preprocessing, 16)[0][None]
    np.testing.assert_allclose(runtime.run(x)[0], LiteRTRuntime(fp32).run(x)[0], atol=2e-6)


# ------------------------------------------------------------------------------------------------ image bundles
def test_check_image_bundles_on_built_in_images_and_coreml_off_macos(unisal_bundles):
    bundles = [unisal_bundles / "UniSal-onnx-fp32", unisal_bundles / "UniSal-coreml-fp16"]
    report = check_bundles(bundles)
    used = set(read_manifest(bundles[0]).fidelity.inputs)
    assert len(report.inputs.names) == 6 and report.inputs.images
    assert report.rows[0].measured_cc_min > 0.9999  # the untrained model is rebuilt from the manifest's seed
    if platform.system() != "Darwin":
        assert report.labels == ["pytorch", "onnx-fp32"]
        assert report.rows[1].verdict == "validated only" and "needs macOS" in report.rows[1].executes
    assert report.passed
    assert not used or set(report.inputs.names) - used  # the defaults are real images, not only the held-out ones


def test_predict_cli_runs_a_folder_through_an_image_bundle(unisal_bundles, natural_images, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i, rgb in enumerate(natural_images[:3]):
        Image.fromarray(rgb).save(folder / f"img{i}.png")
    bundle = unisal_bundles / "UniSal-onnx-fp32"
    assert main(["predict", str(folder), "--model", str(bundle), "--batch-size", "2", "--out", str(tmp_path / "out")]) == 0
    reference, _ = reference_predictor(read_manifest(bundle))  # PyTorch with the bundle's contract
    for i, rgb in enumerate(natural_images[:3]):
        png = Image.open(tmp_path / "out" / f"img{i}_saliency.png")
        assert png.size == (rgb.shape[1], rgb.shape[0])
        assert png.info["salsdk_runtime"] == "onnxruntime" and png.info["salsdk_trained"] == "False"
        assert cc(np.asarray(png, np.float32), reference.predict(rgb)) > 0.999
    assert main(["predict", str(folder), "--model", str(bundle), "--random-init", "--out", str(tmp_path / "o2")]) == 2
