"""Benchmark: per-call cost of each candidate source and of the whole served call, one thread.

Builds the default Recommender on a synthetic graph (or a dataset), then times each fitted
source's ``candidates`` (depth 300) and the full ``who_to_follow`` / ``tweet_candidates`` call
for a seeded sample of users. Shows where a call's time goes.

    python scripts/bench_sources.py --edges 10000000 --users 100
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic relationships")
    p.add_argument("--users", type=int, default=100, help="sampled users to time")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    from graph.synthetic import generate, users_for_edges
    from retrieval.recommender import Recommender

    snap = generate(users_for_edges(args.edges), seed=args.seed, with_text=True).snapshot()
    t0 = time.perf_counter()
    rec = Recommender(snap)
    print(f"{snap.n_users:,} users, {snap.n_tweets:,} tweets; fit {time.perf_counter() - t0:.1f}s")
    users = np.random.default_rng(args.seed).choice(snap.n_users, args.users, replace=False)

    def timed(fn) -> str:
        fn(users[0])  # warm-up (compiles the serial kernels)
        ms = []
        for u in users:
            t = time.perf_counter()
            fn(u)
            ms.append((time.perf_counter() - t) * 1000)
        return f"p50 {np.percentile(ms, 50):7.2f} ms, p99 {np.percentile(ms, 99):7.2f} ms"

    for task in ("follows", "tweets"):
        exclude = rec._exclude[task]
        for name, src in rec.sources[task].items():
            print(
                f"{task:8} {name:20} {timed(lambda u, s=src, ex=exclude: s.candidates(np.array([u]), 300, ex[[u]]))}"
            )
        call = rec.who_to_follow if task == "follows" else rec.tweet_candidates
        print(f"{task:8} {'whole call (k=20)':20} {timed(lambda u, c=call: c(int(snap.user_ids[u]), 20))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
