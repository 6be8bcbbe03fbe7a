"""Tune fusion weights on validation data carved from the training graph (never from test).

The carve holds out 20% of each user's training items (seeded); sources are fitted on the
rest, each source's top-``depth`` candidates for a sample of validation users are cached
once, and a coordinate ascent over a weight grid maximises recall@k of the fused lists. The
fused list only needs sparse sums of the cached candidates, so each trial costs milliseconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import numpy as np
import scipy.sparse as sp

from graph.snapshot import GraphSnapshot, build_snapshot
from retrieval.sources import KIND_FOLLOWS, KIND_TWEETS

log = logging.getLogger(__name__)

WEIGHT_GRID = (0.0, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5)


def interactions(snap: GraphSnapshot, kind: str) -> sp.csr_matrix:
    """Users x targets, 1 where the user engaged (tweets) or follows (follows)."""
    from graph.matrices import engagement_matrix, follow_matrix

    return engagement_matrix(snap) if kind == KIND_TWEETS else follow_matrix(snap)


def exclusions(snap: GraphSnapshot, kind: str) -> sp.csr_matrix:
    """Targets never to recommend: training items, plus the user themself for follows."""
    m = interactions(snap, kind).astype(np.float32)
    if kind == KIND_FOLLOWS:
        m = (m + sp.identity(snap.n_users, dtype=np.float32, format="csr")).tocsr()
    m.data[:] = 1.0
    return m.tocsr()


def carve_validation(
    snap: GraphSnapshot, kind: str, fraction: float = 0.2, seed: int = 0
) -> tuple[GraphSnapshot, sp.csr_matrix]:
    """Hold out ``fraction`` of each user's items: (snapshot without them, held-out users x targets).

    Same rule as the evaluation protocols (``evaluation.splits``), applied to the training graph.
    """
    rng = np.random.default_rng(seed)
    if kind == KIND_TWEETS:
        indptr, indices = np.asarray(snap.eng_user_indptr), np.asarray(snap.eng_user_indices)
    else:
        indptr, indices = np.asarray(snap.follow_out_indptr), np.asarray(snap.follow_out_indices)
    owner = np.repeat(np.arange(snap.n_users), np.diff(indptr))
    from evaluation.splits import holdout_per_user, holdout_undirected, is_symmetric

    if kind == KIND_FOLLOWS and is_symmetric(owner, indices):
        # Friendships stored both ways: hold out both directions, or the reverse edge leaks the answer.
        held = holdout_undirected(owner, indices, fraction, rng)
    else:
        held = holdout_per_user(owner, fraction, rng)
    n_targets = snap.n_tweets if kind == KIND_TWEETS else snap.n_users
    truth = sp.csr_matrix(
        (np.ones(int(held.sum()), np.float32), (owner[held], indices[held])), shape=(snap.n_users, n_targets)
    )
    truth.sum_duplicates()
    truth.data[:] = 1.0
    return snapshot_without(snap, kind, held), truth


def snapshot_without(snap: GraphSnapshot, kind: str, held: np.ndarray) -> GraphSnapshot:
    """The snapshot minus the held rows of its engagement (tweets) or follow (follows) CSR."""
    uid, tid = np.asarray(snap.user_ids), np.asarray(snap.tweet_ids)
    f_src = np.repeat(np.arange(snap.n_users), np.diff(snap.follow_out_indptr))
    f_dst = np.asarray(snap.follow_out_indices)
    f_ts = np.asarray(snap.follow_out_ts)
    e_u = np.repeat(np.arange(snap.n_users), np.diff(snap.eng_user_indptr))
    e_t = np.asarray(snap.eng_user_indices)
    e_cols = [
        np.asarray(snap.eng_user_kinds),
        np.asarray(snap.eng_user_ts),
        np.asarray(snap.eng_user_weights),
    ]
    keep_f = ~held if kind == KIND_FOLLOWS else np.ones(len(f_src), bool)
    keep_e = ~held if kind == KIND_TWEETS else np.ones(len(e_u), bool)
    author = np.asarray(snap.tweet_author)
    return build_snapshot(
        user_ids=uid,
        tweet_ids=tid,
        follow_src=uid[f_src[keep_f]],
        follow_dst=uid[f_dst[keep_f]],
        follow_ts=f_ts[keep_f],
        eng_user=uid[e_u[keep_e]],
        eng_tweet=tid[e_t[keep_e]],
        eng_kind=e_cols[0][keep_e],
        eng_ts=e_cols[1][keep_e],
        eng_weight=e_cols[2][keep_e],
        tweet_author=np.where(author >= 0, uid[np.maximum(author, 0)] if len(uid) else author, -1),
        tweet_created=np.asarray(snap.tweet_created),
        tweet_texts=snap.tweet_texts,
    )


def source_candidates(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    exclude: sp.csr_matrix,
    depth: int,
    batch_size: int = 1024,
) -> sp.csr_matrix:
    """Each user's top-``depth`` targets of one source, row-max normalised, as CSR (users x targets)."""
    from evaluation.scoring import mask_rows, top_k

    rows, cols, vals = [], [], []
    n_targets = exclude.shape[1]
    for lo in range(0, len(users), batch_size):
        ub = users[lo : lo + batch_size]
        s = np.array(score_fn(ub), dtype=np.float32, copy=True)
        mask_rows(s, exclude[ub])
        ids, v = top_k(s, depth)
        ok = (ids >= 0) & (v > 0)
        peak = np.where(ok, v, 0).max(axis=1, keepdims=True)
        v = np.divide(v, peak, out=np.zeros_like(v), where=peak > 0)
        r = np.repeat(np.arange(lo, lo + len(ub)), ok.sum(axis=1))
        rows.append(r)
        cols.append(ids[ok])
        vals.append(v[ok])
    cat = np.concatenate if rows else (lambda parts: np.zeros(0))
    return sp.csr_matrix((cat(vals), (cat(rows), cat(cols))), shape=(len(users), n_targets), dtype=np.float32)


def recall_per_user(fused: sp.csr_matrix, truth: sp.csr_matrix, k: int) -> np.ndarray:
    """Recall@k of each fused candidate list against ``truth`` (rows aligned)."""
    from evaluation.scoring import top_k_csr

    ids, _ = top_k_csr(fused, k)
    hits = np.zeros(ids.shape, np.float32)
    for j in range(ids.shape[1]):  # k columns, vectorised over users
        col = ids[:, j]
        ok = col >= 0
        hits[ok, j] = np.asarray(truth[np.flatnonzero(ok), col[ok]]).ravel()
    n_rel = np.maximum(np.diff(truth.indptr), 1)
    return hits.sum(axis=1) / n_rel


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
