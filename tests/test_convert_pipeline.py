"""``salsdk convert`` end to end: real TinyHD weights, real video frames, bundles, manifests, interruption.

One conversion per session (ONNX fp32, ONNX int8, TFLite fp32, int8 and int8-io of TinyHD-S-x1/4, the
``tinyhd_s_bundles`` fixture of ``conftest.py``, shared with the parity tests) feeds every check: the fidelity
gate on held-out frames, re-running each bundle from its manifest alone with its own runtime, tamper detection,
and the closing table. Interruption is checked on real ``python -m salsdk convert`` processes.
"""
from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import salsdk
from salsdk.convert.pipeline import format_table
from salsdk.convert.speed_check import SPEED_PRECISIONS
from salsdk.errors import BundleError, ConversionError
from salsdk.manifest import MANIFEST_NAME, read_manifest
from salsdk.quantize.policy import fallback_steps
from salsdk.metrics import cc
from salsdk.quantize.calibration import clip_calibration

from conftest import TINYHD_S_FORMATS as FORMATS

MODEL = "TinyHD-S-x0.25"


@pytest.fixture(scope="session")
def converted(tinyhd_s_bundles):
    return tinyhd_s_bundles


def test_every_format_is_accepted_on_held_out_frames(converted):
    out, outcomes, log = converted
    assert [o.format.key for o in outcomes] == FORMATS.split(",")
    for outcome in outcomes:
        assert outcome.status.startswith("accepted"), (outcome.format.key, outcome.status, outcome.message)
        manifest = read_manifest(outcome.bundle)
        fidelity = manifest.fidelity
        assert fidelity.cc_min >= manifest.gate == 0.99 and fidelity.method == "executed"
        assert len(outcome.fidelity.cc_per_input) == fidelity.n_inputs == 2
        assert manifest.weights.trained is True and manifest.model_name == MODEL
    int8 = [o for o in outcomes if o.format.key == "onnx-int8"][0]
    held_out = set(int8.fidelity.inputs)
    assert held_out and not held_out & set(read_manifest(out / f"{MODEL}-onnx-int8").calibration_inputs)
    assert all("#frames" in name for name in held_out)  # frames of the shared video, named by range
    assert any(line.startswith(f"[1/{len(outcomes) + 1}] preparing") for line in log)


def test_tflite_bundles_are_made_from_the_graph_without_3d_convolutions(converted):
    """TFLite artifacts come from the framewise rewrite (recorded, measured); ONNX fp32 from the original graph,
    ONNX int8 from the rewrite (each row takes the graph its runtime runs faster)."""
    from salsdk.tflite_model import op_counts, ops_after_input

    out, _, log = converted
    for key in ("tflite-fp32", "tflite-int8"):
        manifest = read_manifest(out / f"{MODEL}-{key}")
        graph = manifest.to_dict()["graph"]
        assert manifest.graph_rewrite == "tinyhd-framewise-2d" and graph["max_abs_error"] < 1e-5
        assert graph["cc_min_vs_original"] >= 0.9999
        content = (out / f"{MODEL}-{key}" / manifest.model_file).read_bytes()
        ops = op_counts(content)
        assert "CONV_3D" not in ops and ops.get("DEPTHWISE_CONV_2D", 0) > 50, ops
        assert "TRANSPOSE" not in ops_after_input(content), ops  # channels-last input, read by a convolution
        # temporal taps are summed by frame slices and concatenations, not zero-pads of the batch axis, which
        # litert-torch wraps in a TRANSPOSE on each side (207 TRANSPOSEs before, 91 after: pixel shuffles)
        assert not [pair for pair in _neighbours(content, "TRANSPOSE") if "PAD" in pair], ops
        # 17 of the 22 pixel shuffles (those whose channel order folds into convolutions, nested ones included)
        # are DEPTH_TO_SPACE ops, not four transposes each; the ADDs after them run channels-last
        assert ops.get("DEPTH_TO_SPACE") == 17 and ops["TRANSPOSE"] == 20, ops
        assert "pixel shuffles as DEPTH_TO_SPACE: 17" in manifest.to_dict()["graph_notes"]
        assert manifest.tool_versions.get("litert-torch") and "tensorflow" not in manifest.tool_versions
        if key == "tflite-int8":  # every convolution's bias corrected (taps included), or none where that hurt
            correction = manifest.to_dict()["quantization"]["bias_correction"]
            assert correction.startswith("not applied: no mode raised") or \
                int(correction.split()[0]) == ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"], correction
    assert read_manifest(out / f"{MODEL}-onnx-fp32").graph_rewrite is None
    assert read_manifest(out / f"{MODEL}-onnx-int8").graph_rewrite == "tinyhd-framewise-2d"
    assert any("export rewrite tinyhd-framewise-2d: max abs error" in line for line in log)


def _neighbours(content: bytes, op_type: str) -> list[tuple[str, ...]]:
    """For every ``op_type`` operator of a .tflite file: the op types that produce its inputs and read its output."""
    from salsdk.tflite_model import builtin_op_names, read_model

    model = read_model(content)
    operators, names = model.subgraphs[0].operators, builtin_op_names(model)
    producer = {t: names[i] for i, op in enumerate(operators) for t in op.outputs}
    readers: dict[int, list[str]] = {}
    for i, op in enumerate(operators):
        for t in op.inputs:
            readers.setdefault(t, []).append(names[i])
    return [tuple(producer.get(t, "INPUT") for t in op.inputs if t in producer)
            + tuple(r for t in op.outputs for r in readers.get(t, []))
            for i, op in enumerate(operators) if names[i] == op_type]


def test_output_folder_holds_only_complete_bundles(converted):
    out, outcomes, _ = converted
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{MODEL}-{k}" for k in FORMATS.split(","))
    for bundle in out.iterdir():
        assert not list(bundle.glob(".*")), "no pending manifest or temporary file may remain"


@pytest.mark.parametrize("key", FORMATS.split(","))
def test_bundle_reproduces_its_manifest_numbers_from_the_manifest_alone(converted, key, tinyhd_s_weights,
                                                                         shared_video):
    """Inputs rebuilt from the manifest's contract, run by the runtime it names, give the CCs it records."""
    out, _, _ = converted
    bundle = out / f"{MODEL}-{key}"
    predictor = salsdk.load(bundle)
    manifest = predictor.manifest
    assert predictor.describe()["runtime"] == manifest.format.runtime
    fidelity = manifest.to_dict()["fidelity"]
    data = clip_calibration(manifest.contract(), shared_video, n_calib=len(manifest.calibration_inputs) or 4,
                            n_eval=manifest.fidelity.n_inputs)
    assert data.evaluation_sources == fidelity["inputs"]
    reference = salsdk.create_model(MODEL, weights=str(tinyhd_s_weights))
    import torch

    with torch.no_grad():
        expected = reference(torch.from_numpy(data.evaluation)).numpy()
    measured = [cc(predictor.runtime.run(clip[None])[0][0, 0], ref[0]) for clip, ref in zip(data.evaluation, expected)]
    np.testing.assert_allclose(measured, fidelity["cc_per_input"], atol=1e-4)


def test_tampered_bundle_is_refused(converted, tmp_path):
    import shutil

    out, _, _ = converted
    copy = tmp_path / "tampered"
    shutil.copytree(out / f"{MODEL}-onnx-fp32", copy)
    model_file = copy / read_manifest(copy).model_file
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model_file.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="SHA-256|bytes"):
        salsdk.load(copy)
    (copy / MANIFEST_NAME).unlink()
    with pytest.raises(BundleError, match="interrupted conversion"):
        read_manifest(copy)


def test_closing_table_lists_each_format(converted):
    _, outcomes, _ = converted
    table = format_table(outcomes)
    for key in FORMATS.split(","):
        assert key in table
    assert "accepted" in table and "CC min" in table


def test_int8_bundles_are_timed_against_their_fp32_sibling(converted):
    """Each accepted int8 bundle records its latency beside its fp32 sibling's, measured in one process, and the
    table prints the speed-up (a slower one is flagged there and in the manifest); float bundles record none."""
    _, outcomes, log = converted
    table = format_table(outcomes)
    for outcome in outcomes:
        speed = dict(read_manifest(outcome.bundle).speed)
        if outcome.format.precision not in SPEED_PRECISIONS:  # fp32, and OpenVINO's bf16 (no fp32 sibling)
            assert not speed
            continue
        assert speed["vs"] == re.sub(r"int8(-io)?$", "fp32", outcome.format.key) and speed["runs"] >= 3
        assert speed["speedup"] == pytest.approx(speed["fp32_ms"] / speed["ms"], rel=1e-2)
        assert speed["slower_than_fp32"] == (speed["ms"] > speed["fp32_ms"])
        assert 0 < speed["predicted"]["speedup"] and 0 <= speed["predicted"]["float_mac_share"] <= 1
        line = next(x for x in table.splitlines() if x.startswith(outcome.format.key + " "))
        assert f"{speed['speedup']:.2f}x {speed['vs']}" in line
        assert ("SLOWER than fp32" in line) == speed["slower_than_fp32"]
        assert any(f"{outcome.format.key}: " in x and f"for {speed['vs']}" in x for x in log)


def _convert_process(out: Path, weights: Path, video: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "salsdk", "convert", "--model", MODEL, "--weights", str(weights), "--int8",
               "--format", "onnx-fp32,onnx-int8", "--calib", str(video), "--out", str(out)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_line(process: subprocess.Popen, marker: str, timeout: float = 600) -> str:
    deadline = time.monotonic() + timeout
    seen = []
    for line in process.stdout:
        seen.append(line)
        if marker in line:
            return "".join(seen)
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail(f"conversion never printed {marker!r}:\n{''.join(seen)}")


def _bundles_with_manifest(out: Path) -> list[Path]:
    return [p.parent for p in out.rglob(MANIFEST_NAME)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_killed_conversion_leaves_no_half_bundle(tmp_path, tinyhd_s_weights, shared_video, sig):
    """Killed while the int8 artifact is being made: only the finished fp32 bundle has a manifest, and it verifies."""
    process = _convert_process(tmp_path, tinyhd_s_weights, shared_video)
    _wait_for_line(process, "[3/3] onnx-int8")
    time.sleep(1.0)
    process.send_signal(sig)
    process.wait(timeout=120)
    assert process.returncode != 0
    bundles = _bundles_with_manifest(tmp_path)
    assert [b.name for b in bundles] == [f"{MODEL}-onnx-fp32"]
    read_manifest(bundles[0])  # complete: every pinned hash matches
    if sig == signal.SIGTERM:  # a catchable signal also cleans every temporary folder away
        assert sorted(p.name for p in tmp_path.iterdir()) == [f"{MODEL}-onnx-fp32"]
    else:
        assert not (tmp_path / f"{MODEL}-onnx-int8").exists()


@pytest.mark.slow
def test_fallback_steps_grow_to_the_cap():
    assert fallback_steps(31, 1.0) == [1, 2, 3, 4, 6, 9, 14, 21, 31]
    assert fallback_steps(31, 0.5) == [1, 2, 3, 4, 6, 9, 14, 15]
    assert fallback_steps(100, 0.1) == [1, 2, 3, 4, 6, 9, 10]
    assert fallback_steps(1, 0.5) == [1] and fallback_steps(0, 1.0) == []
    with pytest.raises(ConversionError, match="max-float"):
        fallback_steps(10, 0.0)


def test_cli_exit_status_and_rejection_report(tmp_path, capsys):
    """An impossible gate: the int8 artifact is rejected with a JSON report and no bundle; exit status 1 with
    ``--strict`` (without it a rejection is a reported result, status 0: tests/test_first_contact.py). The
    UniSal stand-in at 64x96 keeps the fallback's full ranking cheap."""
    from salsdk.cli import main

    model = "UniSal"
    status = main(["convert", "--model", model, "--random-init", "--size", "64x96", "--format", "onnx-int8",
                   "--int8", "--n-calib", "2", "--n-eval", "1", "--min-cc", "0.99999", "--max-float", "0.15",
                   "--out", str(tmp_path), "--strict"])
    assert status == 1
    printed = capsys.readouterr().out  # the ranking, which takes minutes on large inputs, is announced and timed
    assert "onnx-int8: ranking its layers for the fallback" in printed
    assert re.search(r"onnx-int8: ranked \d+ layers in \d+\.\ds", printed), printed
    report = json.loads((tmp_path / f"{model}-onnx-int8.rejected.json").read_text())
    assert report["schema"] == "salsdk-rejection/1" and report["status"] == "rejected"
    assert not report["fidelity"]["passed"]
    attempts = report["fallback_attempts"]  # other calibration methods first, then layers kept in float
    assert [a["calibration_method"] for a in attempts[:3]] == ["minmax", "percentile", "entropy"]
    assert not any(a["kept_float"] for a in attempts[:3])
    ranked = report["quantization"]["fallback"]["ranked_layers"]
    assert [len(a["kept_float"]) for a in attempts[3:]] == fallback_steps(ranked, 0.15)
    assert len(attempts[-1]["kept_float"]) == int(ranked * 0.15)  # the cap was reached, not exceeded
    assert not (tmp_path / f"{model}-onnx-int8").exists()
    assert (tmp_path / f"{model}-onnx-fp32" / MANIFEST_NAME).exists()
