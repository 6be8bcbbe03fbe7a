"""One worker's state: the model it serves, the thread its recommender calls run on, the
deadline that cuts them, and how it follows reloads.

Recommender calls run one at a time on a single-thread executor (the numba kernels take their
serial twin for one user) and are awaited with :func:`run_with_deadline`, so the event loop
keeps answering health checks, metrics and other requests' deadlines. A reload loads the new
model in another thread beside the served one and swaps a single reference: a request holds
the model it started with to its end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from graphrec.serve.errors import ApiError
from graphrec.serve.metrics import SharedMetrics
from graphrec.serve.model import LoadedModel, load_saved
from graphrec.serve.reload import ReloadChannel
from graphrec.serve.settings import ServeSettings

log = logging.getLogger(__name__)

T = TypeVar("T")


class DeadlineExceededError(ApiError):
    def __init__(self, deadline_s: float):
        super().__init__(
            504, "deadline_exceeded", f"the request took longer than its deadline of {deadline_s * 1000:g} ms"
        )


async def run_with_deadline(executor: ThreadPoolExecutor, fn: Callable[[], T], deadline_s: float) -> T:
    """``fn()`` on ``executor``, or :class:`DeadlineExceededError` after ``deadline_s`` seconds.

    The time waiting for the executor counts: a backlog is shed instead of answered late. A
    call already running when the deadline passes finishes in its thread; its result is dropped.
    """
    future = asyncio.get_running_loop().run_in_executor(executor, fn)
    try:
        return await asyncio.wait_for(future, deadline_s)
    except TimeoutError:
        raise DeadlineExceededError(deadline_s) from None


class WorkerRuntime:
    def __init__(
        self,
        settings: ServeSettings,
        model: LoadedModel | None,
        *,
        channel: ReloadChannel | None = None,
        metrics: SharedMetrics | None = None,
        worker: int = 0,
    ):
        self.settings, self.channel, self.metrics, self.worker = settings, channel, metrics, worker
        self.model: LoadedModel | None = None
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"graphrec-rec-{worker}")
        self._load_lock: asyncio.Lock | None = None
        self._failed_generation = -1
        if model is not None:
            self._swap(model)

    # -- serving ----------------------------------------------------------------------
    async def call(self, fn: Callable[[LoadedModel], T]) -> T:
        """``fn(model)`` on the recommender thread within the request deadline."""
        model = self.model
        if model is None:
            raise ApiError(503, "not_ready", "the recommender is not loaded yet")
        return await run_with_deadline(self.executor, lambda: fn(model), self.settings.deadline_s)

    def _swap(self, model: LoadedModel) -> None:
        self.model = model  # one reference: requests in flight keep the model they started with
        if self.metrics is not None:
            self.metrics.set_model(
                self.worker, model.snapshot_id, model.generation, model.newest_event, model.loaded_at
            )

    # -- reloads ----------------------------------------------------------------------
    async def reload(self) -> tuple[LoadedModel, float, int]:
        """Ask the supervisor to reload, wait for it, load its model here, then give the other
        workers (which follow in the background) a bounded wait to swap too. Returns the new
        model, the seconds it all took and how many workers still serve an older model."""
        if self.channel is None:
            raise ApiError(503, "reload_unavailable", "this server has no supervisor to reload from")
        t0 = time.perf_counter()
        seq = self.channel.request()
        deadline = t0 + self.settings.reload_timeout_s
        while self.channel.completed() < seq:
            if time.perf_counter() > deadline:
                raise ApiError(
                    503, "reload_timeout", "the reload did not finish in time; the old model is served"
                )
            await asyncio.sleep(0.02)
        result = self.channel.result()
        if not result.ok:
            raise ApiError(
                500, "reload_failed", f"reload failed, the old model is still served: {result.message}"
            )
        await self._follow(result.generation, result.model_dir)
        behind = 0
        if self.metrics is not None:
            end = time.perf_counter() + max(10.0, 4 * self.settings.reload_poll_s)
            while (behind := self.metrics.workers_behind(result.generation)) and time.perf_counter() < end:
                await asyncio.sleep(0.02)
        return self.model, time.perf_counter() - t0, behind

    async def watch(self) -> None:
        """Background: load the supervisor's newest model when its generation moves on."""
        assert self.channel is not None
        while True:
            await asyncio.sleep(self.settings.reload_poll_s)
            generation = self.channel.generation
            if self.model is not None and generation <= self.model.generation:
                continue
            if generation == self._failed_generation:
                continue
            result = self.channel.result()
            try:
                await self._follow(result.generation, result.model_dir)
            except Exception:  # keep serving the old model; retried at the next generation
                log.exception("worker %d: could not load reload generation %d", self.worker, generation)
                self._failed_generation = generation

    async def _follow(self, generation: int, model_dir: str) -> None:
        if self._load_lock is None:
            self._load_lock = asyncio.Lock()
        async with self._load_lock:
            if self.model is not None and self.model.generation >= generation:
                return
            snapshot = self.settings.paths.snapshot
            rec = await asyncio.to_thread(load_saved, model_dir, snapshot)
            model = await asyncio.to_thread(LoadedModel.of, rec, generation)
            self._swap(model)
            log.info(
                "worker %d now serves snapshot %s (generation %d)", self.worker, model.snapshot_id, generation
            )

    @asynccontextmanager
    async def lifespan(self, app):
        """FastAPI lifespan: mark the worker up and follow reloads while it serves."""
        if self.metrics is not None:
            self.metrics.set_alive(self.worker, self.model is not None)
        task = asyncio.create_task(self.watch()) if self.channel is not None else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
            if self.metrics is not None:
                self.metrics.set_alive(self.worker, False)
            self.executor.shutdown(wait=False, cancel_futures=True)
