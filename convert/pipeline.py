"""The conversion pipeline: model -> calibration -> artifacts -> fidelity gate (with fallback) -> bundles.

Formats marked ``graph_rewrite`` in the format table are exported from the model's registered export rewrite
(TinyHD without 3-D convolutions), which is first checked against the original on the held-out inputs; the
manifest's ``graph`` entry says which graph an artifact was made from. The fidelity gate always compares with the
original fp32 PyTorch model.

Each accepted artifact becomes a bundle folder ``<out>/<model>-<format>/`` holding the model file and
``manifest.json``. Bundles are assembled in a hidden temporary folder inside ``<out>`` and renamed into place
only once complete, so an interrupted or failed conversion never leaves a folder with a manifest behind.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import numpy as np

import salsdk
from salsdk.contract import Contract
from salsdk.manifest import MANIFEST_NAME, SCHEMA, pin_files, tree_size
from salsdk.quantize.calibration import CalibrationData, clip_calibration, image_calibration
from salsdk.quantize.fidelity import FidelityReport, compare_outputs, run_batched
from salsdk.runtimes import open_runtime
from salsdk.runtimes.torch_runtime import TorchRuntime
from salsdk.errors import ConversionError
from salsdk.registry import get_entry
from salsdk.zoo import WeightsArg, create_model

from .context import ExportContext, ExportResult
from .formats import Format

PENDING_MANIFEST = ".manifest.json.pending"  # renamed to manifest.json as the very last step of publishing
CALIBRATION_NPY = "calibration_image_sample_data_20x128x128x3_float32.npy"
FALLBACK_GROWTH = 1.5  # each fallback step keeps about this many times more layers in float than the last
DEFAULT_MAX_FLOAT = 0.5  # an int8 artifact keeps at least half of its ranked layers quantized unless told otherwise
GRAPH_CHOICES = ("auto", "original", "rewritten")  # which graph formats export (see ConvertOptions.graph)
CALIBRATION_CHOICES = ("auto", "minmax", "percentile", "entropy")  # see calibration_candidates
REWRITE_MIN_CC = 0.9999  # an export rewrite must reproduce the original this closely on the held-out inputs
Log = Callable[[str], None]


@dataclass
class Outcome:
    """What happened to one format: accepted (bundle written) or rejected (report only)."""

    format: Format
    status: str  # "accepted", "accepted (<method> calibration)", "accepted (fallback: k/n layers float)", "rejected", "failed"
    bundle: Path | None = None
    size_bytes: int | None = None
    fidelity: FidelityReport | None = None
    message: str = ""
    attempts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ConvertOptions:
    """Everything ``salsdk convert`` can set."""

    model: str
    weights: WeightsArg
    formats: list[Format]
    out: Path
    calib: str | None = None
    min_cc: float = 0.99
    size: tuple[int, int] | None = None
    calibration_method: str = "auto"  # auto: min-max, then the format tool's other methods if the gate fails
    dynamic_batch: bool = False
    n_calib: int | None = None
    n_eval: int | None = None
    max_float: float = DEFAULT_MAX_FLOAT  # fraction of the ranked layers the fidelity fallback may keep in float
    graph: str = "auto"  # auto: each format's table row decides; original / rewritten: every format


def uses_rewrite(fmt: Format, graph: str) -> bool:
    """Whether ``fmt`` is exported from the model's export rewrite under the ``--graph`` choice."""
    return graph == "rewritten" or (graph == "auto" and fmt.graph_rewrite)


def static_size(card, size: tuple[int, int] | None) -> tuple[int, int]:
    """Input size of the artifacts: ``size``, else the card's fixed size, else its export size."""
    return tuple(size or card.preprocessing.size or card.extra.get("export_size", (480, 640)))


def prepare(opts: ConvertOptions, log: Log) -> tuple[ExportContext, CalibrationData, list[np.ndarray]]:
    """Build the model, the calibration/evaluation inputs and the fp32 reference outputs."""
    model = create_model(opts.model, opts.weights)
    card, info = model.salsdk_card, model.salsdk_weights
    if not info.trained:
        log(f"  {card.name} is UNTRAINED (random init, seed {info.seed}); artifacts are marked untrained")
    hw = static_size(card, opts.size)
    contract = Contract.from_card(card, size=hw, trained=info.trained)
    counts = {k: v for k, v in (("n_calib", opts.n_calib), ("n_eval", opts.n_eval)) if v}
    if contract.is_video:
        data = clip_calibration(contract, opts.calib, **counts)
        shape = (1, 3, contract.preprocessing.frames, *hw)
    else:
        data = image_calibration(contract, opts.calib, hw, **counts)
        shape = (1, 3, *hw)
    log(f"  calibration: {len(data.calibration_sources)} inputs ({_summary(data.calibration_sources)}); "
        f"held out for fidelity: {len(data.evaluation_sources)} ({_summary(data.evaluation_sources)})")
    reference = run_batched(TorchRuntime(model, device="cpu").run, data.evaluation)
    workdir = Path(tempfile.mkdtemp(prefix=".salsdk-work-", dir=opts.out))
    write_onnx2tf_sample(data.calibration, workdir / CALIBRATION_NPY)
    ctx = ExportContext(card=card, contract=contract, model=model, weights=info, input_shape=shape,
                        calibration=data.calibration, calibration_sources=data.calibration_sources,
                        workdir=workdir, calibration_method=opts.calibration_method,
                        dynamic_batch=opts.dynamic_batch)
    return ctx, data, reference


def rewritten_context(ctx: ExportContext, data: CalibrationData, reference: list[np.ndarray],
                      log: Log) -> ExportContext | None:
    """The context of the model's export rewrite (None if it has none), checked on the held-out inputs.

    The rewrite must reproduce the original model (CC >= :data:`REWRITE_MIN_CC` and a float-rounding-sized
    error); its measured error is recorded in every manifest made from it.
    """
    entry = get_entry(ctx.card.name)
    if entry.export_rewrite is None:
        return None
    started = time.perf_counter()
    rewritten = entry.export_rewrite(ctx.model)
    outputs = run_batched(TorchRuntime(rewritten, device="cpu").run, data.evaluation)
    check = compare_outputs(reference, outputs, data.evaluation_sources, REWRITE_MIN_CC,
                            geometry=data.evaluation_geometry)
    error = max(float(np.abs(o - r).max()) for o, r in zip(outputs, reference))
    log(f"  export rewrite {entry.rewrite_name}: max abs error {error:.2e}, CC min {check.cc_min:.6f} vs the original "
        f"on {check.n_inputs} held-out inputs ({time.perf_counter() - started:.1f}s)")
    if not check.passed:
        raise ConversionError(f"the export rewrite {entry.rewrite_name} of {ctx.card.name} does not reproduce the "
                              f"model (CC min {check.cc_min:.6f} < {REWRITE_MIN_CC}); use --graph original")
    graph = {"rewrite": entry.rewrite_name, "summary": entry.rewrite_summary, "max_abs_error": error,
             "cc_min_vs_original": check.cc_min, "checked_on": check.inputs}
    return replace(ctx, model=rewritten, graph=graph, onnx_fp32=None)


def onnx_fp32_path(ctx: ExportContext) -> Path:
    """Where the work folder keeps the fp32 ONNX model of ``ctx``'s graph (original or rewritten)."""
    return Path(ctx.workdir) / f"model_fp32_{ctx.graph_record()['rewrite'] or 'original'}.onnx"


def ensure_onnx_fp32(ctx: ExportContext) -> None:
    """Export the fp32 ONNX model of ``ctx``'s graph into its work folder if it is not there yet."""
    if ctx.onnx_fp32 is None:
        from .onnx_export import export_fp32

        export_fp32(ctx, onnx_fp32_path(ctx))
        ctx.onnx_fp32 = onnx_fp32_path(ctx)


def _summary(names: list[str]) -> str:
    shown = ", ".join(Path(n).name if "/" in n else n for n in names[:3])
    return shown + (f", +{len(names) - 3} more" if len(names) > 3 else "")


def write_onnx2tf_sample(calibration: np.ndarray, path: Path) -> None:
    """The 20x128x128x3 sample onnx2tf looks for (else it downloads one): real calibration images, in [0, 1]."""
    import torch
    import torch.nn.functional as F

    frames = calibration if calibration.ndim == 4 else calibration.transpose(0, 2, 1, 3, 4).reshape(
        -1, *calibration.shape[1:2], *calibration.shape[3:])
    x = torch.from_numpy(frames[np.resize(np.arange(len(frames)), 20)])
    x = F.interpolate(x, size=(128, 128), mode="bilinear", align_corners=False)
    lo, hi = x.amin(dim=(1, 2, 3), keepdim=True), x.amax(dim=(1, 2, 3), keepdim=True)
    np.save(path, ((x - lo) / (hi - lo).clamp_min(1e-6)).permute(0, 2, 3, 1).numpy().astype(np.float32))


def evaluate(ctx: ExportContext, fmt: Format, artifact: Path, data: CalibrationData,
             reference: list[np.ndarray], min_cc: float) -> FidelityReport:
    """Run the artifact on the held-out inputs and compare with the fp32 reference."""
    if fmt.runtime == "coreml" and platform.system() != "Darwin":
        from .coreml_export import simulate_coreml

        outputs = run_batched(lambda x: simulate_coreml(ctx, fmt, x), data.evaluation)
        report = compare_outputs(reference, outputs, data.evaluation_sources, min_cc, method="simulated",
                                 geometry=data.evaluation_geometry)
        report.notes.append("CoreML cannot execute off macOS: the artifact's numerics (fp16 compute, 8-bit weights) "
                            "were reproduced in PyTorch; the package itself was converted and validated")
        return report
    runtime = open_runtime(fmt.runtime, artifact)
    return compare_outputs(reference, run_batched(runtime.run, data.evaluation), data.evaluation_sources, min_cc,
                           geometry=data.evaluation_geometry)


def build_manifest(ctx: ExportContext, fmt: Format, result: ExportResult, fidelity: FidelityReport,
                   attempts: list[dict[str, Any]]) -> dict[str, Any]:
    """The manifest of one bundle (without ``files``, which are pinned once the model file is final)."""
    card = ctx.card
    pre = asdict(ctx.contract.preprocessing)
    return {
        "schema": SCHEMA,
        "salsdk_version": salsdk.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"name": card.name, "family": card.family, "task": card.task, "temporal": card.temporal,
                  "class_names": list(card.class_names), "card": card.to_dict()},
        "licence": card.licence,
        "weights": {**asdict(ctx.weights), "path": Path(ctx.weights.path).name if ctx.weights.path else None,
                    "label": ctx.weights.label},
        "format": {"key": fmt.key, "family": fmt.family, "precision": fmt.precision, "runtime": fmt.runtime,
                   "description": fmt.description},
        "model_file": result.model_file,
        "input": {**asdict(result.inputs[0]), "preprocessing": pre,
                  "resize_rule": "bilinear, half-pixel centres, no antialiasing, on 0..255 float pixels"},
        "outputs": [asdict(o) for o in result.outputs],
        "postprocessing": {
            "saliency": "output 'saliency', channel 0: one map per frame (MIMO) or per input; crop the letterbox "
                        "content box if any, resize bilinearly to the original image size",
            "output_range": card.output_range, "temporal": card.temporal,
            "frames": ctx.contract.preprocessing.frames,
        },
        "quantization": result.quantization,
        "fallback_attempts": attempts,
        "fidelity": fidelity.to_dict(),
        "tool_versions": result.tool_versions,
        "graph": ctx.graph_record(),
        "graph_notes": result.graph_notes,
    }


def calibration_candidates(fmt: Format, requested: str) -> list[str]:
    """Activation-range methods to try for ``fmt``, in order: ``auto`` is every method its tool offers (min-max
    first); an explicit method is used alone (tools without it record that they used min-max)."""
    if requested not in CALIBRATION_CHOICES:
        raise ConversionError(f"unknown calibration method {requested!r}; choose one of {', '.join(CALIBRATION_CHOICES)}")
    return list(fmt.calibration_methods) if requested == "auto" else [requested]


def fallback_steps(n_ranked: int, max_float: float) -> list[int]:
    """How many of ``n_ranked`` layers each fallback attempt keeps in float: 1, 2, 3, 4, 6, 9, 14, 21, ... (growing
    by :data:`FALLBACK_GROWTH`), ending exactly at the cap, ``max_float`` of the ranked layers."""
    if not 0.0 < max_float <= 1.0:
        raise ConversionError(f"--max-float {max_float}: give a fraction of the ranked layers in (0, 1]")
    limit = max(1, int(n_ranked * max_float)) if n_ranked else 0
    steps, k = [], 1
    while k < limit:
        steps.append(k)
        k = max(k + 1, round(k * FALLBACK_GROWTH))
    return steps + [limit] if limit else []


def export_with_gate(ctx: ExportContext, fmt: Format, data: CalibrationData, reference: list[np.ndarray],
                     min_cc: float, staging: Path, log: Log, max_float: float = DEFAULT_MAX_FLOAT) -> Outcome:
    """Export ``fmt`` into ``staging`` and gate it; a quantized format below ``min_cc`` recovers in two steps.

    1. Calibration: the other activation-range methods of :func:`calibration_candidates` (percentile, entropy for
       ONNX Runtime), keeping the best.
    2. Precision (accuracy-aware mixed precision): the most sensitive layers of the format's ranking kept in float,
       more at each attempt (:func:`fallback_steps`, at most ``max_float`` of the ranked layers), until the gate
       passes. The manifest says which layers and how many of the ranked ones stayed float.

    Every attempt (method, layers kept, CC) is recorded in the manifest or the rejection report.
    """
    exporter = fmt.load_exporter()
    attempts: list[dict[str, Any]] = []

    def attempt(method: str, keep: tuple[str, ...] = (), ranked: int = 0) -> tuple[ExportResult, FidelityReport]:
        for child in staging.iterdir():
            shutil.rmtree(child) if child.is_dir() else child.unlink()
        started = time.perf_counter()
        result = exporter(replace(ctx, calibration_method=method), fmt, staging, **({"keep_float": keep} if keep else {}))
        if keep:
            result.quantization["fallback"] = {"kept_float": len(keep), "ranked_layers": ranked}
        fidelity = evaluate(ctx, fmt, staging / result.model_file, data, reference, min_cc)
        recorded = result.quantization.get("calibration_method", method)  # what the tool actually used
        attempts.append({"calibration_method": recorded, "kept_float": list(keep), "cc_min": fidelity.cc_min,
                         "cc_mean": fidelity.cc_mean})
        what = f"{len(keep)}/{ranked} layers in float" if keep else f"calibration {recorded}" if fmt.quantized else "exported"
        log(f"  {fmt.key}: {what} in {time.perf_counter() - started:.1f}s -> CC min {fidelity.cc_min:.4f} "
            f"mean {fidelity.cc_mean:.4f}")
        return result, fidelity

    methods = calibration_candidates(fmt, ctx.calibration_method) if fmt.quantized else ["minmax"]
    result, fidelity = attempt(methods[0])
    if fidelity.passed or not fmt.quantized:
        return _finish(ctx, fmt, result, fidelity, attempts, staging, "accepted" if fidelity.passed else "rejected")
    best = methods[0], fidelity.cc_min
    for method in methods[1:]:
        result, fidelity = attempt(method)
        if fidelity.passed:
            return _finish(ctx, fmt, result, fidelity, attempts, staging, f"accepted ({method} calibration)")
        best = max(best, (method, fidelity.cc_min), key=lambda pair: pair[1])
    method = best[0]
    rank = fmt.load_sensitivity()
    ranking = rank(replace(ctx, calibration_method=method), fmt) if rank else []
    steps = fallback_steps(len(ranking), max_float)
    used = next(a["calibration_method"] for a in attempts if a["cc_min"] == best[1])  # as the tool reported it
    log(f"  {fmt.key}: below CC {min_cc}; fallback (calibration: {used}): up to {steps[-1] if steps else 0} of "
        f"{len(ranking)} ranked layers in float (most sensitive: {', '.join(ranking[:3])})")
    for k in steps:
        result, fidelity = attempt(method, tuple(ranking[:k]), len(ranking))
        if fidelity.passed:
            return _finish(ctx, fmt, result, fidelity, attempts, staging,
                           f"accepted (fallback: {k}/{len(ranking)} layers float)")
    return _finish(ctx, fmt, result, fidelity, attempts, staging, "rejected")


def _finish(ctx: ExportContext, fmt: Format, result: ExportResult, fidelity: FidelityReport,
            attempts: list[dict[str, Any]], staging: Path, status: str) -> Outcome:
    manifest = build_manifest(ctx, fmt, result, fidelity, attempts)
    manifest["status"] = status
    if status != "rejected":
        fmt.embed_manifest(staging / result.model_file, json.dumps(manifest, sort_keys=True))
        manifest = pin_files(manifest, staging)
        (staging / PENDING_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    else:
        (staging / "rejected_report.json").write_text(json.dumps(manifest, indent=2, sort_keys=True),
                                                      encoding="utf-8")
    return Outcome(fmt, status, None, tree_size(staging / result.model_file), fidelity, attempts=attempts)


def publish(staging: Path, target: Path) -> None:
    """Move the complete bundle in ``staging`` to ``target``, replacing any older bundle.

    The order guarantees that at no moment does a folder hold a manifest next to incomplete files: an older
    bundle loses its manifest first, the new folder is renamed into place, and its manifest appears last.
    """
    if target.exists():
        (target / MANIFEST_NAME).unlink(missing_ok=True)
        trash = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, trash)
        shutil.rmtree(trash, ignore_errors=True)
    os.replace(staging, target)
    os.replace(target / PENDING_MANIFEST, target / MANIFEST_NAME)


def convert(opts: ConvertOptions, log: Log = print) -> list[Outcome]:
    """Run the whole conversion; returns one :class:`Outcome` per format (see ``salsdk convert``)."""
    opts.out.mkdir(parents=True, exist_ok=True)
    log(f"[1/{len(opts.formats) + 1}] preparing {opts.model}: model, calibration inputs, fp32 reference")
    ctx, data, reference = prepare(opts, log)
    outcomes: list[Outcome] = []
    try:
        wanted = opts.graph != "original" and any(uses_rewrite(f, opts.graph) for f in opts.formats)
        rewritten = rewritten_context(ctx, data, reference, log) if wanted else None
        if opts.graph == "rewritten" and rewritten is None:
            raise ConversionError(f"--graph rewritten: {ctx.card.name} has no export rewrite")
        for step, fmt in enumerate(opts.formats, start=2):
            fctx = rewritten if rewritten is not None and uses_rewrite(fmt, opts.graph) else ctx
            graph = f" [graph: {fctx.graph['rewrite']}]" if fctx.graph else ""
            log(f"[{step}/{len(opts.formats) + 1}] {fmt.key}: {fmt.description}{graph}")
            outcome = _convert_one(fctx, fmt, data, reference, opts, log)
            if fmt.key == "onnx-fp32" and outcome.bundle:
                fctx.onnx_fp32 = onnx_fp32_path(fctx)
                shutil.copyfile(outcome.bundle / "model.onnx", fctx.onnx_fp32)
            outcomes.append(outcome)
    finally:
        shutil.rmtree(ctx.workdir, ignore_errors=True)
    return outcomes


def _convert_one(ctx: ExportContext, fmt: Format, data: CalibrationData, reference: list[np.ndarray],
                 opts: ConvertOptions, log: Log) -> Outcome:
    """Export, gate and publish one format; a failure becomes a "failed" outcome, an interruption cleans up."""
    staging = Path(tempfile.mkdtemp(prefix=f".{ctx.card.name}-{fmt.key}-", dir=opts.out))
    try:
        if fmt.key != "onnx-fp32" and fmt.family != "coreml":
            ensure_onnx_fp32(ctx)  # every other ONNX and TFLite format derives from it
        outcome = export_with_gate(ctx, fmt, data, reference, opts.min_cc, staging, log, opts.max_float)
    except Exception as exc:  # one format failing must not lose the others
        shutil.rmtree(staging, ignore_errors=True)
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        log(f"  {fmt.key}: FAILED: {reason}")
        return Outcome(fmt, "failed", message=reason)
    except BaseException:  # interrupted (Ctrl-C, SIGTERM): leave nothing half-made behind
        shutil.rmtree(staging, ignore_errors=True)
        raise
    target = opts.out / f"{ctx.card.name}-{fmt.key}"
    if outcome.status == "rejected":
        report = opts.out / f"{ctx.card.name}-{fmt.key}.rejected.json"
        os.replace(staging / "rejected_report.json", report)
        shutil.rmtree(staging, ignore_errors=True)
        outcome.message = f"below CC {opts.min_cc}; report: {report}"
    else:
        publish(staging, target)
        outcome.bundle = target
    return outcome


def format_table(outcomes: list[Outcome]) -> str:
    """The closing table: format, precision, size, CC/KL vs fp32, status."""
    lines = [f"{'format':<15} {'precision':<13} {'size':>9} {'CC min':>7} {'CC mean':>8} {'KL':>7}  status",
             "-" * 78]
    for o in outcomes:
        size = f"{o.size_bytes / 1e6:.2f}MB" if o.size_bytes else "-"
        f = o.fidelity
        cc = (f"{f.cc_min:7.4f} {f.cc_mean:8.4f} {max(f.kl_mean, 0.0):7.4f}" if f else f"{'-':>7} {'-':>8} {'-':>7}")
        sim = " (simulated)" if f and f.method == "simulated" else ""
        lines.append(f"{o.format.key:<15} {o.format.precision:<13} {size:>9} {cc}  {o.status}{sim}"
                     + (f": {o.message}" if o.message else ""))
    return "\n".join(lines)
