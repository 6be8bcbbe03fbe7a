"""Data-parallel embedding training launched on Ray: N actors form a ``torch.distributed`` group
(gloo on CPU, NCCL when the actors have GPUs) and each runs the one training loop
(:mod:`gnn.distributed`, :func:`gnn.pipeline.fit_lightgcn` / ``fit_sage``) on the same snapshot,
read memory-mapped from its path. Rank 0's result is the model; the caller writes the artifact
(:func:`gnn.job.save_embeddings`) as a single-process run would.

``torchrun --nproc-per-node N`` with :func:`gnn.distributed.init_from_env` is the other launcher;
one process stays the default everywhere.
"""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError


class _Rank:
    """One rank: joins the group, trains, returns its result (rank 0) or a digest of it."""

    def __init__(self, rank: int, world: int, threads: int = 1):
        import numba
        import torch

        self.rank, self.world = rank, world
        numba.set_num_threads(threads)
        torch.set_num_threads(threads)

    def address(self) -> tuple[str, int]:
        """(this node's address, a free port): where rank 0 listens for the group."""
        import ray

        with socket.socket() as s:
            s.bind(("", 0))
            port = s.getsockname()[1]
        return ray.util.get_node_ip_address(), port

    def join(self, host: str, port: int, backend: str | None) -> None:
        from gnn import distributed

        os.environ.update(
            RANK=str(self.rank), WORLD_SIZE=str(self.world), MASTER_ADDR=host, MASTER_PORT=str(port)
        )
        distributed.init_from_env(backend)

    def fit(self, snapshot_dir: str, model: str, task: str, params: dict):
        import torch.distributed as dist

        from gnn.job import train_embeddings
        from graph.snapshot import GraphSnapshot

        snap = GraphSnapshot.load(snapshot_dir, mmap=True)
        try:
            res = train_embeddings(snap, model=model, task=task, progress=False, **params)
        finally:
            if dist.is_initialized():
                dist.destroy_process_group()
        if self.rank == 0:
            res.model = None  # the vectors and metrics travel; the module stays here
            return res
        return float(np.abs(res.user_vectors).sum() + np.abs(res.tweet_vectors).sum())


def train_distributed(
    snapshot_dir: str | Path,
    *,
    workers: int = 2,
    model: str = "lightgcn",
    task: str = "both",
    params: dict | None = None,
    address: str | None = None,
    backend: str | None = None,
    gpus_per_worker: float = 0,
):
    """Train embeddings data-parallel over ``workers`` Ray actors (one CPU each, plus
    ``gpus_per_worker``) on the Ray cluster at ``address`` (None: a local one started here).
    Returns rank 0's :class:`~gnn.pipeline.Embeddings` (``model`` left out). Raises when the ranks'
    replicas ended different (they must be identical)."""
    from graphrec.batch import init_ray, ray_module

    if workers < 1:
        raise GraphRecError(f"workers must be a positive integer, got {workers}")
    if not (Path(snapshot_dir) / "meta.json").is_file():
        raise GraphRecError(f"--snapshot {snapshot_dir}: not a saved snapshot (no meta.json)")
    ray = ray_module()
    started = init_ray(address, workers)
    try:
        Actor = ray.remote(num_cpus=1, num_gpus=gpus_per_worker)(_Rank)
        ranks = [Actor.remote(r, workers) for r in range(workers)]
        host, port = ray.get(ranks[0].address.remote())
        ray.get([a.join.remote(host, port, backend) for a in ranks])
        results = ray.get([a.fit.remote(str(snapshot_dir), model, task, dict(params or {})) for a in ranks])
    finally:
        if started:
            ray.shutdown()
    res = results[0]
    digest = float(np.abs(res.user_vectors).sum() + np.abs(res.tweet_vectors).sum())
    if any(d != digest for d in results[1:]):
        raise GraphRecError(
            f"the ranks' models differ after data-parallel training: {[digest, *results[1:]]}"
        )
    return res


def time_to_quality(
    *,
    n_users: int,
    ranks: list[int],
    epochs: int,
    seed: int = 0,
    dim: int = 64,
    quality: float = 0.98,
    init: str = "spectral",
) -> dict:
    """Benchmark: LightGCN on a synthetic graph of ``n_users`` with each count in ``ranks`` (Ray
    actors, one thread each); for each, the training seconds (steps and validation) until the
    validation recall@20 first reaches ``quality`` x the best the first count's run reached."""
    import tempfile

    from graph.synthetic import generate

    with tempfile.TemporaryDirectory(prefix="bench-train-") as tmp:
        snap = generate(n_users, seed=seed).snapshot()
        snap.save(Path(tmp) / "snap")
        relationships = snap.n_follows + snap.n_engagements
        params = {
            "epochs": epochs,
            "dim": dim,
            "seed": seed,
            "refit_epochs": 0,
            "patience": epochs,
            "init": init,
        }
        runs = []
        for n in ranks:
            t0 = time.perf_counter()
            res = train_distributed(Path(tmp) / "snap", workers=n, params=params)
            hist = [h for h in res.metrics["history"] if "val_recall@20" in h]
            runs.append(
                {
                    "ranks": n,
                    "wall_s": time.perf_counter() - t0,
                    "history": [(h["epoch"], h["seconds"], h["val_recall@20"]) for h in hist],
                    "best_val_recall@20": res.metrics["val_recall@20"],
                    "start_val_recall@20": res.metrics.get("start_metric"),
                }
            )
    target = quality * runs[0]["best_val_recall@20"]
    for run in runs:
        reached = [(e, s) for e, s, r in run["history"] if r >= target]
        run["epochs_to_target"], run["seconds_to_target"] = reached[0] if reached else (None, None)
        print(
            f"{run['ranks']} rank(s): best val recall@20 {run['best_val_recall@20']:.4f}; "
            f"{quality:.0%} of the 1-rank best ({target:.4f}) at epoch {run['epochs_to_target']} "
            f"after {run['seconds_to_target']}s of training; whole run {run['wall_s']:.1f}s",
            flush=True,
        )
    base = runs[0]["seconds_to_target"]
    for run in runs:
        s = run["seconds_to_target"]
        run["speedup_to_target"] = base / s if base and s else None
    print("speedup to target vs", ranks[0], "rank(s):", [run["speedup_to_target"] for run in runs])
    return {"graph": {"users": n_users, "relationships": relationships}, "target": target, "runs": runs}
