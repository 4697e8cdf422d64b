"""The accept/fallback policy on its own (:mod:`salsdk.quantize.policy`): which candidates it builds, in what order,
and when it stops. The builder here is a table of fidelities, so each rule is checked without a converter."""
from __future__ import annotations

import pytest

from salsdk.convert.formats import FORMATS
from salsdk.errors import ConversionError
from salsdk.quantize.bias_correction import MODES
from salsdk.quantize.fidelity import FidelityReport
from salsdk.quantize.policy import BIAS_CHOICES, Calibration, calibration_candidates, decide

GATE = 0.99


def _report(cc: float) -> FidelityReport:
    return FidelityReport(cc_mean=cc, cc_min=cc, kl_mean=0.0, sim_mean=0.0, nss_like_mean=0.0, n_inputs=1,
                          inputs=["x"], min_cc=GATE)


def _run(scores: dict[str, float], methods: list[Calibration], auto_bias: str = "per-tap",
         float_cc: float = 0.995) -> tuple[object, list[str], list[str]]:
    """Decide with a fake tool: a fully int8 attempt scores ``scores[label]`` (``auto`` bias resolves to
    ``auto_bias``, as a tool records the mode it chose); any attempt with layers kept float scores ``float_cc``."""
    built: list[str] = []
    ranked: list[str] = []

    def label(calibration: Calibration) -> str:
        bias = auto_bias if calibration.bias == "auto" else calibration.bias
        return Calibration(calibration.method, bias).label

    def build(calibration: Calibration, keep: tuple[str, ...], n: int) -> tuple[str, tuple[str, ...]]:
        built.append(label(calibration) + (f" +{len(keep)} float" if keep else ""))
        return label(calibration), keep

    def evaluate(artifact: tuple[str, tuple[str, ...]]) -> FidelityReport:
        name, keep = artifact
        return _report(float_cc if keep else scores[name])

    def rank(calibration: Calibration) -> list[str]:
        ranked.append(label(calibration))
        return ["decoder.conv10_1", "encoder.0", "encoder.2", "encoder.3"]

    decision = decide(build, evaluate, label="tflite-int8", quantized=True, methods=methods, rank=rank,
                      max_float=0.5, log=lambda line: None, method_used=lambda artifact, calibration: artifact[0])
    return decision, built, ranked


def test_formats_offer_the_bias_modes_their_exporters_know():
    offered = {f.key: f.bias_modes for f in FORMATS if f.bias_modes}
    assert sorted(offered) == ["pte-int8", "tflite-int8", "tflite-int8-io"]
    assert all(modes == BIAS_CHOICES[1:] for modes in offered.values())
    assert set(MODES) | {"none"} == set(BIAS_CHOICES[1:])


def test_candidates_add_the_other_bias_modes_to_the_default_method_only():
    assert calibration_candidates(("minmax",), "auto") == [Calibration("minmax")]
    assert calibration_candidates(("histogram", "minmax"), "auto", ("per-tap", "none")) == [
        Calibration("histogram"), Calibration("minmax"), Calibration("histogram", "per-tap"),
        Calibration("histogram", "none")]
    assert calibration_candidates(("histogram", "minmax"), "minmax", ("per-tap",), bias="none") == [
        Calibration("minmax", "none")]
    assert Calibration("minmax", "per-channel").label == "minmax, bias per-channel"
    with pytest.raises(ConversionError, match="bias correction 'sometimes'"):
        calibration_candidates(("minmax",), "auto", bias="sometimes")


def test_a_fully_int8_bias_mode_that_passes_comes_before_any_float_layer():
    """The mode chosen on calibration inputs fails the gate; another mode passes fully int8, so nothing is ranked
    or kept float; the candidate the automatic choice already was is not built twice."""
    scores = {"minmax, bias per-tap": 0.9866, "minmax, bias per-channel": 0.9901, "minmax, bias none": 0.9832}
    methods = calibration_candidates(("minmax",), "auto", ("per-tap", "per-channel", "none"))
    decision, built, ranked = _run(scores, methods)
    assert decision.accepted and decision.status == "accepted (calibration: minmax, bias per-channel)"
    assert built == ["minmax, bias per-tap", "minmax, bias per-channel"] and ranked == []
    assert [a["kept_float"] for a in decision.attempts] == [[], []]


def test_when_no_fully_int8_candidate_passes_the_fallback_starts_from_the_best_one():
    scores = {"minmax, bias per-tap": 0.9866, "minmax, bias per-channel": 0.9880, "minmax, bias none": 0.9832}
    methods = calibration_candidates(("minmax",), "auto", ("per-tap", "per-channel", "none"))
    decision, built, ranked = _run(scores, methods)
    assert built == ["minmax, bias per-tap", "minmax, bias per-channel", "minmax, bias none",
                     "minmax, bias per-channel +1 float"]
    assert ranked == ["minmax, bias per-channel"]
    assert decision.status == "accepted (fallback: 1/4 layers float)"


def test_a_first_candidate_that_passes_is_the_only_one_built():
    methods = calibration_candidates(("minmax",), "auto", ("per-tap", "per-channel", "none"))
    decision, built, ranked = _run({"minmax, bias per-tap": 0.995}, methods)
    assert decision.status == "accepted" and built == ["minmax, bias per-tap"] and ranked == []
