"""Why the hybrid's tuned fusion trails its spectral source on gowalla: a diagnosis, not a benchmark.

Fits the spectral (BSPM) and co-engagement sources on gowalla's training split, prints the
fused test recall@20 / NDCG@20 for a range of co-engagement weights, then the weight that the
hybrid's validation tuning (``retrieval.tuning.coordinate_ascent``) picks on carves of 20% and
10% of each user's training items, and the training popularity of test items against
validation items. About 8 minutes on 2 cores.

    python scripts/diagnose_gowalla_fusion.py --data-dir ../shared/datasets
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.metrics import hit_matrix, ndcg_at_k, recall_at_k  # noqa: E402
from evaluation.splits import build_protocol  # noqa: E402
from graph.ranking import top_k_csr  # noqa: E402
from retrieval import sources as cs  # noqa: E402
from retrieval.tuning import carve_validation, coordinate_ascent, exclusions, source_candidates  # noqa: E402

DEPTH = 300
WEIGHTS = (0.0, 0.02, 0.05, 0.1, 0.2)


def recall_ndcg(fused, truth, k: int = 20) -> tuple[float, float]:
    """Mean recall@k and NDCG@k (binary relevance) of fused candidate lists."""
    ids, _ = top_k_csr(fused, k)
    hits = hit_matrix(ids, truth)
    n_rel = np.diff(truth.indptr)
    return float(recall_at_k(hits, n_rel, k).mean()), float(ndcg_at_k(hits, n_rel, k).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", default="../shared/datasets")
    ap.add_argument("--val-users", type=int, default=4000)
    args = ap.parse_args()
    t0 = time.perf_counter()
    protocol = build_protocol("gowalla", "tweets", args.data_dir)
    train, users, truth = protocol.test.train, protocol.test.users, protocol.test.truth
    excl = exclusions(train, "tweets")
    cands = {}
    for name, src in (("spectral", cs.SpectralSource()), ("co_engagement", cs.CoEngagementSource())):
        t1 = time.perf_counter()
        src.fit(train)
        cands[name] = source_candidates(src.scores, users, excl, DEPTH)
        r, n = recall_ndcg(cands[name], truth)
        print(
            f"{name:14s} alone: test recall@20 {r:.4f} ndcg@20 {n:.4f} ({time.perf_counter() - t1:.0f}s)",
            flush=True,
        )
    for w in WEIGHTS:
        r, n = recall_ndcg(cands["spectral"] + w * cands["co_engagement"], truth)
        print(f"co_engagement weight {w:<5}: test recall@20 {r:.4f} ndcg@20 {n:.4f}", flush=True)

    pop = np.asarray(excl.sum(axis=0)).ravel()
    test_pop = pop[truth.indices]
    print(f"test items: mean training popularity {test_pop.mean():.1f}, median {np.median(test_pop):.0f}")
    for share in (0.2, 0.1):
        val_train, val_truth = carve_validation(train, "tweets", fraction=share, seed=0)
        vpop = np.asarray(exclusions(val_train, "tweets").sum(axis=0)).ravel()[val_truth.indices] / (
            1 - share
        )
        print(
            f"validation carve {share:.0%}: item popularity (scaled back) mean {vpop.mean():.1f}, "
            f"median {np.median(vpop):.0f}",
            flush=True,
        )
        vu = np.flatnonzero(np.diff(val_truth.indptr) > 0)
        vu = np.sort(np.random.default_rng(0).choice(vu, min(args.val_users, len(vu)), replace=False))
        vexcl = exclusions(val_train, "tweets")
        vc = {
            name: source_candidates(cls().fit(val_train).scores, vu, vexcl, DEPTH)
            for name, cls in (("spectral", cs.SpectralSource), ("co_engagement", cs.CoEngagementSource))
        }
        weights, fused, single = coordinate_ascent(vc, val_truth[vu], k=20)
        print(
            f"  tuning picks {weights}: validation recall@20 {fused:.4f} "
            f"(spectral alone {single['spectral']:.4f})",
            flush=True,
        )
    print(f"total {time.perf_counter() - t0:.0f}s")


if __name__ == "__main__":
    main()
