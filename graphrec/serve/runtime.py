"""One worker's state: the model it serves, the thread its recommender calls run on, the
deadline that cuts them, and how it leaves when a reload replaces it.

Recommender calls run one at a time on a single-thread executor (the numba kernels take their
serial twin for one user) and are awaited with :func:`run_with_deadline`, so the event loop
keeps answering health checks, metrics and other requests' deadlines. A worker serves one model
for its whole life: a reload forks new workers from the supervisor and then *drains* the old
ones (:meth:`WorkerRuntime.drain`): a draining worker stops accepting connections, answers
every request it still gets with ``Connection: close`` (so a client never sends on a
connection the server is closing) and exits once its connections are gone.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import TypeVar

from graphrec.serve.errors import ApiError
from graphrec.serve.metrics import SharedMetrics
from graphrec.serve.model import LoadedModel
from graphrec.serve.reload import ReloadChannel, ReloadResult
from graphrec.serve.settings import ServeSettings

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Seconds a draining worker waits for its clients to close their connections before it exits.
DRAIN_S = 10.0


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
        self.draining = False
        self.drain_requested = False  # set by a SIGUSR1 that came before the event loop ran
        self.feed = None  # the live feed, when the server follows an events topic
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
    async def reload(self) -> tuple[ReloadResult, float]:
        """Ask the supervisor to reload and wait until the new workers serve (or it failed).
        Returns the result and the seconds it took; this worker is drained right after."""
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
        return result, time.perf_counter() - t0

    # -- leaving ----------------------------------------------------------------------
    def attach(self, server) -> None:
        """The ``uvicorn.Server`` this runtime serves in (what :meth:`drain` stops)."""
        self.server = server

    def drain(self) -> None:
        """Stop accepting, close each connection after its next answer, exit when none is left."""
        if self.draining:
            return
        self.draining = True
        if self.metrics is not None:
            self.metrics.set_alive(self.worker, False)  # replaced: no longer counted as serving
        server = getattr(self, "server", None)
        if server is None:
            return
        for listener in getattr(server, "servers", []):
            listener.close()  # this process's copy of the listening socket; the new workers keep theirs
        self._drain_task = asyncio.get_running_loop().create_task(self._exit_when_idle(server))

    async def _exit_when_idle(self, server) -> None:
        end = time.monotonic() + DRAIN_S
        while server.server_state.connections and time.monotonic() < end:
            await asyncio.sleep(0.02)
        log.info("worker %d drained; exiting", self.worker)
        server.should_exit = True

    @asynccontextmanager
    async def lifespan(self, app):
        """FastAPI lifespan: mark the worker up, and drain on SIGUSR1 (sent by the supervisor)."""
        loop = asyncio.get_running_loop()
        if self.channel is not None:
            loop.add_signal_handler(signal.SIGUSR1, self.drain)
            if self.drain_requested:
                self.drain()
        feed, reporter = None, None
        if self.settings.live is not None and self.model is not None:
            feed, reporter = await self._start_live_feed()
        if self.metrics is not None:
            self.metrics.set_alive(self.worker, self.model is not None)
        try:
            yield
        finally:
            if self.metrics is not None:
                self.metrics.set_alive(self.worker, False)
            if reporter is not None:
                reporter.cancel()
            if feed is not None:
                await asyncio.to_thread(feed.stop)
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _start_live_feed(self):
        """Follow the events topic; ready once caught up (or after the catch-up timeout)."""
        from graphrec.serve.live_feed import LiveFeed

        model = self.model
        feed = LiveFeed(
            self.settings.live, model.rec, model.newest_event, self.worker, start_offsets=model.start_offsets
        ).start()
        self.feed = feed
        if not await asyncio.to_thread(feed.wait_caught_up):
            log.warning(
                "worker %d: live feed not caught up (%s); serving anyway", self.worker, feed.error or "slow"
            )
        return feed, asyncio.get_running_loop().create_task(self._report_live(feed))

    async def _report_live(self, feed) -> None:
        while True:
            live, st = self.model.rec.live if self.model else None, feed.stats
            if self.metrics is not None and live is not None:
                view = self.model.rec.overlay.walks if self.model.rec.overlay is not None else None
                self.metrics.set_live(
                    self.worker,
                    applied=st.applied,
                    invalid=st.invalid,
                    lag=st.lag,
                    edges=live.n_edges,
                    nbytes=live.nbytes,
                    at=st.last_applied_at,
                    folds=view.folds if view is not None else 0,
                    fold_s=view.last_build_s if view is not None else 0.0,
                    fold_edges=view.fold_edges if view is not None else 0,
                )
            await asyncio.sleep(0.5)


class DrainMiddleware:
    """Pure ASGI middleware: once the worker drains, every answer carries ``Connection: close``."""

    def __init__(self, app, runtime: WorkerRuntime):
        self.app, self.runtime = app, runtime

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_maybe_closing(message):
            if message["type"] == "http.response.start" and self.runtime.draining:
                message = {**message, "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_maybe_closing)
