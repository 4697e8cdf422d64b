"""The inputs of a batch job: files, folders, glob patterns, and lists of paths in text, CSV or Parquet files."""
from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from pathlib import Path

from ..errors import InputError
from ..imageio import IMAGE_SUFFIXES, VIDEO_SUFFIXES

MEDIA_SUFFIXES = IMAGE_SUFFIXES | VIDEO_SUFFIXES
LIST_SUFFIXES = {".txt", ".csv", ".parquet"}
PATH_COLUMNS = ("path", "input", "file", "filename")


def _listed(path: Path) -> list[str]:
    """Paths a list file names (relative ones against the list's folder)."""
    if path.suffix == ".txt":
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    elif path.suffix == ".csv":
        with open(path, newline="", encoding="utf-8") as handle:
            rows = list(csv.reader(handle))
        if not rows:
            return []
        header = [c.strip().lower() for c in rows[0]]
        column = next((header.index(c) for c in PATH_COLUMNS if c in header), None)
        names = [r[column if column is not None else 0] for r in (rows[1:] if column is not None else rows) if r]
    else:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        column = next((c for c in PATH_COLUMNS if c in table.column_names), None)
        if column is None:
            raise InputError(f"{path} has no column named {' or '.join(PATH_COLUMNS)}")
        names = [str(v) for v in table.column(column).to_pylist()]
    return [str((path.parent / n) if not Path(n).is_absolute() else Path(n)) for n in names if n and not n.startswith("#")]


def expand(items: list[str]) -> Iterator[str]:
    """Absolute paths of every input, in order, each once. Folders give their images and videos (sorted); globs
    their matches; ``.txt``/``.csv``/``.parquet`` files the paths they list (which are not checked here: a missing
    one becomes a failed row, not a stopped job)."""
    seen: set[str] = set()

    def once(path: str) -> Iterator[str]:
        absolute = str(Path(path).expanduser().resolve())
        if absolute not in seen:
            seen.add(absolute)
            yield absolute

    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MEDIA_SUFFIXES)
            if not found:
                raise InputError(f"folder {path} holds no images or videos")
            for p in found:
                yield from once(str(p))
        elif path.is_file() and path.suffix.lower() in LIST_SUFFIXES:
            for listed in _listed(path):
                yield from once(listed)
        elif path.exists():
            yield from once(str(path))
        elif any(ch in item for ch in "*?["):
            matches = sorted(glob.glob(item, recursive=True))
            if not matches:
                raise InputError(f"pattern {item} matches no file")
            for match in matches:
                yield from once(match)
        else:
            raise InputError(f"input {item} does not exist")
