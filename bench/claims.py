"""The papers' claims next to our measurements on this machine, with the hardware of both stated.

Every :class:`~salsdk.cards.Claim` of a model's card becomes one row: the paper's figure and setting (its
hardware as the paper states it), our figure (counted params/MACs, file sizes of every format, latency of every
measured format at the claim's input size) and our setting (this machine), and a plain verdict.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Iterable

from .schema import BenchResult

UNITS = {"params": "", "gmacs": " GMACs", "size_mb": " MB", "latency_s": " s", "fps": " fps"}


@dataclass
class ClaimRow:
    """One paper claim against ours."""

    models: str  # one model, or several sharing the same claim and the same result
    metric: str
    paper: str
    paper_setting: str
    source: str
    ours: str
    our_setting: str
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def format_params(value: float) -> str:
    """``3.94M`` / ``513.1k`` (claims given below 1000 are in millions, as papers write them)."""
    count = value * 1e6 if value < 1000 else value
    return f"{count / 1e6:.2f}M" if count >= 1e6 else f"{count / 1e3:.1f}k"


def maps_in_claim(context: str) -> int | None:
    """How many output maps a cost claim is for: 1 for 'per (output) map', N for 'N (output) maps/frames'."""
    text = context.lower()
    if re.search(r"per (output |saliency )?map", text):
        return 1
    found = re.search(r"(\d+)\s+(?:output\s+)?(?:saliency\s+)?(?:maps|frames)", text)
    return int(found.group(1)) if found else None


def claim_hw(context: str) -> set[tuple[int, int]]:
    """Input sizes a claim names (``'640x480 image'`` -> both orientations), empty if none."""
    found = re.search(r"(\d{2,4})\s*[x×]\s*(\d{2,4})(?!\s*[x×])", context)
    if not found:
        return set()
    a, b = int(found.group(1)), int(found.group(2))
    return {(a, b), (b, a)}


def _row_hw(row: BenchResult) -> tuple[int, int]:
    return tuple(row.input_shape[-2:])  # type: ignore[return-value]


def _best(rows: list[BenchResult]) -> BenchResult | None:
    accepted = [r for r in rows if r.accepted and r.ms_per_map]
    return min(accepted, key=lambda r: r.ms_per_map) if accepted else None


def _setting(rows: list[BenchResult]) -> str:
    if not rows:
        return "not measured"
    r = rows[0]
    return f"{r.machine or 'this machine'}, {r.threads or '?'} threads, input {r.size_label}"


def claim_rows(model: str, rows: Iterable[BenchResult]) -> list[ClaimRow]:
    """Every claim of ``model``'s card against ``rows`` (measurements of any machines; filtered here)."""
    from salsdk.complexity import default_input_shape, model_complexity
    from salsdk.registry import get_card

    from salsdk.contract import Contract

    from .analysis import mac_breakdown

    card = get_card(model)
    rows = [r for r in rows if r.model.lower() == card.name.lower()]
    out: list[ClaimRow] = []
    shape = default_input_shape(card)
    maps_per_pass = Contract.from_card(card).maps_per_clip
    counted = mac_breakdown(card.name, tuple(shape))
    paper_style_macs = model_complexity(card.name).macs_paper_style
    shape_text = "x".join(map(str, shape[1:]))
    for claim in card.claims:
        unit = UNITS.get(claim.metric, "")
        paper = format_params(claim.value) if claim.metric == "params" else f"{claim.value:.4g}{unit}"
        ours, setting, verdict = "n/a", "", ""
        if claim.metric == "params":
            ours = f"{format_params(counted.params)} ({counted.params:,})"
            setting = "counted from our PyTorch port (trainable parameters)"
            paper_count = claim.value * 1e6 if claim.value < 1000 else claim.value
            verdict = _relative(counted.params, paper_count)
        elif claim.metric == "gmacs":
            maps = maps_in_claim(claim.context)
            per_map = paper_style_macs / maps_per_pass / 1e9
            value = per_map * maps if maps else paper_style_macs / 1e9
            ours = f"{value:.3g} GMACs"
            frames = card.temporal.frames if card.temporal else 1
            if frames > 1 and maps != frames:
                ours += f" ({per_map * frames:.2f} for {frames} maps)"
            passes = (f"{maps_per_pass} maps per forward pass" if maps_per_pass > 1 else "1 map per forward pass")
            setting = (f"counted as ptflops does (convolutions {counted.macs / maps_per_pass / 1e9:.3g} GMACs/map + "
                       f"BatchNorm, activations, biases, resizing) at input {shape_text}, {passes}")
            verdict = _relative(value, claim.value)
        elif claim.metric == "size_mb":
            fp32 = counted.state_dict_bytes
            parts = [f"fp32 state dict {fp32 / 1e6:.1f} MB ({fp32 / 2**20:.1f} MiB)"]
            sizes: dict[str, int] = {}
            for r in rows:
                if r.file_bytes and r.format != "pytorch-fp32" and r.source == "measured":
                    sizes.setdefault(r.format, r.file_bytes)
            parts += [f"{fmt} {b / 1e6:.1f} MB" for fmt, b in sorted(sizes.items(), key=lambda kv: -kv[1])]
            ours = "; ".join(parts)
            setting = "file sizes of our artifacts (MB = 10^6 bytes)"
            smallest = min([counted.state_dict_bytes, *sizes.values()])
            verdict = _relative(counted.state_dict_bytes / 1e6, claim.value) + " (fp32)"
            if smallest / 1e6 < 0.9 * claim.value:
                verdict += f"; smallest artifact {claim.value / (smallest / 1e6):.1f}x smaller than the paper's"
        elif claim.metric in ("latency_s", "fps"):
            gpu = "gpu" in claim.context.lower()
            wanted = claim_hw(claim.context)
            pool = [r for r in rows if r.status == "ok" and r.ms_per_map
                    and (r.device in ("cuda", "gpu")) == gpu and r.source == "measured"]
            at_size = [r for r in pool if not wanted or _row_hw(r) in wanted]
            pool = at_size or pool
            if not pool:
                ours = "no GPU here" if gpu else "not measured"
                setting = f"run `salsdk bench --model {card.name}` on a machine with " + ("a GPU" if gpu else "a CPU")
            else:
                per_format: dict[str, BenchResult] = {}
                for r in sorted(pool, key=lambda r: r.ms_per_map):
                    per_format.setdefault(r.label, r)
                listed = sorted(per_format.values(), key=lambda r: r.ms_per_map)
                if claim.metric == "latency_s":
                    ours = "; ".join(f"{r.label} {r.ms_per_map / 1000:.3f} s" for r in listed)
                else:
                    ours = "; ".join(f"{r.label} {r.maps_per_s:.1f} fps" for r in listed)
                setting = _setting(listed) + ("" if at_size or not wanted else " (not the paper's size)")
                best = _best(listed)
                if wanted and not at_size:
                    verdict = (f"not comparable: measured at {listed[0].size_label}, the paper at "
                               f"{'/'.join(sorted({'x'.join(map(str, hw)) for hw in wanted}))}")
                elif best is None:
                    verdict = "no artifact with CC >= 0.99 was measured"
                elif claim.metric == "latency_s":
                    factor = claim.value / (best.ms_per_map / 1000)
                    verdict = (f"best faithful ({best.label}, CC {best.fidelity_cc_min:.3f}): "
                               + (f"{factor:.2f}x faster than the paper" if factor >= 1 else
                                  f"{1 / factor:.2f}x slower than the paper"))
                else:
                    verdict = f"best faithful ({best.label}): {best.maps_per_s:.1f} fps vs {claim.value:g}"
        out.append(ClaimRow(card.name, claim.metric, paper, claim.context, claim.source, ours, setting, verdict))
    if "real-time" in (card.notes + card.summary).lower() and not any(c.metric == "fps" for c in card.claims):
        out.append(_realtime_row(card, rows))
    return out


def _realtime_row(card, rows: list[BenchResult]) -> ClaimRow:
    """A paper that calls a model real-time without a figure: our frame rate, judged against 25 fps."""
    pool = [r for r in rows if r.status == "ok" and r.ms_per_map and r.source == "measured"]
    best = _best(pool)
    fastest = {r.label: r for r in sorted(pool, key=lambda r: -r.ms_per_map)}  # the fastest row per label wins
    listed = sorted(fastest.values(), key=lambda r: r.ms_per_map)
    ours = "; ".join(f"{r.label} {r.maps_per_s:.1f} fps" for r in listed) or "not measured"
    verdict = ("" if best is None else
               f"best faithful {best.maps_per_s:.1f} fps: " + ("real-time (>= 25 fps)" if best.maps_per_s >= 25
                                                              else "not real-time here (< 25 fps)"))
    return ClaimRow(card.name, "fps", "real-time (no figure)", "the paper states real-time, no hardware or rate",
                    _short(card.paper), ours, _setting(listed), verdict)


def _short(paper: str, limit: int = 60) -> str:
    return paper if len(paper) <= limit else paper[: limit - 3].rstrip() + "..."


def _relative(ours: float, paper: float) -> str:
    if not paper:
        return ""
    diff = (ours - paper) / paper * 100
    return f"{diff:+.1f}% vs paper" + (" (matches)" if abs(diff) < 0.5 else "")


def claims_table(models: Iterable[str], rows: Iterable[BenchResult]) -> list[ClaimRow]:
    """Claim rows of several models; models sharing a claim and an identical result are merged into one row."""
    rows = list(rows)
    merged: dict[tuple, ClaimRow] = {}
    for model in models:
        for c in claim_rows(model, rows):
            key = (c.metric, c.paper, c.paper_setting, c.source, c.ours, c.our_setting, c.verdict)
            if key in merged:
                merged[key].models += f", {c.models}"
            else:
                merged[key] = c
    return list(merged.values())


def models_with_claims() -> list[str]:
    """Every registered model whose card carries claims."""
    from salsdk.registry import get_card, list_models

    return [m for m in list_models() if get_card(m).claims]


def claims_markdown(claims: list[ClaimRow]) -> str:
    """The claims table in Markdown."""
    lines = ["| model(s) | metric | paper | paper's setting (hardware) | source | ours | our setting (hardware) "
             "| verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for c in claims:
        cells = [c.models, c.metric, c.paper, c.paper_setting, c.source, c.ours, c.our_setting, c.verdict]
        lines.append("| " + " | ".join(str(x).replace("|", "/") for x in cells) + " |")
    return "\n".join(lines)


def claims_text(claims: list[ClaimRow]) -> str:
    """The claims table for a terminal (one block per claim)."""
    blocks = []
    for c in claims:
        models = c.models if len(c.models) < 70 else c.models[:67] + "..."
        blocks.append(f"{models} | {c.metric}\n"
                      f"  paper: {c.paper:<12} {c.paper_setting} [{c.source}]\n"
                      f"  ours:  {c.ours}\n"
                      f"         {c.our_setting}\n"
                      + (f"  => {c.verdict}" if c.verdict else ""))
    return "\n".join(blocks)
