"""Batch engines: each runs :class:`~salsdk.batch.work.Worker` over the inputs and yields index rows as they
finish. ``local``: worker processes on this machine; ``ray``: a Ray Data actor pool (local or a cluster)."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

from ..work import BatchSpec

ENGINES = {"local": "salsdk.batch.engines.local:run", "ray": "salsdk.batch.engines.ray_engine:run"}


class Engine(Protocol):
    def __call__(self, spec: BatchSpec, paths: list[str], workers: int, batch_size: int,
                 **options: Any) -> Iterator[dict[str, Any]]: ...
