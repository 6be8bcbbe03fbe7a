"""Compiled hard-negative selection for BPR on CPU (dynamic negative sampling).

For each (positive, slot), :func:`hardest_negatives` scores the slot's uniform candidate
targets against the user's embedding and keeps the best one that is not a training positive
of that user. One fused pass: no ``(B, m, c, dim)`` gather is materialised and positives are
found by a binary search in the user's own sorted list rather than over every key. The torch
path of :meth:`gnn.trainer.Trainer._bpr_negatives` (rejection-sampled candidates, scored with
``einsum``, :func:`gnn.trainer.hardest_of`) is the reference it is tested against, and the
path used on GPUs.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(parallel=True, cache=True)
def _hardest_kernel(user_vecs, table, users, indptr, targets, cand, out):  # pragma: no cover - compiled
    n_rows, n_slots, n_cand = cand.shape
    dim = user_vecs.shape[1]
    for b in prange(n_rows):
        u = users[b]
        lo0, hi0 = indptr[u], indptr[u + 1]
        for s in range(n_slots):
            best = -1
            best_score = -np.inf
            for j in range(n_cand):
                t = cand[b, s, j]
                lo, hi = lo0, hi0  # binary search for t in the user's sorted positives
                while lo < hi:
                    mid = (lo + hi) >> 1
                    if targets[mid] < t:
                        lo = mid + 1
                    else:
                        hi = mid
                if lo < hi0 and targets[lo] == t:
                    continue
                score = np.float32(0.0)
                for d in range(dim):
                    score += user_vecs[b, d] * table[t, d]
                if score > best_score:  # strict: ties keep the first candidate
                    best_score = score
                    best = t
            out[b, s] = best


def hardest_negatives(
    user_vecs: np.ndarray,
    target_vecs: np.ndarray,
    users: np.ndarray,
    indptr: np.ndarray,
    targets: np.ndarray,
    candidates: np.ndarray,
) -> np.ndarray:
    """``(B, m)``: per row and slot, the highest-scoring candidate that is not a positive.

    ``user_vecs`` (B, dim) are the rows' user embeddings, ``target_vecs`` (n_targets, dim) the
    target embeddings, ``candidates`` (B, m, c) target indices; user ``users[b]``'s positives
    are ``targets[indptr[u]:indptr[u + 1]]``, sorted. Candidates that are positives are
    skipped; a slot whose candidates are all positives gets -1 (the caller redraws it).
    Ties go to the first candidate.
    """
    cand = np.ascontiguousarray(candidates, dtype=np.int64)
    if cand.ndim != 3 or cand.shape[0] != len(users) or len(user_vecs) != len(users):
        raise ValueError(
            f"candidates {cand.shape} and user_vecs {np.shape(user_vecs)} must have len(users) rows"
        )
    out = np.empty(cand.shape[:2], np.int64)
    _hardest_kernel(
        np.ascontiguousarray(user_vecs, dtype=np.float32),
        np.ascontiguousarray(target_vecs, dtype=np.float32),
        np.ascontiguousarray(users, dtype=np.int64),
        np.ascontiguousarray(indptr, dtype=np.int64),
        np.ascontiguousarray(targets, dtype=np.int64),
        cand,
        out,
    )
    return out
