"""Ranking what the walk kernels (:mod:`graph.walk_kernels`) collected: a top-k heap
(score desc, ties by the smaller id), exclusion marks from CSR rows, the scores, and
:func:`_emit_top_k`, which ends every query of every kernel (exclude, keep the best k,
write them, clear the counters).

Internal to :mod:`graph.walks`: numba functions called from the kernels.
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit
from numba.extending import overload

from graph.walk_primitives import _share_cache_stamp

# ---------------------------------------------------------------------------
# top-k selection: a heap of the best k (score desc, id asc) seen so far


@njit(inline="always", cache=True)
def _better(s1, i1, s2, i2):
    return s1 > s2 or (s1 == s2 and i1 < i2)


@njit(cache=True)
def _heap_push(hs, hi, size, k, s, i):
    """Offer (s, i) to a heap whose root is the worst kept item; returns the new size."""
    if k <= 0:
        return size
    if size < k:
        pos = size
        hs[pos] = s
        hi[pos] = i
        size += 1
        while pos > 0:
            parent = (pos - 1) >> 1
            if _better(hs[parent], hi[parent], hs[pos], hi[pos]):
                hs[parent], hs[pos] = hs[pos], hs[parent]
                hi[parent], hi[pos] = hi[pos], hi[parent]
                pos = parent
            else:
                break
        return size
    if not _better(s, i, hs[0], hi[0]):
        return size
    hs[0] = s
    hi[0] = i
    _sift_down(hs, hi, 0, size)
    return size


@njit(inline="always", cache=True)
def _sift_down(hs, hi, pos, size):
    while True:
        left = 2 * pos + 1
        right = left + 1
        worst = pos
        if left < size and _better(hs[worst], hi[worst], hs[left], hi[left]):
            worst = left
        if right < size and _better(hs[worst], hi[worst], hs[right], hi[right]):
            worst = right
        if worst == pos:
            return
        hs[pos], hs[worst] = hs[worst], hs[pos]
        hi[pos], hi[worst] = hi[worst], hi[pos]
        pos = worst


@njit(cache=True)
def _heap_drain(hs, hi, size, out_ids, out_scores):
    """Write the heap best-first into out_ids/out_scores (rest stays -1 / 0)."""
    n = size
    while n > 0:
        out_ids[n - 1] = hi[0]
        out_scores[n - 1] = hs[0]
        n -= 1
        hs[0] = hs[n]
        hi[0] = hi[n]
        _sift_down(hs, hi, 0, n)


# ---------------------------------------------------------------------------
# exclusions


@njit(inline="always", cache=True)
def _mark_row(mark, ex_indptr, ex_indices, node, value):
    if node < ex_indptr.shape[0] - 1:
        for j in range(ex_indptr[node], ex_indptr[node + 1]):
            mark[ex_indices[j]] = value


@njit(inline="always", cache=True)
def _set_marks(mark, node, ex_indptr, ex_indices, ex2_indptr, ex2_indices, self_index, value):
    _mark_row(mark, ex_indptr, ex_indices, node, value)
    _mark_row(mark, ex2_indptr, ex2_indices, node, value)
    if self_index >= 0:
        mark[self_index] = value


# ---------------------------------------------------------------------------
# scores: how _emit_top_k scores a candidate, picked at compile time by the type of ``how``

#: Score: the value itself.
Value = namedtuple("Value", "")
#: Score: the value where it is positive; other nodes are no candidates.
PositiveValue = namedtuple("PositiveValue", "")
#: Score: the value as a fraction of ``total``.
Fraction = namedtuple("Fraction", "total")


def _score(how, vals, v):
    """Score of node ``v`` from ``vals`` as ``how`` says: non-negative, or -1 for a node
    that is no candidate. Compiled code only: numba picks the formula by the type of
    ``how`` (the overloads below; the kernels add their own).

    A formula that reads an array held in ``how`` should read all it needs from ``how``
    before it branches: numba then releases its reference to the array at once, instead
    of counting it up and down for every candidate (a few per cent of a Pixie query)."""
    raise NotImplementedError("_score is only callable from numba-compiled code")


@overload(_score, inline="always")
def _score_generic(how, vals, v):
    kind = getattr(how, "instance_class", None)
    if kind is Value:
        return lambda how, vals, v: np.float64(vals[v])
    if kind is PositiveValue:
        return lambda how, vals, v: np.float64(vals[v]) if vals[v] > 0.0 else -1.0
    if kind is Fraction:
        return lambda how, vals, v: np.float64(vals[v]) / how.total
    return None


# ---------------------------------------------------------------------------
# the end of every query: exclude, keep the best k, write them, clear the counters


@njit(cache=True)
def _new_results(nq, k):
    """Result arrays for ``nq`` queries: (ids (nq, k) int64 all -1, scores (nq, k) float32 all 0)."""
    return np.full((nq, k), -1, dtype=np.int64), np.zeros((nq, k), dtype=np.float32)


@njit(cache=True)
def _new_heap(k):
    """Scratch for a top-``k`` heap: (scores float64, ids int64)."""
    return np.empty(max(k, 1), dtype=np.float64), np.empty(max(k, 1), dtype=np.int64)


@njit(cache=True)
def _no_rows():
    """Exclusion CSR with no rows (every node is past its end): nothing excluded."""
    return np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int32)


@njit(cache=True)
def _emit_top_k(how, vals, touched, n_t, node, self_index, excl, mark, heap, out_ids, out_scores):
    """Write the best ``len(out_ids)`` of the candidates ``touched[:n_t]``, scored from
    ``vals`` as ``how`` says (:func:`_score`), best first into ``out_ids`` / ``out_scores``
    (the rest stays -1 / 0).

    Left out: the rows ``node`` of the two exclusion CSRs ``excl`` = (indptr, indices,
    indptr2, indices2), ``self_index`` (when >= 0) and nodes scored below 0. ``vals`` is
    zeroed over ``touched[:n_t]`` (excluded or not), ``mark`` (scratch, one zeroed flag per
    node) is left zeroed; ``heap`` is the scratch from :func:`_new_heap`."""
    ex_indptr, ex_indices, ex2_indptr, ex2_indices = excl
    hs, hi = heap
    k = out_ids.shape[0]
    _set_marks(mark, node, ex_indptr, ex_indices, ex2_indptr, ex2_indices, self_index, 1)
    size = 0
    for j in range(n_t):
        v = touched[j]
        if mark[v] == 0:
            s = _score(how, vals, v)
            if not s < 0.0:
                size = _heap_push(hs, hi, size, k, s, v)
        vals[v] = 0
    _set_marks(mark, node, ex_indptr, ex_indices, ex2_indptr, ex2_indices, self_index, 0)
    _heap_drain(hs, hi, size, out_ids, out_scores)


_share_cache_stamp(globals())
