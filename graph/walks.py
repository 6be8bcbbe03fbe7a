"""Random-walk kernels over snapshot CSR arrays (numba), parallel across queries.

Every kernel takes CSR arrays (``indptr`` int64, ``indices`` int32 and, for weighted
sampling, a ``sampler``: the row-local alias tables ``(prob float32, alias int32)``
aligned with ``indices`` from :func:`alias_table`; None means uniform), the query
nodes, a ``seed`` and a thread count, and returns plain arrays. Each has a slow
pure-Python twin in :mod:`graph.walks_reference` that follows the same random stream,
so tests compare results exactly.

This module is the Python API (validation, thread count, scratch memory); the compiled
kernels are in :mod:`graph.walk_kernels`, built from the sampling primitives in
:mod:`graph.walk_primitives` and the top-k finalisation in :mod:`graph.walk_topk`.

Conventions shared by all kernels

* A *step* is one edge traversal. Restarts (teleports back to the query) are not steps.
* Randomness: a splitmix64 stream per (seed, query node, walker), so results depend on
  the seed only, never on the thread count or on how queries are split among threads.
* Walkers are interleaved: each query runs ``n_walkers`` independent walkers that cross
  one edge each per round, in lockstep phases (draw the slot, resolve the alias, follow
  the edge, count) where every phase prefetches what the walker's next phase reads. On
  graphs larger than the caches the misses of different walkers then overlap instead of
  stalling one after the other (about 3x faster than one walker at a time).
* Results are top-``k`` ``(ids int64, scores float32)`` per query, best first, ties broken
  by the smaller id; ids are -1 (score 0) where there are fewer than ``k`` candidates.
  Exclusions are given as CSR rows per query node (e.g. the user's engaged tweets).
* Scratch memory: one dense row per thread chunk of size ``n_nodes``, kept zeroed between
  calls and reused (per Python thread), so a single query costs no allocation proportional
  to the graph.
* Threads: each kernel is compiled twice (:class:`graph.kernels.TwinKernel`); a call with one chunk of work
  (a single query, or one thread) runs the serial twin and never starts numba's threading
  layer, so a server may fork workers after fitting and serve one user per call in them.
"""

from __future__ import annotations

import functools
import logging
import math
import threading

import numba
import numpy as np

from graph.errors import InputError
from graph.walk_kernels import (
    PixieGraph,
    PixieSettings,
    PowerSettings,
    PprSettings,
    SalsaSettings,
    _alternating_walks_kernel,
    _fof_kernel,
    _pixie_kernel,
    _ppr_mc_kernel,
    _ppr_power_kernel,
    _salsa_kernel,
)
from graph.walk_primitives import _alias_kernel

log = logging.getLogger(__name__)

__all__ = [
    "alias_table",
    "empty_csr",
    "random_walks",
    "alternating_walks",
    "pixie_walks",
    "ppr_power",
    "ppr_montecarlo",
    "salsa_walks",
    "fof_scores",
    "thread_count",
]

#: Personalized PageRank defaults (both modes), declared once: the candidate sources in
#: ``retrieval.walk_sources`` and the reference twins take them from here.
PPR_RESTART_PROB = 0.15
PPR_POWER_ITERATIONS = 30
PPR_POWER_TOL = 1e-6

# ---------------------------------------------------------------------------
# Python entry points: validation, thread count, scratch memory


def thread_count(n_threads: int | None) -> int:
    """Threads to use: ``n_threads`` or, when None, numba's configured maximum."""
    if n_threads is None:
        return int(numba.config.NUMBA_NUM_THREADS)
    if int(n_threads) < 1:
        raise InputError(f"n_threads must be >= 1, got {n_threads}")
    return min(int(n_threads), int(numba.config.NUMBA_NUM_THREADS))


def _set_threads(n_threads: int | None) -> int:
    n = thread_count(n_threads)
    numba.set_num_threads(n)
    return n


_scratch_local = threading.local()


def _scratch(kind: str, n_chunks: int, n: int, dtype) -> np.ndarray:
    """(n_chunks, n) scratch reused per Python thread. Kernels leave it zeroed, except
    kinds ending in ``.list`` (lists of touched nodes, written before they are read)."""
    cache = getattr(_scratch_local, "arrays", None)
    if cache is None:
        cache = _scratch_local.arrays = {}
    key = (kind, np.dtype(dtype).str)
    arr = cache.get(key)
    if arr is None or arr.shape[1] != n or arr.shape[0] < n_chunks:
        arr = np.zeros((n_chunks, n), dtype=dtype)
        cache[key] = arr
    return arr[:n_chunks]


def _n_chunks(n_queries: int, n_threads: int) -> int:
    return max(1, min(n_queries, n_threads))


def empty_csr(n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """CSR with ``n_rows`` empty rows (no exclusions)."""
    return np.zeros(n_rows + 1, dtype=np.int64), np.zeros(0, dtype=np.int32)


def _rows(csr, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """The (indptr, indices) pair of an exclusion CSR; None: ``n_rows`` empty rows."""
    return empty_csr(n_rows) if csr is None else (csr[0], csr[1])


def alias_table(indptr: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-local alias tables ``(prob float32, alias int32)`` for sampling each row's
    edges in proportion to ``weights`` (finite, non-negative, one per edge): the
    ``sampler`` argument of the kernels. Rows whose weights are all zero are dead ends."""
    indptr = np.ascontiguousarray(indptr, dtype=np.int64)
    w = np.ascontiguousarray(weights, dtype=np.float64)
    if w.shape[0] != int(indptr[-1]):
        raise InputError(f"weights has {w.shape[0]} entries, the CSR has {int(indptr[-1])} edges")
    if w.size and not (np.isfinite(w).all() and (w >= 0).all()):
        raise InputError("edge weights must be finite and non-negative")
    prob = np.zeros(w.shape[0], dtype=np.float32)
    alias = np.zeros(w.shape[0], dtype=np.int32)
    _alias_kernel.pick(numba.get_num_threads())(indptr, w, prob, alias)
    return prob, alias


def _as_queries(queries, n_nodes: int, what: str) -> np.ndarray:
    q = np.ascontiguousarray(np.asarray(queries, dtype=np.int64).reshape(-1))
    if q.size and (q.min() < 0 or q.max() >= n_nodes):
        bad = q[(q < 0) | (q >= n_nodes)][:5].tolist()
        raise InputError(f"{what} index out of range [0, {n_nodes}): {bad}")
    return q


def _check_prob(name: str, value: float, *, allow_zero: bool, allow_one: bool) -> float:
    v = float(value)
    lo_ok = v >= 0.0 if allow_zero else v > 0.0
    hi_ok = v <= 1.0 if allow_one else v < 1.0
    if not (lo_ok and hi_ok):
        raise InputError(
            f"{name} must be in {'[' if allow_zero else '('}0, 1{']' if allow_one else ')'}, got {value}"
        )
    return v


def _check_seed(seed: int) -> int:
    if int(seed) < 0:
        raise InputError(f"seed must be a non-negative integer, got {seed}")
    return int(seed)


def _check_k(k: int) -> int:
    if int(k) < 0:
        raise InputError(f"k must be >= 0, got {k}")
    return int(k)


def _check_min(name: str, value: float, least: float) -> float:
    if value < least:
        raise InputError(f"{name} must be >= {least}, got {value}")
    return value


def _queries_and_k(indptr, queries, k: int, what: str) -> tuple[int, np.ndarray, int]:
    """(rows of CSR ``indptr``, the checked query nodes, the checked ``k``): the start of
    every top-k entry point."""
    n = len(indptr) - 1
    return n, _as_queries(queries, n, what), _check_k(k)


def _chunks(queries: np.ndarray, n_threads: int | None) -> int:
    """Thread chunks for ``queries`` (sets numba's thread count)."""
    return _n_chunks(len(queries), _set_threads(n_threads))


def _scratches(n_chunks: int, n: int, spec: str) -> tuple[np.ndarray, ...]:
    """A kernel's scratch: one :func:`_scratch` per ``"kind dtype"`` in the comma-separated ``spec``."""
    return tuple(_scratch(kind, n_chunks, n, dtype) for kind, dtype in _scratch_kinds(spec))


@functools.cache
def _scratch_kinds(spec: str) -> tuple[tuple[str, np.dtype], ...]:
    # parsed once per spec: a served call should not pay for it
    return tuple((kind, np.dtype(dtype)) for kind, dtype in (s.split() for s in spec.split(",")))


_EMPTY_F32 = np.zeros(0, dtype=np.float32)
_EMPTY_I32 = np.zeros(0, dtype=np.int32)


def _sampler(sampler, n_edges: int) -> tuple[np.ndarray, np.ndarray]:
    if sampler is None:
        return _EMPTY_F32, _EMPTY_I32
    prob, alias = sampler
    if len(prob) != n_edges or len(alias) != n_edges:
        raise InputError(
            f"sampler has {len(prob)} entries, the CSR has {n_edges} edges; build it with alias_table"
        )
    return np.ascontiguousarray(prob, dtype=np.float32), np.ascontiguousarray(alias, dtype=np.int32)


def random_walks(
    indptr, indices, starts, length: int, *, sampler=None, seed: int = 0, n_threads=None
) -> np.ndarray:
    """Walks of ``length`` steps from each start: (len(starts), length + 1) int64 node
    indices, -1 after a dead end."""
    # an alternating walk with the same CSR on even and odd steps
    csr = (indptr, indices)
    return alternating_walks(
        *csr, *csr, starts, length, a_sampler=sampler, b_sampler=sampler, seed=seed, n_threads=n_threads
    )


def alternating_walks(
    a_indptr,
    a_indices,
    b_indptr,
    b_indices,
    starts,
    length: int,
    *,
    a_sampler=None,
    b_sampler=None,
    seed=0,
    n_threads=None,
) -> np.ndarray:
    """Walks on a bipartite graph: even steps use CSR ``a`` (left -> right), odd steps
    CSR ``b`` (right -> left). Same layout as :func:`random_walks`."""
    threads = _set_threads(n_threads)
    starts = _as_queries(starts, len(a_indptr) - 1, "start node")
    a = (a_indptr, a_indices, *_sampler(a_sampler, len(a_indices)))
    b = (b_indptr, b_indices, *_sampler(b_sampler, len(b_indices)))
    return _alternating_walks_kernel.pick(_n_chunks(len(starts), threads))(
        a, b, starts, int(length), _check_seed(seed)
    )


def pixie_walks(
    ut_indptr,
    ut_indices,
    tu_indptr,
    tu_indices,
    fo_indptr,
    fo_indices,
    queries,
    k: int,
    *,
    ut_sampler=None,
    tu_sampler=None,
    exclude=None,
    exclude2=None,
    n_steps: int = 100_000,
    restart_prob: float = 0.5,
    followee_weight: float = 0.5,
    max_followees: int = 32,
    degree_c: float | None = None,
    n_p: int = 2_000,
    n_v: int = 4,
    beta: float = 0.0,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixie random walks (user -> tweet -> user ...) for each query user.

    Query nodes are the user and up to ``max_followees`` of its followees (``fo_*`` CSR),
    those with the largest Pixie scaling s = deg * (C - log deg), where
    ``C = degree_c`` or log(max user degree) + 1. The user walks 1 / (1 +
    ``followee_weight``) of ``n_steps``, the followees the rest, split in proportion to
    s (Pixie's allotment). Each query node walks until its budget is spent or ``n_p``
    tweets have ``n_v`` visits (``n_p <= 0``: never stop early), restarting with
    ``restart_prob`` after each tweet visit. Score of a tweet: n_steps * (sum over query
    nodes q of share_q * sqrt(visits_q / steps_q))^2 / deg(tweet)^beta: Pixie's
    multi-hit boost, weighted by the step shares (equal shares rank as Pixie's
    (sum_q sqrt(visits_q))^2; one query node gives its visit count). Tweets in the user's
    ``exclude`` / ``exclude2`` rows (CSR tuples) are left out.

    Returns (ids (n, k) int64, scores (n, k) float32, steps walked (n,) int64).
    """
    nu, queries, k = _queries_and_k(ut_indptr, queries, k, "user")
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=True, allow_one=True)
    _check_min("n_walkers", n_walkers, 1)
    _check_min("followee_weight", followee_weight, 0)
    _check_min("n_v", n_v, 1)
    if len(fo_indptr) - 1 != nu:
        raise InputError(f"follow CSR has {len(fo_indptr) - 1} rows, the engagement CSR {nu} users")
    if degree_c is None:
        max_deg = int(np.diff(ut_indptr).max(initial=1))
        degree_c = math.log(max(max_deg, 1)) + 1.0
    n_chunks = _chunks(queries, n_threads)
    graph = PixieGraph(
        ut_indptr,
        ut_indices,
        *_sampler(ut_sampler, len(ut_indices)),
        tu_indptr,
        tu_indices,
        *_sampler(tu_sampler, len(tu_indices)),
        fo_indptr,
        fo_indices,
    )
    ex = (*_rows(exclude, nu), *_rows(exclude2, nu))
    cfg = PixieSettings(
        n_steps=int(n_steps),
        restart_prob=restart_prob,
        followee_weight=float(followee_weight),
        max_followees=int(max_followees),
        log_c=float(degree_c),
        n_p=int(n_p),
        n_v=int(n_v),
        beta=float(beta),
        seed=_check_seed(seed),
        n_walkers=int(n_walkers),
    )
    n_tweets = len(tu_indptr) - 1
    scratch = _scratches(
        n_chunks,
        n_tweets,
        "pix_cur int32, pix_cur.list int32, pix_acc float64, pix_acc.list int32, pix_mark uint8",
    )
    return _pixie_kernel.pick(n_chunks)(graph, ex, queries, k, cfg, scratch)


def ppr_montecarlo(
    indptr,
    indices,
    queries,
    k: int,
    *,
    sampler=None,
    exclude=None,
    exclude_self: bool = False,
    restart_prob: float = PPR_RESTART_PROB,
    n_steps: int = 100_000,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Personalized PageRank by walks with restart: score = fraction of time spent at a
    node (an unbiased estimate of PPR). Returns (ids, scores, steps walked)."""
    n, queries, k = _queries_and_k(indptr, queries, k, "node")
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=False, allow_one=False)
    _check_min("n_walkers", n_walkers, 1)
    n_chunks = _chunks(queries, n_threads)
    graph = (indptr, indices, *_sampler(sampler, len(indices)))
    ex = _rows(exclude, n)
    cfg = PprSettings(
        restart_prob=restart_prob,
        n_steps=int(n_steps),
        exclude_self=bool(exclude_self),
        seed=_check_seed(seed),
        n_walkers=int(n_walkers),
    )
    scratch = _scratches(n_chunks, n, "ppr_visits int64, ppr.list int32, ppr_mark uint8")
    return _ppr_mc_kernel.pick(n_chunks)(graph, ex, queries, k, cfg, scratch)


def ppr_power(
    indptr,
    indices,
    queries,
    k: int,
    *,
    weights=None,
    exclude=None,
    exclude_self: bool = False,
    restart_prob: float = PPR_RESTART_PROB,
    n_iter: int = PPR_POWER_ITERATIONS,
    tol: float = PPR_POWER_TOL,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Personalized PageRank by sparse power iteration from e_u (deterministic).

    Same fixed point as ``networkx.pagerank(G, alpha=1 - restart_prob,
    personalization={u: 1})``: dangling mass returns to ``u``; edge ``weights`` (optional)
    make transitions proportional to weight. Stops after ``n_iter`` iterations or when
    the L1 change is below ``tol``; cost is the edges of the region reached.
    Returns (ids, scores, iterations)."""
    n, queries, k = _queries_and_k(indptr, queries, k, "node")
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=False, allow_one=True)
    if weights is None:
        w = np.zeros(0, dtype=np.float64)
        row_sum = np.zeros(0, dtype=np.float64)
    else:
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape[0] != len(indices) or not (np.isfinite(w).all() and (w >= 0).all()):
            raise InputError("weights must be finite, non-negative and one per edge")
        row_sum = np.add.reduceat(np.append(w, 0.0), np.asarray(indptr[:-1])) * (np.diff(indptr) > 0)
    n_chunks = _chunks(queries, n_threads)
    ex = _rows(exclude, n)
    cfg = PowerSettings(
        restart_prob=restart_prob, n_iter=int(n_iter), tol=float(tol), exclude_self=bool(exclude_self)
    )
    scratch = _scratches(
        n_chunks,
        n,
        "pw_x float64, pw_y float64, pw_flag uint8, pw_x.list int32, pw_y.list int32, pw_mark uint8",
    )
    return _ppr_power_kernel.pick(n_chunks)((indptr, indices, w, row_sum), ex, queries, k, cfg, scratch)


def salsa_walks(
    indptr,
    indices,
    queries,
    k: int,
    *,
    sampler=None,
    exclude=None,
    n_hubs: int = 200,
    cot_steps: int = 20_000,
    cot_restart: float = 0.3,
    n_steps: int = 50_000,
    restart_prob: float = 0.3,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SALSA as in WTF over the follow CSR ``indptr/indices``.

    Hubs: the user's circle of trust (the user plus the top ``n_hubs - 1`` users by
    Monte Carlo PPR with ``cot_steps`` steps). Authorities: whom the hubs follow.
    Walkers alternate hub -> authority -> hub over the bipartite graph; after each
    authority visit they restart with ``restart_prob`` at a hub drawn by trust (PPR
    visits). Score of an authority: its visits. The user and the rows of ``exclude``
    are left out. Returns (ids, scores, steps walked, not counting the circle of trust).
    """
    n, queries, k = _queries_and_k(indptr, queries, k, "user")
    cot_restart = _check_prob("cot_restart", cot_restart, allow_zero=False, allow_one=False)
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=True, allow_one=True)
    _check_min("n_hubs", n_hubs, 1)
    _check_min("n_walkers", n_walkers, 1)
    n_chunks = _chunks(queries, n_threads)
    graph = (indptr, indices, *_sampler(sampler, len(indices)))
    ex = _rows(exclude, n)
    cfg = SalsaSettings(
        n_hubs=int(n_hubs),
        cot_steps=int(cot_steps),
        cot_restart=cot_restart,
        n_steps=int(n_steps),
        restart_prob=restart_prob,
        seed=_check_seed(seed),
        n_walkers=int(n_walkers),
    )
    scratch = _scratches(n_chunks, n, "sal_visits int64, sal.list int32, sal_local int32, sal_mark uint8")
    return _salsa_kernel.pick(n_chunks)(graph, ex, queries, k, cfg, scratch)


def fof_scores(
    indptr, indices, queries, k: int, *, exclude=None, normalize: bool = False, n_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Friends of friends: score(v) = number of the user's followees who follow v (or,
    with ``normalize``, the sum of 1 / out-degree of those followees: two-step PPR).
    The user and the rows of ``exclude`` are left out. Returns (ids, scores)."""
    n, queries, k = _queries_and_k(indptr, queries, k, "user")
    n_chunks = _chunks(queries, n_threads)
    scratch = _scratches(n_chunks, n, "fof_acc float64, fof.list int32, fof_mark uint8")
    return _fof_kernel.pick(n_chunks)(
        (indptr, indices), _rows(exclude, n), queries, k, bool(normalize), scratch
    )
