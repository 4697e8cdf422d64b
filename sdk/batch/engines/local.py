"""The local engine: ``workers`` processes (spawned, so no runtime state is shared), each holding one
:class:`~salsdk.batch.work.Worker`; rows stream back as inputs finish, in any order."""
from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from typing import Any

from ..work import BatchSpec, Worker

_worker: Worker | None = None


def _start(spec: BatchSpec) -> None:
    global _worker
    _worker = Worker(spec)


def _process(path: str) -> dict[str, Any]:
    assert _worker is not None
    return _worker.process(path)


def run(spec: BatchSpec, paths: list[str], workers: int, batch_size: int, **_: Any) -> Iterator[dict[str, Any]]:
    """Rows of ``paths`` from a pool of ``workers`` processes (``batch_size`` inputs handed out at a time)."""
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes=workers, initializer=_start, initargs=(spec,)) as pool:
        yield from pool.imap_unordered(_process, paths, chunksize=max(1, batch_size))
