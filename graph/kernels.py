"""Compiled kernels that stay usable in forked worker processes."""

from __future__ import annotations

import threading
import types as pytypes
from collections.abc import Iterator
from contextlib import contextmanager

from numba import njit

_local = threading.local()


@contextmanager
def serial_kernels() -> Iterator[None]:
    """Within the block, this thread picks every :class:`TwinKernel`'s serial twin: work done
    in a forked serving worker (the live walk view's folds) never starts the threading layer."""
    before = getattr(_local, "serial", False)
    _local.serial = True
    try:
        yield
    finally:
        _local.serial = before


class TwinKernel:
    """A ``prange`` kernel compiled twice: parallel, and serial (``prange`` runs as ``range``).

    Calls with a single chunk of work (one query, one row, or one thread) take the serial twin,
    which never starts numba's threading layer: with GNU OpenMP a process that has started it
    must not fork, and a pre-fork server (fit once, fork workers that answer one user per call)
    would otherwise die in its workers on their first call.
    """

    def __init__(self, fn):
        self.parallel = njit(parallel=True, cache=True)(fn)
        twin = pytypes.FunctionType(fn.__code__, fn.__globals__, fn.__name__ + "_serial", fn.__defaults__)
        twin.__qualname__ = fn.__qualname__ + "_serial"  # its own on-disk cache entry
        self.serial = njit(cache=True)(twin)

    def pick(self, n_chunks: int):
        """The serial twin for at most one chunk of work, else the parallel kernel."""
        return self.serial if n_chunks <= 1 or getattr(_local, "serial", False) else self.parallel
