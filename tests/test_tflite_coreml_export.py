"""TFLite and Core ML exporters, the LiteRT runtime and the Core ML simulation, on a small KDSalBox student.

One UniSal student at 96x128 is exported to the five TFLite formats (litert-torch + ai-edge-quantizer), to the
two formats of the optional onnx2tf route and to the two Core ML formats, each once per session; the checks
compare every artifact with the PyTorch fp32 model on real photographs. One test converts every TFLite format
with TensorFlow and onnx2tf made unimportable, as in an install without the onnx2tf extra.

The network is the untrained UniSal stand-in that ``--random-init`` builds (``salsdk.standins.build_untrained``:
normalised from photographs like a trained network, residual branches damped), which is as stable as a trained
network under fp16 rounding; a plain random network is not, and could not tell a converter's error from its own
amplification.
"""
from __future__ import annotations

import json
import platform
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import salsdk  # noqa: E402
from salsdk.contract import Contract  # noqa: E402
from salsdk.convert.context import ExportContext  # noqa: E402
from salsdk.convert.formats import FORMATS_BY_KEY  # noqa: E402
from salsdk.errors import BundleError  # noqa: E402
from salsdk.manifest import EMBED_KEY  # noqa: E402
from salsdk.quantize.calibration import CalibrationData  # noqa: E402
from salsdk.runtimes.litert_runtime import LiteRTRuntime  # noqa: E402

pytestmark = pytest.mark.slow

HW = (96, 128)
TFLITE_KEYS = ("tflite-fp32", "tflite-fp16", "tflite-dr8", "tflite-int8", "tflite-int8-io")
ONNX2TF_KEYS = ("tflite-fp32-onnx2tf", "tflite-int8-onnx2tf")
COREML_KEYS = ("coreml-fp16", "coreml-w8")
MIN_CC = {"tflite-fp32": 0.999, "tflite-fp16": 0.999, "tflite-dr8": 0.95, "tflite-int8": 0.95,
          "tflite-int8-io": 0.95, "tflite-fp32-onnx2tf": 0.999, "tflite-int8-onnx2tf": 0.95, "coreml-fp16": 0.999,
          "coreml-w8": 0.98}


def _photos() -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Real RGB photographs shipped with scikit-image: six for calibration, two held out."""
    from skimage import data

    calibration = [data.astronaut(), data.coffee(), data.rocket(), data.hubble_deep_field(),
                   data.immunohistochemistry(), data.retina()]
    held_out = [data.chelsea(), data.stereo_motorcycle()[0]]
    return calibration, held_out


def _preprocess(rgb: np.ndarray) -> np.ndarray:
    """Resize to 96x128 as 8-bit pixels (what a camera/image buffer holds), then /255; (3, H, W) float32."""
    from skimage.transform import resize

    pixels = np.round(resize(rgb, HW, order=1, anti_aliasing=True, preserve_range=True)).clip(0, 255)
    return (pixels / 255.0).astype(np.float32).transpose(2, 0, 1)


def min_cc(candidate: np.ndarray, reference: np.ndarray) -> float:
    """Lowest Pearson CC over the maps of a batch."""
    return float(min(np.corrcoef(c.ravel(), r.ravel())[0, 1] for c, r in zip(candidate, reference)))


@pytest.fixture(scope="session")
def export_ctx(tmp_path_factory) -> ExportContext:
    """The context the pipeline would build, with the fp32 ONNX model exported as the pipeline does it
    (``torch.onnx.export``, TorchScript exporter, opset 17, input ``input``, output ``saliency``, onnxslim)."""
    from salsdk.convert.onnx_export import export_fp32

    workdir = tmp_path_factory.mktemp("tflite_coreml")
    model = salsdk.create_model("UniSal", weights=None)
    calibration, _ = _photos()
    card = model.salsdk_card
    contract = Contract(card.name, card.task, card.preprocessing.at_size(HW), trained=False)
    inputs = np.stack([_preprocess(p) for p in calibration])
    data = CalibrationData(inputs, ["skimage:astronaut", "skimage:coffee", "skimage:rocket", "skimage:hubble_deep_field",
                                    "skimage:immunohistochemistry", "skimage:retina"], inputs[:1], ["unused"])
    ctx = ExportContext(card=card, contract=contract, model=model, weights=model.salsdk_weights,
                        input_shape=(1, 3, *HW), data=data, workdir=workdir)
    ctx.onnx_fp32 = workdir / "model_fp32.onnx"
    export_fp32(ctx, ctx.onnx_fp32)
    return ctx


@pytest.fixture(scope="session")
def evaluation(export_ctx) -> tuple[np.ndarray, np.ndarray]:
    """Held-out photographs (and one flipped calibration photo) with the PyTorch fp32 maps."""
    calibration, held_out = _photos()
    inputs = np.stack([_preprocess(p) for p in held_out] + [_preprocess(calibration[0][:, ::-1])])
    with torch.no_grad():
        reference = export_ctx.model(torch.from_numpy(inputs)).numpy()
    return inputs, reference


def _export_all(ctx: ExportContext, keys: tuple[str, ...], root: Path) -> dict:
    artifacts = {}
    for key in keys:
        dest = root / key
        dest.mkdir(parents=True)
        started = time.perf_counter()
        result = FORMATS_BY_KEY[key].load_exporter()(ctx, FORMATS_BY_KEY[key], dest)
        artifacts[key] = (result, dest / result.model_file, time.perf_counter() - started)
    return artifacts


@pytest.fixture(scope="session")
def tflite_artifacts(export_ctx, tmp_path_factory) -> dict:
    return _export_all(export_ctx, TFLITE_KEYS, tmp_path_factory.mktemp("tflite"))


@pytest.fixture(scope="session")
def onnx2tf_artifacts(export_ctx, tmp_path_factory) -> dict:
    return _export_all(export_ctx, ONNX2TF_KEYS, tmp_path_factory.mktemp("onnx2tf"))


@pytest.fixture(scope="session")
def coreml_artifacts(export_ctx, tmp_path_factory) -> dict:
    return _export_all(export_ctx, COREML_KEYS, tmp_path_factory.mktemp("coreml"))


# ------------------------------------------------------------------------------------------------------ TFLite
@pytest.mark.parametrize("key", TFLITE_KEYS + ONNX2TF_KEYS)
def test_tflite_format_converts_and_matches_pytorch(key, request, evaluation):
    artifacts = request.getfixturevalue("onnx2tf_artifacts" if key in ONNX2TF_KEYS else "tflite_artifacts")
    result, path, seconds = artifacts[key]
    inputs, reference = evaluation
    runtime = LiteRTRuntime(path, threads=2)
    outputs = runtime.run(inputs)
    assert len(outputs) == 1 and outputs[0].shape == reference.shape and outputs[0].dtype == np.float32
    cc = min_cc(outputs[0], reference)
    print(f"{key}: CC min {cc:.5f} vs PyTorch fp32, exported in {seconds:.1f}s, {path.stat().st_size / 1e6:.1f} MB")
    assert cc >= MIN_CC[key], f"{key}: CC {cc:.4f} below {MIN_CC[key]}"
    assert result.inputs[0].name == "input" and result.inputs[0].shape == (1, *HW, 3)
    assert result.inputs[0].layout == "NHWC"
    logits = key == "tflite-int8-io"  # int8 I/O stores the map before its sigmoid: the runtime applies it
    assert [o.name for o in result.outputs] == ["saliency_logits" if logits else "saliency"]
    assert result.outputs[0].activation == ("sigmoid" if logits else None) and result.outputs[0].layout == "NHWC"
    assert any(note.startswith("ops: ") for note in result.graph_notes)
    converter = "onnx2tf" if key in ONNX2TF_KEYS else "litert-torch"
    assert any(note.startswith(f"converter: {converter}") for note in result.graph_notes)
    assert converter in result.tool_versions and ("tensorflow" in result.tool_versions) == (key in ONNX2TF_KEYS)


def test_int8_io_has_int8_tensors_with_their_own_quantization(tflite_artifacts):
    from ai_edge_litert.interpreter import Interpreter

    result, path, _ = tflite_artifacts["tflite-int8-io"]
    interpreter = Interpreter(model_path=str(path))
    for spec, detail in ((result.inputs[0], interpreter.get_input_details()[0]),
                         (result.outputs[0], interpreter.get_output_details()[0])):
        assert spec.dtype == "int8" and detail["dtype"] == np.int8
        assert spec.scale == pytest.approx(detail["quantization"][0]) and spec.scale > 0
        assert spec.zero_point == detail["quantization"][1]
    float_io = tflite_artifacts["tflite-int8"][0]
    assert float_io.inputs[0].dtype == "float32" and float_io.outputs[0].dtype == "float32"
    assert float_io.quantization["io"] == "float32" and result.quantization["io"] == "int8"
    assert LiteRTRuntime(path).describe()["precision"] == "int8 (int8 input/output)"


def test_int8_io_map_leaves_as_logits_over_their_own_range(tflite_artifacts, evaluation):
    """The int8 output holds the logits (no LOGISTIC op at the output) with a scale fitted to their calibrated
    range, not the sigmoid's fixed 1/256; the runtime applies the sigmoid the manifest declares."""
    from salsdk.tflite_model import op_counts

    result, path, _ = tflite_artifacts["tflite-int8-io"]
    spec = result.outputs[0]
    assert (spec.name, spec.activation, spec.role) == ("saliency_logits", "sigmoid", "saliency")
    assert "LOGISTIC" not in op_counts(path.read_bytes())
    assert "LOGISTIC" in op_counts(tflite_artifacts["tflite-int8"][1].read_bytes())
    assert spec.scale != pytest.approx(1 / 256) and any("int8 logits" in note for note in result.graph_notes)
    inputs, _ = evaluation
    maps = LiteRTRuntime(path).run(inputs)[0]
    levels = [np.unique(m).size for m in maps]
    assert maps.min() > 0 and maps.max() < 1 and min(levels) > 50, levels


def test_int8_io_bias_correction_is_chosen_on_maps_not_logits(export_ctx, tflite_artifacts, tmp_path):
    """The bias correction scores of the int8-I/O file compare sigmoid maps: its "none" score is the lowest map CC
    of the plain int8-I/O file against the float logits file, both through the runtime (which applies the sigmoid).
    Scored with float I/O, the quantized file's output would be a dequantized tensor the runtime does not know as
    logits, and logits would be compared with maps."""
    from salsdk.convert.tflite_export import source_model
    from salsdk.metrics import cc
    from salsdk.quantize import litert_int8

    record = tflite_artifacts["tflite-int8-io"][0].quantization["bias_correction"]
    none = float(re.search(r"none (\d\.\d+)", record).group(1))
    source = source_model(export_ctx, "int8-io")
    calibration = litert_int8._calibration(source, export_ctx.data)
    plain = tmp_path / "plain.tflite"
    plain.write_bytes(litert_int8._run_quantizer(source.read_bytes(), litert_int8.recipe("int8-io"), calibration,
                                                 "int8-io"))
    samples = list(export_ctx.data.calibration_samples(litert_int8.RANK_SAMPLES))
    reference, candidate = LiteRTRuntime(source), LiteRTRuntime(plain)
    lowest = min(cc(candidate.run(x)[0][0, 0], reference.run(x)[0][0, 0]) for x in samples)
    assert none == pytest.approx(lowest, abs=1e-4), record


def test_saliency_logits_is_the_float_model_without_its_sigmoid(tflite_artifacts, evaluation, tmp_path):
    """Removing the final sigmoid is exact: sigmoid(logits file) equals the fp32 file to float rounding; a file
    whose map does not end in a sigmoid is refused."""
    from salsdk.tflite_model import saliency_logits

    _, fp32, _ = tflite_artifacts["tflite-fp32"]
    path = tmp_path / "logits.tflite"
    path.write_bytes(saliency_logits(fp32.read_bytes()))
    inputs, _ = evaluation
    interpreter_output = LiteRTRuntime(path).interpreter.get_output_details()[0]
    assert interpreter_output["name"] == "saliency_logits"
    np.testing.assert_allclose(LiteRTRuntime(path).run(inputs)[0], LiteRTRuntime(fp32).run(inputs)[0], atol=2e-6)
    with pytest.raises(ValueError, match="map output is not a sigmoid"):
        saliency_logits(path.read_bytes())


def test_no_layout_transposes(tflite_artifacts, onnx2tf_artifacts):
    """Both converters take channels-last input with no TRANSPOSE: litert-torch by ``to_channel_last_io``,
    onnx2tf by folding the layout changes into the weights."""
    from salsdk.tflite_model import op_counts, ops_after_input

    for key, (_, path, _) in {**tflite_artifacts, **onnx2tf_artifacts}.items():
        content = path.read_bytes()
        assert "TRANSPOSE" not in ops_after_input(content), key
        assert op_counts(content).get("TRANSPOSE", 0) == 0, key


def test_litert_runtime_reports_what_executes(tflite_artifacts, evaluation):
    inputs, _ = evaluation
    path = tflite_artifacts["tflite-fp32"][1]
    runtime = LiteRTRuntime(path, threads=2)
    info = runtime.describe()
    assert info["runtime"] == "litert" and info["xnnpack"] is True and info["threads"] == 2
    assert info["precision"] == "fp32" and runtime.input_hw == HW and runtime.max_batch == 1
    plain = LiteRTRuntime(path, xnnpack=False)
    assert plain.describe()["xnnpack"] is False
    np.testing.assert_allclose(plain.run(inputs[:1])[0], runtime.run(inputs[:1])[0], atol=1e-4)
    precisions = {key: LiteRTRuntime(p).describe()["precision"] for key, (_, p, _) in tflite_artifacts.items()}
    assert precisions["tflite-fp16"].startswith("fp16") and precisions["tflite-dr8"].startswith("dynamic-range")
    assert precisions["tflite-int8"] == "int8 (float input/output)"
    with pytest.raises(BundleError, match="rank-4"):
        runtime.run(inputs[0])


def test_sensitivity_ranking_and_keep_float(export_ctx, tflite_artifacts, evaluation, tmp_path):
    from salsdk.convert.tflite_export import export_tflite, rank_int8
    from salsdk.quantize.ranking import layer_groups
    from salsdk.tflite_model import op_counts

    fmt = FORMATS_BY_KEY["tflite-int8"]
    ranking = rank_int8(export_ctx, fmt)
    assert sorted(ranking) == sorted(layer_groups(export_ctx.model)) and len(ranking) > 20
    keep = tuple(ranking[:4])
    result = export_tflite(export_ctx, fmt, tmp_path, keep_float=keep)
    assert result.quantization["kept_float"] == list(keep)
    base = op_counts(tflite_artifacts["tflite-int8"][1].read_bytes())
    kept = op_counts((tmp_path / result.model_file).read_bytes())
    assert kept != base and kept["DEQUANTIZE"] > base["DEQUANTIZE"]  # float islands wrapped in (de)quantize
    inputs, reference = evaluation
    cc = min_cc(LiteRTRuntime(tmp_path / result.model_file).run(inputs)[0], reference)
    assert cc >= MIN_CC["tflite-int8"]
    with pytest.raises(salsdk.ConversionError, match="keep_float"):
        export_tflite(export_ctx, fmt, tmp_path, keep_float=("no.such_group",))


def test_int8_biases_are_corrected_for_the_quantized_convolutions_only_where_it_helps(export_ctx, tflite_artifacts,
                                                                                      evaluation, tmp_path):
    """Every int8 convolution's bias absorbs its rounded weights' mean shift, kept-float ones are left alone, in the
    mode (per tap or per channel) that raises the lowest map CC on calibration inputs most (the record gives every
    score and the choice); applied, it brings the int8 maps closer to the float file's than the quantizer's plain
    output, and not applied, the file is that output."""
    from salsdk.convert.tflite_export import float_model
    from salsdk.quantize import litert_int8
    from salsdk.tflite_model import op_counts, read_model, write_model

    source = float_model(export_ctx)
    ops = op_counts(source.read_bytes())
    convolutions = ops["CONV_2D"] + ops["DEPTHWISE_CONV_2D"]
    record = tflite_artifacts["tflite-int8"][0].quantization["bias_correction"]
    scores = {mode: float(value) for mode, value in re.findall(r"(none|per-tap|per-channel) (\d\.\d+)", record)}
    assert set(scores) == {"none", "per-tap", "per-channel"}, record
    chosen = max(scores, key=scores.__getitem__)
    _, kept = litert_int8.quantize(source, "int8", export_ctx.data, ["encoder.17"])
    calibration = litert_int8._calibration(source, export_ctx.data)
    plain = tmp_path / "uncorrected.tflite"
    plain.write_bytes(litert_int8._run_quantizer(source.read_bytes(), litert_int8.recipe("int8"), calibration, "int8"))
    inputs, _ = evaluation
    expected = LiteRTRuntime(source, threads=2).run(inputs)[0]
    made = LiteRTRuntime(tflite_artifacts["tflite-int8"][1], threads=2).run(inputs)[0]
    uncorrected = LiteRTRuntime(plain, threads=2).run(inputs)[0]
    if chosen != "none":
        assert record.startswith(f"{convolutions} int8 convolutions, {chosen}:"), record
        assert kept["bias_correction"].startswith(f"{convolutions - 3} ")  # expand, depthwise, project
        assert min_cc(made, expected) > min_cc(uncorrected, expected)
        assert np.abs(made - expected).mean() < np.abs(uncorrected - expected).mean()
    else:
        assert record.startswith("not applied") and kept["bias_correction"].startswith("not applied"), record
        np.testing.assert_array_equal(made, uncorrected)
    assert tflite_artifacts["tflite-int8"][0].quantization["bias_correction_mode"] == chosen
    for mode in ("per-tap", "per-channel", "none"):  # asked for (the fidelity policy's other candidates): applied
        content, asked = litert_int8.quantize(source, "int8", export_ctx.data, bias=mode)
        assert asked["bias_correction_mode"] == mode
        assert asked["bias_correction"].startswith(f"{convolutions} int8 convolutions, {mode}, as asked:"
                                                   if mode != "none" else "not applied, as asked"), asked
        if mode == "none":
            assert content == write_model(read_model(plain.read_bytes()))


def test_int8_activation_ranges_cover_every_calibration_input(export_ctx):
    """Each activation's int8 range is the union of its ranges on the calibration inputs, so no calibration input is
    clipped (ai-edge-quantizer's own merge, a moving average with the first input's range dominant, clips some),
    and quantizing leaves the cached ranges as they are, so files do not depend on what was quantized before."""
    from salsdk.convert.tflite_export import float_model
    from salsdk.quantize import litert_int8

    source = float_model(export_ctx)
    ranges = litert_int8._calibration(source, export_ctx.data)
    key, name = litert_int8._signature(source)
    samples = list(export_ctx.data.calibration_samples(channels_last=True))
    own = [litert_int8._quantizer(source, litert_int8.recipe("int8-io")).calibrate({key: [{name: x}]}) for x in samples]
    activations = [t for t, qsv in own[0].items() if "max" in qsv and not t.startswith("arith.constant")]
    assert len(activations) > 50 and len(samples) >= 6
    for tensor in activations:
        np.testing.assert_array_equal(ranges[tensor]["max"], np.max([o[tensor]["max"] for o in own], axis=0))
        np.testing.assert_array_equal(ranges[tensor]["min"], np.min([o[tensor]["min"] for o in own], axis=0))
    tool = litert_int8._quantizer(source, litert_int8.recipe("int8-io")).calibrate({key: [{name: x} for x in samples]})
    assert sum(np.any(tool[t]["max"] < ranges[t]["max"]) for t in activations) > len(activations) // 4
    before = {t: (ranges[t]["min"].copy(), ranges[t]["max"].copy()) for t in activations}
    litert_int8.quantize(source, "int8", export_ctx.data, ["encoder.17"])  # the quantizer edits ranges it is given
    assert all(np.array_equal(ranges[t]["min"], lo) and np.array_equal(ranges[t]["max"], hi)
               for t, (lo, hi) in before.items())


def test_group_regex_matches_only_its_group():
    from salsdk.quantize.litert_int8 import group_regex
    import re

    name = ("litert_torch._convert.to_channel_last_io.ChannelLastIOWrapper/salsdk.models.kdsalbox.network."
            "KDSalBoxStudent_wrapped/torch.nn.modules.container.Sequential_encoder/salsdk.models.mobilenetv2."
            "InvertedResidual_17/torch.nn.modules.conv.Conv2d_0;1")
    assert re.search(group_regex("encoder.17"), name)
    assert not re.search(group_regex("encoder.1"), name) and not re.search(group_regex("encoder.7"), name)
    assert not re.search(group_regex("decoder.17"), name)
    decoder = "x/salsdk.models.kdsalbox.network.StudentDecoder_decoder/torch.nn.modules.conv.Conv2d_conv8_1;2"
    assert re.search(group_regex("decoder.conv8_1"), decoder) and not re.search(group_regex("decoder.conv8"), decoder)
    # a ModuleList (or a Sequential its owner iterates) leaves no segment of its own: TinyHD's aggregator blocks
    block = ("x/salsdk.models.tinyhd.network.TinyHDAggregator_aggregator/salsdk.models.tinyhd.network."
             "InvertedResidual3d_14/torch.nn.modules.container.Sequential_conv/torch.nn.modules.conv.Conv2d_2;")
    assert re.search(group_regex("aggregator.aggregate_adapter.14"), block)
    assert not re.search(group_regex("aggregator.aggregate_adapter.1"), block)
    assert not re.search(group_regex("encoder.encoder.14"), block)


@pytest.mark.parametrize("fixture", ["tinyhd_s_bundles", "unisal_bundles", "umsi_bundles"])
def test_every_layer_group_matches_operators_of_the_tflite_file(fixture, request):
    """The fidelity fallback's unit, a module group, must name operators of the TFLite file: before stop 37 TinyHD's
    groups (``encoder.encoder``, ``aggregator.aggregate_adapter``) matched none, so "kept float" changed nothing.
    Stacks of blocks are now split into their blocks, and each group's regex matches at least one operator."""

    from salsdk.quantize.litert_int8 import check_groups_match, group_regex, op_scopes
    from salsdk.quantize.ranking import layer_groups
    from salsdk.registry import get_entry
    from salsdk.zoo import create_model

    found = request.getfixturevalue(fixture)
    out = found[0] if isinstance(found, tuple) else found
    bundle = next(out.glob("*-tflite-fp32"))
    name = bundle.name.removesuffix("-tflite-fp32")
    entry = get_entry(name)
    model = create_model(name, None)
    model = entry.rewrite(model) if entry.export_rewrite else model
    groups = layer_groups(model)
    assert len(groups) >= (50 if name.startswith("TinyHD") else 25)
    # the last group may write the map itself, whose tensor the bundle renames ``saliency`` (UMSI's c_out): it is
    # named by its module path only in the converter's float file, where the fallback matches it
    check_groups_match(bundle / "model.tflite", groups[:-1])
    scopes = op_scopes((bundle / "model.tflite").read_bytes())
    kept = [scope for scope in scopes if re.search(group_regex(groups[len(groups) // 2]), scope)]
    assert 0 < len(kept) < len(scopes) // 4  # one group is a few operators, not the model
    with pytest.raises(salsdk.ConversionError, match="match no operator"):
        check_groups_match(bundle / "model.tflite", [groups[0], "decoder.no_such_layer"])


def test_every_tflite_format_converts_without_tensorflow(tmp_path):
    """As in an install without the onnx2tf extra: TensorFlow, Keras and onnx2tf cannot be imported, and
    ``salsdk convert --format tflite --int8`` still writes all five TFLite bundles, accepted by the gate."""
    import subprocess
    import sys

    script = ("import sys\n"
              "for name in ('tensorflow', 'tf_keras', 'keras', 'onnx2tf'):\n"
              "    sys.modules[name] = None  # import fails, importlib.util.find_spec says absent\n"
              "from salsdk.cli import main\n"
              "code = main(['convert', '--model', 'UniSal', '--random-init', '--size', '64x96', '--format', 'tflite',\n"
              "             '--int8', '--n-calib', '6', '--n-eval', '2', '--out', sys.argv[1]])\n"
              "assert not [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'onnx2tf') and sys.modules[m]]\n"
              "sys.exit(code)\n")
    done = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    bundles = sorted(p.name for p in tmp_path.iterdir() if (p / "manifest.json").is_file())
    assert bundles == sorted(f"UniSal-{k}" for k in ("onnx-fp32", *TFLITE_KEYS)), done.stdout[-2000:]
    for key in TFLITE_KEYS:
        manifest = json.loads((tmp_path / f"UniSal-{key}" / "manifest.json").read_text())
        assert "tensorflow" not in manifest["tool_versions"] and "litert-torch" in manifest["tool_versions"]


def test_tflite_manifest_round_trip(tflite_artifacts, evaluation, tmp_path):
    from salsdk.artifact_metadata import read_tflite
    from salsdk.tflite_model import embed_manifest

    path = tmp_path / "model.tflite"
    shutil.copyfile(tflite_artifacts["tflite-int8-io"][1], path)
    inputs, _ = evaluation
    before = LiteRTRuntime(path).run(inputs[:1])[0]
    assert read_tflite(path, EMBED_KEY) is None
    embed_manifest(path, json.dumps({"format": "tflite-int8-io", "note": "première"}))
    embed_manifest(path, json.dumps({"format": "tflite-int8-io", "note": "seconde"}))
    assert json.loads(read_tflite(path, EMBED_KEY)) == {"format": "tflite-int8-io", "note": "seconde"}
    np.testing.assert_array_equal(LiteRTRuntime(path).run(inputs[:1])[0], before)
    assert [p.name for p in tmp_path.iterdir()] == ["model.tflite"]  # no temporary file left


# ------------------------------------------------------------------------------------------------------ Core ML
def test_coreml_packages_convert_and_validate(coreml_artifacts):
    from salsdk.runtimes.coreml_runtime import CoreMLRuntime, validate_mlpackage

    for key, (result, path, seconds) in coreml_artifacts.items():
        print(f"{key}: exported in {seconds:.1f}s")
        summary = validate_mlpackage(path)
        assert summary["inputs"][0]["kind"] == "image" and summary["inputs"][0]["shape"] == [1, 3, *HW]
        assert summary["outputs"] == [{"name": "saliency", "kind": "tensor", "shape": [1, 1, *HW],
                                       "dtype": "float32"}]
        assert summary["input_transform"]["kind"] == "image"
        assert summary["input_transform"]["scale"] == pytest.approx(1 / 255)
        assert result.inputs[0].dtype == "uint8" and result.outputs[0].layout == "NCHW"
    assert validate_mlpackage(coreml_artifacts["coreml-fp16"][1])["quantized_weights"] == 0
    assert validate_mlpackage(coreml_artifacts["coreml-w8"][1])["quantized_weights"] > 40
    if platform.system() != "Darwin":
        with pytest.raises(BundleError, match="needs macOS.*validated"):
            CoreMLRuntime(coreml_artifacts["coreml-fp16"][1])


@pytest.mark.parametrize("key", COREML_KEYS)
def test_coreml_simulation_matches_pytorch(key, export_ctx, coreml_artifacts, evaluation):
    from salsdk.convert.coreml_export import simulate
    from salsdk.quantize.coreml_w8 import simulation_notes

    inputs, reference = evaluation
    outputs = simulate(export_ctx, FORMATS_BY_KEY[key], inputs)
    cc = min_cc(outputs[0], reference)
    notes = simulation_notes(export_ctx.model, key)
    print(f"{key}: simulated CC min {cc:.5f}; {notes}")
    assert cc >= MIN_CC[key]
    if key == "coreml-w8":
        assert any("read from the package" in n for n in notes)


def test_coreml_manifest_round_trip(coreml_artifacts, tmp_path):
    from salsdk.artifact_metadata import read_coreml
    from salsdk.convert.coreml_export import embed_manifest
    from salsdk.runtimes.coreml_runtime import validate_mlpackage

    path = tmp_path / "model.mlpackage"
    shutil.copytree(coreml_artifacts["coreml-w8"][1], path)
    assert read_coreml(path, EMBED_KEY) is None
    embed_manifest(path, json.dumps({"v": 1}))
    embed_manifest(path, json.dumps({"v": 2}))
    assert json.loads(read_coreml(path, EMBED_KEY)) == {"v": 2}
    assert "salsdk_manifest" in validate_mlpackage(path)["metadata_keys"]


def test_coreml_sensitivity_ranking_and_keep_float(export_ctx, coreml_artifacts, evaluation, tmp_path):
    """coreml-w8's fallback: weight constants ranked on calibration inputs; kept ones stay float16 in the package
    and in its simulation."""
    from salsdk.convert.coreml_export import export_coreml, rank_w8, simulate
    from salsdk.runtimes.coreml_runtime import validate_mlpackage

    fmt = FORMATS_BY_KEY["coreml-w8"]
    ranking = rank_w8(export_ctx, fmt)
    quantized = validate_mlpackage(coreml_artifacts["coreml-w8"][1])["quantized_weights"]
    assert len(ranking) == quantized and len(set(ranking)) == len(ranking)
    keep = tuple(ranking[:4])
    result = export_coreml(export_ctx, fmt, tmp_path, keep_float=keep)
    assert result.quantization["kept_float"] == list(keep)
    assert validate_mlpackage(tmp_path / result.model_file)["quantized_weights"] == quantized - 4
    inputs, reference = evaluation
    cc = min_cc(simulate(export_ctx, fmt, inputs)[0], reference)
    assert cc >= MIN_CC["coreml-w8"]
    with pytest.raises(salsdk.ConversionError, match="keep_float"):
        export_coreml(export_ctx, fmt, tmp_path / "bad", keep_float=("no_such_weight",))
