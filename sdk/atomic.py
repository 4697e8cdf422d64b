"""Writing files and folders so that an interrupted run leaves nothing half-written behind.

Files are written to a hidden temporary file in the destination folder and renamed into place (atomic on one
file system). Folders are assembled in a hidden staging folder (:func:`staging_folder`) and swapped in by
renames (:func:`replace_folder`). Staging names start with ``.salsdk-`` and carry the creating process's id, so
the next run can remove those whose process is gone (:func:`remove_stale`), e.g. after a ``kill -9``.
"""
from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError

STAGING_PREFIX = ".salsdk-"


def _staging_prefix(tag: str) -> str:
    return f"{STAGING_PREFIX}{os.getpid()}-{tag}-"


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file in the same folder, fsync, rename)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def temporary_file(path: str | Path) -> Iterator[Path]:
    """A temporary path next to ``path`` to write to (e.g. with a library's ``save``); renamed onto ``path`` when
    the block ends normally, removed otherwise."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=_staging_prefix(path.name), suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


@contextlib.contextmanager
def staging_folder(parent: str | Path, tag: str) -> Iterator[Path]:
    """A new hidden folder in ``parent`` for assembling output; removed when the block leaves it behind
    (an error, Ctrl-C, SIGTERM turned into KeyboardInterrupt). Move what you keep out of it before the end."""
    folder = Path(tempfile.mkdtemp(prefix=_staging_prefix(tag), dir=parent))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def replace_folder(staged: Path, target: Path, last: str | None = None, pending: str | None = None) -> None:
    """Move the complete folder ``staged`` to ``target``, replacing an older one, by renames only.

    With ``last``/``pending`` (e.g. ``manifest.json`` staged as ``.manifest.json.pending``) the older folder
    loses its ``last`` file first and the new one gets it as the very last step, so no moment shows a ``last``
    file next to incomplete contents.
    """
    old = None
    if target.exists():
        if last:
            (target / last).unlink(missing_ok=True)
        old = target.with_name(f"{_staging_prefix(target.name)}old")
        os.replace(target, old)
    os.replace(staged, target)
    if last and pending:
        os.replace(target / pending, target / last)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(parent: str | Path) -> list[Path]:
    """Remove staging files and folders in ``parent`` left by salsdk processes that no longer run."""
    removed = []
    parent = Path(parent)
    if not parent.is_dir():
        return removed
    for entry in parent.glob(f"{STAGING_PREFIX}*"):
        pid = entry.name[len(STAGING_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def writable_folder(path: str | Path, what: str) -> Path:
    """Create ``path`` if needed and check that files can be written there; :class:`InputError` otherwise."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{what} {path} is a file, not a folder: give a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        reason = "it is read-only" if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) else exc.strerror
        raise InputError(f"{what} {path} cannot be written ({reason}): choose a folder you can write to") from None
    return path


def require_free_space(path: str | Path, needed: int, what: str) -> None:
    """:class:`InputError` when the file system of ``path`` has fewer than ``needed`` bytes free."""
    free = shutil.disk_usage(path).free
    if free < needed:
        raise InputError(f"{what} {path}: {free / 1e6:.0f} MB free, about {needed / 1e6:.0f} MB needed: free some "
                         "space or choose another folder")
