"""``salsdk bench``: schema and database, phone imports, claims, GEMM peak, a tiny real run, reports.

No test asserts a timing: the machine may be shared and slow. They check that the numbers exist, are consistent
and land where they should.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from salsdk.bench.schema import ANDROID_DEMO_EXAMPLE, BenchResult, latency_stats, percentile

BENCHMARK_MODEL_LOG = """\
STARTING!
Log parameter values verbosely: [0]
Num threads: [4]
Graph: [/data/local/tmp/salsdk/UniSal-tflite-int8/model.tflite]
#threads used for CPU inference: [4]
Use xnnpack: [1]
Loaded model /data/local/tmp/salsdk/UniSal-tflite-int8/model.tflite
INFO: Created TensorFlow Lite XNNPACK delegate for CPU.
The input model file size (MB): 11.6101
Initialized session in 2.81ms.
Running benchmark for at least 1 iterations and at least 0.5 seconds but terminate if exceeding 150 seconds.
count=5 first=9812 curr=8650 min=8602 max=9812 avg=8701.3 std=420

Running benchmark for at least 50 iterations and at least 1 seconds but terminate if exceeding 150 seconds.
count=50 first=8512 curr=8530 min=8402 max=9012 avg=8531.1 std=102

Inference timings in us: Init: 2810, First inference: 9812, Warmup (avg): 8701.3, Inference (avg): 8531.1
Note: as the benchmark tool itself affects memory footprint, the following is only APPROXIMATE to the actual \
memory footprint of the model at runtime. Take the information at your discretion.
Peak memory footprint (MB): init=3.2, overall=12.5
"""


def _row(**kw) -> BenchResult:
    base = dict(model="UniSal", format="onnx-int8", runtime="onnxruntime", precision="int8",
                input_shape=[1, 3, 480, 640], threads=2, macs=58_830_297_600, run_id="r1", machine_id="m1",
                machine="test machine", machine_info={"gemm": {"gmacs_per_s": 50.0, "library": "test"},
                                                      "isa": ["avx2"]},
                fidelity_cc_min=0.995, fidelity_cc_mean=0.996, fidelity_source="manifest",
                **latency_stats([100.0, 110.0, 120.0]))
    base.update(kw)
    return BenchResult(**base)


# ------------------------------------------------------------------------------------------ schema and store
def test_percentiles_and_stats():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    stats = latency_stats([10.0, 20.0, 30.0])
    assert stats["latency_ms_p50"] == 20.0 and stats["runs"] == 3 and stats["latency_ms_min"] == 10.0


def test_result_round_trip_and_derived_values():
    row = _row(maps_per_run=16, notes=["n"], extra={"profile": {"ops": []}})
    again = BenchResult.from_dict(json.loads(json.dumps(row.to_dict())))
    assert again == row
    assert row.ms_per_map == pytest.approx(110.0 / 16)
    assert row.gmacs_per_s == pytest.approx(58.8302976 / 0.110)
    assert row.peak_share == pytest.approx(row.gmacs_per_s / 50.0)
    assert row.accepted and not _row(fidelity_cc_min=0.98).accepted


def test_store_round_trip(tmp_path):
    from salsdk.bench.store import ResultStore

    store = ResultStore(tmp_path / "bench.sqlite")
    rows = [_row(format="pytorch-fp32", runtime="pytorch"), _row(), _row(run_id="r2", model="AIM")]
    assert store.add(rows) == 3
    assert store.query(run_id="r1") == rows[:2]
    assert [r.model for r in store.query(model="aim")] == ["AIM"]
    assert store.latest_run_id() == "r2"
    assert {r["run_id"] for r in store.runs()} == {"r1", "r2"}


# ----------------------------------------------------------------------------------------------- phones
def test_benchmark_model_parser():
    from salsdk.bench.mobile import parse_benchmark_model

    row = parse_benchmark_model(BENCHMARK_MODEL_LOG, device_name="Pixel 7")
    assert (row.model, row.format, row.runtime, row.delegate, row.threads) == ("UniSal", "tflite-int8", "litert",
                                                                             "xnnpack", 4)
    assert row.load_s == pytest.approx(0.00281) and row.first_run_ms == pytest.approx(9.812)
    assert row.latency_ms_mean == pytest.approx(8.5311) and row.latency_ms_min == pytest.approx(8.402)
    assert row.runs == 50 and row.warmup == 5 and row.latency_ms_p50 is None
    assert row.central_ms == pytest.approx(8.5311)
    assert (row.baseline_rss_mb, row.peak_rss_mb) == (3.2, 12.5)
    assert row.file_bytes == 11_610_100 and row.source == "benchmark_model" and row.machine == "Pixel 7"
    # the upstream tool's spelling (space, no comma), the GPU delegate, explicit names
    text = (BENCHMARK_MODEL_LOG.replace("init=3.2, overall=12.5", "init=4.92969 overall=138.809")
            .replace("Use xnnpack: [1]", "Use gpu: [1]"))
    gpu = parse_benchmark_model(text, model="AIM", format="tflite-fp32")
    assert (gpu.model, gpu.format, gpu.delegate, gpu.peak_rss_mb) == ("AIM", "tflite-fp32", "gpu", 138.809)
    with pytest.raises(ValueError):
        parse_benchmark_model("ERROR: could not open model")


def test_android_demo_parser():
    from salsdk.bench.mobile import parse_android_demo

    rows = parse_android_demo(ANDROID_DEMO_EXAMPLE)
    assert [(r.model, r.format, r.delegate) for r in rows] == [("UniSal", "tflite-int8", "xnnpack"),
                                                               ("UniSal", "tflite-fp32", "gpu")]
    first, second = rows
    assert first.input_shape == [1, 3, 480, 640]  # NHWC from the phone -> canonical NCHW
    assert first.latency_ms_p50 == pytest.approx(41.05) and first.runs == 4
    assert first.fidelity_cc_min == 0.993 and first.source == "android-demo" and "Pixel 7" in first.machine
    assert second.latency_ms_p50 == 22.1 and second.runs == 50 and second.load_s == pytest.approx(0.95)


def _copy_bundles(source: Path, folder: Path, *keys: str) -> Path:
    """Copies of the session's real UniSal bundles ``keys`` in ``folder``."""
    import shutil

    for key in keys:
        shutil.copytree(source / f"UniSal-{key}", folder / f"UniSal-{key}")
    return folder


def test_device_plan(tmp_path, unisal_bundles):
    from salsdk.bench.measure import discover_bundles
    from salsdk.bench.mobile import device_plan, plan_script

    _copy_bundles(unisal_bundles, tmp_path, "tflite-int8", "onnx-fp32")

    plan = device_plan(discover_bundles([tmp_path]), threads=(1, 4))
    assert {p["bundle"] for p in plan} == {"UniSal-tflite-int8"}  # benchmark_model runs .tflite only
    commands = [" ".join(p["command"]) for p in plan]
    assert len(plan) == 2 + 2 + 1 + 1  # cpu x2 threads, xnnpack x2 threads, gpu, nnapi
    assert any("--use_xnnpack=false --num_threads=1" in c or ("--num_threads=1" in c and "--use_xnnpack=false" in c)
               for c in commands)
    assert any("--use_xnnpack=true" in c and "--num_threads=4" in c for c in commands)
    assert any("--use_gpu=true" in c for c in commands) and any("--use_nnapi=true" in c for c in commands)
    assert all("--graph=/data/local/tmp/salsdk/UniSal-tflite-int8/model.tflite" in c for c in commands)
    script = plan_script(plan)
    assert script.startswith("#!/bin/sh") and "adb push" in script and "report_peak_memory_footprint" in script


def test_import_cli_enriches_from_bundles(tmp_path, unisal_bundles):
    from salsdk.bench.store import ResultStore
    from salsdk.cli import main
    from salsdk.manifest import read_manifest

    bundles = _copy_bundles(unisal_bundles, tmp_path / "bundles", "tflite-int8")
    fidelity = read_manifest(bundles / "UniSal-tflite-int8").fidelity
    log = tmp_path / "UniSal-tflite-int8__xnnpack_t4.txt"
    log.write_text(BENCHMARK_MODEL_LOG)
    demo = tmp_path / "demo.json"
    demo.write_text(json.dumps(ANDROID_DEMO_EXAMPLE))
    db = tmp_path / "db.sqlite"
    assert main(["bench", "import", str(log), str(demo), "--bundles", str(bundles), "--db", str(db),
                 "--device-name", "Pixel 7", "--out", str(tmp_path / "report")]) == 0
    rows = ResultStore(db).query()
    assert {r.source for r in rows} == {"benchmark_model", "android-demo"}
    imported = next(r for r in rows if r.source == "benchmark_model")
    assert imported.input_shape == [1, 3, 96, 128] and imported.fidelity_cc_min == fidelity.cc_min
    assert imported.macs and imported.params == 10_448_833
    assert (tmp_path / "report" / "report.md").is_file()


# ------------------------------------------------------------------------------------------ claims, machine
def test_claims_table_lists_every_card_claim():
    from salsdk.bench.claims import claims_table, models_with_claims
    from salsdk.registry import get_card

    models = models_with_claims()
    assert {"UniSal", "TinyHD-S-x0.25", "TinyHD-M-x0.25"} <= set(models)
    table = claims_table(models, [])
    for model in models:
        for claim in get_card(model).claims:
            assert any(model in c.models.split(", ") and c.metric == claim.metric and c.paper_setting == claim.context
                       for c in table), (model, claim)
    sizes = [c for c in table if c.metric == "size_mb" and "UniSal" in c.models]
    assert sizes and "41.2 MB" == sizes[0].paper and "fp32 state dict 41.9 MB" in sizes[0].ours
    gmacs = next(c for c in table if c.metric == "gmacs" and c.models == "TinyHD-S-x0.25")
    assert gmacs.paper.startswith("2.34") and "GMACs" in gmacs.ours and "% vs paper" in gmacs.verdict


def test_claims_use_measurements_at_the_papers_size():
    from salsdk.bench.claims import claim_rows

    rows = [_row(format="pytorch-fp32", runtime="pytorch", fidelity_cc_min=1.0, **latency_stats([1600.0])),
            _row(**latency_stats([200.0]))]
    latency = [c for c in claim_rows("UniSal", rows) if c.metric == "latency_s"]
    cpu, gpu = latency
    assert "onnx-int8 / onnxruntime 0.200 s" in cpu.ours and "2.00x faster than the paper" in cpu.verdict
    assert "test machine" in cpu.our_setting and gpu.ours == "no GPU here"


def test_gemm_peak_positive():
    from salsdk.bench.machine import gemm_peak, machine_info

    peak = gemm_peak(threads=1, n=256, min_seconds=0.05)
    assert peak["gflops"] > 0 and peak["gmacs_per_s"] == pytest.approx(peak["gflops"] / 2, rel=0.01)
    assert len(peak["all"]) >= 2
    info = machine_info(None, measure_peak=False)
    assert info["cpu"] and info["usable_cores"] >= 1 and info["id"]


def test_int8_and_bf16_peaks_and_memory_bandwidth_are_measured():
    from salsdk.bench.machine import bf16_gemm_peak, int8_gemm_peak, memory_bandwidth

    peak = int8_gemm_peak(threads=1, n=256, min_seconds=0.05)
    assert peak["dtype"] == "int8" and peak["gops"] > 0 and "MatMulInteger" in peak["library"]
    bf16 = bf16_gemm_peak(threads=1, n=256, min_seconds=0.05)
    assert bf16["dtype"] == "bfloat16" and bf16["gflops"] > 0 and "mm bfloat16" in bf16["library"]
    bandwidth = memory_bandwidth(megabytes=64, min_seconds=0.05)
    assert bandwidth["gb_per_s"] > 0.1


def test_targets_say_by_how_much_and_why():
    from salsdk.bench.measure import attach_ratios
    from salsdk.bench.targets import check_all, targets_text

    rows = attach_ratios([_row(format="pytorch-fp32", runtime="pytorch", fidelity_cc_min=1.0,
                               **latency_stats([1000.0])),
                          _row(**latency_stats([500.0])),
                          _row(format="tflite-int8", runtime="litert", delegate="xnnpack", fidelity_cc_min=0.95,
                               **latency_stats([100.0])),
                          _row(format="tflite-fp32", runtime="litert", status="failed", error="boom")])
    result, int8_pair = check_all(rows)
    assert result.status == "missed" and result.best["label"] == "onnx-int8 / onnxruntime"
    text = targets_text([result])
    assert "2.00x vs 8x required: 4.00x short" in text and "1.25x too slow" in text
    assert "dense conv 3x3" in text and "GEMM peak" in text and "not eligible" in text and "boom" in text
    assert int8_pair.status == "not measured" and "tflite-fp32 / litert" in int8_pair.why[0]  # it failed


def test_tinyhd_runtime_pair_target_compares_tflite_with_onnx_runtime():
    """TinyHD x1/4: TFLite fp32 on XNNPACK must be no slower than ONNX Runtime fp32 at the same input and threads."""
    from salsdk.bench.targets import check_all, targets_text

    clip = dict(model="TinyHD-M-x0.25", input_shape=[1, 3, 16, 192, 256], maps_per_run=16, fidelity_cc_min=1.0)
    onnx_row = _row(format="onnx-fp32", precision="fp32", **clip, **latency_stats([220.0]))
    fast = _row(format="tflite-fp32 [framewise]", runtime="litert", delegate="xnnpack", precision="fp32", **clip,
                **latency_stats([190.0]))  # the label salsdk bench gives bundles of the 2-D graph
    other_threads = _row(format="tflite-fp32", runtime="litert", delegate="xnnpack", precision="fp32", **clip,
                         **{**latency_stats([100.0]), "threads": 1})
    results = {r.target.text.split(": ", 1)[1]: r for r in check_all([onnx_row, fast, other_threads])}
    pair = results["TFLite fp32 (XNNPACK) no slower than ONNX Runtime fp32"]
    assert pair.status == "met" and abs(pair.best["ratio"] - 220 / 190) < 1e-9 and pair.best["threads"] == 2
    assert "vs onnx-fp32 / onnxruntime" in targets_text([pair])
    slow = _row(format="tflite-fp32", runtime="litert", delegate="xnnpack", precision="fp32", **clip,
                **latency_stats([250.0]))
    (_, missed, no_onnx2tf) = check_all([onnx_row, slow])
    assert missed.status == "missed" and "0.88x" in missed.shortfall[0]
    assert no_onnx2tf.status == "not measured" and "tflite-fp32-onnx2tf" in no_onnx2tf.why[0]
    (_, absent, _) = check_all([onnx_row])
    assert absent.status == "not measured" and "tflite-fp32 / litert" in absent.why[0]
    onnx2tf = _row(format="tflite-fp32-onnx2tf [framewise]", runtime="litert", delegate="xnnpack", precision="fp32",
                   **clip, **latency_stats([200.0]))
    versus_onnx2tf = check_all([onnx_row, fast, onnx2tf])[2]
    assert versus_onnx2tf.status == "met" and abs(versus_onnx2tf.best["ratio"] - 200 / 190) < 1e-9


# -------------------------------------------------------------------------------------- a tiny real run
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """UniSal, random init, 64x64, PyTorch eager + ONNX fp32, 3 runs each, through the CLI."""
    from salsdk.cli import main

    root = tmp_path_factory.mktemp("bench")
    code = main(["bench", "--model", "UniSal", "--random-init", "--size", "64x64", "--formats", "onnx-fp32", "--runs", "3",
                 "--warmup", "1", "--max-seconds", "10", "--threads", "1", "--cache-dir", str(root / "cache"),
                 "--db", str(root / "db.sqlite"), "--out", str(root / "report"), "--quiet", "--claims"])
    return code, root


def test_single_op_models_compute_what_the_whole_file_computes(unisal_bundles):
    """Each one-op model of the profile, fed the tensors the whole file computed, gives the whole file's output."""
    import numpy as np
    from ai_edge_litert.interpreter import Interpreter

    from salsdk.tflite_model import op_counts, single_op_models

    content = (unisal_bundles / "UniSal-tflite-fp32" / "model.tflite").read_bytes()
    whole = Interpreter(model_content=content, experimental_preserve_all_tensors=True)
    whole.allocate_tensors()
    first = whole.get_input_details()[0]
    whole.set_tensor(first["index"], np.random.default_rng(0).random(first["shape"], dtype=np.float32))
    whole.invoke()
    values = {d["name"]: d["index"] for d in whole.get_tensor_details()}
    singles = list(single_op_models(content))
    assert len(singles) == sum(op_counts(content).values())
    for _, _, model in singles[:12]:
        one = Interpreter(model_content=model)
        one.allocate_tensors()
        for detail in one.get_input_details():
            one.set_tensor(detail["index"], whole.get_tensor(values[detail["name"]]))
        one.invoke()
        out = one.get_output_details()[0]
        np.testing.assert_allclose(one.get_tensor(out["index"]), whole.get_tensor(values[out["name"]]), atol=1e-5)


def test_litert_rows_get_an_operator_profile(unisal_bundles):
    """LiteRT XNNPACK rows say where their time goes, per operator type, like ONNX Runtime rows."""
    from salsdk.bench.worker import profile_litert
    from salsdk.tflite_model import op_counts

    bundle = unisal_bundles / "UniSal-tflite-int8"
    profile = profile_litert({"bundle": str(bundle), "model_file": "model.tflite", "threads": 1,
                              "options": {"xnnpack": True}}, runs=1)
    assert {o["op"] for o in profile["ops"]} == set(op_counts((bundle / "model.tflite").read_bytes()))
    assert sum(o["share"] for o in profile["ops"]) == pytest.approx(1.0)
    assert all(o["ms_per_run"] > 0 for o in profile["ops"])
    assert profile["ops"][0]["op"] in ("CONV_2D", "DEPTHWISE_CONV_2D")  # where a MobileNetV2's time is
    nodes = [n["ms_per_run"] for n in profile["nodes"]]
    assert len(nodes) == 8 and nodes == sorted(nodes, reverse=True) and "timed alone" in profile["tool"]


def test_tiny_run_rows(tiny_run):
    from salsdk.bench.store import ResultStore

    code, root = tiny_run
    assert code == 0
    rows = ResultStore(root / "db.sqlite").query()
    assert [(r.format, r.runtime, r.status) for r in rows] == [("pytorch-fp32", "pytorch", "ok"),
                                                               ("onnx-fp32", "onnxruntime", "ok")]
    ref, onnx = rows
    assert ref.is_reference and ref.ratio == pytest.approx(1.0)
    assert onnx.ratio == pytest.approx(ref.central_ms / onnx.central_ms)
    for r in rows:
        assert r.input_shape == [1, 3, 64, 64] and r.threads == 1 and r.runs == 3
        assert r.peak_rss_mb > r.baseline_rss_mb > 0 and r.load_s > 0 and r.first_run_ms > 0
        assert r.params == 10_448_833 and r.macs > 0 and r.gmacs_per_s > 0 and r.file_bytes > 40e6
        assert r.fidelity_cc_min is not None and r.machine_info["gemm"]["gflops"] > 0
        assert r.machine_info["gemm_int8"]["gops"] > 0 and r.machine_info["memory"]["gb_per_s"] > 0
        assert r.bytes_moved > 0 and r.bound in ("compute", "memory") and 0 < r.limit_share
    assert onnx.fidelity_source == "manifest" and onnx.fidelity_cc_min > 0.99
    assert not any("PyTorch was loaded" in n for n in onnx.notes)  # ONNX worker ran without torch
    assert onnx.extra["profile"]["ops"] and ref.extra["profile"]["ops"]  # where the time goes


def test_tiny_run_report_files(tiny_run):
    _, root = tiny_run
    report = root / "report"
    for name in ("report.md", "results.json", "latency.png", "pareto.png", "memory.png"):
        assert (report / name).is_file() and (report / name).stat().st_size > 0, name
    text = (report / "report.md").read_text()
    assert "1.00x ref" in text and "Papers' claims vs ours" in text and "41.2 MB" in text
    assert "## Fidelity/latency Pareto front" in text and " | 64x64 | " in text.split("Pareto front")[1]
    assert "int8 GEMM peak" in text and "memory bandwidth" in text and "%limit" in text
    data = json.loads((report / "results.json").read_text())
    assert len(data["rows"]) == 2 and data["claims"]


def test_tiny_run_table_and_report_action(tiny_run, capsys):
    from salsdk.cli import main

    _, root = tiny_run
    assert main(["bench", "report", "--db", str(root / "db.sqlite"), "--out", str(root / "again")]) == 0
    out = capsys.readouterr().out
    assert "pytorch-fp32 / pytorch" in out and "1.00x ref" in out and "onnx-fp32 / onnxruntime" in out
    assert (root / "again" / "report.md").is_file()


def test_pareto_front_and_limit():
    from salsdk.bench.report import limit_ms, pareto_front

    def row(fmt, ms, cc):
        return BenchResult(model="UniSal", format=fmt, runtime="onnxruntime", input_shape=[1, 3, 64, 64],
                           latency_ms_p50=ms, fidelity_cc_min=cc, macs=2_000_000_000,
                           machine_info={"gemm": {"gmacs_per_s": 100.0}})
    rows = [row("a", 10, 0.999), row("b", 5, 0.995), row("c", 20, 0.998), row("d", 30, 1.0)]
    assert [r.format for r in pareto_front(rows)] == ["b", "a", "d"]  # c is slower and less faithful than a
    assert limit_ms(rows[0]) == pytest.approx(20.0)  # 2 GMAC at 100 GMAC/s, no bandwidth known


def test_rows_say_which_limit_holds_them_back():
    """int8 rows are held to the int8 GEMM peak, bf16 rows to the faster of the bf16 and fp32 peaks; a row that
    moves many bytes for its MACs is memory-bound."""
    info = {"gemm": {"gmacs_per_s": 100.0}, "gemm_int8": {"gmacs_per_s": 400.0}, "gemm_bf16": {"gmacs_per_s": 250.0},
            "memory": {"gb_per_s": 10.0}}

    def row(precision, macs, moved):
        return BenchResult(model="UniSal", format="f", runtime="onnxruntime", precision=precision,
                           input_shape=[1, 3, 64, 64], latency_ms_p50=100.0, macs=macs, bytes_moved=moved,
                           machine_info=info)
    dense = row("fp32", 5_000_000_000, 100_000_000)  # compute 50 ms, memory 10 ms
    assert dense.bound == "compute" and dense.limit_share == pytest.approx(0.5)
    quantized = row("int8", 5_000_000_000, 100_000_000)  # compute 12.5 ms at the int8 peak, memory 10 ms
    assert quantized.compute_limit_ms == pytest.approx(12.5) and quantized.limit_share == pytest.approx(0.125)
    bf16 = row("bf16", 5_000_000_000, 100_000_000)  # compute 20 ms at the bf16 peak
    assert bf16.compute_limit_ms == pytest.approx(20.0) and bf16.bound == "compute"
    info["gemm_bf16"] = {"gmacs_per_s": 50.0}  # no native bf16 here: OpenVINO computes in fp32
    assert bf16.compute_limit_ms == pytest.approx(50.0)
    thin = row("fp32", 500_000_000, 400_000_000)  # compute 5 ms, memory 40 ms
    assert thin.bound == "memory" and thin.limit_share == pytest.approx(0.4)
    again = BenchResult.from_dict(json.loads(json.dumps(thin.to_dict())))
    assert again == thin and again.bound == "memory"


def test_bytes_moved_counts_each_precision_s_element_size():
    from salsdk.bench.analysis import bytes_moved, mac_breakdown

    b = mac_breakdown("UniSal", (1, 3, 96, 128))
    fp32, int8 = bytes_moved(b, "fp32"), bytes_moved(b, "int8")
    assert fp32 == 4 * (b.activation_elements + b.params) and int8 * 4 == fp32 == 2 * bytes_moved(b, "bf16")
    assert b.activation_elements > 3 * 96 * 128  # at least the input and the map
