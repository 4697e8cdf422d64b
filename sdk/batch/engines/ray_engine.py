"""The Ray engine: the inputs as a Ray Data dataset, ``map_batches`` over an actor pool whose actors each hold one
:class:`~salsdk.batch.work.Worker` (one ONNX Runtime / LiteRT / PyTorch session). Joins the cluster at
``address``, or starts a local Ray instance with ``workers`` CPUs and stops it at the end."""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from ...errors import InputError
from ..work import BatchSpec, Worker


class _Actor:
    def __init__(self, spec: BatchSpec) -> None:
        self.worker = Worker(spec)

    def __call__(self, batch: dict[str, Any]) -> dict[str, list[str]]:
        # rows travel as JSON text: exact floats, and no pandas/Arrow type guessing for missing values
        return {"row": [json.dumps(self.worker.process(str(path))) for path in batch["path"]]}


def run(spec: BatchSpec, paths: list[str], workers: int, batch_size: int, address: str | None = None,
        **_: Any) -> Iterator[dict[str, Any]]:
    """Rows of ``paths`` from ``workers`` Ray actors, ``batch_size`` inputs per actor call."""
    try:
        import ray
    except ImportError:
        raise InputError("--engine ray needs Ray Data: pip install 'ray[data]'") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                 log_to_driver=False, configure_logging=False)
    try:
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = False
        dataset = ray.data.from_items([{"path": p} for p in paths], override_num_blocks=max(1, len(paths) // batch_size))
        results = dataset.map_batches(_Actor, fn_constructor_args=(spec,), batch_size=batch_size, batch_format="numpy",
                                      concurrency=workers, num_cpus=1)
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for text in batch["row"]:
                yield json.loads(str(text))
    finally:
        if started:
            ray.shutdown()
