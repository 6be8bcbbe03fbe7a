"""Held-out carves: which rows of an edge list to hold out, and a snapshot without them.

The evaluation protocols split datasets with these rules, and every choice made on
validation data (fusion weights, the recommender's config) carves its validation set from
a training snapshot with :func:`carve_validation`, the same rule applied once more.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph.snapshot import GraphSnapshot, build_snapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, check_task, n_targets


def holdout_per_user(
    owner: np.ndarray,
    fraction: float,
    rng: np.random.Generator,
    weights: np.ndarray | None = None,
    count: int = 0,
) -> np.ndarray:
    """Boolean mask over rows: for each owner with d rows, floor(fraction*d + 0.5) random rows.

    ``count`` > 0 replaces the fraction: exactly ``count`` random rows of every owner with more
    than ``count`` rows (leave-``count``-out), none of the others.
    ``weights`` (> 0, one per row): draw each owner's rows without replacement with probability
    proportional to the weight (exponential race: the smallest ``Exp(1) / weight`` keys win);
    None draws uniformly."""
    owner = np.asarray(owner, dtype=np.int64)
    if len(owner) == 0:
        return np.zeros(0, dtype=bool)
    key = rng.random(len(owner))
    if weights is not None:
        key = -np.log1p(-key) / np.asarray(weights, np.float64)
    order = np.lexsort((key, owner))
    sorted_owner = owner[order]
    starts = np.flatnonzero(np.r_[True, sorted_owner[1:] != sorted_owner[:-1]])
    counts = np.diff(np.r_[starts, len(owner)])
    rank = np.arange(len(owner)) - np.repeat(starts, counts)
    if count > 0:
        n_hold = np.where(counts > count, count, 0).astype(np.int64)
    else:
        n_hold = np.floor(fraction * counts + 0.5).astype(np.int64)
    held = np.zeros(len(owner), dtype=bool)
    held[order] = rank < np.repeat(n_hold, counts)
    return held


def holdout_undirected(
    src: np.ndarray, dst: np.ndarray, fraction: float, rng: np.random.Generator, count: int = 0
) -> np.ndarray:
    """Mask over directed rows of a symmetric edge list: held-out friendships, both directions.

    Each friendship is owned by one of its two ends (a coin flip); ``fraction`` / ``count`` apply
    per owner as in :func:`holdout_per_user`."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    n = int(max(src.max(initial=-1), dst.max(initial=-1))) + 1
    lo, hi = np.minimum(src, dst), np.maximum(src, dst)
    pair_key = lo * n + hi
    pairs = np.unique(pair_key[lo != hi])
    pu, pv = pairs // n, pairs % n
    owner = np.where(rng.random(len(pairs)) < 0.5, pu, pv)
    held = holdout_per_user(owner, fraction, rng, count=count)
    # nobody loses every friendship: restore the held-out ones of such users
    deg = np.bincount(np.r_[pu, pv], minlength=n)
    lost = np.bincount(np.r_[pu[held], pv[held]], minlength=n)
    isolated = (deg - lost) == 0
    held &= ~(isolated[pu] | isolated[pv])
    return np.isin(pair_key, pairs[held]) & (lo != hi)


def is_symmetric(src: np.ndarray, dst: np.ndarray) -> bool:
    """True when every edge (a, b) also appears as (b, a)."""
    src = np.asarray(src, dtype=np.int64)
    dst = np.asarray(dst, dtype=np.int64)
    if len(src) == 0:
        return False
    n = int(max(src.max(), dst.max())) + 1
    fwd = np.unique(src * n + dst)
    rev = np.unique(dst * n + src)
    return len(fwd) == len(rev) and bool(np.array_equal(fwd, rev))


def carve_validation(
    snap: GraphSnapshot,
    task: str,
    fraction: float = 0.2,
    seed: int = 0,
    tilt: float = 0.0,
    leave_out: int = 0,
) -> tuple[GraphSnapshot, sp.csr_matrix]:
    """Hold out ``fraction`` of each user's items: (snapshot without them, held-out users x targets).

    ``leave_out`` > 0 holds out exactly that many items of every user with more (leave-one-out
    for 1) instead of a fraction: the carved graph keeps almost the whole graph's density.

    The rule of the evaluation protocols (``evaluation.splits``), applied to a training graph: every
    layer that tunes on held-out data (fusion weights, the recommender config) carves with this.
    ``tilt`` > 0 draws each user's held-out items with probability proportional to the item's
    popularity (engagements, or followers) to the power ``tilt``: a carve shifted towards the
    popular head (directed edges only; friendships are always carved uniformly).
    """
    check_task(task)
    rng = np.random.default_rng(seed)
    if task == TASK_TWEETS:
        indptr, indices = np.asarray(snap.eng_user_indptr), np.asarray(snap.eng_user_indices)
    else:
        indptr, indices = np.asarray(snap.follow_out_indptr), np.asarray(snap.follow_out_indices)
    owner = np.repeat(np.arange(snap.n_users), np.diff(indptr))
    if task == TASK_FOLLOWS and is_symmetric(owner, indices):
        # Friendships stored both ways: hold out both directions, or the reverse edge leaks the answer.
        held = holdout_undirected(owner, indices, fraction, rng, count=leave_out)
    else:
        weights = None
        if tilt:
            pop = np.bincount(indices, minlength=n_targets(snap, task)).astype(np.float64)
            weights = np.maximum(pop[indices], 1.0) ** tilt
        held = holdout_per_user(owner, fraction, rng, weights, count=leave_out)
    truth = sp.csr_matrix(
        (np.ones(int(held.sum()), np.float32), (owner[held], indices[held])),
        shape=(snap.n_users, n_targets(snap, task)),
    )
    truth.sum_duplicates()
    truth.data[:] = 1.0
    return snapshot_without(snap, task, held), truth


def snapshot_without(snap: GraphSnapshot, task: str, held: np.ndarray) -> GraphSnapshot:
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
    keep_f = ~held if task == TASK_FOLLOWS else np.ones(len(f_src), bool)
    keep_e = ~held if task == TASK_TWEETS else np.ones(len(e_u), bool)
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
