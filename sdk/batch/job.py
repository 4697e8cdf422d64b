"""A batch job: expand the inputs, skip what the index records as done, run an engine, record every row."""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .. import atomic
from ..errors import InputError
from ..registry import resolve
from .engines import ENGINES
from .index import Index
from .inputs import expand
from .work import MAPS, BatchSpec

FLUSH_ROWS = 64  # rows per index part
FLUSH_SECONDS = 10.0


@dataclass
class BatchSummary:
    """What a job did: inputs seen, skipped as already done, processed now, failed now, and the index file."""

    total: int
    skipped: int
    processed: int
    failed: int
    seconds: float
    index: Path

    @property
    def ok(self) -> bool:
        return self.failed == 0


def run_batch(spec: BatchSpec, inputs: list[str], engine: str = "local", workers: int = 1, batch_size: int = 8,
              retry_failed: bool = False, address: str | None = None, progress: bool = True,
              log: Callable[[str], None] = print) -> BatchSummary:
    """Run ``spec`` over ``inputs`` (files, folders, globs, path lists) into ``spec.out``; resumable.

    Inputs whose newest index row is ``ok`` are skipped; failed ones are retried with ``retry_failed``. A bad input
    is recorded with its error and never stops the job.
    """
    spec.validate()
    if engine not in ENGINES:
        raise InputError(f"--engine {engine}: choose {' or '.join(ENGINES)}")
    for name, value in (("--workers", workers), ("--batch-size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise InputError(f"{name} {value!r}: give a whole number >= 1")
    out = atomic.writable_folder(Path(spec.out).expanduser().resolve(), "--out")
    spec = BatchSpec(**{**spec.__dict__, "out": str(out)})
    for stale in atomic.remove_stale(out / MAPS) + atomic.remove_stale(out / "index"):
        log(f"removed {stale.name}, left by an interrupted run")
    paths = list(expand(inputs))
    index = Index(out)
    done = index.rows()
    todo = [p for p in paths if p not in done or (retry_failed and done[p]["status"] != "ok")]
    skipped = len(paths) - len(todo)
    log(f"{len(paths)} input(s): {skipped} already in the index, {len(todo)} to process "
        f"({engine} engine, {workers} worker(s))")
    start, failed, pending, last = time.perf_counter(), 0, [], time.perf_counter()
    if todo:
        from tqdm import tqdm

        runner = resolve(ENGINES[engine])
        with tqdm(total=len(todo), unit="input", disable=not progress, desc="batch") as bar:
            for row in runner(spec, todo, workers=workers, batch_size=batch_size, address=address):
                pending.append(row)
                failed += row["status"] != "ok"
                if row["status"] != "ok":
                    bar.write(f"failed: {row['input']}: {row['error']}")
                bar.update(1)
                bar.set_postfix(failed=failed)
                if len(pending) >= FLUSH_ROWS or time.perf_counter() - last > FLUSH_SECONDS:
                    index.append(pending, engine)
                    pending, last = [], time.perf_counter()
        index.append(pending, engine)
    path = index.finalize()
    seconds = time.perf_counter() - start
    summary = BatchSummary(len(paths), skipped, len(todo), failed, seconds, path)
    rate = f", {len(todo) / seconds:.1f} inputs/s" if todo and seconds > 0 else ""
    log(f"done: {len(todo) - failed} ok, {failed} failed, {skipped} skipped in {seconds:.1f}s{rate}; index {path}")
    return summary
