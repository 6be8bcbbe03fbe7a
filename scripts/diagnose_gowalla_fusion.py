"""Does the fusion gate's validation choice carry over to the test split? A diagnosis, not a benchmark.

Fits every tunable source of the served recommender (``retrieval.catalogue``) on the test
split's training graph and on validation carves of it (``graph.carve.carve_validation``: ``r<seed>``
uniform, ``t<tilt>`` popularity-tilted), then, for each carve, runs the weight search
(``retrieval.tuning.coordinate_ascent``) with the plain gate and with the shifted-view gate
(plain and popularity-weighted recall), and prints the test recall@20 / NDCG@20 of what each
picks against the single source that validation ranks first (paired difference, 95% interval).
The test split is only scored, never used to choose. Also prints the mean training popularity
of held-out items (carved graphs scaled back to the full graph's size).

    python scripts/diagnose_gowalla_fusion.py --data-dir ../shared/datasets --dataset gowalla \\
        --carves r0,t1 --test-users 10000

``--fixed`` scores fixed additions to one source instead (test and each carve; the table of
BENCHMARKS.md's "the fusion gate on two carves"):

    python scripts/diagnose_gowalla_fusion.py --data-dir ../shared/datasets --dataset gowalla \\
        --carves r0,r1,r0@0.05,r1@0.05 --val-users 12000 --test-users 10000 \\
        --fixed similar_users=0.2,similar_users=0.35,similar_users=0.5,pixie=0.2,pixie=0.5,co_engagement=0.2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.splits import build_protocol  # noqa: E402
from graph.carve import carve_validation  # noqa: E402
from graph.ranking import hit_matrix, ndcg_at_k, top_k_csr  # noqa: E402
from graph.tasks import exclusion_matrix  # noqa: E402
from retrieval.autotune import _source_lists  # noqa: E402
from retrieval.catalogue import source_names, tunable  # noqa: E402
from retrieval.fusion import fuse  # noqa: E402
from retrieval.recommender import Recommender, RecommenderConfig  # noqa: E402
from retrieval.tuning import coordinate_ascent, popularity_weights, recall_per_user  # noqa: E402

K = 20


def lists_for(snap, task: str, users: np.ndarray) -> dict:
    names = [n for n in source_names(task) if tunable(task, n)]
    rec = Recommender(
        snap,
        config=RecommenderConfig().with_weights(task, {n: 1.0 for n in names}),
        tasks=[task],
        serving=False,
    )
    return _source_lists(rec, task, users, 1024)


def print_gains(label: str, lists: dict, truth, base: str, additions: list) -> None:
    """Paired recall@20 gain (and z = mean / standard error) of ``base`` + each weighted addition
    over ``base`` alone, on the same users."""
    alone = recall_per_user(lists[base], truth, K)
    out = [f"{label}: {base} {alone.mean():.4f}"]
    for name, w in additions:
        fused, _ = fuse(lists, {base: 1.0, name: w})
        d = recall_per_user(fused, truth, K) - alone
        out.append(f"+{name}*{w}: {d.mean():+.4f} (z {d.mean() / (d.std(ddof=1) / np.sqrt(len(d))):+.1f})")
    print("  ".join(out), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--dataset", default="gowalla")
    ap.add_argument("--task", default="tweets")
    ap.add_argument(
        "--carves",
        default="r0,t1",
        help="r<seed> (uniform) or t<tilt> (popularity-tilted, seed 0), each with an optional "
        "@<fraction> held out per user (default 0.2) or @loo (one item per user), e.g. r0@0.05, r1@loo",
    )
    ap.add_argument("--val-users", type=int, default=4000)
    ap.add_argument(
        "--fixed",
        default="",
        help="instead of the weight search, score fixed additions to --base on test and on every carve: "
        "paired gain and z, e.g. similar_users=0.5,co_engagement=0.2",
    )
    ap.add_argument("--base", default="spectral", help="the source the --fixed additions are added to")
    ap.add_argument("--test-users", type=int, default=0, help="seeded sample of test users (0: all)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    cold = "drop" if args.dataset == "lastfm" and args.task == "tweets" else "error"
    protocol = build_protocol(args.dataset, args.task, args.data_dir, cold_users=cold)
    train, users, truth = protocol.test.train, protocol.test.users, protocol.test.truth
    if args.test_users and len(users) > args.test_users:
        pick = np.sort(np.random.default_rng(0).choice(len(users), args.test_users, replace=False))
        users, truth = users[pick], truth[pick]
    pop = np.diff(exclusion_matrix(train, args.task).tocsc().indptr)
    print(
        f"test: {len(users)} users, held-out items' mean training popularity {pop[truth.indices].mean():.1f}"
    )
    test = lists_for(train, args.task, users)
    single = {name: recall_per_user(c, truth, K) for name, c in test.items()}
    print("test recall@20 of each source alone:", {n: round(float(v.mean()), 4) for n, v in single.items()})
    print(f"  ({time.perf_counter() - t0:.0f}s)", flush=True)
    additions = [(n, float(w)) for n, _, w in (a.partition("=") for a in args.fixed.split(",") if a)]
    if additions:
        print_gains("test", test, truth, args.base, additions)
    for carve in args.carves.split(","):
        spec, _, frac = carve.partition("@")
        seed, tilt = (int(spec[1:]), 0.0) if spec[0] == "r" else (0, float(spec[1:]))
        fraction = float(frac) if frac and frac != "loo" else 0.2
        val_train, val_truth = carve_validation(
            train, args.task, fraction=fraction, seed=seed, tilt=tilt, leave_out=int(frac == "loo")
        )
        vu = np.flatnonzero(np.diff(val_truth.indptr) > 0)
        vu = np.sort(np.random.default_rng(seed).choice(vu, min(args.val_users, len(vu)), replace=False))
        excl = exclusion_matrix(val_train, args.task)
        vpop = np.diff(excl.tocsc().indptr) * (pop.sum() / max(np.diff(excl.tocsc().indptr).sum(), 1))
        print(
            f"carve {carve}: held-out items' mean training popularity (scaled) {vpop[val_truth.indices].mean():.1f}"
        )
        val = lists_for(val_train, args.task, vu)
        if additions:
            print_gains(f"carve {carve} ({len(vu)} users)", val, val_truth[vu], args.base, additions)
            continue
        for gate, shift in (("plain", None), ("shifted view", popularity_weights(excl))):
            weights, fused, val_single = coordinate_ascent(val, val_truth[vu], K, item_weights=shift)
            weights = {n: w for n, w in weights.items() if w}
            f, _ = fuse(test, weights)
            recall = recall_per_user(f, truth, K)
            ids, _ = top_k_csr(f, K)
            ndcg = ndcg_at_k(hit_matrix(ids, truth), np.diff(truth.indptr), K)
            first = max(val_single, key=val_single.get)
            diff = recall - single[first]
            half = 1.96 * diff.std(ddof=1) / np.sqrt(len(diff))
            print(
                f"  {gate:12s} picks {weights} (validation recall {fused:.4f}, best single "
                f"{max(val_single.values()):.4f}): test recall@20 "
                f"{recall.mean():.4f} ndcg@20 {ndcg.mean():.4f}; minus {first} alone {diff.mean():+.4f} ± {half:.4f}",
                flush=True,
            )
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
