"""Ranked lists: masks, top-k with one tie rule, and the accuracy of a ranked list.

Every layer ranks the same way: higher score first, ties by lower column (target index),
masked (``-inf``) and NaN entries never ranked. :func:`top_k` (dense rows) and
:func:`top_k_csr` (the stored entries of CSR rows) are compiled (a size-k heap per row, rows
in parallel; one row runs on the serial twin, so a forked serving worker may call them one
user at a time); :func:`top_k_reference` is the slow, obviously-correct version tests compare
against. :func:`hit_matrix`, :func:`recall_at_k` and :func:`ndcg_at_k` are the all-item
protocol's accuracy (LightGCN paper), used by early stopping, fusion tuning and evaluation.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from graph.kernels import TwinKernel


def mask_rows(scores: np.ndarray, exclude_rows: sp.csr_matrix) -> np.ndarray:
    """Set ``scores[r, c] = -inf`` for every stored entry (r, c) of ``exclude_rows`` (in place)."""
    if exclude_rows.nnz:
        rows = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
        scores[rows, exclude_rows.indices] = -np.inf
    return scores


@njit(cache=True, inline="always")
def _worse(s_a: float, i_a: int, s_b: float, i_b: int) -> bool:
    """Ranking order: higher score first, then lower id; True when a ranks below b."""
    return s_a < s_b or (s_a == s_b and i_a > i_b)


@njit(cache=True, inline="always")
def _offer(hs, hi, size, k, v, c) -> int:
    """Offer (v, c) to the size-k heap whose root is the worst kept pair; returns the new size."""
    if not v > -np.inf:  # -inf (masked) or NaN: not a candidate
        return size
    if size < k:
        j = size
        while j > 0:  # sift up
            parent = (j - 1) // 2
            if _worse(v, c, hs[parent], hi[parent]):
                hs[j] = hs[parent]
                hi[j] = hi[parent]
                j = parent
            else:
                break
        hs[j] = v
        hi[j] = c
        return size + 1
    if _worse(hs[0], hi[0], v, c):
        _sift_down(hs, hi, size, v, c)
    return size


@njit(cache=True)
def _heap_select(vals, cols, k, out_ids, out_vals) -> None:
    """Best ``k`` (value, col) pairs of one row into ``out_*`` (best first); skips -inf and NaN.

    A size-k heap whose root is the worst kept pair: O(n log k), no full sort. A first pass over
    every ``stride``-th position fills the heap with good pairs from all over the row, so a row
    sorted by score (every value better than the last) does not make every value enter the heap.
    The result does not depend on the visiting order: ties are broken by column.
    """
    n = len(vals)
    hs = np.empty(k, np.float32)
    hi = np.empty(k, np.int64)
    size = 0
    stride = max(1, n // (16 * k))
    for p in range(0, n, stride):
        size = _offer(hs, hi, size, k, vals[p], cols[p])
    if stride > 1:
        for b in range(0, n, stride):
            for p in range(b + 1, min(b + stride, n)):
                v = vals[p]
                if size == k and v < hs[0]:  # the common case once the heap is full: rejected
                    continue
                size = _offer(hs, hi, size, k, v, cols[p])
    # pop the worst to the back until empty: best first
    for last in range(size - 1, -1, -1):
        out_vals[last] = hs[0]
        out_ids[last] = hi[0]
        if last > 0:
            _sift_down(hs, hi, last, hs[last], hi[last])


@njit(cache=True, inline="always")
def _sift_down(hs, hi, size, v, c) -> None:
    j = 0
    while True:
        left = 2 * j + 1
        if left >= size:
            break
        child = left
        right = left + 1
        if right < size and _worse(hs[right], hi[right], hs[left], hi[left]):
            child = right
        if _worse(hs[child], hi[child], v, c):
            hs[j] = hs[child]
            hi[j] = hi[child]
            j = child
        else:
            break
    hs[j] = v
    hi[j] = c


@TwinKernel
def _top_k_dense(scores, k, out_ids, out_vals) -> None:
    cols = np.arange(scores.shape[1])
    for r in prange(scores.shape[0]):
        _heap_select(scores[r], cols, k, out_ids[r], out_vals[r])


@TwinKernel
def _top_k_csr(indptr, indices, data, ex_indptr, ex_indices, k, out_ids, out_vals) -> None:
    """Top-k of each CSR row, the columns stored in the row's exclusion row (sorted) left out."""
    for r in prange(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        vals = data[lo:hi]
        cols = indices[lo:hi].astype(np.int64)
        ex = ex_indices[ex_indptr[r] : ex_indptr[r + 1]]
        if len(ex) and hi > lo:
            vals = vals.copy()
            pos = np.searchsorted(ex, cols)
            for j in range(len(cols)):
                if pos[j] < len(ex) and ex[pos[j]] == cols[j]:
                    vals[j] = -np.inf  # masked: _heap_select never keeps it
        _heap_select(vals, cols, k, out_ids[r], out_vals[r])


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` columns of each row, best first, ties by lower column index.

    Returns ``(ids int64, scores float32)`` of shape ``(n_rows, k)``; slots without a candidate
    (score ``-inf`` i.e. masked, NaN, or fewer than ``k`` columns) hold id ``-1`` and ``-inf``.
    Compiled (a size-k heap per row, rows in parallel); see ``top_k_reference``.
    """
    scores = np.ascontiguousarray(scores, dtype=np.float32)
    if scores.ndim != 2:
        raise ValueError(f"scores must be 2-d, got shape {scores.shape}")
    ids = np.full((scores.shape[0], k), -1, dtype=np.int64)
    vals = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    if k > 0 and scores.size:
        _top_k_dense.pick(scores.shape[0])(scores, k, ids, vals)  # one row: fork-safe serial twin
    return ids, vals


def top_k_csr(
    m: sp.csr_matrix, k: int, exclude_rows: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` over the stored entries of each CSR row (missing entries are no candidates),
    the entries also stored in ``exclude_rows`` (same rows) left out."""
    if not (sp.issparse(m) and m.format == "csr"):
        m = sp.csr_matrix(m)
    n = m.shape[0]
    if exclude_rows is not None and exclude_rows.nnz:
        if exclude_rows.shape[0] != n:
            raise ValueError(f"exclude_rows has {exclude_rows.shape[0]} rows, scores {n}")
        if not exclude_rows.has_sorted_indices:
            exclude_rows = exclude_rows.sorted_indices()
        ex_indptr, ex_indices = exclude_rows.indptr.astype(np.int64), exclude_rows.indices.astype(np.int64)
    else:
        ex_indptr, ex_indices = np.zeros(n + 1, np.int64), np.zeros(0, np.int64)
    ids = np.full((n, k), -1, dtype=np.int64)
    vals = np.full((n, k), -np.inf, dtype=np.float32)
    if k > 0 and n:
        _top_k_csr.pick(n)(
            m.indptr.astype(np.int64),
            m.indices,
            m.data.astype(np.float32, copy=False),
            ex_indptr,
            ex_indices,
            k,
            ids,
            vals,
        )
    return ids, vals


def top_k_reference(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Slow, obviously-correct :func:`top_k`: sort each row's candidates in Python."""
    scores = np.asarray(scores, dtype=np.float32)
    ids = np.full((scores.shape[0], k), -1, dtype=np.int64)
    vals = np.full((scores.shape[0], k), -np.inf, dtype=np.float32)
    for r, row in enumerate(scores):
        cand = [(-float(v), c) for c, v in enumerate(row) if v > -np.inf]
        for j, (neg, c) in enumerate(sorted(cand)[:k]):
            ids[r, j], vals[r, j] = c, -neg
    return ids, vals


def prune_rows(m: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """Keep the ``k`` largest stored entries of each CSR row (ties by lower column)."""
    ids, vals = top_k_csr(m, k)
    keep = ids >= 0
    rows = np.repeat(np.arange(m.shape[0]), keep.sum(axis=1))
    out = sp.csr_matrix((vals[keep], (rows, ids[keep])), shape=m.shape, dtype=np.float32)
    out.sort_indices()
    return out


def check_cutoff(hits: np.ndarray, k: int) -> None:
    if not 1 <= k <= hits.shape[1]:
        raise ValueError(f"k={k} must be between 1 and the list length {hits.shape[1]}")


def hit_matrix(topk: np.ndarray, truth: sp.csr_matrix) -> np.ndarray:
    """Boolean ``(n, K)``: is ``topk[u, j]`` among the relevant items of row ``u`` of ``truth``.

    Vectorised: (row, item) pairs are encoded as one int64 key and looked up with
    ``searchsorted`` in the sorted keys of ``truth``.
    """
    topk = np.asarray(topk)
    if topk.ndim != 2 or topk.shape[0] != truth.shape[0]:
        raise ValueError(f"topk has shape {topk.shape}; expected ({truth.shape[0]}, K)")
    truth = sp.csr_matrix(truth)
    truth.sum_duplicates()  # also sorts the indices, so keys are globally sorted
    n_rows, n_cols = truth.shape
    rows = np.repeat(np.arange(n_rows, dtype=np.int64), np.diff(truth.indptr))
    keys = rows * n_cols + truth.indices.astype(np.int64)
    if len(keys) == 0:
        return np.zeros(topk.shape, dtype=bool)
    valid = (topk >= 0) & (topk < n_cols)
    query = np.arange(n_rows, dtype=np.int64)[:, None] * n_cols + np.where(valid, topk, 0).astype(np.int64)
    pos = np.minimum(np.searchsorted(keys, query), len(keys) - 1)
    return valid & (keys[pos] == query)


def recall_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top ``k`` divided by the number of relevant items (0 when there are none)."""
    check_cutoff(hits, k)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    found = hits[:, :k].sum(axis=1)
    return np.divide(found, n_rel, out=np.zeros(len(n_rel)), where=n_rel > 0)


def rank_discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2, dtype=np.float64))


def ndcg_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Binary-relevance NDCG@k; the ideal DCG places min(#relevant, k) hits first."""
    check_cutoff(hits, k)
    disc = rank_discounts(k)
    dcg = hits[:, :k] @ disc
    ideal_n = np.minimum(np.asarray(n_relevant, dtype=np.int64), k)
    idcg = np.concatenate([[0.0], np.cumsum(disc)])[ideal_n]
    return np.divide(dcg, idcg, out=np.zeros(len(idcg)), where=idcg > 0)


def select_candidates(
    scores: np.ndarray | sp.spmatrix, k: int, exclude_rows: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """A candidate list per row: the best ``k`` positive scores, masked entries left out.

    ``scores`` is dense ``(n, n_targets)`` or sparse (only stored entries are candidates: a
    sparse row costs its entries, not the catalogue). Returns ``(ids int64, scores float32)`` of
    shape ``(n, k)``, best first, ties by lower id; empty slots hold id -1 and score 0.
    """
    k = max(int(k), 0)
    if sp.issparse(scores):
        ids, vals = top_k_csr(scores, k, exclude_rows)
    else:
        dense = np.array(scores, dtype=np.float32, copy=True)
        if exclude_rows is not None:
            mask_rows(dense, exclude_rows)
        ids, vals = top_k(dense, k)
    bad = ~(vals > 0)
    ids[bad] = -1
    vals[bad] = 0.0
    return ids, vals


def in_sorted(sorted_values: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Which ``queries`` occur in ``sorted_values`` (e.g. a canonical CSR row): a binary search
    each, so the cost is the queries' count times log of the row, never the row's full length
    or the number of columns."""
    queries = np.asarray(queries)
    if not len(sorted_values):
        return np.zeros(len(queries), bool)
    pos = np.minimum(np.searchsorted(sorted_values, queries), len(sorted_values) - 1)
    return np.asarray(sorted_values)[pos] == queries


def filter_lists(
    ids: np.ndarray, vals: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Ranked candidate lists (best first, ties by lower id, -1 / 0 padded) cut to ``k``, without
    non-positive scores and without the ids stored in the matching row of ``exclude_rows``.

    The same lists :func:`select_candidates` makes of ``lists_to_csr(ids, vals)``, for lists that
    are already ranked: order is kept, so no sort, and the cost is the lists' length.
    """
    ids = np.asarray(ids, np.int64)
    keep = (ids >= 0) & (np.asarray(vals) > 0)
    if exclude_rows is not None and exclude_rows.nnz:
        n = np.int64(max(exclude_rows.shape[1], int(ids.max(initial=0)) + 1))
        rows = np.arange(ids.shape[0], dtype=np.int64)[:, None]
        ex_rows = np.repeat(np.arange(exclude_rows.shape[0], dtype=np.int64), np.diff(exclude_rows.indptr))
        keep &= ~np.isin(rows * n + ids, ex_rows * n + exclude_rows.indices)
    order = np.argsort(~keep, axis=1, kind="stable")[:, : max(int(k), 0)]  # kept entries first, in order
    out_ids = np.take_along_axis(ids, order, axis=1)
    out_vals = np.take_along_axis(np.asarray(vals, np.float32), order, axis=1)
    kept = np.take_along_axis(keep, order, axis=1)
    out_ids[~kept], out_vals[~kept] = -1, 0.0
    if out_ids.shape[1] < k:  # pad to k columns like select_candidates
        pad = k - out_ids.shape[1]
        out_ids = np.pad(out_ids, ((0, 0), (0, pad)), constant_values=-1)
        out_vals = np.pad(out_vals, ((0, 0), (0, pad)))
    return out_ids, out_vals.astype(np.float32, copy=False)


def lists_to_csr(ids: np.ndarray, vals: np.ndarray, n_cols: int) -> sp.csr_matrix:
    """Candidate lists ``(ids, vals)`` (-1 = empty slot) as a CSR matrix, one row per list
    (indices sorted within each row; an id listed twice in a row is summed)."""
    ok = ids >= 0
    counts = ok.sum(axis=1)
    rows = np.repeat(np.arange(ids.shape[0]), counts)
    cols, data = ids[ok].astype(np.int32, copy=False), vals[ok].astype(np.float32)
    order = np.lexsort((cols, rows))
    cols, data = cols[order], data[order]
    if len(cols) > 1 and np.any((cols[1:] == cols[:-1]) & (rows[1:] == rows[:-1])):
        m = sp.csr_matrix((data, (rows, cols)), shape=(ids.shape[0], n_cols))
        m.sum_duplicates()
        return m
    # Built from its arrays directly: a served call makes a dozen of these, and the COO route
    # costs several times the few hundred entries it holds.
    indptr = np.zeros(ids.shape[0] + 1, dtype=np.int32)
    np.cumsum(counts, out=indptr[1:])
    return sp.csr_matrix((data, cols, indptr), shape=(ids.shape[0], n_cols))
