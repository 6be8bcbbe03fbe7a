"""The search for fusion weights: coordinate ascent over a weight grid, gated by significance
under two views of the validation answers, on two carves.

A weight change is kept only when it gains at least ``z`` standard errors on the held-out
items as carved (plain recall) **and** on the same items weighted by their training
popularity (:data:`SHIFT_TILT`): the answers a served recommender meets later can lean to the
popular head more than a uniform carve of the history does (gowalla's test split: mean
training popularity of a test item 91.1, of a carved item 74.6), so a secondary source must
help under that shift too, or it stays off. Without a second view the rule is the plain gate.

The gain must also hold on every replica carve (:class:`Carve`; the tuner adds a leave-one-out
carve to its 20% one). The two carves differ in how much of the graph they keep (80% of each
user's history vs all but one item) and in which users and items they hold out: a fusion
that is better than its best source should show it on both, while a gain that comes from how
one carve was made (the thinner graph of a 20% carve favours neighbourhood sources) does not.
On gowalla every single carve rated the neighbourhood sources' additions positive (+0.003 to
+0.012 recall, z 2-9) where the test split rates each of them negative; no single carve,
re-weighting or tilt we tried predicted that, and the two carves disagreeing is what keeps
them off there (BENCHMARKS.md, issue 19).

:func:`retrieval.autotune.tune_config` caches each source's normalised candidate lists for a
sample of validation users once per carve; a trial is then a sparse weighted sum and a recall,
so it costs milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from graph.ranking import hit_matrix, recall_at_k, top_k_csr
from retrieval.fusion import fuse

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)
#: The shifted view weights each held-out target by (training popularity) ** SHIFT_TILT.
SHIFT_TILT = 1.0


def popularity_weights(exclude: sp.csr_matrix, tilt: float = SHIFT_TILT) -> np.ndarray:
    """Per-target weights of the shifted view: (training popularity, at least 1) ** ``tilt``,
    popularity counted over the rows of ``exclude`` (users x targets, the carved history)."""
    pop = np.diff(sp.csc_matrix(exclude).indptr).astype(np.float64)
    return np.maximum(pop, 1.0) ** tilt


def recall_per_user(
    fused: sp.csr_matrix, truth: sp.csr_matrix, k: int, item_weights: np.ndarray | None = None
) -> np.ndarray:
    """Recall@k of each fused candidate list against ``truth`` (rows aligned); with
    ``item_weights``, each target counts its weight (found weight / held-out weight)."""
    ids, _ = top_k_csr(fused, k)
    truth = truth.tocsr()
    hits = hit_matrix(ids, truth)
    if item_weights is None:
        return recall_at_k(hits, np.diff(truth.indptr), k)
    found = (hits[:, :k] * item_weights[np.maximum(ids[:, :k], 0)]).sum(axis=1)
    total = np.add.reduceat(np.r_[item_weights[truth.indices], 0.0], truth.indptr[:-1]) * (
        np.diff(truth.indptr) > 0
    )
    return np.divide(found, total, out=np.zeros(len(total)), where=total > 0)


def recall_of(fused: sp.csr_matrix, truth: sp.csr_matrix, k: int) -> float:
    """Mean recall@k of the fused candidate lists against ``truth``."""
    return float(recall_per_user(fused, truth, k).mean())


@dataclass(frozen=True)
class Carve:
    """One validation carve as the weight search sees it: each source's normalised lists for the
    carve's validation users, their held-out targets (rows aligned) and, for the shifted view,
    per-target weights (None: plain recall only)."""

    cands: dict[str, sp.csr_matrix]
    truth: sp.csr_matrix
    item_weights: np.ndarray | None = None

    def views(self) -> list[np.ndarray | None]:
        return [None] if self.item_weights is None else [None, np.asarray(self.item_weights, np.float64)]

    def recalls(self, weights: dict[str, float], k: int) -> list[np.ndarray]:
        """Per-user recall@k of the fused lists under ``weights``, one array per view (a source
        this carve has no lists for adds nothing)."""
        fused, _ = fuse(self.cands, {n: w for n, w in weights.items() if n in self.cands})
        return [recall_per_user(fused, self.truth, k, w) for w in self.views()]


def coordinate_ascent(
    cands: dict[str, sp.csr_matrix],
    truth: sp.csr_matrix,
    k: int,
    *,
    grid: Sequence[float] = WEIGHT_GRID,
    rounds: int = 2,
    z: float = 2.0,
    item_weights: np.ndarray | None = None,
    replicas: Sequence[Carve] = (),
) -> tuple[dict[str, float], float, dict[str, float]]:
    """Weights maximising recall@k of sum_s w_s * cands[s]; starts from the best single source.

    A change is kept only when its paired gain over the current weights is at least ``z``
    standard errors (per-user differences): validation noise must not buy a source weight
    that does not carry over to test. With ``item_weights`` (per target, e.g.
    :func:`popularity_weights`), the gain must also reach ``z`` standard errors in recall
    weighted by them (the shifted view; see the module docstring). Each of ``replicas``
    (other carves of the same graph, with the same sources) must show the gain as well, in
    each of its views. Returns (weights, validation recall, each single source's validation
    recall), measured on the first carve.
    """
    carves = [Carve(cands, truth, item_weights), *replicas]
    single = {name: float(recall_per_user(c, truth, k).mean()) for name, c in cands.items()}
    best_name = max(single, key=single.get)
    weights = {name: (1.0 if name == best_name else 0.0) for name in cands}
    current = [r for carve in carves for r in carve.recalls(weights, k)]

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
                per_user = [r for carve in carves for r in carve.recalls(trial, k)]
                gains = [_significant_gain(new - old, z) for new, old in zip(per_user, current)]
                if all(g is not None for g in gains) and (best_trial is None or gains[0] > best_trial[0]):
                    best_trial = (gains[0], trial, per_user)
            if best_trial is not None:
                _, weights, current = best_trial
                improved = True
        if not improved:
            break
    best = float(current[0].mean())
    log.info("fusion weights %s: validation recall@%d %.4f (single sources %s)", weights, k, best, single)
    return weights, best, single


def _significant_gain(diff: np.ndarray, z: float) -> float | None:
    """The mean of per-user differences if it is positive and at least ``z`` standard errors."""
    gain = float(diff.mean())
    stderr = float(diff.std(ddof=1) / np.sqrt(len(diff))) if len(diff) > 1 else 0.0
    return gain if gain > 0 and gain > z * stderr else None
