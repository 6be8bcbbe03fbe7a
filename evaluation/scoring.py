"""Batched scoring shared by methods that score every item: mask training items, take the top k.

:class:`ScoringMethod` implements the method contract's ``recommend`` on top of a
``_score(users) -> (len(users), n_items)`` matrix, one batch of users at a time, with the
training items (and the user, for follows) masked from the snapshot's CSR arrays and the
top k found with ``np.argpartition``. No Python loop per user.
"""

from __future__ import annotations

import itertools
import logging
import time

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

from evaluation.tasks import check_task, exclusion_matrix, n_items
from graph.errors import InputError
from graph.kernels import TwinKernel
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)


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
def _top_k_csr(indptr, indices, data, k, out_ids, out_vals) -> None:
    for r in prange(len(indptr) - 1):
        lo, hi = indptr[r], indptr[r + 1]
        _heap_select(data[lo:hi], indices[lo:hi].astype(np.int64), k, out_ids[r], out_vals[r])


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


def top_k_csr(m: sp.csr_matrix, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` over the stored entries of each CSR row (missing entries are no candidates)."""
    m = sp.csr_matrix(m)
    ids = np.full((m.shape[0], k), -1, dtype=np.int64)
    vals = np.full((m.shape[0], k), -np.inf, dtype=np.float32)
    if k > 0 and m.shape[0]:
        _top_k_csr.pick(m.shape[0])(
            m.indptr.astype(np.int64), m.indices, m.data.astype(np.float32), k, ids, vals
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


def check_users(users: np.ndarray, n_users: int) -> np.ndarray:
    """Users as an int64 array of valid dense indices, or :class:`InputError`."""
    users = np.asarray(users)
    if users.ndim != 1 or (users.size and users.dtype.kind not in "iu"):
        raise InputError(
            f"users must be a 1-d array of dense user indices, got shape {users.shape} dtype {users.dtype}"
        )
    users = users.astype(np.int64, copy=False)
    if users.size and (users.min() < 0 or users.max() >= n_users):
        bad = users[(users < 0) | (users >= n_users)][:5].tolist()
        raise InputError(f"user indices {bad} out of range [0, {n_users})")
    return users


def check_k(k: int) -> int:
    if not isinstance(k, int | np.integer) or k < 1:
        raise InputError(f"k must be a positive integer, got {k!r}")
    return int(k)


class ScoringMethod:
    """Base class for methods that can score every item for a batch of users.

    Subclasses set ``name``/``tasks``, store hyper-parameters in ``__init__``, build their model
    in ``_fit(train, task)`` and return a dense float32 ``(len(users), n_items)`` matrix from
    ``_score(users)``. ``timings`` accumulates the seconds spent scoring and selecting.
    """

    name = ""
    tasks: tuple[str, ...] = ("tweets", "follows")
    #: hyper-parameter grid searched on validation data by ``--tune``; {} = nothing to tune
    param_grid: dict[str, list] = {}
    #: users scored per batch (memory: batch_size x n_items float32)
    batch_size = 2048

    def __init__(self, **params):
        self.params = params

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_params().items())
        return f"{type(self).__name__}({args})"

    def get_params(self) -> dict:
        return dict(self.params)

    @classmethod
    def grid(cls, train: GraphSnapshot, task: str) -> list[dict]:
        """The configurations ``--tune`` tries (cartesian product of ``param_grid``)."""
        if not cls.param_grid:
            return []  # nothing to tune (not one empty configuration: that would fit the method for nothing)
        keys = list(cls.param_grid)
        return [dict(zip(keys, values)) for values in itertools.product(*(cls.param_grid[k] for k in keys))]

    def fit(self, train: GraphSnapshot, task: str):
        check_task(task)
        if task not in self.tasks:
            raise InputError(f"method {self.name!r} supports task(s) {', '.join(self.tasks)}, not {task!r}")
        self.task_ = task
        self.n_users_ = train.n_users
        self.n_items_ = n_items(train, task)
        self.exclude_ = exclusion_matrix(train, task)
        self.timings = {"score_s": 0.0, "select_s": 0.0}
        self._fit(train, task)
        return self

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        raise NotImplementedError

    def _score(self, users: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "exclude_"):
            raise InputError(f"method {self.name!r}: call fit() before recommend()")
        users = check_users(users, self.n_users_)
        k = check_k(k)
        ids = np.full((len(users), k), -1, dtype=np.int64)
        vals = np.full((len(users), k), -np.inf, dtype=np.float32)
        for start in range(0, len(users), self.batch_size):
            ub = users[start : start + self.batch_size]
            t0 = time.perf_counter()
            scores = np.array(self._score(ub), dtype=np.float32, copy=True)
            t1 = time.perf_counter()
            mask_rows(scores, self.exclude_[ub])
            ids[start : start + len(ub)], vals[start : start + len(ub)] = top_k(scores, k)
            t2 = time.perf_counter()
            self.timings["score_s"] += t1 - t0
            self.timings["select_s"] += t2 - t1
        return ids, vals
