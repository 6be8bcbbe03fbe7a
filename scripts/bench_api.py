"""Benchmark: latency and throughput of the Python API (who_to_follow, tweet_candidates).

For a dataset it builds the Recommender on the training graph, then times single calls
for a seeded sample of users on one thread (p50 / p99), and calls per second with one
worker process per core (forked after fitting, sharing the read-only arrays).

Usage::

    python scripts/bench_api.py --dataset gowalla --data-dir ../shared/datasets --json OUT
    python scripts/bench_api.py --dataset synthetic --edges 10000000 --json OUT
"""

from __future__ import annotations

import os

# One BLAS thread per process: we measure per-call latency and scale with processes.
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

_REC = None  # the fitted Recommender, inherited by forked workers


def _result(q, procs):
    """The next worker's (calls, seconds); exits with an error when a worker died instead."""
    import queue

    while True:
        try:
            return q.get(timeout=1.0)
        except queue.Empty:
            dead = [p.exitcode for p in procs if p.exitcode not in (None, 0)]
            if dead:
                for p in procs:
                    p.kill()
                raise SystemExit(f"a forked worker died (exit codes {dead}); see its message above") from None


def _snapshot(args):
    if args.dataset == "synthetic":
        from graph.synthetic import generate, users_for_edges

        return generate(users_for_edges(args.edges), seed=args.seed, with_text=True).snapshot()
    from graph.datasets import dataset_snapshot, load_dataset

    return dataset_snapshot(load_dataset(args.dataset, args.data_dir))


def _call(kind: str, uid: int, k: int):
    if kind == "who_to_follow":
        return _REC.who_to_follow(uid, k)
    return _REC.tweet_candidates(uid, k)


def _worker(kind: str, uids: list[int], k: int, seconds: float, out) -> None:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        _call(kind, uids[n % len(uids)], k)
        n += 1
    out.put((n, time.perf_counter() - t0))


def main() -> int:
    global _REC
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["gowalla", "lastfm", "flickr", "synthetic"])
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic: relationships")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--users", type=int, default=1000, help="sampled users to time")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    p.add_argument("--seconds", type=float, default=10.0, help="throughput run length per call")
    p.add_argument("--json", help="write figures here")
    args = p.parse_args()

    from retrieval.recommender import Recommender

    t0 = time.perf_counter()
    snap = _snapshot(args)
    t_snap = time.perf_counter() - t0
    t0 = time.perf_counter()
    _REC = Recommender(snap)
    t_fit = time.perf_counter() - t0
    print(
        f"{args.dataset}: {snap.n_users:,} users, {snap.n_tweets:,} tweets, {snap.n_follows:,} follows, "
        f"{snap.n_engagements:,} engagements; snapshot {t_snap:.1f}s, fit {t_fit:.1f}s"
    )
    rng = np.random.default_rng(args.seed)
    uids = snap.user_ids[rng.choice(snap.n_users, size=min(args.users, snap.n_users), replace=False)].tolist()
    results = {}
    for kind in ("who_to_follow", "tweet_candidates"):
        for uid in uids[:20]:  # warm-up
            _call(kind, uid, args.k)
        lat = []
        for uid in uids:
            t = time.perf_counter()
            _call(kind, uid, args.k)
            lat.append((time.perf_counter() - t) * 1000)
        lat = np.asarray(lat)
        q: mp.Queue = mp.get_context("fork").Queue()
        procs = [
            mp.get_context("fork").Process(target=_worker, args=(kind, uids, args.k, args.seconds, q))
            for _ in range(args.workers)
        ]
        for proc in procs:
            proc.start()
        done = [_result(q, procs) for _ in procs]
        for proc in procs:
            proc.join()
        qps = sum(n / dt for n, dt in done)
        results[kind] = {
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "mean_ms": float(lat.mean()),
            "qps": qps,
            "single_thread_qps": float(1000 / lat.mean()),
        }
        r = results[kind]
        print(
            f"{kind:>17}: p50 {r['p50_ms']:.2f} ms, p99 {r['p99_ms']:.2f} ms, "
            f"{r['qps']:.0f} calls/s with {args.workers} processes "
            f"({r['qps'] / r['single_thread_qps']:.2f}x one thread)"
        )
    out = {
        "dataset": args.dataset,
        "k": args.k,
        "users_timed": len(uids),
        "fit_s": t_fit,
        "calls": results,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        **{f"{kind}_{m}": results[kind][m] for kind in results for m in ("p50_ms", "p99_ms", "qps")},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
