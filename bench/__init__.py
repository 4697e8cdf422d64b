"""``salsdk bench``: our speed, memory and fidelity, side by side with PyTorch eager and the papers' claims.

Modules: :mod:`~salsdk.bench.schema` (the result row), :mod:`~salsdk.bench.machine` (CPU/GPU and GEMM peak),
:mod:`~salsdk.bench.worker` (one measurement per process), :mod:`~salsdk.bench.measure` (plans and runs
measurements), :mod:`~salsdk.bench.analysis` (MAC breakdown, why a target is missed),
:mod:`~salsdk.bench.claims` (papers vs ours), :mod:`~salsdk.bench.mobile` (phone plans, ``benchmark_model``
and Android demo imports), :mod:`~salsdk.bench.store` (SQLite), :mod:`~salsdk.bench.report` (Markdown, JSON,
PNG); the command is :mod:`salsdk.cli.bench`.
"""
from .schema import BenchResult

__all__ = ["BenchResult"]
