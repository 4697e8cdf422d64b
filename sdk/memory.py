"""How much memory this machine has free, for refusing work that cannot fit before it is allocated."""
from __future__ import annotations

from pathlib import Path

MEMINFO = Path("/proc/meminfo")


def available_bytes() -> int | None:
    """Memory available to a new allocation now (Linux ``MemAvailable``, else psutil), or None if unknown."""
    try:
        for line in MEMINFO.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def gib(n: float) -> str:
    """``n`` bytes as ``'4.6 GiB'``."""
    return f"{n / 2**30:.1f} GiB"
