"""Runtimes: one small adapter per inference engine, all behind :class:`~salsdk.runtimes.base.Runtime`."""
from .base import Runtime

__all__ = ["Runtime"]
