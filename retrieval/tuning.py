"""The search for fusion weights: coordinate ascent over a weight grid, gated by significance.

:func:`retrieval.autotune.tune_config` caches each source's normalised candidate lists for a
sample of validation users once; a trial is then a sparse weighted sum and a recall, so it
costs milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp

from graph.ranking import hit_matrix, recall_at_k, top_k_csr

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)


def recall_per_user(fused: sp.csr_matrix, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@k of each fused candidate list against ``truth`` (rows aligned)."""
    ids, _ = top_k_csr(fused, k)
    return recall_at_k(hit_matrix(ids, truth), np.diff(truth.tocsr().indptr), k)


def recall_of(fused: sp.csr_matrix, truth: sp.csr_matrix, k: int) -> float:
    """Mean recall@k of the fused candidate lists against ``truth``."""
    return float(recall_per_user(fused, truth, k).mean())


def coordinate_ascent(
    cands: dict[str, sp.csr_matrix],
    truth: sp.csr_matrix,
    k: int,
    *,
    grid: Sequence[float] = WEIGHT_GRID,
    rounds: int = 2,
    z: float = 2.0,
) -> tuple[dict[str, float], float, dict[str, float]]:
    """Weights maximising recall@k of sum_s w_s * cands[s]; starts from the best single source.

    A change is kept only when its paired gain over the current weights is at least ``z``
    standard errors (per-user differences): validation noise must not buy a source weight
    that does not carry over to test. Returns (weights, validation recall, each single
    source's validation recall).
    """
    single_per_user = {name: recall_per_user(c, truth, k) for name, c in cands.items()}
    single = {name: float(v.mean()) for name, v in single_per_user.items()}
    best_name = max(single, key=single.get)
    weights = {name: (1.0 if name == best_name else 0.0) for name in cands}
    current = single_per_user[best_name]

    def fused(w: dict[str, float]) -> sp.csr_matrix:
        total = None
        for name, c in cands.items():
            if w[name]:
                total = c * w[name] if total is None else total + c * w[name]
        return total

    for _ in range(rounds):
        improved = False
        for name in cands:
            if name == best_name:
                continue
            best_trial = None
            for value in grid:
                if value == weights[name]:
                    continue
                trial = {**weights, name: value}
                per_user = recall_per_user(fused(trial), truth, k)
                diff = per_user - current
                gain = float(diff.mean())
                stderr = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
                if gain > z * stderr and gain > 0 and (best_trial is None or gain > best_trial[0]):
                    best_trial = (gain, trial, per_user)
            if best_trial is not None:
                _, weights, current = best_trial
                improved = True
        if not improved:
            break
    best = float(current.mean())
    log.info("fusion weights %s: validation recall@%d %.4f (single sources %s)", weights, k, best, single)
    return weights, best, single
