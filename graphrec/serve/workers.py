"""The pre-fork supervisor.

It binds the listening socket (loopback unless told otherwise), loads or fits the recommender
once, warms it up, creates the shared memory (metrics, reload channel) and forks the workers;
each runs ``uvicorn.Server(config).serve(sockets=[sock])`` on the inherited socket, so the
fitted arrays (and the compiled kernels) are shared copy-on-write and the kernel spreads
connections over the workers. It never serves a request itself: it watches its workers (a dead
one is logged and replaced, forked from the current model) and performs reloads.

A reload builds the new recommender here (the one process allowed to start numba's threading
layer), forks a new set of workers from it into the other half of the worker slots, and once
they are up tells the old set to drain (SIGUSR1): they stop accepting, close each connection
after its next answer and exit. Workers never load a model, so serving is never stalled by
one; a reload that fails, or whose new workers do not come up, leaves the old set serving.
SIGTERM or SIGINT stops the workers (each finishes the requests it holds) and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable

from graph.errors import GraphRecError
from graphrec.serve.metrics import SharedMetrics
from graphrec.serve.model import LoadedModel, build, warm_up
from graphrec.serve.reload import ReloadChannel
from graphrec.serve.runtime import DRAIN_S
from graphrec.serve.settings import ModelPaths, ServeSettings

log = logging.getLogger(__name__)

#: Seconds a worker gets to finish its requests after SIGTERM before it is killed.
GRACEFUL_S = 10.0
#: A worker that died is restarted at most this often (seconds).
RESTART_EVERY_S = 1.0
#: Seconds the new workers of a reload get to come up before the reload answers without them.
START_TIMEOUT_S = 30.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A bound (not yet listening: the workers listen) TCP socket; GraphRecError when taken."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise GraphRecError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _worker_main(worker: int, sock: socket.socket, settings: ServeSettings, model, channel, metrics) -> None:
    """A forked worker: uvicorn on the inherited socket until SIGTERM."""
    import uvicorn

    from graphrec.serve.app import create_app
    from graphrec.serve.runtime import WorkerRuntime

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the supervisor, which stops us
    signal.signal(signal.SIGTERM, _exit_quietly)
    runtime = WorkerRuntime(settings, model, channel=channel, metrics=metrics, worker=worker)
    # A drain asked for before the event loop runs is remembered; the lifespan acts on it.
    signal.signal(signal.SIGUSR1, lambda signum, frame: setattr(runtime, "drain_requested", True))
    config = uvicorn.Config(
        create_app(runtime),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_S,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    runtime.attach(server)
    server.run(sockets=[sock])


def _exit_quietly(signum, frame) -> None:
    raise SystemExit(0)


class Supervisor:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._ctx = mp.get_context("fork")
        self._stop = threading.Event()
        # Twice as many worker slots (metrics rows) as workers: a reload forks the new set into
        # the free half while the old set drains. A slot's counters carry on across the
        # workers that use it, so the metrics' counters never go back.
        self._slots = 2 * settings.workers
        self._serving: dict[int, mp.process.BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._draining: dict[int, tuple[mp.process.BaseProcess, float]] = {}
        self._model: LoadedModel | None = None
        self._paths = settings.paths  # what is served (a compaction moves it on)
        self._offsets: dict[int, int] | None = None  # where the served snapshot's events end
        self._compacted = None  # a finished compaction waiting for its reload
        self._compactor = None
        if settings.compact_every_s is not None:
            from graphrec.serve.compaction import Compactor

            self._compactor = Compactor(settings.compact_every_s, settings.compact_dir, settings.live)

    def run(self, on_listening: Callable[[str, int, LoadedModel], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; ``on_listening(host, port, model)`` once the workers start."""
        from graphrec.serve.app import ENDPOINTS

        s = self.settings
        sock = bind_socket(s.host, s.port)  # fail fast, before a long fit, when the port is taken
        port = sock.getsockname()[1]
        try:
            self._model = self._load(generation=0)
            self.channel = ReloadChannel(self._ctx)
            self.metrics = SharedMetrics(ENDPOINTS, self._slots, self._ctx)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                for slot in range(s.workers):
                    self._spawn(slot, sock)
                if on_listening is not None:
                    on_listening(s.host, port, self._model)
                while not self._stop.is_set():
                    self._stop.wait(0.1)
                    self._reap(sock)
                    if self._compactor is not None and self._compacted is None:
                        self._compacted = self._compactor.poll(self._paths)
                        if self._compacted is not None:
                            self.channel.request()
                    if self.channel.pending():
                        self._reload(sock)
            finally:
                if self._compactor is not None:
                    self._compactor.stop()
                self._shutdown()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            sock.close()
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stop.set()

    def _load(self, generation: int, paths: ModelPaths | None = None, offsets=None) -> LoadedModel:
        rec = build(paths or self._paths)
        log.info("warmed up the recommender's calls in %.2fs", warm_up(rec))
        return LoadedModel.of(rec, generation=generation, start_offsets=offsets)

    def _spawn(self, slot: int, sock: socket.socket) -> mp.process.BaseProcess:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(slot, sock, self.settings, self._model, self.channel, self.metrics),
            name=f"graphrec-worker-{slot}",
        )
        self.metrics.set_alive(slot, False)  # until the new worker says it serves
        proc.start()
        self._serving[slot], self._started[slot] = proc, time.monotonic()
        log.info("worker %d started (pid %d, generation %d)", slot, proc.pid, self._model.generation)
        return proc

    def _reap(self, sock: socket.socket) -> None:
        for slot, proc in list(self._serving.items()):
            if proc.exitcode is None:
                continue
            self.metrics.set_alive(slot, False)
            if time.monotonic() - self._started[slot] < RESTART_EVERY_S:
                continue  # restarted only once per RESTART_EVERY_S: a crash loop does not spin
            log.warning(
                "worker %d (pid %d) exited with code %s; restarting it", slot, proc.pid, proc.exitcode
            )
            proc.join()
            self._spawn(slot, sock)
        for slot, (proc, kill_at) in list(self._draining.items()):
            if proc.exitcode is None and time.monotonic() > kill_at:
                log.warning("worker %d did not drain in time; killing it", slot)
                proc.kill()
            if proc.exitcode is not None or time.monotonic() > kill_at:
                proc.join()
                del self._draining[slot]

    def _reload(self, sock: socket.socket) -> None:
        upto = self.channel.pending()
        t0 = time.perf_counter()
        compacted, self._compacted = self._compacted, None
        paths = compacted.paths if compacted is not None else self._paths
        offsets = compacted.offsets if compacted is not None else self._offsets
        try:
            model = self._load(self.channel.generation + 1, paths, offsets)
        except Exception as exc:  # a bad artifact on disk: keep serving the old model
            log.exception("reload failed; the old model is still served")
            self.channel.fail(upto, f"{type(exc).__name__}: {exc}")
            return
        free = self._free_slots(sock)
        old, old_model = self._serving, self._model
        self._model, self._serving = model, {}  # workers forked from now on start with it
        for slot in free:
            self._spawn(slot, sock)
        behind = self._wait_until_up(self._serving)
        if behind == len(self._serving):  # none came up: keep the old set
            for proc in self._serving.values():
                proc.kill()
                proc.join()
            self._model, self._serving = old_model, old
            self.channel.fail(upto, f"no new worker came up within {START_TIMEOUT_S:g} s")
            return
        generation = self.channel.publish(upto, model.snapshot_id, behind)
        if compacted is not None:  # from now on reloads and compactions start from it
            self._paths, self._offsets = paths, offsets
            self._compactor.prune(paths)
            log.info(
                "compaction served: snapshot %s (compacted in %.1fs)", model.snapshot_id, compacted.seconds
            )
        kill_at = time.monotonic() + GRACEFUL_S + 2 * DRAIN_S
        for slot, proc in old.items():
            if proc.exitcode is None:
                os.kill(proc.pid, signal.SIGUSR1)
            self._draining[slot] = (proc, kill_at)
        log.info(
            "reload %d: snapshot %s served by new workers in %.1fs; %d old workers draining",
            generation,
            model.snapshot_id,
            time.perf_counter() - t0,
            len(old),
        )

    def _free_slots(self, sock: socket.socket) -> list[int]:
        """Worker slots for a new set, once the workers of an earlier reload left them."""
        while True:
            self._reap(sock)
            busy = set(self._serving) | set(self._draining)
            free = [slot for slot in range(self._slots) if slot not in busy]
            if len(free) >= self.settings.workers:
                return free[: self.settings.workers]
            time.sleep(0.05)

    def _wait_until_up(self, procs: dict[int, mp.process.BaseProcess]) -> int:
        """Wait for ``procs`` to serve; returns how many did not within START_TIMEOUT_S."""
        end = time.monotonic() + START_TIMEOUT_S
        while True:
            behind = [s for s, p in procs.items() if not self.metrics.is_alive(s)]
            if not behind or time.monotonic() > end:
                return len(behind)
            if all(procs[s].exitcode is not None for s in behind):
                return len(behind)
            time.sleep(0.01)

    def _shutdown(self) -> None:
        procs = {**self._serving, **{slot: proc for slot, (proc, _) in self._draining.items()}}
        for proc in procs.values():
            if proc.exitcode is None:
                proc.terminate()
        deadline = time.monotonic() + GRACEFUL_S + 2
        for slot, proc in procs.items():
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.exitcode is None:
                log.warning("worker %d did not stop in time; killing it", slot)
                proc.kill()
                proc.join()
        self._serving.clear()
        self._draining.clear()


def serve(settings: ServeSettings, on_listening=None) -> int:
    """Run a server with ``settings`` until SIGTERM/SIGINT (the body of ``graphrec serve``)."""
    if sys.platform == "win32":
        raise GraphRecError("graphrec serve forks its workers: it runs on Linux and macOS")
    return Supervisor(settings).run(on_listening)
