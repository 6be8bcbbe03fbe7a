"""Benchmark: what verifying a snapshot on load costs, against reading it.

Saves the snapshot of a dataset (or a synthetic graph), then times, from a cold process's
point of view (files in the page cache, arrays not yet touched):

* baseline: ``GraphSnapshot.load(trust=True)`` minus its checks, then reading every byte once
  (what the first calls of any job do anyway);
* the structural checks (:func:`graph.snapshot_checks.verify_structure`);
* the content checksum that binds ``snapshot_id`` to the bytes.

Usage::

    python scripts/bench_snapshot_check.py --dataset gowalla --data-dir ../shared/datasets
    python scripts/bench_snapshot_check.py --dataset synthetic --edges 10000000
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _snapshot(args):
    if args.dataset == "synthetic":
        from graph.synthetic import generate, users_for_edges

        return generate(users_for_edges(args.edges), seed=0, with_text=True).snapshot()
    from graph.datasets import dataset_snapshot, load_dataset

    return dataset_snapshot(load_dataset(args.dataset, args.data_dir))


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["gowalla", "lastfm", "flickr", "synthetic"])
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic: relationships")
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    from graph.snapshot import ARRAY_DTYPES, GraphSnapshot, _digest, _load_array
    from graph.snapshot_checks import verify_structure

    snap = _snapshot(args)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snap"
        snap.save(path)
        size = sum(f.stat().st_size for f in path.iterdir())

        def read_all():
            arrays = {n: _load_array(path / f"{n}.npy", d, True) for n, d in ARRAY_DTYPES.items()}
            for a in arrays.values():
                np.add.reduce(a.view(np.uint8))  # touch every byte
            return arrays

        arrays = read_all()
        t_read = _best(read_all, args.repeats)
        t_struct = _best(lambda: verify_structure(arrays, str(path)), args.repeats)
        t_sum = _best(lambda: _digest(arrays, snap.tweet_texts), args.repeats)
        t_load = _best(lambda: GraphSnapshot.load(path), args.repeats)
    print(f"{args.dataset}: {snap.n_users:,} users, {snap.n_tweets:,} tweets, {size / 2**20:.0f} MiB on disk")
    print(f"  read every byte (baseline) {t_read * 1000:8.1f} ms")
    print(f"  structural checks          {t_struct * 1000:8.1f} ms  ({t_struct / t_read:.2f}x the baseline)")
    print(f"  content checksum           {t_sum * 1000:8.1f} ms  ({t_sum / t_read:.2f}x the baseline)")
    print(f"  verified load, end to end  {t_load * 1000:8.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
