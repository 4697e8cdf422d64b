"""The conversion pipeline: model -> calibration -> artifacts -> fidelity gate (with fallback) -> bundles.

Formats marked ``graph_rewrite`` in the format table are exported from the model's registered export rewrite
(TinyHD without 3-D convolutions), which is first checked against the original on the held-out inputs; the
manifest's ``graph`` entry says which graph an artifact was made from. The fidelity gate always compares with the
original fp32 PyTorch model; the accept/fallback policy is :mod:`salsdk.quantize.policy`.

Each accepted artifact becomes a bundle folder ``<out>/<model>-<format>/`` holding the model file and
``manifest.json`` (:mod:`salsdk.manifest`). Bundles are assembled in a hidden staging folder inside ``<out>`` and
renamed into place only once complete, manifest last, so an interrupted or failed conversion never leaves a
folder with a manifest behind; staging and work folders of killed runs are removed by the next run.
"""
from __future__ import annotations

import json
import math
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from salsdk import atomic
from salsdk.contract import Contract
from salsdk.errors import ConversionError, InputError
from salsdk.manifest import (MANIFEST_NAME, MAX_DIM, PENDING_MANIFEST, FormatRecord, build_manifest, bundle_name,
                             pin_files, rejection_report_name, tree_size)
from salsdk.quantize.calibration import clip_calibration, image_calibration
from salsdk.quantize.fidelity import FidelityReport, compare_outputs, run_batched
from salsdk.quantize.policy import (BIAS_CHOICES, CALIBRATION_CHOICES, DEFAULT_MAX_FLOAT, Calibration, Decision,
                                    calibration_candidates, decide)
from salsdk.quantize.ranking import PREFER_CHOICES, group_costs
from salsdk.registry import get_entry
from salsdk.runtimes import open_runtime
from salsdk.weights import OFFICIAL, WeightsArg

from .context import ExportContext, ExportResult
from .formats import Format
from .speed_check import fp32_sibling, measure_speed, predicted_speedup, speed_summary

GRAPH_CHOICES = ("auto", "original", "rewritten")  # which graph formats export (see ConvertOptions.graph)
REWRITE_MIN_CC = 0.9999  # an export rewrite must reproduce the original this closely on the held-out inputs
DISK_PER_FORMAT = 3  # free space asked for: about this many fp32 model sizes per format (artifacts + work files)
Log = Callable[[str], None]


@dataclass
class Outcome:
    """What happened to one format: accepted (bundle written), rejected (report only) or failed (error)."""

    format: Format
    status: str  # "accepted", "accepted (calibration: <label>)", "accepted (fallback: k/n layers float)", "rejected", "failed"
    bundle: Path | None = None
    size_bytes: int | None = None
    fidelity: FidelityReport | None = None
    message: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)
    speed: dict[str, Any] = field(default_factory=dict)  # int8 against its fp32 sibling (manifest "speed")

    @property
    def accepted(self) -> bool:
        return self.status.startswith("accepted")


@dataclass
class ConvertOptions:
    """Everything ``salsdk convert`` can set (checked by :meth:`validate` before any work)."""

    model: str
    weights: WeightsArg
    formats: list[Format]
    out: Path
    calib: str | None = None
    min_cc: float = 0.99
    size: tuple[int, int] | None = None
    calibration_method: str = "auto"  # auto: min-max, then the format tool's other methods if the gate fails
    bias_correction: str = "auto"  # auto: chosen on calibration inputs, then the tool's other modes if the gate fails
    dynamic_batch: bool = False
    n_calib: int | None = None
    n_eval: int | None = None
    max_float: float = DEFAULT_MAX_FLOAT  # fraction of the ranked layers the fidelity fallback may keep in float
    graph: str = "auto"  # auto: each format's table row decides; original / rewritten: every format
    offline: bool | None = None  # never download official weights (default: SALSDK_OFFLINE)
    prefer: str = "speed"  # what int8 is for: speed | size | fidelity (which layers the fallback keeps float)
    speed_check: bool = True  # time each accepted int8 artifact against its fp32 sibling

    def validate(self) -> None:
        """Refuse impossible options with one :class:`InputError` naming the option."""
        get_entry(self.model)
        _fraction(self.min_cc, "--min-cc", "the minimum CC against fp32, e.g. 0.99")
        _fraction(self.max_float, "--max-float", "a fraction of the ranked layers, e.g. 0.5")
        for name, value in (("--n-calib", self.n_calib), ("--n-eval", self.n_eval)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 10_000):
                raise InputError(f"{name} {value!r}: give a whole number of inputs from 1 to 10000")
        if self.size is not None and tuple(self.size) != tuple(get_entry(self.model).card.preprocessing.size or ()):
            h, w = self.size  # the card's own fixed size (UMSI's 240x320) is always valid
            if not (0 < h <= MAX_DIM and 0 < w <= MAX_DIM and h % 32 == 0 and w % 32 == 0):
                raise InputError(f"--size {h}x{w}: height and width must be positive multiples of 32 up to {MAX_DIM}")
        if self.calibration_method not in CALIBRATION_CHOICES:
            raise InputError(f"--calib-method {self.calibration_method!r}: choose one of {', '.join(CALIBRATION_CHOICES)}")
        if self.bias_correction not in BIAS_CHOICES:
            raise InputError(f"--bias-correction {self.bias_correction!r}: choose one of {', '.join(BIAS_CHOICES)}")
        if self.prefer not in PREFER_CHOICES:
            raise InputError(f"--prefer {self.prefer!r}: choose one of {', '.join(PREFER_CHOICES)}")
        if self.graph not in GRAPH_CHOICES:
            raise InputError(f"--graph {self.graph!r}: choose one of {', '.join(GRAPH_CHOICES)}")
        if self.calib is not None and not Path(self.calib).exists():
            raise InputError(f"--calib {self.calib} does not exist: give a folder of images or a video file")
        if not self.formats:
            raise InputError("no format selected")


def _fraction(value: Any, option: str, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not 0 < value <= 1:
        raise InputError(f"{option} {value!r}: give {what} in (0, 1]")


def uses_rewrite(fmt: Format, graph: str) -> bool:
    """Whether ``fmt`` is exported from the model's export rewrite under the ``--graph`` choice."""
    return graph == "rewritten" or (graph == "auto" and fmt.graph_rewrite)


def static_size(card, size: tuple[int, int] | None) -> tuple[int, int]:
    """Input size of the artifacts: ``size``, else the card's fixed size, else its export size."""
    return tuple(size or card.preprocessing.size or card.extra.get("export_size", (480, 640)))


def _summary(names: list[str]) -> str:
    shown = ", ".join(Path(n).name if "/" in n else n for n in names[:3])
    return shown + (f", +{len(names) - 3} more" if len(names) > 3 else "")


def prepare(opts: ConvertOptions, workdir: Path, log: Log) -> tuple[ExportContext, list[np.ndarray]]:
    """Build the model, the calibration/evaluation inputs and the fp32 reference outputs."""
    from salsdk.runtimes.torch_runtime import TorchRuntime
    from salsdk.zoo import create_model

    model = create_model(opts.model, opts.weights, offline=opts.offline)
    card, info = model.salsdk_card, model.salsdk_weights
    if not info.trained:
        log(f"  {card.name} is UNTRAINED (random init, seed {info.seed}); artifacts are marked untrained")
    hw = static_size(card, opts.size)
    contract = replace(Contract.from_card(card, trained=info.trained), preprocessing=card.preprocessing.at_size(hw))
    counts = {k: v for k, v in (("n_calib", opts.n_calib), ("n_eval", opts.n_eval)) if v}
    if contract.is_video:
        data = clip_calibration(contract, opts.calib, **counts)
    else:
        data = image_calibration(contract, opts.calib, hw, **counts)
    log(f"  calibration: {len(data.calibration_sources)} inputs ({_summary(data.calibration_sources)}); "
        f"held out for fidelity: {len(data.evaluation_sources)} ({_summary(data.evaluation_sources)})")
    reference = run_batched(TorchRuntime(model, device="cpu").run, data.evaluation)
    ctx = ExportContext(card=card, contract=contract, model=model, weights=info, input_shape=contract.input_shape(hw),
                        data=data, workdir=workdir, calibration_method=opts.calibration_method,
                        bias_correction=opts.bias_correction, dynamic_batch=opts.dynamic_batch, prefer=opts.prefer)
    return ctx, reference


def rewritten_context(ctx: ExportContext, reference: list[np.ndarray], log: Log) -> ExportContext | None:
    """The context of the model's export rewrite (None if it has none), checked on the held-out inputs.

    The rewrite must reproduce the original model (CC >= :data:`REWRITE_MIN_CC` and a float-rounding-sized
    error); its measured error is recorded in every manifest made from it.
    """
    from salsdk.runtimes.torch_runtime import TorchRuntime

    entry = get_entry(ctx.card.name)
    rewrite = entry.export_rewrite
    if rewrite is None:
        return None
    started = time.perf_counter()
    rewritten = entry.rewrite(ctx.model)
    outputs = run_batched(TorchRuntime(rewritten, device="cpu").run, ctx.data.evaluation)
    check = compare_outputs(reference, outputs, ctx.data.evaluation_sources, REWRITE_MIN_CC,
                            geometry=ctx.data.evaluation_geometry)
    error = max(float(np.abs(o - r).max()) for o, r in zip(outputs, reference))
    log(f"  export rewrite {rewrite.name}: max abs error {error:.2e}, CC min {check.cc_min:.6f} vs the original "
        f"on {check.n_inputs} held-out inputs ({time.perf_counter() - started:.1f}s)")
    if not check.passed:
        raise ConversionError(f"the export rewrite {rewrite.name} of {ctx.card.name} does not reproduce the "
                              f"model (CC min {check.cc_min:.6f} < {REWRITE_MIN_CC}); use --graph original")
    graph = {"rewrite": rewrite.name, "summary": rewrite.summary, "max_abs_error": error,
             "cc_min_vs_original": check.cc_min, "checked_on": check.inputs}
    return replace(ctx, model=rewritten, graph=graph, onnx_fp32=None)


def ensure_onnx_fp32(ctx: ExportContext) -> None:
    """Export the fp32 ONNX model of ``ctx``'s graph into its work folder if it is not there yet."""
    if ctx.onnx_fp32 is None:
        from .onnx_export import export_fp32

        path = Path(ctx.workdir) / f"model_fp32_{ctx.graph_record()['rewrite'] or 'original'}.onnx"
        export_fp32(ctx, path)
        ctx.onnx_fp32 = path


def evaluate(ctx: ExportContext, fmt: Format, artifact: Path, reference: list[np.ndarray],
             min_cc: float) -> FidelityReport:
    """Run the artifact on the held-out inputs and compare with the fp32 reference (CoreML: simulated off macOS)."""
    data = ctx.data
    if fmt.runtime == "coreml" and platform.system() != "Darwin":
        from .coreml_export import simulate

        outputs = run_batched(lambda x: simulate(ctx, fmt, x), data.evaluation)
        report = compare_outputs(reference, outputs, data.evaluation_sources, min_cc, method="simulated",
                                 geometry=data.evaluation_geometry)
        report.notes.append("CoreML cannot execute off macOS: the artifact's numerics (fp16 compute, 8-bit weights) "
                            "were reproduced in PyTorch; the package itself was converted and validated")
        return report
    runtime = open_runtime(fmt.runtime, artifact)
    return compare_outputs(reference, run_batched(runtime.run, data.evaluation), data.evaluation_sources, min_cc,
                           geometry=data.evaluation_geometry)


def _gate(ctx: ExportContext, fmt: Format, reference: list[np.ndarray], opts: ConvertOptions, staging: Path,
          log: Log) -> Decision:
    """Export ``fmt`` into ``staging`` and decide on it with the accept/fallback policy."""
    exporter, ranking = fmt.load_exporter(), fmt.load_sensitivity()

    def build(calibration: Calibration, keep: tuple[str, ...], ranked: int) -> ExportResult:
        for child in staging.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        result = exporter(_calibrated(ctx, calibration), fmt, staging, keep_float=keep)
        if keep:
            result.quantization["fallback"] = {"kept_float": len(keep), "ranked_layers": ranked}
        return result

    def used(result: ExportResult, calibration: Calibration) -> str:
        record = result.quantization
        return Calibration(record.get("calibration_method", calibration.method),
                           record.get("bias_correction_mode", calibration.bias)).label

    methods = (calibration_candidates(fmt.calibration_methods, ctx.calibration_method, fmt.bias_modes,
                                      ctx.bias_correction) if fmt.quantized else [Calibration("minmax")])
    return decide(build, lambda result: evaluate(ctx, fmt, staging / result.model_file, reference, opts.min_cc),
                  label=fmt.key, quantized=fmt.quantized, methods=methods, max_float=opts.max_float, log=log,
                  rank=(lambda calibration: ranking(_calibrated(ctx, calibration), fmt)) if ranking else None,
                  method_used=used)


def _calibrated(ctx: ExportContext, calibration: Calibration) -> ExportContext:
    return replace(ctx, calibration_method=calibration.method, bias_correction=calibration.bias)


def _speed(ctx: ExportContext, sibling_ctx: ExportContext, fmt: Format, decision: Decision, artifact: Path,
           fp32_files: dict[str, Path], log: Log) -> dict[str, Any]:
    """Time an accepted int8 artifact against its fp32 sibling as that one is shipped, on the graph its own row
    chooses (:mod:`.speed_check`); the sibling is the one this run accepted, else exported into the work folder
    for the comparison only."""
    sibling = fp32_sibling(fmt)
    try:
        if sibling.key not in fp32_files:
            folder = Path(ctx.workdir) / f"speed-{sibling.key}"
            folder.mkdir(exist_ok=True)
            fp32_files[sibling.key] = folder / sibling.load_exporter()(sibling_ctx, sibling, folder).model_file
        speed = measure_speed(fmt.runtime, artifact, fp32_files[sibling.key], ctx.data.evaluation[:1])
    except Exception as exc:  # noqa: BLE001 - a failed timing must not lose an accepted artifact
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {"vs": sibling.key, "note": f"timing failed: {reason}"}
    kept = decision.attempts[-1]["kept_float"] if decision.attempts else []
    predicted = predicted_speedup(kept, group_costs(ctx.model, ctx.input_shape, "speed"))
    speed = {"vs": sibling.key, **speed, **({"predicted": predicted} if predicted else {}),
             "measured_on": platform.node(), "input": list(ctx.input_shape)}
    log(f"  {fmt.key}: {speed['ms']:.1f} ms vs {speed['fp32_ms']:.1f} ms for {sibling.key} ({speed['threads']} "
        f"threads): {speed_summary(speed)}")
    return speed


def _manifest_document(ctx: ExportContext, fmt: Format, decision: Decision,
                       speed: dict[str, Any] | None = None) -> dict[str, Any]:
    result: ExportResult = decision.artifact
    return build_manifest(
        card=ctx.card, weights=ctx.weights,
        format_record=FormatRecord(fmt.key, fmt.family, fmt.precision, fmt.runtime, fmt.description),
        model_file=result.model_file, input_spec=result.inputs[0], outputs=result.outputs,
        preprocessing=ctx.contract.preprocessing, temporal=ctx.contract.temporal,
        fidelity=decision.fidelity.to_dict(), status=decision.status, quantization=result.quantization,
        fallback_attempts=decision.attempts, tool_versions=result.tool_versions, graph=ctx.graph_record(),
        graph_notes=result.graph_notes, speed=speed)


def _convert_one(ctx: ExportContext, fmt: Format, reference: list[np.ndarray], opts: ConvertOptions,
                 fp32_files: dict[str, Path], sibling_ctx: ExportContext, log: Log) -> Outcome:
    """Export, gate and publish one format; a failure becomes a "failed" outcome, an interruption cleans up."""
    with atomic.staging_folder(opts.out, f"{ctx.card.name}-{fmt.key}") as staging:
        try:
            if fmt.key != "onnx-fp32" and fmt.derives_from_onnx:
                ensure_onnx_fp32(ctx)
            decision = _gate(ctx, fmt, reference, opts, staging, log)
            model_path = staging / decision.artifact.model_file
            measure = decision.accepted and opts.speed_check and fp32_sibling(fmt) is not None
            speed = _speed(ctx, sibling_ctx, fmt, decision, model_path, fp32_files, log) if measure else {}
            document = _manifest_document(ctx, fmt, decision, speed)
            size = tree_size(model_path)
            if not decision.accepted:
                report = opts.out / rejection_report_name(ctx.card.name, fmt.key)
                rejected = {**document, "schema": "salsdk-rejection/1", "status": "rejected"}
                atomic.write_text(report, json.dumps(rejected, indent=2, sort_keys=True) + "\n")
                return Outcome(fmt, "rejected", None, size, decision.fidelity, f"below CC {opts.min_cc}; report: "
                               f"{report}", decision.attempts)
            fmt.embed_manifest(model_path, json.dumps(document, sort_keys=True))
            manifest = pin_files(document, staging)
            (staging / PENDING_MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
            target = opts.out / bundle_name(ctx.card.name, fmt.key)
            atomic.replace_folder(staging, target, last=MANIFEST_NAME, pending=PENDING_MANIFEST)
            if fmt.precision == "fp32":
                fp32_files[fmt.key] = target / decision.artifact.model_file
            return Outcome(fmt, decision.status, target, size, decision.fidelity, attempts=decision.attempts,
                           speed=speed)
        except Exception as exc:  # one format failing must not lose the others
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log(f"  {fmt.key}: FAILED: {reason}")
            return Outcome(fmt, "failed", message=reason)


def convert(opts: ConvertOptions, log: Log = print) -> list[Outcome]:
    """Run the whole conversion; returns one :class:`Outcome` per format (see ``salsdk convert``)."""
    opts.validate()
    opts.out = atomic.writable_folder(Path(opts.out).expanduser().resolve(), "--out")
    for stale in atomic.remove_stale(opts.out):
        log(f"  removed {stale.name}, left by an interrupted conversion")
    card = get_entry(opts.model).card
    log(f"[1/{len(opts.formats) + 1}] preparing {card.name}: model, calibration inputs, fp32 reference")
    outcomes: list[Outcome] = []
    fp32_files: dict[str, Path] = {}  # fp32 format key -> its accepted model file (speed checks)
    with atomic.staging_folder(opts.out, "work") as workdir:
        ctx, reference = prepare(opts, workdir, log)
        fp32_bytes = 4 * sum(p.numel() for p in ctx.model.parameters())
        atomic.require_free_space(opts.out, max(200 * 2**20, DISK_PER_FORMAT * fp32_bytes * len(opts.formats)), "--out")
        wanted = opts.graph != "original" and any(uses_rewrite(f, opts.graph) for f in opts.formats)
        rewritten = rewritten_context(ctx, reference, log) if wanted else None
        if opts.graph == "rewritten" and rewritten is None:
            raise ConversionError(f"--graph rewritten: {ctx.card.name} has no export rewrite")

        def context_of(fmt: Format) -> ExportContext:
            return rewritten if rewritten is not None and uses_rewrite(fmt, opts.graph) else ctx

        for step, fmt in enumerate(opts.formats, start=2):
            fctx = context_of(fmt)
            sibling = fp32_sibling(fmt)
            graph = f" [graph: {fctx.graph['rewrite']}]" if fctx.graph else ""
            log(f"[{step}/{len(opts.formats) + 1}] {fmt.key}: {fmt.description}{graph}")
            outcome = _convert_one(fctx, fmt, reference, opts, fp32_files, context_of(sibling or fmt), log)
            if fmt.key == "onnx-fp32" and outcome.bundle and fctx.onnx_fp32 is None:
                fctx.onnx_fp32 = workdir / f"model_fp32_{fctx.graph_record()['rewrite'] or 'original'}.onnx"
                shutil.copyfile(outcome.bundle / "model.onnx", fctx.onnx_fp32)
            outcomes.append(outcome)
    return outcomes


def format_table(outcomes: list[Outcome]) -> str:
    """The closing table: format, precision, size, CC/KL vs fp32, status (int8: speed against fp32)."""
    lines = [f"{'format':<19} {'precision':<13} {'size':>9} {'CC min':>7} {'CC mean':>8} {'KL':>7}  status",
             "-" * 82]
    for o in outcomes:
        size = f"{o.size_bytes / 1e6:.2f}MB" if o.size_bytes else "-"
        f = o.fidelity
        cc = (f"{f.cc_min:7.4f} {f.cc_mean:8.4f} {max(f.kl_mean, 0.0):7.4f}" if f else f"{'-':>7} {'-':>8} {'-':>7}")
        sim = " (simulated)" if f and f.method == "simulated" else ""
        speed = f"; {speed_summary(o.speed)}" if o.speed else ""
        lines.append(f"{o.format.key:<19} {o.format.precision:<13} {size:>9} {cc}  {o.status}{sim}{speed}"
                     + (f": {o.message}" if o.message else ""))
    return "\n".join(lines)


__all__ = ["ConvertOptions", "OFFICIAL", "Outcome", "convert", "format_table", "static_size", "uses_rewrite"]
