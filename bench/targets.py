"""The project's speed targets, checked on the rows of a run; a missed target says by how much and why.

Targets (best accepted artifact, CC >= 0.99 against fp32, measured side by side on the same CPU):

* KDSalBox students at 480x640: at least 8x faster than PyTorch eager fp32 and faster than the paper's 0.4 s;
  TFLite int8 at least 2x faster than TFLite fp32 (a pair target: the ratio is the second's p50 over the first's,
  same input, threads and run; the first must pass the gate);
* TinyHD-S-x0.25: at least 4x faster than PyTorch eager fp32 per output map; TinyHD-M-x0.25: at least 3x and
  100 maps/s (10 ms per map);
* both TinyHD x1/4: their TFLite fp32 bundle (XNNPACK) no slower than their ONNX fp32 bundle on ONNX Runtime, nor
  than the onnx2tf route's file (pair targets).

The explanation is built from measurements, not guesses: where the MACs are (per layer type and block), the
lower bound those MACs set at this machine's measured GEMM peak, the MAC rate PyTorch eager already reaches,
the operators that take the time (ONNX Runtime's and PyTorch's profilers, LiteRT's operators timed one by one),
and which formats were rejected or failed and could not compete.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .schema import BenchResult


@dataclass(frozen=True)
class Target:
    """A speed target of one model."""

    model: str
    text: str
    min_ratio: float
    max_ms_per_map: float | None = None  # e.g. the paper's 0.4 s
    input_hw: tuple[int, int] | None = None  # measured at this input (None: any)
    pair: tuple[str, str] | None = None  # (format/engine label, versus format/engine label): a runtime-pair target


@dataclass
class TargetResult:
    """One target checked against one run's rows."""

    target: Target
    status: str  # met | missed | not measured
    best: dict[str, Any] | None = None  # the best faithful row (label, ms/map, ratio, CC)
    shortfall: list[str] = field(default_factory=list)
    why: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"target": asdict(self.target), "status": self.status, "best": self.best,
                "shortfall": self.shortfall, "why": self.why}


def targets_for(model: str) -> list[Target]:
    """The targets that apply to ``model`` (none for models without one)."""
    from salsdk.registry import get_card

    card = get_card(model)
    if card.family == "kdsalbox":
        return [Target(card.name, "KDSalBox student at 480x640: >= 8x PyTorch eager fp32 and < 0.4 s (paper, CPU)",
                       8.0, 400.0, (480, 640)),
                Target(card.name, "KDSalBox student at 480x640: TFLite int8 >= 2x TFLite fp32 (XNNPACK)", 2.0,
                       input_hw=(480, 640), pair=(TFLITE_INT8_XNNPACK, TFLITE_XNNPACK))]
    if card.family == "tinyhd" and ("x0.25" in card.name.lower() or "x1/4" in card.name.lower()):
        single_output = card.name.lower().startswith("tinyhd-s")
        speed = (Target(card.name, f"{card.name}: >= 4x PyTorch eager fp32 per output map", 4.0) if single_output
                 else Target(card.name, f"{card.name}: >= 3x PyTorch eager fp32 and >= 100 maps/s", 3.0, 10.0))
        return [speed,
                Target(card.name, f"{card.name}: TFLite fp32 (XNNPACK) no slower than ONNX Runtime fp32", 1.0,
                       pair=(TFLITE_XNNPACK, ONNXRUNTIME)),
                Target(card.name, f"{card.name}: TFLite fp32 (litert-torch) no slower than the onnx2tf file", 1.0,
                       pair=(TFLITE_XNNPACK, ONNX2TF_XNNPACK))]
    return []


TFLITE_XNNPACK = ("tflite-fp32", "litert", "xnnpack")
TFLITE_INT8_XNNPACK = ("tflite-int8", "litert", "xnnpack")
ONNX2TF_XNNPACK = ("tflite-fp32-onnx2tf", "litert", "xnnpack")
ONNXRUNTIME = ("onnx-fp32", "onnxruntime", "cpu")


def _pool(target: Target, rows: list[BenchResult]) -> list[BenchResult]:
    return [r for r in rows if r.model.lower() == target.model.lower() and r.source == "measured"
            and r.device == "cpu" and (target.input_hw is None or tuple(r.input_shape[-2:]) == target.input_hw)]


def _format_key(row: BenchResult) -> str:
    """The bundle's format key without the graph tag, e.g. ``tflite-fp32`` for ``tflite-fp32 [framewise]``."""
    return row.format.split(" ", 1)[0]


def check_pair(target: Target, rows: list[BenchResult]) -> TargetResult:
    """A runtime-pair target: the first (format, runtime, delegate) at most ``1 / min_ratio`` times as slow as the
    second, at the same input and thread count, both accepted."""
    assert target.pair is not None
    pick = {side: [r for r in _pool(target, rows)
                   if (_format_key(r), r.runtime, r.delegate) == side and r.status == "ok" and r.central_ms]
            for side in target.pair}
    pairs = [(a, b) for a in pick[target.pair[0]] for b in pick[target.pair[1]]
             if a.threads == b.threads and a.input_shape == b.input_shape]
    if not pairs:
        missing = [" / ".join(side[:2]) for side in target.pair if not pick[side]]
        return TargetResult(target, "not measured", why=[f"no measurement of {', '.join(missing) or 'both'} "
                                                         "at the same input and threads"])
    a, b = max(pairs, key=lambda ab: (ab[0].threads or 0, -ab[0].central_ms))
    ratio = b.central_ms / a.central_ms
    result = TargetResult(target, "met", best={
        "label": a.label, "input": a.size_label, "threads": a.threads, "ms_per_map": a.ms_per_map,
        "ratio": ratio, "cc_min": a.fidelity_cc_min, "reference_ms_per_map": b.ms_per_map,
        "reference_label": b.label})
    if not a.accepted or ratio < target.min_ratio:
        result.status = "missed"
        result.shortfall.append(f"{a.label} {a.central_ms:.1f} ms vs {b.label} {b.central_ms:.1f} ms "
                                f"(p50): {ratio:.2f}x" + ("" if a.accepted else ", and not accepted (CC < 0.99)"))
    return result


def check(target: Target, rows: list[BenchResult]) -> TargetResult:
    """Check ``target`` on ``rows`` (same machine, same run); explain a miss."""
    if target.pair is not None:
        return check_pair(target, rows)
    pool = _pool(target, rows)
    if not pool:
        return TargetResult(target, "not measured", why=[f"no CPU measurement of {target.model}"
                                                         + (f" at {target.input_hw[0]}x{target.input_hw[1]}"
                                                            if target.input_hw else "")])
    most_threads = max(r.threads or 0 for r in pool)
    pool = [r for r in pool if (r.threads or 0) == most_threads]
    reference = next((r for r in pool if r.is_reference and r.status == "ok"), None)
    candidates = [r for r in pool if not r.is_reference and r.accepted and r.ratio]
    if reference is None or not candidates:
        result = TargetResult(target, "not measured")
        result.why.append("no PyTorch eager reference measured" if reference is None else
                          "no artifact with CC >= 0.99 was measured")
        result.why += _format_outcomes(pool)
        return result
    best = max(candidates, key=lambda r: r.ratio)
    result = TargetResult(target, "met", best={
        "label": best.label, "input": best.size_label, "threads": best.threads, "ms_per_map": best.ms_per_map,
        "ratio": best.ratio, "cc_min": best.fidelity_cc_min, "reference_ms_per_map": reference.ms_per_map})
    if best.ratio < target.min_ratio:
        result.status = "missed"
        result.shortfall.append(f"speed-up {best.ratio:.2f}x vs {target.min_ratio:g}x required: "
                                f"{target.min_ratio / best.ratio:.2f}x short (best faithful artifact: {best.label})")
    if target.max_ms_per_map is not None and best.ms_per_map > target.max_ms_per_map:
        fastest = min(candidates, key=lambda r: r.ms_per_map)
        result.status = "missed"
        result.shortfall.append(f"{fastest.ms_per_map:.0f} ms vs the target's {target.max_ms_per_map:.0f} ms: "
                                f"{fastest.ms_per_map / target.max_ms_per_map:.2f}x too slow ({fastest.label})")
    if result.status == "missed":
        result.why = explain(reference, best, pool, target)
    return result


def explain(reference: BenchResult, best: BenchResult, pool: list[BenchResult],
            target: Target | None = None) -> list[str]:
    """Why the best artifact is not faster: where the MACs are, the GEMM bound, what the profilers show."""
    from .analysis import mac_breakdown

    why: list[str] = []
    try:
        b = mac_breakdown(reference.model, tuple(reference.input_shape))
        top = b.top_layers[0] if b.top_layers else None
        blocks = ", ".join(f"{x['block']} {100 * x['share']:.0f}%" for x in b.by_block[:3])
        why.append(f"work: {b.macs / 1e9:.2f} GMACs per run at {reference.size_label}: {b.summary()}; by block: "
                   f"{blocks}" + (f"; heaviest layer {top['layer']} ({top['type']}, output "
                                  f"{'x'.join(map(str, top['output'][1:]))}) {100 * top['share']:.0f}%" if top else ""))
    except Exception as exc:  # noqa: BLE001
        why.append(f"MAC breakdown unavailable: {exc}")
    gemm = (reference.machine_info or {}).get("gemm") or {}
    if gemm.get("gmacs_per_s") and reference.macs:
        bound_ms = reference.macs / (gemm["gmacs_per_s"] * 1e9) * 1000 / max(1, reference.maps_per_run)
        why.append(f"bound: at this machine's measured fp32 GEMM peak ({gemm['gmacs_per_s']:.1f} GMAC/s, "
                   f"{gemm.get('library', '?')}) these MACs alone need >= {bound_ms:.0f} ms per map in fp32")
        if target is not None and target.max_ms_per_map:
            needed = reference.macs / max(1, reference.maps_per_run) / (target.max_ms_per_map / 1000) / 1e9
            why.append(f"the {target.max_ms_per_map:.0f} ms figure means >= {needed:.0f} GMAC/s sustained: "
                       f"{needed / gemm['gmacs_per_s']:.1f}x this machine's fp32 GEMM peak")
        for label, row in (("PyTorch eager fp32", reference), (best.label, best)):
            if row.gmacs_per_s:
                why.append(f"rate: {label} runs at {row.gmacs_per_s:.1f} GMAC/s = "
                           f"{100 * row.gmacs_per_s / gemm['gmacs_per_s']:.0f}% of that peak")
        share = reference.gmacs_per_s / gemm["gmacs_per_s"] if reference.gmacs_per_s else None
        if share is not None and share > 0.25:
            why.append("so the reference is already compute-bound in fp32: a runtime cannot find a large factor in "
                       "scheduling alone; only cheaper arithmetic (int8) or fewer MACs can")
        elif share is not None:
            why.append(f"so the reference is far from compute-bound ({100 * share:.0f}% of peak): layers with little "
                       "arithmetic per byte (depthwise, 1x1 with few channels, 3-D) are bound by memory traffic and "
                       "per-operator overhead; gains must come from fusion, layout and fewer bytes (int8), and the "
                       "MAC bound above is not the limit")
    isa = (reference.machine_info or {}).get("isa")
    if isa is not None and any(r.precision.startswith("int8") for r in pool):
        vnni = [f for f in isa if "vnni" in f or "amx" in f or f in ("asimddp", "i8mm")]
        why.append("int8 dot-product instructions: " + (", ".join(vnni) if vnni else
                   f"none (ISA: {', '.join(isa) or 'unknown'}; int8 convolutions use 16-bit multiply-add "
                   "sequences, at most ~2x fp32 throughput)"))
    for row in (best, reference):
        profile = row.extra.get("profile") if row.extra else None
        if profile and profile.get("ops"):
            ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in profile["ops"][:4])
            why.append(f"profile of {row.label} ({profile.get('tool')}): {ops}")
            if profile.get("nodes"):
                nodes = ", ".join(f"{n['node']} {100 * n['share']:.0f}%" for n in profile["nodes"][:3])
                why.append(f"  slowest nodes: {nodes}")
    onnx_profiles = [r for r in pool if r is not best and r.runtime == "onnxruntime" and r.extra.get("profile")]
    for row in onnx_profiles[:2]:
        ops = ", ".join(f"{o['op']} {100 * o['share']:.0f}%" for o in row.extra["profile"]["ops"][:4])
        why.append(f"profile of {row.label}: {ops}")
    why += _format_outcomes(pool)
    return why


def _format_outcomes(pool: list[BenchResult]) -> list[str]:
    lines = []
    for r in pool:
        if r.status in ("rejected", "failed", "skipped"):
            lines.append(f"{r.label}: {r.status}: {r.error}")
        elif r.status == "ok" and not r.is_reference and not r.accepted:
            lines.append(f"{r.label}: measured at {r.ms_per_map:.0f} ms/map but CC min "
                         f"{r.fidelity_cc_min if r.fidelity_cc_min is not None else float('nan'):.4f} < 0.99: "
                         "not eligible")
    return lines


def check_all(rows: list[BenchResult]) -> list[TargetResult]:
    """Every target of every model present in ``rows``."""
    results = []
    seen = []
    for r in rows:
        if r.model not in seen:
            seen.append(r.model)
    for model in seen:
        try:
            targets = targets_for(model)
        except Exception:  # noqa: BLE001 - a model unknown to this registry has no targets
            continue
        results += [check(t, rows) for t in targets]
    return results


def targets_text(results: list[TargetResult]) -> str:
    """Targets for the terminal and the Markdown report (plain lines)."""
    lines = []
    for res in results:
        mark = {"met": "MET", "missed": "MISSED", "not measured": "NOT MEASURED"}[res.status]
        lines.append(f"[{mark}] {res.target.text}")
        if res.best:
            b = res.best
            versus = b.get("reference_label", "PyTorch eager")
            lines.append(f"    {'measured' if res.target.pair else 'best faithful artifact'}: {b['label']} at "
                         f"{b['input']}, {b['threads']} threads: {b['ms_per_map']:.1f} ms/map vs {versus} "
                         f"{b['reference_ms_per_map']:.1f} ms/map = {b['ratio']:.2f}x, CC min {b['cc_min']:.4f}")
        lines += [f"    short: {s}" for s in res.shortfall]
        lines += [f"    why: {w}" if not w.startswith("  ") else f"         {w.strip()}" for w in res.why]
    return "\n".join(lines)
