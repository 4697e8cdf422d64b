"""Batch-engine benchmark: ``python -m salsdk.bench.batch BUNDLE [--inputs N] [--out DIR]``.

In one run, over the same real images (frames of the shared DHF1K clip and the shared design screenshots, written
once as PNG files), it times a plain single-process loop over the bundle's runtime and ``salsdk batch`` with the
local engine at 1 and 2 workers and the Ray engine at 1 and 2 actors; for each it prints throughput, the ratio to
the plain loop and the peak memory of the whole process tree (sampled every 50 ms), so that engine overhead and
scaling are read side by side on the same machine state.
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

CONFIGS = (("local", 1), ("local", 2), ("ray", 1), ("ray", 2))


def _images(folder: Path, n: int) -> list[Path]:
    """``n`` real images as PNG files in ``folder``: shared video frames and design screenshots, at most 640 px."""
    from PIL import Image

    from salsdk.imageio import iter_video_frames, load_image
    from salsdk.paths import shared_dir, shared_video

    sources: list[np.ndarray] = []
    designs = shared_dir() / "data" / "images" / "design"
    if designs.is_dir():
        sources += [load_image(p) for p in sorted(designs.iterdir())]
    video = shared_video()
    if video is not None:
        sources += list(iter_video_frames(video, max_frames=max(1, n - len(sources))))
    if not sources:
        from skimage import data

        sources = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    written = []
    for i in range(n):
        image = Image.fromarray(sources[i % len(sources)])
        image.thumbnail((640, 640))
        written.append(folder / f"input{i:05d}.png")
        image.save(written[-1])
    return written


class PeakMemory:
    """Peak resident memory (MB) of this process and all its descendants while the block runs."""

    def __init__(self) -> None:
        import psutil

        self._root = psutil.Process()
        self.peak_mb = 0.0
        self._stop = threading.Event()

    def _sample(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self._root, *self._root.children(recursive=True)]:
                try:
                    total += proc.memory_info().rss
                except psutil.Error:
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self._stop.wait(0.05)

    def __enter__(self) -> "PeakMemory":
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def plain_loop(bundle: Path, paths: list[Path], out: Path) -> float:
    """Seconds for one process doing the same work as a batch worker, input after input."""
    from salsdk.batch.work import BatchSpec, Worker

    worker = Worker(BatchSpec(model=str(bundle), out=str(out)))
    start = time.perf_counter()
    for path in paths:
        worker.process(str(path))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m salsdk.bench.batch", description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle folder (e.g. out/UniSal-onnx-fp32)")
    parser.add_argument("--inputs", type=int, default=300, help="number of real images (default 300)")
    args = parser.parse_args(argv)
    from salsdk.batch import BatchSpec, run_batch
    from salsdk.manifest import read_manifest

    manifest = read_manifest(args.bundle)
    with tempfile.TemporaryDirectory(prefix="salsdk-batch-bench-") as tmp:
        root = Path(tmp)
        (root / "in").mkdir()
        paths = _images(root / "in", args.inputs)
        with PeakMemory() as memory:
            plain = plain_loop(args.bundle, paths, root / "plain")
        rows = [("plain loop", 1, plain, memory.peak_mb)]
        for engine, workers in CONFIGS:
            out = root / f"{engine}{workers}"
            with PeakMemory() as memory:
                start = time.perf_counter()
                run_batch(BatchSpec(model=str(args.bundle), out=str(out)), [str(root / "in")], engine=engine,
                          workers=workers, batch_size=8, progress=False, log=lambda _: None)
                seconds = time.perf_counter() - start
            rows.append((f"{engine} engine", workers, seconds, memory.peak_mb))
            shutil.rmtree(out)
    print(f"{manifest.bundle_name}: {args.inputs} images, {manifest.format.runtime}, 1 runtime thread per worker")
    print(f"{'engine':<14}{'workers':>8}{'seconds':>9}{'inputs/s':>10}{'vs plain':>10}{'peak MB':>9}")
    for name, workers, seconds, peak in rows:
        print(f"{name:<14}{workers:>8}{seconds:>9.1f}{args.inputs / seconds:>10.1f}{plain / seconds:>9.2f}x{peak:>9.0f}")
    print("(engine runs include starting their workers or Ray; the plain loop's model load is not timed)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
