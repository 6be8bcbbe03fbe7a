"""Benchmark: batch jobs on Ray with 1 and N local workers (issue 20).

``batch``: ``graphrec batch recommend`` (:func:`graphrec.batch.run_batch`, Ray engine) over a
seeded sample of ``--users`` users of the 10M-edge synthetic graph (snapshot and fitted model
taken from ``scripts/bench_serve.py``'s cache, else built and cached), once per worker count in
``--workers``; prints users/s once the workers are ready (each worker's setup: loading the
memory-mapped snapshot and model and compiling, reported apart), the ratio against the first
worker count measured in the same run, and whether every run wrote the same Parquet rows.
It also prints the snapshot's and model's bytes per relationship (the back-of-envelope inputs).

``train``: the LightGCN embedding job data-parallel over 1 and N gloo ranks
(:func:`graphrec.dist_train.train_distributed`) on a smaller synthetic graph: seconds to the
validation recall the single-rank run reaches.

Each worker and rank is single-threaded (numba, torch, BLAS) and the driver waits idle, so on an
N-core machine N workers do not compete with each other or with it. Run the timed parts alone::

    flock /tmp/graphrec-cpu.lock python scripts/bench_batch.py batch --users 10000 --json OUT
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
# Ray starts its workers at nice 15 (behind the driver and raylet); timed workers run at the
# driver's priority instead, or they compete with every niced job on the machine.
os.environ.setdefault("RAY_worker_niceness", "0")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def cached_model(cache_root: str, edges: int, seed: int) -> Path:
    """The cache directory holding ``snapshot/`` and ``model/`` of the synthetic graph (built once)."""
    cache = Path(cache_root) / f"synthetic-{edges}-{seed}"
    if not (cache / "model" / "meta.json").is_file():
        from graph.synthetic import generate, users_for_edges
        from retrieval.recommender import Recommender

        snap = generate(users_for_edges(edges), seed=seed, with_text=True).snapshot()
        snap.save(cache / "snapshot")
        Recommender(snap).save(cache / "model")
    return cache


def _dir_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def bench_batch(args) -> dict:
    from graph.snapshot import GraphSnapshot
    from graphrec.batch import BatchJob, read_output, run_batch, select_users
    from graphrec.serve.settings import ModelPaths

    cache = cached_model(args.model_cache, args.edges, args.seed)
    snap = GraphSnapshot.load(cache / "snapshot", trust=True)
    relationships = snap.n_follows + snap.n_engagements + int((np.asarray(snap.tweet_author) >= 0).sum())
    users = select_users(cache / "snapshot", sample=args.users, seed=args.seed)
    job = BatchJob(ModelPaths(cache / "snapshot", cache / "model"), partition_size=args.partition_size)
    runs, tables = [], {}
    scratch = Path(tempfile.mkdtemp(prefix="bench-batch-", dir=args.scratch))
    try:
        for w in args.workers:
            out = scratch / f"w{w}"
            load_before = _load_avg()
            res = run_batch(job, out, users, engine="ray", workers=w)
            run = {**res.to_dict(), "load_before": load_before, "load_after": _load_avg()}
            cpu = sum(s["cpu_s"] for s in res.worker_stats)
            run["cpu_ms_per_user"] = 1e3 * cpu / res.users
            runs.append(run)
            print(
                f"{w} worker(s): {res.users:,} users in {res.run_s:.1f}s = {res.users_per_s:.1f} users/s "
                f"(setup {res.setup_s:.1f}s; {run['cpu_ms_per_user']:.1f} CPU ms per user; heap / mapped MB "
                f"per worker {[(round(s.get('anon', 0) / 1e6), round(s.get('file', 0) / 1e6)) for s in res.worker_stats]}; "
                f"load {load_before} -> "
                f"{run['load_after']})",
                flush=True,
            )
            tables[w] = {task: read_output(out, task) for task in job.k}
            out_bytes = _dir_bytes(out)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    base = runs[0]["users_per_s"]
    first = tables[args.workers[0]]
    identical = all(t[task].equals(first[task]) for t in tables.values() for task in first)
    for run in runs:
        run["speedup"] = run["users_per_s"] / base
    print("speedup vs", args.workers[0], "worker(s):", [round(r["speedup"], 2) for r in runs])
    print("outputs identical across worker counts:", identical)
    stats = {
        "users": snap.n_users,
        "relationships": relationships,
        "snapshot_bytes": snap.nbytes,
        "snapshot_bytes_per_relationship": snap.nbytes / relationships,
        "model_bytes": _dir_bytes(cache / "model"),
        "model_bytes_per_relationship": _dir_bytes(cache / "model") / relationships,
        "parquet_bytes_per_user": out_bytes / len(users),
    }
    print(json.dumps(stats, indent=2))
    return {"runs": runs, "identical": identical, "graph": stats}


def bench_train(args) -> dict:
    from graphrec.dist_train import time_to_quality

    return time_to_quality(
        n_users=args.train_users,
        ranks=args.workers,
        epochs=args.epochs,
        seed=args.seed,
        dim=args.dim,
        init=args.init,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["batch", "train"])
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic graph size (batch)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=10_000, help="users sampled for the batch job")
    p.add_argument("--partition-size", type=int, default=500)
    p.add_argument("--workers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2])
    p.add_argument("--model-cache", default=".graphrec/bench-serve")
    p.add_argument("--scratch", default=None, help="where the Parquet outputs go (deleted after)")
    p.add_argument("--train-users", type=int, default=20_000, help="synthetic users (train)")
    p.add_argument("--epochs", type=int, default=20, help="epochs per training run (train)")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument(
        "--init",
        default="random",
        help="LightGCN init (train); random: the spectral warm start reaches the target at once",
    )
    p.add_argument("--json", help="write the results here")
    args = p.parse_args()
    t0 = time.time()
    result = bench_batch(args) if args.part == "batch" else bench_train(args)
    result["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime(t0)),
        "command": " ".join(sys.argv),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main()
