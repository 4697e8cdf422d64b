"""``salsdk batch``: saliency over large collections, resumable, on local worker processes or Ray Data.

* :mod:`~salsdk.batch.inputs`: what to process (folders, globs, path lists in text, CSV or Parquet files);
* :mod:`~salsdk.batch.stats`: the map statistics written per input (peak, mean, entropy, best crop boxes);
* :mod:`~salsdk.batch.work`: one input -> its map files and one index row (the same code under every engine);
* :mod:`~salsdk.batch.index`: the Parquet index, written in atomic parts, read back to resume;
* :mod:`~salsdk.batch.engines`: ``local`` (worker processes) and ``ray`` (Ray Data actors);
* :func:`run_batch`: the job (:mod:`~salsdk.batch.job`).
"""
from __future__ import annotations

from .job import BatchSummary, run_batch
from .work import BatchSpec

__all__ = ["BatchSpec", "BatchSummary", "run_batch"]
