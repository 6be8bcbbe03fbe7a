"""The reload channel: shared memory created before the workers fork.

A worker that gets ``POST /admin/reload`` asks (``request``); the supervisor re-reads the
paths, fits or loads the new recommender, forks a new set of workers from it and, once they
are up, publishes the result (``publish``: the generation, the snapshot id, how many of the new
workers were not up in time) and answers every request up to the one it served
(``completed``). Then it drains the old workers. Workers never load a model themselves.
"""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass

_MESSAGE_BYTES = 1024
_ID_BYTES = 64


@dataclass(frozen=True)
class ReloadResult:
    ok: bool
    generation: int
    snapshot_id: str
    workers_behind: int  # new workers not up when the result was published
    message: str


class ReloadChannel:
    def __init__(self, ctx=None):
        ctx = ctx or mp.get_context("fork")
        self._lock = ctx.Lock()
        self._generation = ctx.RawValue("q", 0)
        self._requested = ctx.RawValue("q", 0)
        self._completed = ctx.RawValue("q", 0)
        self._ok = ctx.RawValue("b", 1)
        self._behind = ctx.RawValue("q", 0)
        self._snapshot_id = ctx.RawArray("c", _ID_BYTES)
        self._message = ctx.RawArray("c", _MESSAGE_BYTES)
        self._reloads = ctx.RawArray("q", 2)  # succeeded, failed

    # -- workers ----------------------------------------------------------------
    def request(self) -> int:
        """Ask the supervisor for a reload; returns the request's sequence number."""
        with self._lock:
            self._requested.value += 1
            return int(self._requested.value)

    def completed(self) -> int:
        return int(self._completed.value)

    @property
    def generation(self) -> int:
        return int(self._generation.value)

    def result(self) -> ReloadResult:
        with self._lock:
            return ReloadResult(
                bool(self._ok.value),
                int(self._generation.value),
                self._snapshot_id.value.decode(),
                int(self._behind.value),
                self._message.value.decode(errors="replace"),
            )

    @property
    def reloads(self) -> tuple[int, int]:
        return int(self._reloads[0]), int(self._reloads[1])

    # -- the supervisor -----------------------------------------------------------
    def pending(self) -> int:
        """The newest request not answered yet (0: none)."""
        req = int(self._requested.value)
        return req if req > self._completed.value else 0

    def publish(self, upto: int, snapshot_id: str, workers_behind: int = 0) -> int:
        """New workers serve a new model; answers requests up to ``upto``. Returns its generation."""
        with self._lock:
            self._snapshot_id.value = snapshot_id.encode()[: _ID_BYTES - 1]
            self._message.value = b""
            self._ok.value = 1
            self._behind.value = workers_behind
            self._generation.value += 1
            self._reloads[0] += 1
            self._completed.value = max(self._completed.value, upto)
            return int(self._generation.value)

    def fail(self, upto: int, message: str) -> None:
        """Answer requests up to ``upto`` with an error; the served model stays."""
        with self._lock:
            self._ok.value = 0
            self._message.value = message.encode(errors="replace")[: _MESSAGE_BYTES - 1]
            self._reloads[1] += 1
            self._completed.value = max(self._completed.value, upto)
