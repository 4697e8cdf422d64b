"""The batch index: one Parquet row per input, what a re-run reads to skip finished work.

Rows arrive in parts (``index/part-*.parquet``, each written atomically), so a killed job loses at most the rows
of the part it was collecting, whose inputs are simply processed again (their outputs are overwritten atomically
with the same bytes). :meth:`Index.finalize` folds the parts into ``index.parquet`` (the newest row per input
wins) and removes them.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .. import atomic
from ..errors import InputError

INDEX_FILE = "index.parquet"
PARTS = "index"
SCHEMA = pa.schema([
    ("input", pa.string()), ("input_sha256", pa.string()), ("status", pa.string()), ("error", pa.string()),
    ("kind", pa.string()), ("height", pa.int64()), ("width", pa.int64()), ("frames", pa.int64()),
    ("map_files", pa.string()), ("map_min", pa.float64()), ("map_max", pa.float64()),
    ("latency_ms", pa.float64()), ("peak_x", pa.int64()), ("peak_y", pa.int64()), ("mean", pa.float64()),
    ("entropy_bits", pa.float64()), ("crops", pa.string()), ("model", pa.string()), ("runtime", pa.string()),
    ("bundle_sha256", pa.string()), ("engine", pa.string()), ("sequence", pa.int64()),
])


class Index:
    """The index of the batch job writing into ``out``."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self.parts = self.out / PARTS
        self.parts.mkdir(parents=True, exist_ok=True)
        self._sequence = 0

    def _tables(self) -> list[pa.Table]:
        files = ([self.out / INDEX_FILE] if (self.out / INDEX_FILE).is_file() else []) + sorted(self.parts.glob("part-*.parquet"))
        tables = []
        for path in files:
            try:
                tables.append(pq.read_table(path).cast(SCHEMA))
            except (pa.ArrowInvalid, OSError, ValueError) as exc:
                raise InputError(f"{path} is not a salsdk batch index ({exc}); move it away to start afresh") from None
        return tables

    def rows(self) -> dict[str, dict[str, Any]]:
        """The newest row of every input recorded so far."""
        latest: dict[str, dict[str, Any]] = {}
        for table in self._tables():
            for row in table.to_pylist():
                latest[row["input"]] = row
        return latest

    def append(self, rows: list[dict[str, Any]], engine: str) -> None:
        """Record ``rows`` as one new part, atomically."""
        if not rows:
            return
        stamped = []
        for row in rows:
            self._sequence += 1
            stamped.append({**row, "engine": engine, "sequence": self._sequence})
        name = f"part-{time.time_ns():020d}-{os.getpid()}-{self._sequence:09d}.parquet"
        with atomic.temporary_file(self.parts / name) as tmp:
            pq.write_table(pa.Table.from_pylist(stamped, schema=SCHEMA), tmp)

    def finalize(self) -> Path:
        """Fold every part into ``index.parquet`` (sorted by input, the newest row per input) and remove them."""
        parts = sorted(self.parts.glob("part-*.parquet"))
        rows = sorted(self.rows().values(), key=lambda r: r["input"])
        with atomic.temporary_file(self.out / INDEX_FILE) as tmp:
            pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), tmp)
        for part in parts:
            part.unlink(missing_ok=True)
        return self.out / INDEX_FILE
