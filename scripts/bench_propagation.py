"""Benchmark: LightGCN's propagation through PyTorch Geometric's ``LGConv`` against the plain
``torch.sparse.mm`` reference, on gowalla's joint graph, in the same run.

One step of training costs one forward and one backward propagation (``gnn.models._Propagate``:
the backward is another forward, ``Â`` being symmetric); this times both paths on the same
cached, reordered adjacency and embedding width, interleaved, median of ``--reps``::

    python scripts/bench_propagation.py --data-dir ../shared/datasets --json OUT
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn.data import joint_adjacency, positives  # noqa: E402
from gnn.models import Propagation  # noqa: E402
from graph.datasets import dataset_snapshot, load_dataset  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    snap = dataset_snapshot(load_dataset(args.dataset, args.data_dir))
    adj = joint_adjacency(snap.n_users, snap.n_tweets, positives(snap, "tweets"), None)
    prop = Propagation(adj, args.layers)
    x = torch.randn(adj.shape[0], args.dim)
    assert torch.allclose(prop.apply(x), prop.apply_reference(x), rtol=1e-4, atol=1e-5)
    times: dict[str, list[float]] = {"pyg": [], "reference": []}
    for _ in range(args.reps):  # interleaved: both see the same machine state
        for name, fn in (("pyg", prop.apply), ("reference", prop.apply_reference)):
            t0 = time.perf_counter()
            fn(x)
            times[name].append((time.perf_counter() - t0) * 1000)
    med = {k: float(np.median(v)) for k, v in times.items()}
    print(
        f"{args.dataset}: {adj.shape[0]:,} nodes, {adj.nnz:,} entries, dim {args.dim}, {args.layers} layers: "
        f"LGConv {med['pyg']:.1f} ms, torch.sparse.mm {med['reference']:.1f} ms per propagation "
        f"(ratio {med['pyg'] / med['reference']:.3f})"
    )
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                {
                    "dataset": args.dataset,
                    "nodes": adj.shape[0],
                    "nnz": int(adj.nnz),
                    "median_ms": med,
                    "ratio_pyg_over_reference": med["pyg"] / med["reference"],
                    "date": time.strftime("%Y-%m-%d"),
                    "machine": f"{platform.machine()}, {os.cpu_count()} cores, {args.threads} torch threads",
                    "command": " ".join(sys.argv),
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
