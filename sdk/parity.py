"""Parity of artifact bundles: every bundle and the PyTorch model it came from, side by side on real inputs.

:func:`check_bundles` loads each bundle with the runtime its manifest names (hashes verified), rebuilds the fp32
PyTorch reference from the weights the manifests pin, runs all of them through the same :class:`Predictor` code
on the same real inputs (maps at the inputs' own resolution, so pre-processing, layout and post-processing come
from each manifest), and returns the pairwise agreement matrix together with a verdict per bundle: does it still
reach the fidelity gate it was accepted at (``fidelity.min_cc`` in its manifest)?

Inputs default to real data that no bundle used for calibration: the built-in images minus every manifest's
``calibration_inputs``, or for clip models consecutive frames of the shared video after the last calibration
window. Clip models run through :meth:`Predictor.predict_video`, i.e. the same MISO/MIMO windowing on every runtime.
"""
from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .errors import BundleError, InputError, WeightsError
from .imageio import IMAGE_SUFFIXES, is_video_path, iter_video_frames, load_image, video_frame_count
from .manifest import Manifest, read_manifest
from .metrics import cc
from .predictor import Predictor

REFERENCE = "pytorch"
_FRAME_RANGE = re.compile(r"^(?P<video>.*)#frames(?P<start>\d+)-(?P<end>\d+)")
Progress = Callable[[str], None]


@dataclass
class Inputs:
    """Real inputs for a parity run: images, or the frames of one video, with a name per map."""

    names: list[str]
    images: list[np.ndarray] = field(default_factory=list)  # image models
    frames: list[np.ndarray] = field(default_factory=list)  # clip models: consecutive frames of one video
    note: str = ""  # where they come from and how they relate to calibration


@dataclass
class BundleRow:
    """One bundle's line in the parity report."""

    label: str
    bundle: str
    runtime: str
    executes: str
    claimed_cc_min: float | None
    gate: float | None
    measured_cc_min: float | None = None
    measured_cc_mean: float | None = None
    verdict: str = ""

    @property
    def ok(self) -> bool:
        """Whether the bundle held its gate here (bundles that could not execute here count as ok)."""
        return self.verdict != "BELOW GATE"


@dataclass
class ParityReport:
    """Pairwise agreement (CC of maps, per input) of the predictors, and one verdict per bundle."""

    model: str
    labels: list[str]
    inputs: Inputs
    cc: np.ndarray  # (predictors, predictors, inputs)
    rows: list[BundleRow]
    reference: str

    @property
    def passed(self) -> bool:
        """Every bundle that could run here reached its manifest's gate against the reference."""
        return all(row.ok for row in self.rows)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: labels, inputs, matrices (mean and min CC) and rows."""
        return {"model": self.model, "reference": self.reference, "labels": self.labels,
                "inputs": self.inputs.names, "inputs_note": self.inputs.note,
                "cc_mean": np.round(self.cc.mean(axis=2), 6).tolist(),
                "cc_min": np.round(self.cc.min(axis=2), 6).tolist(),
                "bundles": [vars(r) | {"ok": r.ok} for r in self.rows], "passed": self.passed}


# ----------------------------------------------------------------------------------------------------- loading
def load_bundles(bundles: Sequence[str | Path], threads: int | None = None) -> list[tuple[Path, Manifest, Predictor | None, str]]:
    """Read every bundle (hashes verified); ``(path, manifest, predictor or None, why not)`` per bundle.

    A CoreML bundle off macOS is validated (spec, inputs, outputs) but cannot execute: its predictor is None.
    All bundles must be of one model with the same weights.
    """
    from .api import load_bundle

    loaded = []
    for bundle in map(Path, bundles):
        manifest = read_manifest(bundle)
        try:
            loaded.append((bundle, manifest, load_bundle(bundle, threads=threads), ""))
        except BundleError as exc:
            if manifest.format.runtime != "coreml" or platform.system() == "Darwin":
                raise
            loaded.append((bundle, manifest, None, str(exc).split(";")[0]))
    models = {(m.model_name, m.weights.sha256, m.weights.seed) for _, m, _, _ in loaded}
    if len(models) > 1:
        listing = ", ".join(f"{b.name} ({m.model_name}, weights {str(m.weights.sha256)[:12]})"
                            for b, m, _, _ in loaded)
        raise InputError(f"parity compares artifacts of one model and one set of weights; got {listing}")
    return loaded


def reference_model(manifest: Manifest, weights: str | Path | None = None,
                    cache_dir: str | Path | None = None) -> tuple[Any, str]:
    """The fp32 PyTorch model a bundle was converted from, and where its weights come from.

    The weights are those the manifest pins: its seed for untrained models; else ``weights`` (checked against the
    manifest's SHA-256) or the official checkpoint, from the cache (downloaded on first use).
    """
    from .weights import OFFICIAL
    from .zoo import create_model

    pinned, name = manifest.weights, manifest.model_name
    if not pinned.trained:
        seed = pinned.seed or 0
        return create_model(name, None, seed=seed), f"untrained, seed {seed} (as the manifest records)"
    if weights is None and not pinned.official:
        raise WeightsError(f"the bundles of {name} were made from {pinned.file_name} (not the official "
                           "checkpoint): pass it with --weights, or use --no-reference")
    net = create_model(name, weights if weights is not None else OFFICIAL, cache_dir=cache_dir)
    digest = net.salsdk_weights.sha256
    if digest != pinned.sha256:
        raise WeightsError(f"{net.salsdk_weights.path} has SHA-256 {digest}, but the bundles were converted from "
                           f"{pinned.file_name} ({pinned.sha256}): compare against the same weights")
    return net, f"{Path(net.salsdk_weights.path).name} (SHA-256 {digest[:12]}, as pinned in the manifests)"


def reference_predictor(manifest: Manifest, weights: str | Path | None = None, cache_dir: str | Path | None = None,
                        threads: int | None = None) -> tuple[Predictor, str]:
    """The fp32 PyTorch model a bundle was converted from, with the bundle's own contract (input size included).

    The weights are those the manifest pins: its seed for untrained models; else ``weights`` (checked against the
    manifest's SHA-256) or the official checkpoint (:func:`reference_model`).
    """
    from .runtimes.torch_runtime import TorchRuntime

    net, source = reference_model(manifest, weights, cache_dir)
    runtime = TorchRuntime(net, device="cpu", threads=threads)
    return Predictor(runtime, manifest.contract()), f"PyTorch fp32, weights {source}"


# ------------------------------------------------------------------------------------------------------ inputs
def _calibration_names(manifests: Sequence[Manifest]) -> set[str]:
    return {n for m in manifests for n in m.calibration_inputs}


def first_free_run(ranges: Sequence[tuple[int, int]], total: int, length: int) -> tuple[int, int]:
    """``(start, run length)``: the first run of ``length`` frames outside the inclusive ``ranges``, else the longest."""
    covered = np.zeros(total, dtype=bool)
    for first, last in ranges:
        covered[first:last + 1] = True
    best = (0, 0)
    start = None
    for i, used in enumerate([*covered, True]):  # a sentinel closes the last run
        if not used and start is None:
            start = i
        elif used and start is not None:
            if i - start >= length:
                return start, i - start
            best = max(best, (i - start, start))
            start = None
    if best[0] == 0:
        raise InputError("every frame of the video was used for calibration: pass --inputs")
    return best[1], best[0]


def default_inputs(manifests: Sequence[Manifest], n_images: int = 6, n_frames: int = 20) -> Inputs:
    """Real inputs that no bundle calibrated on: built-in images, or frames of the shared video (clip models)."""
    from .samples import builtin_images, builtin_video

    used = _calibration_names(manifests)
    if manifests[0].is_clip:
        video = builtin_video()
        if video is None:
            raise InputError("no shared video for this clip model: pass --inputs VIDEO")
        ranges = [(int(found["start"]), int(found["end"])) for found in map(_FRAME_RANGE.match, used)
                  if found and Path(found["video"]).name == video.name]
        total = video_frame_count(video) or sum(1 for _ in iter_video_frames(video))
        start, length = first_free_run(ranges, total, n_frames)
        stop = start + min(length, n_frames)
        note = f"frames {start}-{stop - 1} of {video.name}, " + (
            "outside every calibration window" if ranges else "no bundle calibrated on this video")
        chosen = list(iter_video_frames(video, max_frames=stop))[start:]
        return Inputs([f"{video.name}#frame{start + i}" for i in range(len(chosen))], frames=chosen, note=note)
    images = [(n, rgb) for n, rgb in builtin_images(prefer_designs=manifests[0].task == "design-importance")
              if n not in used][:n_images]
    if not images:
        raise InputError("every built-in image was used for calibration: pass --inputs")
    return Inputs([n for n, _ in images], images=[rgb for _, rgb in images],
                  note=f"{len(images)} built-in images, none used for calibration")


def inputs_from_paths(paths: Sequence[str | Path], clip_model: bool, n_frames: int = 20) -> Inputs:
    """User-given inputs: image files and folders for image models, one video for clip models."""
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES or is_video_path(p))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"input {path} does not exist")
    videos = [p for p in files if is_video_path(p)]
    if clip_model:
        if len(videos) != 1:
            raise InputError(f"clip models are checked on one video; got {len(videos)} among {len(files)} inputs")
        frames = list(iter_video_frames(videos[0], max_frames=n_frames))
        return Inputs([f"{videos[0].name}#frame{i}" for i in range(len(frames))], frames=frames,
                      note=f"frames 0-{len(frames) - 1} of {videos[0].name}")
    if videos:
        raise InputError(f"{videos[0]}: image models are checked on images, not videos")
    if not files:
        raise InputError("no images among the inputs")
    return Inputs([str(p) for p in files], images=[load_image(p) for p in files], note=f"{len(files)} given images")


# --------------------------------------------------------------------------------------------------------- run
def predict_maps(predictor: Predictor, inputs: Inputs) -> list[np.ndarray]:
    """The predictor's maps, one per input name (per frame for clip models), at the inputs' resolution."""
    if inputs.frames:
        return list(predictor.predict_video(inputs.frames))
    return predictor.predict_batch(inputs.images)


def _label(manifest: Manifest, bundle: Path, keys: list[str]) -> str:
    key = manifest.format.key
    return key if keys.count(key) == 1 else bundle.name


def check_bundles(bundles: Sequence[str | Path], inputs: Sequence[str | Path] | None = None, *, n_frames: int = 20,
                  reference: bool = True, weights: str | Path | None = None, cache_dir: str | Path | None = None,
                  threads: int | None = None, progress: Progress | None = None) -> ParityReport:
    """Run ``bundles`` (and their PyTorch reference) side by side; see the module docstring.

    ``inputs`` are image files/folders (image models) or one video (clip models, its first ``n_frames`` frames);
    by default real inputs no bundle calibrated on (:func:`default_inputs`).
    """
    loaded = load_bundles(bundles, threads)
    manifests = [m for _, m, _, _ in loaded]
    clip_model = manifests[0].is_clip
    data = inputs_from_paths(inputs, clip_model, n_frames) if inputs else default_inputs(manifests, n_frames=n_frames)
    keys = [m.format.key for m in manifests]
    predictors: list[tuple[str, Predictor]] = []
    described = "none (bundles compared with each other only)"
    if reference:
        ref, described = reference_predictor(manifests[0], weights, cache_dir, threads)
        predictors.append((REFERENCE, ref))
    rows = []
    for bundle, manifest, predictor, why in loaded:
        label = _label(manifest, bundle, keys)
        row = BundleRow(label, str(bundle), manifest.format.runtime, why or predictor.executes(),
                        manifest.fidelity.cc_min, manifest.gate)
        if predictor is None:
            row.verdict = "validated only"
        else:
            predictors.append((label, predictor))
        rows.append(row)
    maps = []
    for label, predictor in predictors:
        if progress:
            progress(f"running {label} on {len(data.names)} inputs")
        maps.append(predict_maps(predictor, data))
    n = len(predictors)
    scores = np.ones((n, n, len(data.names)), dtype=np.float64)
    for i in range(n):
        for j in range(i + 1, n):
            scores[i, j] = scores[j, i] = [cc(a, b) for a, b in zip(maps[i], maps[j])]
    labels = [label for label, _ in predictors]
    for row in rows:
        if row.label not in labels or not reference:
            continue
        vs_reference = scores[labels.index(row.label), 0]
        row.measured_cc_min, row.measured_cc_mean = float(vs_reference.min()), float(vs_reference.mean())
        row.verdict = "ok" if row.gate is None or row.measured_cc_min >= row.gate else "BELOW GATE"
    return ParityReport(manifests[0].model_name, labels, data, scores, rows, described)


# ------------------------------------------------------------------------------------------------------ output
def format_report(report: ParityReport) -> str:
    """The agreement matrix (mean CC, min in brackets) and the per-bundle table, as printed by ``salsdk check``."""
    width = max(len(label) for label in report.labels) + 2
    cell = max(16, width)
    mean, low = report.cc.mean(axis=2), report.cc.min(axis=2)
    lines = [f"parity of {len(report.rows)} bundle(s) of {report.model} on {len(report.inputs.names)} maps: "
             f"{report.inputs.note}", f"reference: {report.reference}", "",
             "agreement matrix: CC mean over the maps [min]",
             " " * width + "".join(f"{label:>{cell}}" for label in report.labels)]
    for i, label in enumerate(report.labels):
        cells = "".join(f"{f'{mean[i, j]:.4f} [{low[i, j]:.3f}]':>{cell}}" for j in range(len(report.labels)))
        lines.append(f"{label:<{width}}{cells}")
    label_width = max(len("bundle"), *(len(row.label) for row in report.rows)) + 2
    runs = max(len("executes"), *(len(row.executes) for row in report.rows)) + 2

    def number(value: float | None, digits: int) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    header = (f"{'bundle':<{label_width}}{'executes':<{runs}}{'claimed':>8} {'gate':>5} {'CC min':>7} "
              f"{'CC mean':>8}  verdict")
    lines += ["", header, "-" * len(header)]
    for row in report.rows:
        lines.append(f"{row.label:<{label_width}}{row.executes:<{runs}}{number(row.claimed_cc_min, 4):>8} "
                     f"{number(row.gate, 2):>5} {number(row.measured_cc_min, 4):>7} "
                     f"{number(row.measured_cc_mean, 4):>8}  {row.verdict or '-'}")
    lines += ["", "claimed: CC min in the manifest (on its own held-out inputs); CC min / mean: measured here "
                  "against the reference"]
    return "\n".join(lines)


def plot_matrix(report: ParityReport, path: str | Path) -> Path:
    """Save the mean-CC agreement matrix as a PNG heat map (needs matplotlib, the ``bench`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = report.cc.mean(axis=2)
    size = 1.2 + 0.9 * len(report.labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    image = ax.imshow(mean, vmin=min(0.9, float(mean.min())), vmax=1.0, cmap="viridis")
    ax.set_xticks(range(len(report.labels)), report.labels, rotation=40, ha="right")
    ax.set_yticks(range(len(report.labels)), report.labels)
    for i in range(len(report.labels)):
        for j in range(len(report.labels)):
            ax.text(j, i, f"{mean[i, j]:.4f}", ha="center", va="center", fontsize=8,
                    color="black" if mean[i, j] > 0.97 else "white")
    fig.colorbar(image, ax=ax, label="CC (mean over maps)")
    ax.set_title(f"{report.model}: agreement on {len(report.inputs.names)} maps")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
