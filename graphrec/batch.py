"""Batch candidate generation for many users, on Ray (local by default, or a Ray cluster).

``graphrec batch recommend`` cuts the users into fixed partitions; each worker (a Ray actor with
one CPU) builds the served :class:`~retrieval.recommender.Recommender` once, exactly as
``graphrec serve`` does (:func:`graphrec.serve.model.build`: the saved model memory-mapped beside
the memory-mapped snapshot, or a fit from the snapshot and config), then runs
``who_to_follow`` / ``tweet_candidates`` per user of each partition it is given and writes that
partition's Parquet file itself: ``OUT/<task>/part-<partition>.parquet`` with the columns
``user, rank, target, score, reason``. The snapshot and model are read from their paths (the same
files on one machine, shared storage on a cluster), never pickled per task; only user ids and row
counts travel between the driver and the workers.

The partitioning depends on the user list and ``partition_size`` alone, and every user's list
depends on that user alone (the walks are seeded per user), so the output is the same for any
number of workers and for the in-process engine (``engine="local"``), which runs the same
partitions one after another without Ray.

Ray is imported lazily: everything else works without the ``dist`` extra.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError
from graphrec.serve.settings import ModelPaths

log = logging.getLogger(__name__)

#: Columns of every output file, in this order.
COLUMNS = ("user", "rank", "target", "score", "reason")
#: Default number of results per user and task (the served endpoints' defaults).
DEFAULT_K = {"follows": 20, "tweets": 50}
#: Users per partition: one output file per task each; large enough that a file is not tiny, small
#: enough that the work spreads evenly over the workers.
DEFAULT_PARTITION_SIZE = 2000
ENGINES = ("ray", "local")


@dataclass(frozen=True)
class BatchJob:
    """What to compute: the model (``paths``), the tasks with their ``k``, and the partitioning."""

    paths: ModelPaths
    k: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_K))
    partition_size: int = DEFAULT_PARTITION_SIZE
    explain: bool = True

    def __post_init__(self) -> None:
        from retrieval.recommender import check_k

        if not self.k:
            raise GraphRecError("tasks: name at least one of follows, tweets")
        for task, k in self.k.items():
            if task not in DEFAULT_K:
                raise GraphRecError(f"tasks: unknown task {task!r}; use follows, tweets")
            check_k(k)
        if isinstance(self.partition_size, bool) or int(self.partition_size) < 1:
            raise GraphRecError(f"partition_size must be a positive integer, got {self.partition_size!r}")


@dataclass
class BatchResult:
    """What a run did: rows written per task, users, partitions, workers and times (seconds)."""

    out: str
    engine: str
    workers: int
    users: int
    partitions: int
    rows: dict[str, int]
    snapshot_id: str
    setup_s: float
    run_s: float
    worker_setup_s: list[float] = field(default_factory=list)
    #: per worker at the end: resident bytes (``anon``: its own heap, ``file``: the mapped
    #: snapshot and model) and CPU seconds spent on partitions
    worker_stats: list[dict] = field(default_factory=list)

    @property
    def users_per_s(self) -> float:
        """Users per second once every worker is ready (setup excluded)."""
        return self.users / self.run_s if self.run_s > 0 else float("inf")

    def to_dict(self) -> dict:
        return {**asdict(self), "users_per_s": self.users_per_s}


def partitions(user_ids: np.ndarray, partition_size: int) -> list[np.ndarray]:
    """``user_ids`` cut into consecutive partitions of ``partition_size`` (the last one shorter)."""
    user_ids = np.asarray(user_ids, np.int64)
    return [user_ids[i : i + partition_size] for i in range(0, len(user_ids), partition_size)]


def select_users(
    snapshot_dir: str | Path,
    *,
    users_file: str | Path | None = None,
    sample: int | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The external user ids to run: every snapshot user, those listed in ``users_file`` (one id
    per line), or a seeded random ``sample`` of either (kept in snapshot order)."""
    from graph.snapshot import GraphSnapshot

    if users_file is not None:
        path = Path(users_file)
        try:
            lines = [s.strip() for s in path.read_text().splitlines()]
        except OSError as exc:
            raise GraphRecError(f"--users {path}: cannot read it ({exc})") from None
        ids = []
        for n, text in enumerate(lines, start=1):
            if not text:
                continue
            try:
                ids.append(int(text))
            except ValueError:
                raise GraphRecError(f"--users {path}:{n}: not an integer user id: {text!r}") from None
        users = np.asarray(ids, np.int64)
    else:
        snap = GraphSnapshot.load(snapshot_dir, mmap=True, trust=True)
        users = np.asarray(snap.user_ids, np.int64)
    if sample is not None:
        if sample < 1:
            raise GraphRecError(f"--sample must be a positive integer, got {sample}")
        if sample < len(users):
            pick = np.random.default_rng(seed).choice(len(users), size=sample, replace=False)
            users = users[np.sort(pick)]
    return users


@contextmanager
def single_threaded() -> Iterator[None]:
    """One thread for numba, torch and BLAS inside the block: a worker owns one CPU (N workers on
    N cores must not oversubscribe them), and a float sum is reduced in the same order whatever
    the machine, so every engine writes the same scores to the last bit."""
    import numba
    import torch
    from threadpoolctl import threadpool_limits

    before = numba.get_num_threads(), torch.get_num_threads()
    numba.set_num_threads(1)
    torch.set_num_threads(1)
    try:
        with threadpool_limits(1):
            yield
    finally:
        numba.set_num_threads(before[0])
        torch.set_num_threads(before[1])


class PartitionWorker:
    """Builds the served recommender once, then writes the partitions it is given."""

    def __init__(self, job: BatchJob, out: str, rec=None):
        from graphrec.serve.model import build

        t0 = time.perf_counter()
        self.job, self.out = job, Path(out)
        self.rec = rec if rec is not None else build(job.paths)
        users = np.asarray(self.rec.snap.user_ids)
        if len(users):  # compile (or load from numba's cache) every kernel before the timed part
            with single_threaded():
                self._recommend(int(users[0]))
        self.setup_s = time.perf_counter() - t0
        self.cpu_s = 0.0

    def ready(self) -> tuple[float, str]:
        """(seconds the setup took, the snapshot id)."""
        return self.setup_s, self.rec.snap.snapshot_id

    def stats(self) -> dict:
        """This process's resident bytes, split (on Linux) into its own heap (``anon``) and the
        mapped files (``file``: the snapshot and model, shared with every worker on the node
        through the page cache), and its CPU seconds on partitions."""
        import psutil

        out = {"rss": int(psutil.Process().memory_info().rss), "cpu_s": self.cpu_s}
        try:
            for line in Path("/proc/self/status").read_text().splitlines():
                if line.startswith(("RssAnon:", "RssFile:")):
                    out[line[3:7].lower()] = int(line.split()[1]) * 1024
        except OSError:  # not Linux: the total alone
            pass
        return out

    def _recommend(self, user: int) -> dict[str, list]:
        rec, out = self.rec, {}
        for task, k in self.job.k.items():
            if task == "follows":
                out[task] = rec.who_to_follow(user, k, explain=self.job.explain)
            else:
                out[task] = rec.tweet_candidates(user, k, explain=self.job.explain)
        return out

    def run(self, index: int, user_ids: np.ndarray) -> dict[str, int]:
        """Recommend for every user of partition ``index``; write one Parquet file per task.
        Returns the rows written per task. Rewriting a partition replaces its files (a retried
        task writes the same bytes)."""
        import pyarrow as pa

        c0 = time.process_time()
        cols = {task: {c: [] for c in COLUMNS} for task in self.job.k}
        with single_threaded():
            for user in np.asarray(user_ids, np.int64).tolist():
                for task, recs in self._recommend(user).items():
                    c = cols[task]
                    for rank, r in enumerate(recs, start=1):
                        c["user"].append(user)
                        c["rank"].append(rank)
                        c["target"].append(r.id)
                        c["score"].append(r.score)
                        c["reason"].append(r.reason)
        rows = {}
        for task, c in cols.items():
            table = pa.table(
                {
                    "user": pa.array(c["user"], pa.int64()),
                    "rank": pa.array(c["rank"], pa.int32()),
                    "target": pa.array(c["target"], pa.int64()),
                    "score": pa.array(c["score"], pa.float32()),
                    "reason": pa.array(c["reason"], pa.string()),
                }
            )
            _write_parquet(table, self.out / task / f"part-{index:05d}.parquet")
            rows[task] = table.num_rows
        self.cpu_s += time.process_time() - c0
        return rows


def _write_parquet(table, path: Path) -> None:
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)  # a reader never sees half a file


def _check_out(out: Path, overwrite: bool) -> None:
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise GraphRecError(f"--out {out}: exists and is not empty; pass --overwrite to replace it")
        import shutil

        for task in DEFAULT_K:
            shutil.rmtree(out / task, ignore_errors=True)
        shutil.rmtree(out / "_model", ignore_errors=True)
        (out / "_SUCCESS.json").unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)


def _check_paths(paths: ModelPaths) -> None:
    if not (paths.snapshot / "meta.json").is_file():
        raise GraphRecError(f"--snapshot {paths.snapshot}: not a saved snapshot (no meta.json)")
    if paths.model is not None and not (paths.model / "meta.json").is_file():
        raise GraphRecError(f"--model {paths.model}: not a saved recommender (no meta.json)")
    if paths.config is not None and not paths.config.is_file():
        raise GraphRecError(f"--config {paths.config}: no such file")


def ray_module():
    """The ``ray`` package, or a clear error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise GraphRecError(
            "the Ray engine needs the `dist` extra: pip install 'graphrec[dist]' (or use --engine local)"
        ) from None
    return ray


def init_ray(address: str | None, workers: int | None) -> bool:
    """Connect to Ray: a local one-machine cluster with ``workers`` CPUs when ``address`` is None,
    else the cluster at ``address`` (``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``). Returns
    whether this call connected (and should shut down: a local Ray stops, a cluster stays)."""
    ray = ray_module()
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # nothing leaves the machine
    if address is None:
        ray.init(
            num_cpus=workers or os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        return True
    if address.startswith("ray://"):
        try:
            import grpc  # noqa: F401  (Ray Client's transport, only in ray[client])
        except ImportError:
            raise GraphRecError(
                f"--engine-address {address}: Ray Client needs pip install 'ray[client]==2.60.0'; "
                "or run the command on a node of the cluster with --engine-address auto"
            ) from None
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise GraphRecError(f"--engine-address {address}: cannot connect to a Ray cluster ({exc})") from None
    return True


def run_batch(
    job: BatchJob,
    out: str | Path,
    user_ids: Sequence[int] | np.ndarray,
    *,
    engine: str = "ray",
    workers: int | None = None,
    address: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Recommend for every user in ``user_ids`` and write ``out/<task>/part-*.parquet``.

    ``engine="ray"`` runs ``workers`` actors (default: the cluster's CPUs) on the Ray cluster at
    ``address`` (None: a local one started here and shut down after); ``engine="local"`` runs the
    same partitions in this process. ``progress`` is called with the users done after each
    partition. Writes ``out/_SUCCESS.json`` (the :class:`BatchResult`) last.
    """
    if engine not in ENGINES:
        raise GraphRecError(f"--engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if workers is not None and workers < 1:
        raise GraphRecError(f"--workers must be a positive integer, got {workers}")
    if engine == "local" and address is not None:
        raise GraphRecError("--engine-address needs --engine ray")
    _check_paths(job.paths)
    out = Path(out).absolute()  # workers on other machines or directories see the same path
    _check_out(out, overwrite)
    parts = partitions(np.asarray(user_ids, np.int64), job.partition_size)
    t0 = time.perf_counter()
    fitted = None
    if job.paths.model is None:
        fitted, job = _fit_once(job, out, save=engine != "local")
    if engine == "local":
        worker = PartitionWorker(job, str(out), fitted)
        setup, snapshot_id = worker.ready()
        t1 = time.perf_counter()
        rows = dict.fromkeys(job.k, 0)
        for index, users in enumerate(parts):
            for task, n in worker.run(index, users).items():
                rows[task] += n
            if progress:
                progress(len(users))
        result = _result(out, engine, 1, parts, rows, snapshot_id, t0, t1, [setup])
    else:
        try:
            result = _run_ray(job, out, parts, workers, address, progress, t0)
        finally:
            if fitted is not None:
                import shutil

                shutil.rmtree(job.paths.model, ignore_errors=True)  # mapped files stay readable
    (out / "_SUCCESS.json").write_text(json.dumps(result.to_dict(), indent=2))
    return result


def _fit_once(job: BatchJob, out: Path, save: bool):
    """Fit the recommender here, once; with ``save``, save it under ``out`` and return a job whose
    workers load it (memory-mapped) instead of each fitting its own: one fit instead of N, and
    every worker serves the same fitted floats (a fit's float sums depend on its thread count)."""
    from dataclasses import replace

    from graphrec.serve.model import build

    rec = build(job.paths)
    if not save:
        return rec, job
    model_dir = out / "_model"
    rec.save(model_dir)
    return rec, replace(job, paths=ModelPaths(job.paths.snapshot, model_dir))


def _run_ray(job, out, parts, workers, address, progress, t0) -> BatchResult:
    ray = ray_module()
    started = init_ray(address, workers)
    try:
        if workers is None:
            workers = max(1, int(ray.cluster_resources().get("CPU", 1)))
        workers = max(1, min(workers, len(parts)))
        Actor = ray.remote(num_cpus=1)(PartitionWorker)
        actors = [Actor.remote(job, str(out)) for _ in range(workers)]
        ready = ray.get([a.ready.remote() for a in actors])
        snapshot_ids = {sid for _, sid in ready}
        if len(snapshot_ids) != 1:  # a worker on a node whose shared copy differs
            raise GraphRecError(f"the workers read different snapshots: {sorted(snapshot_ids)}")
        t1 = time.perf_counter()
        rows = dict.fromkeys(job.k, 0)
        # Each actor gets its next partition as soon as it is done with one: uneven partitions
        # (heavy users) do not leave a worker idle.
        pending, todo = {}, list(enumerate(parts))
        for actor in actors:
            if todo:
                index, users = todo.pop(0)
                pending[actor.run.remote(index, users)] = (actor, len(users))
        while pending:
            [done], _ = ray.wait(list(pending), num_returns=1)
            actor, n_users = pending.pop(done)
            for task, n in ray.get(done).items():
                rows[task] += n
            if progress:
                progress(n_users)
            if todo:
                index, users = todo.pop(0)
                pending[actor.run.remote(index, users)] = (actor, len(users))
        result = _result(out, "ray", workers, parts, rows, snapshot_ids.pop(), t0, t1, [s for s, _ in ready])
        result.worker_stats = ray.get([a.stats.remote() for a in actors])
        return result
    finally:
        if started:
            ray.shutdown()


def _result(out, engine, workers, parts, rows, snapshot_id, t0, t1, worker_setup) -> BatchResult:
    t2 = time.perf_counter()
    return BatchResult(
        out=str(out),
        engine=engine,
        workers=workers,
        users=int(sum(len(p) for p in parts)),
        partitions=len(parts),
        rows=rows,
        snapshot_id=snapshot_id,
        setup_s=t1 - t0,
        run_s=t2 - t1,
        worker_setup_s=worker_setup,
    )


def read_output(out: str | Path, task: str):
    """The rows of one task's output as a pyarrow Table, in (user order of the partitions, rank)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    files = sorted((Path(out) / task).glob("part-*.parquet"))
    if not files:
        raise GraphRecError(f"{out}/{task}: no part-*.parquet files")
    return pa.concat_tables([pq.read_table(f) for f in files])
