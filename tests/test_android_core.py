"""The Android demo's pure-Kotlin core reproduces the Python SDK's pre/post-processing on real bundles.

A session fixture converts two small real bundles (TinyHD-S-x1/4 with the official weights as TFLite fp32, a clip
model with an NTHWC input; UniSal random-init at 96x128 as TFLite int8, an image model), exports them with
:func:`salsdk.clients.android.export_android` into a temporary app and vectors folder (nothing is written into the
git tree), compiles ``android_demo/core`` and its ``main``-based test runner with ``kotlinc`` and runs it with
``java``. kotlinc comes from npm: ``npm install --prefix android_demo/.kotlin kotlin-compiler@2.4.20``.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from salsdk.clients.android import ASSETS, export_android
from salsdk.convert.formats import select_formats
from salsdk.convert.pipeline import ConvertOptions, convert
from salsdk.manifest import read_manifest

REPO = Path(__file__).resolve().parents[1]
CORE = REPO / "android_demo" / "core"
NPM_KOTLINC = REPO / "android_demo" / ".kotlin" / "node_modules" / "kotlin-compiler" / "bin" / "kotlinc"
INSTALL = "npm install --prefix android_demo/.kotlin kotlin-compiler@2.4.20"
CLOSING = re.compile(r"^kotlin core tests: (\d+) passed, (\d+) failed$", re.M)


def find_kotlinc() -> Path:
    """kotlinc from npm (android_demo/.kotlin) or on PATH; fails with the install command otherwise."""
    if NPM_KOTLINC.is_file():
        return NPM_KOTLINC
    found = shutil.which("kotlinc")
    if found:
        return Path(found)
    pytest.fail(f"kotlinc not found (needed to compile android_demo/core); install it with, in {REPO}:\n  {INSTALL}")


@pytest.fixture(scope="session")
def kotlin_runner(tmp_path_factory) -> Path:
    """The Kotlin core and its test runner compiled into one jar (with the Kotlin runtime)."""
    kotlinc = find_kotlinc()
    if shutil.which("java") is None:
        pytest.fail("java (JDK 17+) is needed to run kotlinc and the Kotlin tests")
    jar = tmp_path_factory.mktemp("kotlin") / "core-tests.jar"
    done = subprocess.run([str(kotlinc), str(CORE / "src/main/kotlin"), str(CORE / "src/test/kotlin"),
                           "-include-runtime", "-nowarn", "-d", str(jar)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0 and jar.is_file(), f"kotlinc failed:\n{done.stdout}\n{done.stderr}"
    return jar


@pytest.fixture(scope="session")
def bundles(tmp_path_factory, tinyhd_s_weights, shared_video, unisal_bundles, umsi_bundles) -> list[Path]:
    """Three real bundles: TinyHD-S-x0.25 TFLite fp32 (official weights; a clip model), UMSI TFLite fp32 (random
    init, 96x128; letterboxed, BGR) and UniSal TFLite int8 (random init, 96x128; int8 input and output)."""
    out = tmp_path_factory.mktemp("android_bundles")
    convert(ConvertOptions(model="TinyHD-S-x0.25", weights=str(tinyhd_s_weights),
                           formats=select_formats("tflite-fp32", False, False), out=out, calib=str(shared_video),
                           n_calib=4, n_eval=2), log=lambda _: None)
    shutil.copytree(umsi_bundles / "UMSI-tflite-fp32", out / "UMSI-tflite-fp32")
    shutil.copytree(unisal_bundles / "UniSal-tflite-int8", out / "UniSal-tflite-int8")
    found = [out / "TinyHD-S-x0.25-tflite-fp32", out / "UMSI-tflite-fp32", out / "UniSal-tflite-int8"]
    for bundle in found:
        read_manifest(bundle)
    return found


@pytest.fixture(scope="session")
def exported(tmp_path_factory, bundles, kotlin_runner) -> tuple[Path, Path]:
    """Both bundles exported into a temporary app and vectors folder: (app, vectors)."""
    root = tmp_path_factory.mktemp("android_export")
    app, vectors = root / "app", root / "vectors"
    for bundle in bundles:
        export_android(bundle, app=app, vectors_dir=vectors, log=lambda _: None)
    return app, vectors


def run_kotlin(jar: Path, vectors: Path, bench: Path) -> tuple[subprocess.CompletedProcess, int, int]:
    done = subprocess.run(["java", "-cp", str(jar), "org.salsdk.core.CoreTestsKt", str(vectors), str(bench)],
                          capture_output=True, text=True, timeout=300)
    closing = CLOSING.findall(done.stdout)
    assert closing, f"no closing line from the Kotlin runner:\n{done.stdout}\n{done.stderr}"
    passed, failed = (int(v) for v in closing[-1])
    return done, passed, failed


def test_kotlin_core_reproduces_python_vectors(exported, kotlin_runner, tmp_path):
    _, vectors = exported
    assert sorted(p.name for p in vectors.iterdir()) == ["TinyHD-S-x0.25-tflite-fp32", "UMSI-tflite-fp32",
                                                         "UniSal-tflite-int8", "letterbox.json",
                                                         "salsdk-manifest-2.schema.json"]
    done, passed, failed = run_kotlin(kotlin_runner, vectors, tmp_path / "bench.json")
    assert done.returncode == 0 and failed == 0 and passed > 0, done.stdout
    for needed in ("TinyHD-S-x0.25-tflite-fp32/dhf1k_0068_f0-15: pre-processed tensor NTHWC",
                   "UniSal-tflite-int8/coffee: pre-processed tensor NHWC", "UniSal-tflite-int8/astronaut: overlay",
                   "TinyHD-S-x0.25-tflite-fp32/dhf1k_0068_f0-15: map 72x128",
                   "UMSI-tflite-fp32/astronaut_300x451: geometry [5, 0, 85, 128]",  # 300 * 128 // 451 = 85 rows
                   "UMSI-tflite-fp32/astronaut_300x451: map 300x451", "UMSI-tflite-fp32/astronaut_7x1000: map 7x1000",
                   "UMSI-tflite-fp32/astronaut_451x300: overlay", "letterbox vectors: fit and un-crop of 3000 sizes",
                   "UMSI-tflite-fp32: manifest valid against salsdk-manifest-2.schema.json",
                   "UniSal-tflite-int8: edited manifest refused by the schema and the parser"):
        assert any(line.startswith("PASS " + needed) for line in done.stdout.splitlines()), (needed, done.stdout)


def test_benchmark_json_from_kotlin_is_what_bench_import_reads(exported, kotlin_runner, tmp_path):
    from salsdk.bench.mobile import import_file

    _, vectors = exported
    bench = tmp_path / "bench.json"
    run_kotlin(kotlin_runner, vectors, bench)
    rows = import_file(bench)
    assert [(r.model, r.format, r.delegate, r.status) for r in rows] == [
        ("UniSal", "tflite-int8", "xnnpack", "ok"), ("TinyHD-S-x0.25", "tflite-fp32", "gpu", "failed")]
    ok = rows[0]
    assert ok.input_shape == [1, 3, 96, 128] and ok.threads == 4 and ok.runs == 4 and ok.warmup == 3
    assert ok.latency_ms_p50 == pytest.approx(41.05) and ok.load_s == pytest.approx(0.0852)
    assert ok.fidelity_cc_min == 0.993 and ok.peak_rss_mb == 96.5 and ok.source == "android-demo"
    assert rows[1].input_shape == [1, 3, 16, 192, 256] and rows[1].error == "GPU delegate unavailable"


def test_kotlin_runner_fails_on_a_wrong_vector(exported, kotlin_runner, tmp_path):
    """The runner really compares: one edited expected map makes it report a failure and exit non-zero."""
    _, vectors = exported
    broken = tmp_path / "vectors"
    shutil.copytree(vectors / "UniSal-tflite-int8", broken / "UniSal-tflite-int8")
    for shared in ("letterbox.json", "salsdk-manifest-2.schema.json"):
        shutil.copy2(vectors / shared, broken / shared)
    spec = json.loads((broken / "UniSal-tflite-int8" / "vectors.json").read_text())
    target = broken / "UniSal-tflite-int8" / spec["cases"][0]["maps"][0]["file"]
    import gzip

    values = np.frombuffer(gzip.decompress(target.read_bytes()), dtype="<f4").copy()
    values[len(values) // 2] += 0.01
    target.write_bytes(gzip.compress(values.tobytes()))
    done, passed, failed = run_kotlin(kotlin_runner, broken, tmp_path / "bench.json")
    assert done.returncode != 0 and failed == 1 and passed > 0, done.stdout


def test_export_copies_a_verified_bundle_atomically(exported, bundles, tmp_path):
    app, vectors = exported
    assets = app / ASSETS
    manifest = read_manifest(assets)  # the last export (UniSal) verifies against its pinned hashes
    assert manifest.model_name == "UniSal" and (assets / manifest.model_file).is_file()
    assert not [p for p in assets.parent.iterdir() if p.name.startswith(".")], "no staging folder may remain"
    assert not [p for p in vectors.iterdir() if p.name.startswith(".")]
    spec = json.loads((vectors / "TinyHD-S-x0.25-tflite-fp32" / "vectors.json").read_text())
    case = spec["cases"][0]
    assert len(case["frames"]) == 16 and case["input"]["frames_stored"] == [0, 15]
    size = sum(p.stat().st_size for p in (vectors / "TinyHD-S-x0.25-tflite-fp32").iterdir())
    assert size < 4_000_000, f"vectors should stay small, got {size} bytes"


def test_export_cli(bundles, tmp_path):
    from salsdk.cli.export import add_arguments, run

    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["android", "--bundle", str(bundles[-1]), "--app", str(tmp_path / "app"), "--no-vectors"])
    assert run(args) == 0
    assert read_manifest(tmp_path / "app" / ASSETS).format.key == "tflite-int8"
    assert not (tmp_path / "app" / "core").exists()
    tampered = tmp_path / "tampered"
    shutil.copytree(bundles[-1], tampered)
    with open(tampered / "model.tflite", "ab") as handle:
        handle.write(b"\0")
    from salsdk.errors import BundleError

    with pytest.raises(BundleError, match="model.tflite has .* bytes, the manifest pins"):
        run(parser.parse_args(["android", "--bundle", str(tampered), "--app", str(tmp_path / "app2")]))
    assert not (tmp_path / "app2" / ASSETS).exists()


@pytest.mark.parametrize("key, says", [("onnx-fp32", "runs TFLite bundles with LiteRT"),
                                       ("pte-fp32", "ExecuTorch Android library"),
                                       ("openvino-bf16", "runs TFLite bundles with LiteRT")])
def test_export_refuses_bundles_the_app_cannot_run(unisal_bundles, tmp_path, key, says):
    from salsdk.errors import BundleError

    with pytest.raises(BundleError, match=says):
        export_android(unisal_bundles / f"UniSal-{key}", app=tmp_path / "app", log=lambda _: None)
    assert not (tmp_path / "app" / ASSETS).exists()
