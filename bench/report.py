"""Tables, reports and charts of benchmark rows: terminal table, Markdown, JSON and PNG (matplotlib, Agg).

Every table puts the PyTorch eager fp32 row of a (model, input, threads, machine) group first, as the reference,
with each other row's speed-up over it in the ratio column, and every speed figure next to the artifact's
fidelity (CC min against fp32). Charts: latency by format/runtime, fidelity against latency with the Pareto
front across formats and input sizes, and peak memory by format.
"""
from __future__ import annotations

import itertools

import json
import math
from pathlib import Path
from typing import Any, Iterable

from .schema import DEFAULT_GATE, SCHEMA, BenchResult

FORMAT_ORDER = ("pytorch-fp32", "onnx-fp32", "onnx-fp16", "onnx-int8", "tflite-fp32", "tflite-fp16", "tflite-dr8",
                "tflite-int8", "tflite-int8-io", "coreml-fp16", "coreml-w8", "pte-fp32", "pte-int8", "openvino-bf16")
FAMILY_COLOURS = {"pytorch": "#4c4c4c", "onnx": "#1f77b4", "tflite": "#ff7f0e", "coreml": "#2ca02c", "pte": "#8c564b",
                  "openvino": "#d62728"}


def _group_key(r: BenchResult) -> tuple:
    return (r.machine_id, r.model, tuple(r.input_shape), r.threads or 0)


def sort_rows(rows: Iterable[BenchResult]) -> list[BenchResult]:
    """Grouped by (machine, model, input, threads); the reference first, then formats in a fixed order."""
    def key(r: BenchResult):
        order = FORMAT_ORDER.index(r.format) if r.format in FORMAT_ORDER else len(FORMAT_ORDER)
        return (_group_key(r), not r.is_reference, order, r.runtime, r.delegate)

    return sorted(rows, key=key)


def _num(value: float | None, fmt: str, missing: str = "-") -> str:
    return missing if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def _cells(r: BenchResult) -> dict[str, str]:
    ratio = "1.00x ref" if r.is_reference and r.status == "ok" else (f"{r.ratio:.2f}x" if r.ratio else "-")
    share, bound = r.limit_share, {"compute": "cmp", "memory": "mem"}.get(r.bound or "", "")
    return {
        "model": r.model, "input": r.size_label, "format / engine": r.label, "thr": _num(r.threads, "d"),
        "load s": _num(r.load_s, ".2f"), "p50 ms": _num(r.central_ms, ".1f") + ("*" if r.latency_ms_p50 is None
                                                                               and r.central_ms else ""),
        "p90 ms": _num(r.latency_ms_p90, ".1f"), "p99 ms": _num(r.latency_ms_p99, ".1f"),
        "ms/map": _num(r.ms_per_map, ".1f"), "maps/s": _num(r.maps_per_s, ".2f"), "ratio": ratio,
        "peak MB": _num(r.peak_rss_mb, ".0f"), "size MB": _num(r.file_bytes / 1e6 if r.file_bytes else None, ".1f"),
        "GMAC/s": _num(r.gmacs_per_s, ".1f"), "%limit": (_num(100 * share, ".0f") + f" {bound}") if share else "-",
        "CC min": _num(r.fidelity_cc_min, ".4f"),
        "status": r.status if r.status == "ok" else f"{r.status}: {r.error}",
    }


def text_table(rows: Iterable[BenchResult], width_limit: int = 60) -> str:
    """The results as a fixed-width table (terminal)."""
    rows = sort_rows(rows)
    if not rows:
        return "(no results)"
    cells = [_cells(r) for r in rows]
    for c in cells:
        if len(c["status"]) > width_limit:
            c["status"] = c["status"][: width_limit - 3] + "..."
    columns = list(cells[0])
    widths = {k: max(len(k), *(len(c[k]) for c in cells)) for k in columns}
    left = {"model", "input", "format / engine", "status"}
    def fmt(c: dict[str, str]) -> str:
        return "  ".join(c[k].ljust(widths[k]) if k in left else c[k].rjust(widths[k]) for k in columns).rstrip()

    header = fmt({k: k for k in columns})
    lines = [header, "-" * len(header)]
    previous = None
    for r, c in zip(rows, cells):
        if previous is not None and _group_key(r) != previous:
            lines.append("")
        previous = _group_key(r)
        lines.append(fmt(c))
    if any(r.latency_ms_p50 is None and r.central_ms for r in rows):
        lines.append("* mean (the tool reports no percentiles)")
    return "\n".join(lines)


def markdown_table(rows: Iterable[BenchResult]) -> str:
    rows = sort_rows(rows)
    if not rows:
        return "(no results)"
    cells = [_cells(r) for r in rows]
    columns = list(cells[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for r, c in zip(rows, cells):
        values = [f"**{c[k]}**" if r.is_reference and k == "format / engine" else c[k].replace("|", "/")
                  for k in columns]
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines)


def machines_of(rows: Iterable[BenchResult]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for r in rows:
        found.setdefault(r.machine_id or r.machine, {"summary": r.machine, **(r.machine_info or {})})
    return found


def markdown_report(rows: list[BenchResult], targets: list | None = None, claims: list | None = None,
                    charts: dict[str, str] | None = None, title: str = "salsdk bench") -> str:
    """The full Markdown report: machine(s), results, targets, claims, profiles, what failed, method."""
    from .claims import claims_markdown
    from .targets import targets_text

    rows = sort_rows(rows)
    parts = [f"# {title}", ""]
    runs = sorted({r.run_id for r in rows if r.run_id})
    if runs:
        parts += [f"Run(s): {', '.join(runs)}; {rows[0].timestamp if rows else ''}", ""]
    parts += ["## Machines", ""]
    for mid, info in machines_of(rows).items():
        gemm = info.get("gemm") or {}
        line = f"- `{mid}`: {info.get('summary')}"
        if info.get("isa"):
            line += f"; ISA: {', '.join(info['isa'])}"
        if gemm:
            line += (f"; measured fp32 GEMM peak {gemm.get('gflops')} GFLOP/s = {gemm.get('gmacs_per_s')} GMAC/s "
                     f"({gemm.get('library')})")
        if info.get("gemm_int8"):
            line += (f"; int8 GEMM peak {info['gemm_int8']['gops']} GOP/s = {info['gemm_int8']['gmacs_per_s']} "
                     f"GMAC/s ({info['gemm_int8']['library']})")
        if info.get("gemm_bf16"):
            line += (f"; bf16 GEMM peak {info['gemm_bf16']['gflops']} GFLOP/s = {info['gemm_bf16']['gmacs_per_s']} "
                     f"GMAC/s ({info['gemm_bf16']['library']})")
        if info.get("memory"):
            line += f"; memory bandwidth {info['memory']['gb_per_s']} GB/s ({info['memory']['method']})"
        parts.append(line)
    parts += ["", "## Results", "",
              "Reference row: PyTorch eager fp32 of the same model, input, thread count and machine, measured in the "
              "same run. ratio = reference p50 / row p50. ms/map divides by the maps one run produces (16 for "
              "TinyHD-M). peak MB: peak resident memory of the process that ran only that measurement. "
              "%limit: the row's share of the fastest this machine could run it, the higher of two limits: "
              "compute (cmp: its MACs at the measured GEMM peak of its precision: fp32, bf16 or int8) and memory (mem: "
              "a lower bound on the bytes it moves, each convolution's input and output and every weight once, at "
              "the measured memory bandwidth). CC min: fidelity against PyTorch fp32 on held-out real inputs (from "
              "the bundle's manifest).", "",
              markdown_table(rows), ""]
    if targets:
        parts += ["## Targets", "", "```", targets_text(targets), "```", ""]
    if claims:
        parts += ["## Papers' claims vs ours", "", claims_markdown(claims), ""]
    front = front_markdown(rows)
    if front:
        parts += ["## Fidelity/latency Pareto front", "", "No other row is both faster and more faithful; "
                  "'x limit': latency over the row's limit here (the higher of its compute and memory limits).", "",
                  front]
    if charts:
        parts += ["## Charts", ""] + [f"![{name}]({Path(path).name})" for name, path in charts.items()] + [""]
    profiled = [r for r in rows if r.extra.get("profile")]
    if profiled:
        parts += ["## Where the time goes (operator profiles)", ""]
        for r in profiled:
            p = r.extra["profile"]
            ops = ", ".join(f"{o['op']} {100 * o['share']:.1f}%" for o in p.get("ops", [])[:6])
            parts.append(f"- {r.model} {r.size_label} {r.label}, {r.threads} threads ({p.get('tool')}): {ops}")
            if p.get("nodes"):
                parts.append("  - slowest nodes: " + ", ".join(f"`{n['node']}` ({n['op']}) {100 * n['share']:.1f}%"
                                                               for n in p["nodes"][:4]))
        parts.append("")
    notes = [(r, n) for r in rows for n in r.notes]
    if notes:
        parts += ["## Notes", ""] + sorted({f"- {r.model} {r.label}: {n}" for r, n in notes}) + [""]
    parts += ["## Method", "",
              "Each measurement runs in a fresh Python process (`salsdk.bench.worker`): load (timed), one first run, "
              "warm-up runs, then timed runs on a seeded random input of the artifact's static shape (batch 1), "
              "stopping early only when a per-measurement time budget is exhausted (at least 3 runs). Peak memory is "
              "that process's high-water RSS (`VmHWM` on Linux, `ru_maxrss` elsewhere); ONNX Runtime and LiteRT "
              "workers do not import PyTorch. Latency percentiles are over the timed runs. Throughput is sequential "
              "(maps per second at p50). Rows imported from phones (`benchmark_model`, the Android demo) have no "
              "same-machine PyTorch reference and so no ratio.",
              ""]
    return "\n".join(parts)


def report_json(rows: list[BenchResult], targets: list | None = None, claims: list | None = None) -> dict[str, Any]:
    return {"schema": SCHEMA, "runs": sorted({r.run_id for r in rows if r.run_id}),
            "machines": machines_of(rows), "rows": [r.to_dict() for r in sort_rows(rows)],
            "targets": [t.to_dict() for t in targets or []], "claims": [c.to_dict() for c in claims or []]}


# ---------------------------------------------------------------------------------------------------- charts
def _family(r: BenchResult) -> str:
    return "pytorch" if r.is_reference else r.format.split("-")[0]


def _chart_label(r: BenchResult, many_machines: bool, many_threads: bool) -> str:
    label = f"{r.model} {r.size_label} {r.label}"
    if many_threads:
        label += f" t{r.threads}"
    if many_machines:
        label += f" [{(r.machine or r.machine_id)[:18]}]"
    return label


def write_charts(rows: list[BenchResult], out: Path) -> dict[str, str]:
    """latency.png, pareto.png (pareto-<model>.png for several models) and memory.png in ``out``; returns
    {name: path}."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in sort_rows(rows) if r.status == "ok" and r.ms_per_map]
    if not ok:
        return {}
    many_machines = len({r.machine_id for r in ok}) > 1
    many_threads = len({r.threads for r in ok}) > 1
    labels = [_chart_label(r, many_machines, many_threads) for r in ok]
    colours = [FAMILY_COLOURS.get(_family(r), "#9467bd") for r in ok]
    charts: dict[str, str] = {}
    height = max(3.0, 0.32 * len(ok) + 1.2)

    # latency by format/runtime
    fig, ax = plt.subplots(figsize=(11, height))
    y = range(len(ok))
    values = [r.ms_per_map for r in ok]
    p90 = [max(0.0, (r.latency_ms_p90 or r.central_ms) / max(1, r.maps_per_run) - r.ms_per_map) for r in ok]
    ax.barh(list(y), values, xerr=[[0] * len(ok), p90], color=colours, capsize=2)
    for i, r in enumerate(ok):
        text = "ref" if r.is_reference else (f"{r.ratio:.2f}x" if r.ratio else "")
        cc = f"  CC {r.fidelity_cc_min:.3f}" if r.fidelity_cc_min is not None and not r.is_reference else ""
        ax.text(values[i] + p90[i], i, f"  {values[i]:.1f} ms {text}{cc}", va="center", fontsize=7)
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("latency per output map, p50 (ms; bar end whisker: p90)")
    ax.set_title("Latency by format and runtime (ratio: speed-up over PyTorch eager fp32)")
    ax.set_xlim(0, max(v + e for v, e in zip(values, p90)) * 1.45)
    fig.tight_layout()
    charts["latency"] = str(out / "latency.png")
    fig.savefig(charts["latency"], dpi=110)
    plt.close(fig)

    for model in sorted({r.model for r in ok}):
        pts = [r for r in ok if r.model == model and r.fidelity_cc_min is not None]
        if pts:
            name = "pareto" if len({r.model for r in ok}) == 1 else f"pareto-{model}"
            charts[name] = str(out / f"{name}.png")
            _pareto_chart(plt, model, pts, many_threads, Path(charts[name]))

    # memory by format
    mem = [(lab, r) for lab, r in zip(labels, ok) if r.peak_rss_mb]
    if mem:
        fig, ax = plt.subplots(figsize=(11, max(3.0, 0.32 * len(mem) + 1.2)))
        peaks = [r.peak_rss_mb for _, r in mem]
        base = [min(r.baseline_rss_mb or 0, r.peak_rss_mb) for _, r in mem]
        ax.barh(range(len(mem)), peaks, color=[FAMILY_COLOURS.get(_family(r), "#9467bd") for _, r in mem],
                label="peak RSS of the measurement process")
        ax.barh(range(len(mem)), base, color="white", alpha=0.55, hatch="//", edgecolor="grey",
                label="before loading the model (runtime imported)")
        for i, (_, r) in enumerate(mem):
            ax.text(r.peak_rss_mb, i, f" {r.peak_rss_mb:.0f} MB", va="center", fontsize=7)
        ax.set_yticks(range(len(mem)), [lab for lab, _ in mem], fontsize=7)
        ax.invert_yaxis()
        ax.set_xlim(0, max(peaks) * 1.2)
        ax.set_xlabel("MB")
        ax.set_title("Peak memory by format and runtime (one process per measurement)")
        ax.legend(fontsize=7, loc="lower right")
        fig.tight_layout()
        charts["memory"] = str(out / "memory.png")
        fig.savefig(charts["memory"], dpi=110)
        plt.close(fig)
    return charts


def limit_ms(r: BenchResult) -> float | None:
    """The fastest one map of ``r`` could be made here: the higher of its compute and memory limits, per map."""
    limits = [v for v in (r.compute_limit_ms, r.memory_limit_ms) if v]
    return max(limits) / max(1, r.maps_per_run) if limits else None


def _limit_lines(pts: list[BenchResult]) -> list[tuple[float, str]]:
    """(ms per map, label) of this machine's limit for each arithmetic among the model's rows (fp32, bf16, int8,
    ...: the first row of each whose limit is known)."""
    lines, seen = [], set()
    for r in pts:
        kind = "int8" if r.precision.startswith("int8") else r.precision
        if kind not in seen and limit_ms(r):
            seen.add(kind)
            lines.append((limit_ms(r), f"{kind} limit here: {limit_ms(r):.1f} ms/map ({r.bound}-bound)"))
    return lines


def _pareto_chart(plt, model: str, pts: list[BenchResult], many_threads: bool, path: Path) -> None:
    """Fidelity loss against latency for one model: numbered points (their labels listed beside the plot, so
    none overlap), the Pareto front joined, the acceptance gate and this machine's compute limit marked.

    y is the fidelity loss 1 - CC min on a log axis, better up, so fp32 (~1e-7), fp16 (~1e-5) and int8 (~1e-3)
    artifacts separate instead of piling up at CC = 1.0."""
    pts = sorted(pts, key=lambda r: r.ms_per_map)
    front = pareto_front(pts)
    fig, (ax, side) = plt.subplots(1, 2, figsize=(12.5, 5.2), gridspec_kw={"width_ratios": [1.5, 1]})
    for n, r in enumerate(pts, start=1):
        x, y = r.ms_per_map, fidelity_loss(r)
        ax.scatter(x, y, color=FAMILY_COLOURS.get(_family(r), "#9467bd"), s=46, zorder=3,
                   edgecolors="red" if r in front else "none", linewidths=1.5)
        ax.annotate(str(n), (x, y), fontsize=8, xytext=(5, 3), textcoords="offset points")
    ax.plot([r.ms_per_map for r in front], [fidelity_loss(r) for r in front], "-", color="red", lw=1.2, zorder=2,
            label=f"Pareto front ({len(front)} of {len(pts)})")
    gate = next((r.gate for r in pts if r.gate is not None), DEFAULT_GATE)
    ax.axhline(1 - gate, color="grey", ls="--", lw=0.9, label=f"acceptance gate: CC >= {gate:g}")
    limits = _limit_lines(pts)
    for (limit, text), style in zip(limits, itertools.cycle((":", "-.", (0, (5, 1)), (0, (1, 3))))):
        ax.axvline(limit, color="black", ls=style, lw=0.9, label=text)
    ax.set_xscale("log")
    ax.set_yscale("log")
    worst = max([fidelity_loss(r) for r in pts] + [1 - gate])
    ax.set_ylim(min(0.5, worst * 4), 1e-7 / 4)  # inverted: better (smaller loss) up
    low = min([r.ms_per_map for r in pts] + [limit for limit, _ in limits])
    ax.set_xlim(low / 1.6, max(r.ms_per_map for r in pts) * 1.6)
    ax.set_xlabel("latency per map, p50 (ms, log)")
    ax.set_ylabel("fidelity loss 1 - CC min vs PyTorch fp32 (log; up is better)")
    ax.set_title(f"{model}: fidelity vs latency", fontsize=10)
    ax.legend(fontsize=7, loc="lower left")
    side.axis("off")
    sizes = len({r.size_label for r in pts}) > 1  # the input size is named only where the rows differ in it
    lines = [f"{n:>2}  {r.label}{f' t{r.threads}' if many_threads else ''}{f' {r.size_label}' if sizes else ''}: "
             f"{r.ms_per_map:.1f} ms, CC {r.fidelity_cc_min:.4f}{'  *front' if r in front else ''}"
             for n, r in enumerate(pts, start=1)]
    side.text(0, 1, "\n".join(lines), va="top", ha="left", fontsize=7.5, family="monospace", transform=side.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def front_markdown(rows: list[BenchResult]) -> str:
    """Per model, the rows on the fidelity/latency Pareto front, with the compute limit (report.md)."""
    parts = []
    for model in sorted({r.model for r in rows}):
        pts = [r for r in rows if r.model == model and r.status == "ok" and r.ms_per_map and r.fidelity_cc_min is not None]
        front = pareto_front(pts)
        if not front:
            continue
        limits = "; ".join(text for _, text in _limit_lines(pts))
        parts += [f"**{model}**" + (f" ({limits})" if limits else ""), "",
                  "| format / runtime | input | ms/map | CC min | x limit | bound |", "|---|---|---|---|---|---|"]
        parts += [f"| {r.label} | {r.size_label} | {r.ms_per_map:.1f} | {r.fidelity_cc_min:.4f} | "
                  f"{_num(r.ms_per_map / limit_ms(r) if limit_ms(r) else None, '.1f')} | {r.bound or '-'} |"
                  for r in front]
        parts.append("")
    return "\n".join(parts)


def fidelity_loss(r: BenchResult) -> float:
    """1 - CC min, floored at 1e-7 (float32 round-off) for log axes."""
    return max(1.0 - (r.fidelity_cc_min if r.fidelity_cc_min is not None else 0.0), 1e-7)


def pareto_front(rows: list[BenchResult]) -> list[BenchResult]:
    """Rows no other row beats on both latency per map (lower) and CC min (higher), by increasing latency.

    CC differences below 1e-6 (float32 round-off between fp32 runtimes) count as ties.
    """
    front, best_cc = [], -math.inf
    for r in sorted(rows, key=lambda r: (r.ms_per_map, -(r.fidelity_cc_min or -1))):
        if r.fidelity_cc_min is not None and r.fidelity_cc_min > best_cc + 1e-6:  # float round-off is no gain
            front.append(r)
            best_cc = r.fidelity_cc_min
    return front


def write_report(rows: list[BenchResult], out: str | Path, targets: list | None = None,
                 claims: list | None = None, charts: bool = True, title: str = "salsdk bench") -> dict[str, str]:
    """Write report.md, results.json and the PNG charts into ``out``; returns {kind: path}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = write_charts(rows, out) if charts else {}
    md = out / "report.md"
    md.write_text(markdown_report(rows, targets, claims, written, title), encoding="utf-8")
    js = out / "results.json"
    js.write_text(json.dumps(report_json(rows, targets, claims), indent=2, default=str), encoding="utf-8")
    return {"markdown": str(md), "json": str(js), **written}
