"""The pre-fork supervisor.

It binds the listening socket (loopback unless told otherwise), loads or fits the recommender
once, creates the shared memory (metrics, reload channel) and forks the workers; each runs
``uvicorn.Server(config).serve(sockets=[sock])`` on the inherited socket, so the fitted arrays
are shared copy-on-write and the kernel spreads connections over the workers. It never
serves a request itself: it watches its workers (a dead one is logged and replaced, forked
from the current model) and performs reloads. A reload fits in the supervisor, the one
process allowed to start numba's threading layer, and saves the fit for the workers to
unpickle. SIGTERM or SIGINT stops the workers (each finishes the requests it holds) and exits.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from graph.errors import GraphRecError
from graphrec.serve.metrics import SharedMetrics
from graphrec.serve.model import LoadedModel, build
from graphrec.serve.reload import ReloadChannel
from graphrec.serve.settings import ServeSettings

log = logging.getLogger(__name__)

#: Seconds a worker gets to finish its requests after SIGTERM before it is killed.
GRACEFUL_S = 10.0
#: A worker that died is restarted at most this often (seconds).
RESTART_EVERY_S = 1.0


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
    config = uvicorn.Config(
        create_app(runtime),
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=GRACEFUL_S,
        backlog=2048,
    )
    uvicorn.Server(config).run(sockets=[sock])


def _exit_quietly(signum, frame) -> None:
    raise SystemExit(0)


class Supervisor:
    def __init__(self, settings: ServeSettings):
        self.settings = settings
        self._ctx = mp.get_context("fork")
        self._stop = threading.Event()
        self._procs: dict[int, mp.process.BaseProcess] = {}
        self._started: dict[int, float] = {}
        self._model: LoadedModel | None = None
        self._run_dir: Path | None = None
        self._saved: list[Path] = []

    def run(self, on_listening: Callable[[str, int, LoadedModel], None] | None = None) -> int:
        """Serve until SIGTERM/SIGINT; ``on_listening(host, port, model)`` once the workers start."""
        from graphrec.serve.app import ENDPOINTS

        s = self.settings
        sock = bind_socket(s.host, s.port)  # fail fast, before a long fit, when the port is taken
        port = sock.getsockname()[1]
        try:
            self._model = LoadedModel.of(build(s.paths), generation=0)
            self.channel = ReloadChannel(self._ctx)
            self.metrics = SharedMetrics(ENDPOINTS, s.workers, self._ctx)
            previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
            try:
                for worker in range(s.workers):
                    self._spawn(worker, sock)
                if on_listening is not None:
                    on_listening(s.host, port, self._model)
                while not self._stop.is_set():
                    self._stop.wait(0.1)
                    self._reap(sock)
                    if self.channel.pending():
                        self._reload()
            finally:
                self._shutdown()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        finally:
            sock.close()
            if self._run_dir is not None:
                shutil.rmtree(self._run_dir, ignore_errors=True)
        return 0

    def _on_signal(self, signum, frame) -> None:
        self._stop.set()

    def _spawn(self, worker: int, sock: socket.socket) -> None:
        proc = self._ctx.Process(
            target=_worker_main,
            args=(worker, sock, self.settings, self._model, self.channel, self.metrics),
            name=f"graphrec-worker-{worker}",
        )
        proc.start()
        self._procs[worker], self._started[worker] = proc, time.monotonic()
        log.info("worker %d started (pid %d)", worker, proc.pid)

    def _reap(self, sock: socket.socket) -> None:
        for worker, proc in list(self._procs.items()):
            if proc.exitcode is None:
                continue
            self.metrics.set_alive(worker, False)
            if time.monotonic() - self._started[worker] < RESTART_EVERY_S:
                continue  # restarted only once per RESTART_EVERY_S: a crash loop does not spin
            log.warning(
                "worker %d (pid %d) exited with code %s; restarting it", worker, proc.pid, proc.exitcode
            )
            proc.join()
            self._spawn(worker, sock)

    def _reload(self) -> None:
        upto = self.channel.pending()
        t0 = time.perf_counter()
        try:
            rec = build(self.settings.paths)
            model = LoadedModel.of(rec, generation=self.channel.generation + 1)
            model_dir = self._saved_model_dir(model)
        except Exception as exc:  # a bad artifact on disk: keep serving the old model
            log.exception("reload failed; the old model is still served")
            self.channel.fail(upto, f"{type(exc).__name__}: {exc}")
            return
        self._model = model  # workers forked from now on start with it
        generation = self.channel.publish(upto, str(model_dir), model.snapshot_id)
        log.info("reload %d: snapshot %s in %.1fs", generation, model.snapshot_id, time.perf_counter() - t0)

    def _saved_model_dir(self, model: LoadedModel) -> Path:
        """Where workers load ``model`` from: the --model directory, or the fit saved privately."""
        if self.settings.paths.model is not None:
            return self.settings.paths.model
        if self._run_dir is None:
            self._run_dir = Path(tempfile.mkdtemp(prefix="graphrec-serve-"))
        out = self._run_dir / f"generation-{model.generation}"
        model.rec.save(out)
        self._saved.append(out)
        while len(self._saved) > 2:  # workers may still be loading the previous one
            shutil.rmtree(self._saved.pop(0), ignore_errors=True)
        return out

    def _shutdown(self) -> None:
        for proc in self._procs.values():
            if proc.exitcode is None:
                proc.terminate()
        deadline = time.monotonic() + GRACEFUL_S + 2
        for worker, proc in self._procs.items():
            proc.join(max(deadline - time.monotonic(), 0.1))
            if proc.exitcode is None:
                log.warning("worker %d did not stop in time; killing it", worker)
                proc.kill()
                proc.join()
        self._procs.clear()


def serve(settings: ServeSettings, on_listening=None) -> int:
    """Run a server with ``settings`` until SIGTERM/SIGINT (the body of ``graphrec serve``)."""
    if sys.platform == "win32":
        raise GraphRecError("graphrec serve forks its workers: it runs on Linux and macOS")
    return Supervisor(settings).run(on_listening)
