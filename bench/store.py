"""Benchmark results in an embedded SQLite database, so runs of several machines and phones can be compared.

One table ``results``: the columns one filters and sorts by (run, machine, model, format, runtime, delegate,
input, threads, status, typical latency, CC) plus the whole :class:`~salsdk.bench.schema.BenchResult` as JSON,
which is what is read back: adding a field to the schema needs no migration. Default location:
``$SALSDK_HOME/bench/results.sqlite``.
"""
from __future__ import annotations

import json
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Iterable

from .schema import SCHEMA, BenchResult

DB_NAME = "results.sqlite"

_CREATE = """
CREATE TABLE IF NOT EXISTS results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    timestamp TEXT,
    source TEXT,
    machine_id TEXT,
    machine TEXT,
    model TEXT NOT NULL,
    format TEXT NOT NULL,
    runtime TEXT,
    delegate TEXT,
    device TEXT,
    input_shape TEXT,
    threads INTEGER,
    status TEXT,
    central_ms REAL,
    ms_per_map REAL,
    ratio REAL,
    peak_rss_mb REAL,
    cc_min REAL,
    schema TEXT,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS results_run ON results (run_id);
CREATE INDEX IF NOT EXISTS results_model ON results (model, format);
"""


def default_db_path() -> Path:
    """``$SALSDK_HOME/bench/results.sqlite``."""
    from salsdk.weights import salsdk_home

    return salsdk_home() / "bench" / DB_NAME


class ResultStore:
    """A SQLite file of benchmark rows. ``add`` appends rows; ``query`` reads them back as BenchResults."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = Path(path) if path else default_db_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with closing(self._connect()) as db, db:
            db.executescript(_CREATE)

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def add(self, rows: Iterable[BenchResult]) -> int:
        """Store ``rows`` (in one transaction); returns how many were written."""
        values = [(r.run_id, r.timestamp, r.source, r.machine_id, r.machine, r.model, r.format, r.runtime,
                   r.delegate, r.device, "x".join(map(str, r.input_shape)), r.threads, r.status, r.central_ms,
                   r.ms_per_map, r.ratio, r.peak_rss_mb, r.fidelity_cc_min, SCHEMA,
                   json.dumps(r.to_dict(), default=str))
                  for r in rows]
        with closing(self._connect()) as db, db:
            db.executemany(
                "INSERT INTO results (run_id, timestamp, source, machine_id, machine, model, format, runtime, "
                "delegate, device, input_shape, threads, status, central_ms, ms_per_map, ratio, peak_rss_mb, "
                "cc_min, schema, data) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", values)
        return len(values)

    def query(self, run_id: str | None = None, model: str | None = None, machine_id: str | None = None,
              source: str | None = None, status: str | None = None) -> list[BenchResult]:
        """Rows matching every given filter (model case-insensitive), oldest first."""
        clauses, params = [], []
        for column, value in (("run_id", run_id), ("machine_id", machine_id), ("source", source),
                              ("status", status)):
            if value is not None:
                clauses.append(f"{column} = ?")
                params.append(value)
        if model is not None:
            clauses.append("lower(model) = lower(?)")
            params.append(model)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with closing(self._connect()) as db:
            rows = db.execute(f"SELECT data FROM results{where} ORDER BY id", params).fetchall()
        return [BenchResult.from_dict(json.loads(data)) for (data,) in rows]

    def runs(self) -> list[dict]:
        """One summary per run: id, time, source, machine, models, number of rows; newest first."""
        with closing(self._connect()) as db:
            found = db.execute(
                "SELECT run_id, min(timestamp), source, machine, group_concat(DISTINCT model), count(*) "
                "FROM results GROUP BY run_id ORDER BY min(id) DESC").fetchall()
        return [{"run_id": r[0], "timestamp": r[1], "source": r[2], "machine": r[3], "models": r[4], "rows": r[5]}
                for r in found]

    def latest_run_id(self, source: str | None = "measured") -> str | None:
        """The most recently stored run (of ``source``), if any."""
        with closing(self._connect()) as db:
            sql = "SELECT run_id FROM results" + (" WHERE source = ?" if source else "") + " ORDER BY id DESC LIMIT 1"
            found = db.execute(sql, (source,) if source else ()).fetchone()
        return found[0] if found else None
