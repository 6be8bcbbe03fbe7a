"""Random-walk kernels over snapshot CSR arrays (numba), parallel across queries.

Every kernel takes CSR arrays (``indptr`` int64, ``indices`` int32 and, for weighted
sampling, a ``sampler``: the row-local alias tables ``(prob float32, alias int32)``
aligned with ``indices`` from :func:`alias_table`; None means uniform), the query
nodes, a ``seed`` and a thread count, and returns plain arrays. Each has a slow
pure-Python twin in :mod:`graph.walks_reference` that follows the same random stream,
so tests compare results exactly.

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

import logging
import math
import threading

import numba
import numpy as np
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import intrinsic

from graph.errors import InputError
from graph.kernels import TwinKernel

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

# splitmix64 constants (Steele, Lea & Flood 2014).
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_INV53 = 1.0 / 9007199254740992.0  # 2**-53

_EMPTY_F32 = np.zeros(0, dtype=np.float32)


# ---------------------------------------------------------------------------
# random numbers


@njit(inline="always", cache=True)
def _mix(z):
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(inline="always", cache=True)
def _seed_state(seed, a, b):
    """Initial state of the stream for (seed, a, b); all non-negative integers."""
    s = _mix(np.uint64(seed) + _GOLDEN)
    s = _mix((s ^ np.uint64(a)) + _GOLDEN)
    return _mix((s ^ np.uint64(b)) + _GOLDEN)


@njit(inline="always", cache=True)
def _next(state):
    """Advance the stream: (new state, uniform float64 in [0, 1) with 53 random bits)."""
    state = state + _GOLDEN
    z = _mix(state)
    return state, np.float64(z >> _S11) * _INV53


# ---------------------------------------------------------------------------
# software prefetch: walkers are advanced in lockstep phases, and each phase
# prefetches what the walker's next phase will read, so cache misses of different
# walkers overlap instead of stalling one after the other.


@intrinsic
def _prefetch(typingctx, arr, idx):
    """Hint the CPU to load ``arr[idx]`` into cache (no effect on results)."""
    sig = types.void(arr, idx)

    def codegen(context, builder, signature, args):
        aryty, idxty = signature.args
        ary = context.make_array(aryty)(context, builder, args[0])
        ptr = builder.gep(ary.data, [context.cast(builder, args[1], idxty, types.intp)])
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32])
        fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
        # read, high temporal locality, data cache
        builder.call(fn, [builder.bitcast(ptr, i8p), i32(0), i32(3), i32(1)])
        return context.get_dummy_value()

    return sig, codegen


# ---------------------------------------------------------------------------
# sampling one neighbour


@njit(inline="always", cache=True)
def _first_above(cdf, lo, hi, target):
    """First j in [lo, hi) with cdf[j] > target (hi if none); cdf non-decreasing."""
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] > target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always", cache=True)
def _first_at_least(cdf, lo, hi, target):
    while lo < hi:
        mid = (lo + hi) >> 1
        if cdf[mid] >= target:
            hi = mid
        else:
            lo = mid + 1
    return lo


@njit(inline="always", cache=True)
def _sample_cdf(cdf, start, end, u):
    """Index in [start, end) drawn with probability proportional to the weights whose
    running sum is ``cdf[start:end]``; -1 when the row is empty or has no weight."""
    if end <= start:
        return -1
    total = cdf[end - 1]
    if not total > 0.0:
        return -1
    j = _first_above(cdf, start, end, u * total)
    if j == end:  # u * total rounded up to total
        j = _first_at_least(cdf, start, end, total)
    return j


# Weighted rows are sampled with row-local alias tables (Walker / Vose): per edge slot
# j a probability ``prob[j]`` (float32) and an alias ``alias[j]`` (int32, row-local
# offset; -1 in rows whose weights are all zero). A draw u in [0, 1) picks slot
# off = floor(u * deg) and keeps it when the fractional part of u * deg is below
# prob[j], else takes its alias: O(1), one select, no search. An empty ``prob`` array
# means uniform sampling.


@njit(inline="always", cache=True)
def _slot(start, end, u):
    """Slot position and the remaining uniform fraction for a draw ``u`` in a row."""
    deg = end - start
    f = u * deg
    off = np.int64(f)
    if off >= deg:
        off = deg - 1
    return start + off, f - off


@njit(inline="always", cache=True)
def _resolve(prob, alias, start, j, frac):
    """Edge position of slot ``j`` after the alias coin (-1 in an all-zero-weight row)."""
    if frac < prob[j]:
        return j
    a = alias[j]
    return np.int64(-1) if a < 0 else start + a


@njit(inline="always", cache=True)
def _choose(prob, alias, start, end, u):
    """Edge position in [start, end) drawn with ``u``; -1 if the row has no (weighted) edge."""
    if end <= start:
        return np.int64(-1)
    j, frac = _slot(start, end, u)
    if prob.shape[0] == 0:
        return j
    return _resolve(prob, alias, start, j, frac)


@njit(inline="always", cache=True)
def _pick(indptr, indices, prob, alias, node, u):
    """A neighbour of ``node`` (uniform when ``prob`` is empty, else weighted); -1 at a dead end."""
    j = _choose(prob, alias, indptr[node], indptr[node + 1], u)
    if j < 0:
        return np.int64(-1)
    return np.int64(indices[j])


@njit(inline="always", cache=True)
def _can_leave(indptr, prob, alias, node):
    """True when a walk at ``node`` has an edge to follow."""
    start = indptr[node]
    if indptr[node + 1] <= start:
        return False
    if prob.shape[0] == 0:
        return True
    return prob[start] > 0.0 or alias[start] >= 0


@TwinKernel
def _alias_kernel(indptr, weights, prob, alias):
    n = indptr.shape[0] - 1
    for r in prange(n):
        start = indptr[r]
        deg = indptr[r + 1] - start
        if deg == 0:
            continue
        total = 0.0
        best = 0
        for i in range(deg):
            total += weights[start + i]
            if weights[start + i] > weights[start + best]:
                best = i
        if not total > 0.0:
            for i in range(deg):
                prob[start + i] = 0.0
                alias[start + i] = -1
            continue
        p = np.empty(deg, dtype=np.float64)
        small = np.empty(deg, dtype=np.int64)
        large = np.empty(deg, dtype=np.int64)
        n_small = 0
        n_large = 0
        for i in range(deg):
            p[i] = weights[start + i] * deg / total
            if p[i] < 1.0:
                small[n_small] = i
                n_small += 1
            else:
                large[n_large] = i
                n_large += 1
        while n_small > 0 and n_large > 0:
            n_small -= 1
            sm = small[n_small]
            lg = large[n_large - 1]
            prob[start + sm] = p[sm]
            alias[start + sm] = lg
            p[lg] = (p[lg] + p[sm]) - 1.0
            if p[lg] < 1.0:
                n_large -= 1
                small[n_small] = lg
                n_small += 1
        for i in range(n_large):
            prob[start + large[i]] = 1.0
            alias[start + large[i]] = large[i]
        for i in range(n_small):  # rounding leftovers: keep them, unless weightless
            sm = small[i]
            if weights[start + sm] > 0.0:
                prob[start + sm] = 1.0
                alias[start + sm] = sm
            else:
                prob[start + sm] = 0.0
                alias[start + sm] = best


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
# plain walks (property tests, benchmarks)


@TwinKernel
def _random_walks_kernel(indptr, indices, prob, alias, starts, length, seed):
    n = starts.shape[0]
    paths = np.full((n, length + 1), -1, dtype=np.int64)
    for i in prange(n):
        state = _seed_state(seed, i, 0)
        node = np.int64(starts[i])
        paths[i, 0] = node
        for s in range(length):
            state, u = _next(state)
            node = _pick(indptr, indices, prob, alias, node, u)
            if node < 0:
                break
            paths[i, s + 1] = node
    return paths


@TwinKernel
def _alternating_walks_kernel(
    a_indptr, a_indices, a_prob, a_alias, b_indptr, b_indices, b_prob, b_alias, starts, length, seed
):
    n = starts.shape[0]
    paths = np.full((n, length + 1), -1, dtype=np.int64)
    for i in prange(n):
        state = _seed_state(seed, i, 0)
        node = np.int64(starts[i])
        paths[i, 0] = node
        for s in range(length):
            state, u = _next(state)
            if s % 2 == 0:
                node = _pick(a_indptr, a_indices, a_prob, a_alias, node, u)
            else:
                node = _pick(b_indptr, b_indices, b_prob, b_alias, node, u)
            if node < 0:
                break
            paths[i, s + 1] = node
    return paths


# ---------------------------------------------------------------------------
# Pixie / UTEG: user -> tweet -> user walks with restart, multi-hit boosting


@njit(cache=True)
def _pixie_walk(
    q,
    budget,
    n_p,
    n_v,
    restart_prob,
    ut_indptr,
    ut_indices,
    ut_prob,
    ut_alias,
    tu_indptr,
    tu_indices,
    tu_prob,
    tu_alias,
    cur,
    cur_t,
    states,
    node,
    side,
    jj,
    lo,
    frac,
    arrived,
):
    """Walkers from query node ``q`` (user side) until ``budget`` steps or early stop.

    Each round every walker crosses one edge: at a user it moves to a tweet (a visit,
    counted in cur/cur_t) and then restarts at ``q`` with ``restart_prob``; at a tweet it
    moves to a user. Walkers advance in lockstep phases (A draw the slot, B resolve the
    alias when weighted, Y follow the edge, Z count), each prefetching what the next
    phase reads. Per walker the random draws are: edge choice, then (after a tweet
    visit) restart. Returns (steps, number of distinct tweets visited)."""
    W = states.shape[0]
    for w in range(W):
        node[w] = q
        side[w] = 0
    weighted = ut_prob.shape[0] != 0 or tu_prob.shape[0] != 0
    n_cur = 0
    n_high = 0
    q_steps = np.int64(0)
    while q_steps < budget and (n_p <= 0 or n_high < n_p):
        # A: draw the slot (row bounds were prefetched); prefetch its alias entry or target
        for w in range(W):
            st, u = _next(states[w])
            states[w] = st
            x = node[w]
            if side[w] == 0:
                start = ut_indptr[x]
                end = ut_indptr[x + 1]
            else:
                start = tu_indptr[x]
                end = tu_indptr[x + 1]
            if end <= start:
                jj[w] = -1
                continue
            j, f = _slot(start, end, u)
            jj[w] = j
            lo[w] = start
            frac[w] = f
            if side[w] == 0:
                if ut_prob.shape[0] != 0:
                    _prefetch(ut_prob, j)
                    _prefetch(ut_alias, j)
                else:
                    _prefetch(ut_indices, j)
            elif tu_prob.shape[0] != 0:
                _prefetch(tu_prob, j)
                _prefetch(tu_alias, j)
            else:
                _prefetch(tu_indices, j)
        # B (weighted only): alias coin, prefetch the target
        if weighted:
            for w in range(W):
                j = jj[w]
                if j < 0:
                    continue
                if side[w] == 0:
                    if ut_prob.shape[0] != 0:
                        j = _resolve(ut_prob, ut_alias, lo[w], j, frac[w])
                        if j >= 0:
                            _prefetch(ut_indices, j)
                elif tu_prob.shape[0] != 0:
                    j = _resolve(tu_prob, tu_alias, lo[w], j, frac[w])
                    if j >= 0:
                        _prefetch(tu_indices, j)
                jj[w] = j
        # Y: follow the edge, decide restarts, prefetch the next row and the counter
        for w in range(W):
            j = jj[w]
            arrived[w] = -1
            if j < 0:  # dead end (no weighted edge): back to the query node
                node[w] = q
                side[w] = 0
                continue
            q_steps += 1
            if side[w] == 0:
                t = np.int64(ut_indices[j])
                arrived[w] = t
                _prefetch(cur, t)
                st, u = _next(states[w])
                states[w] = st
                if u < restart_prob:
                    node[w] = q
                    side[w] = 0
                else:
                    node[w] = t
                    side[w] = 1
                    _prefetch(tu_indptr, t)
            else:
                v = np.int64(tu_indices[j])
                node[w] = v
                side[w] = 0
                _prefetch(ut_indptr, v)
        # Z: count tweet visits
        for w in range(W):
            t = arrived[w]
            if t >= 0:
                c = cur[t]
                if c == 0:
                    cur_t[n_cur] = t
                    n_cur += 1
                c += 1
                cur[t] = c
                if c == n_v:
                    n_high += 1
    return q_steps, n_cur


@njit(cache=True)
def _pixie_one(
    q_user,
    ut_indptr,
    ut_indices,
    ut_prob,
    ut_alias,
    tu_indptr,
    tu_indices,
    tu_prob,
    tu_alias,
    fo_indptr,
    fo_indices,
    ex_indptr,
    ex_indices,
    ex2_indptr,
    ex2_indices,
    n_steps,
    restart_prob,
    followee_weight,
    max_followees,
    log_c,
    n_p,
    n_v,
    beta,
    seed,
    n_walkers,
    cur,
    cur_t,
    acc,
    acc_t,
    mark,
    out_ids,
    out_scores,
):
    """One Pixie query; fills out_ids/out_scores, returns the number of steps walked."""
    # Query nodes: the user, then up to max_followees followees ranked by Pixie's
    # degree scaling s = deg * (C - log deg) (ties: smaller index first).
    n_sel = 0
    sel_s = np.empty(max(max_followees, 1), dtype=np.float64)
    sel_i = np.empty(max(max_followees, 1), dtype=np.int64)
    if followee_weight > 0.0 and max_followees > 0:
        for j in range(fo_indptr[q_user], fo_indptr[q_user + 1]):
            f = np.int64(fo_indices[j])
            if f == q_user or not _can_leave(ut_indptr, ut_prob, ut_alias, f):
                continue
            d = np.float64(ut_indptr[f + 1] - ut_indptr[f])
            n_sel = _heap_push(sel_s, sel_i, n_sel, max_followees, d * (log_c - math.log(d)), f)
    # Step shares: the user 1 / (1 + followee_weight), the followees together the rest,
    # split among them by the Pixie scaling s (a user alone, or followees alone, get all).
    n_q = n_sel + 1
    q_nodes = np.full(n_q, -1, dtype=np.int64)
    q_share = np.zeros(n_q, dtype=np.float64)
    user_ok = _can_leave(ut_indptr, ut_prob, ut_alias, q_user)
    if user_ok:
        q_nodes[0] = q_user
        q_share[0] = 1.0 / (1.0 + followee_weight) if n_sel > 0 else 1.0
    if n_sel > 0:
        tmp_s = np.zeros(n_sel, dtype=np.float64)
        tmp_i = np.full(n_sel, -1, dtype=np.int64)
        _heap_drain(sel_s, sel_i, n_sel, tmp_i, tmp_s)
        f_share = followee_weight / (1.0 + followee_weight) if user_ok else 1.0
        s_total = 0.0
        for j in range(n_sel):
            s_total += tmp_s[j]
        for j in range(n_sel):
            q_nodes[j + 1] = tmp_i[j]
            q_share[j + 1] = f_share * (tmp_s[j] / s_total)

    steps = np.int64(0)
    n_acc = 0
    states = np.empty(n_walkers, dtype=np.uint64)
    node = np.empty(n_walkers, dtype=np.int64)
    side = np.empty(n_walkers, dtype=np.int8)
    jj = np.empty(n_walkers, dtype=np.int64)
    lo = np.empty(n_walkers, dtype=np.int64)
    frac = np.empty(n_walkers, dtype=np.float64)
    arrived = np.empty(n_walkers, dtype=np.int64)
    for qi in range(n_q):
        q = q_nodes[qi]
        if q < 0:
            continue
        budget = np.int64(n_steps * q_share[qi])
        if budget <= 0:
            continue
        for w in range(n_walkers):
            states[w] = _seed_state(seed, q_user, qi * n_walkers + w)
        q_steps, n_cur = _pixie_walk(
            q,
            budget,
            n_p,
            n_v,
            restart_prob,
            ut_indptr,
            ut_indices,
            ut_prob,
            ut_alias,
            tu_indptr,
            tu_indices,
            tu_prob,
            tu_alias,
            cur,
            cur_t,
            states,
            node,
            side,
            jj,
            lo,
            frac,
            arrived,
        )
        steps += q_steps
        # Multi-hit boosting: score = n_steps * (sum_q share_q * sqrt(visits_q / steps_q))^2.
        # With equal shares this ranks like Pixie's (sum_q sqrt(visits_q))^2: a tweet
        # reached from several query nodes beats one with the same visits from one node;
        # unlike it, many small followee walks cannot outweigh the user's own walk.
        for j in range(n_cur):
            t = cur_t[j]
            if acc[t] == 0.0:
                acc_t[n_acc] = t
                n_acc += 1
            acc[t] += q_share[qi] * math.sqrt(np.float64(cur[t]) / np.float64(q_steps))
            cur[t] = 0

    _set_marks(mark, q_user, ex_indptr, ex_indices, ex2_indptr, ex2_indices, -1, 1)
    k = out_ids.shape[0]
    hs = np.empty(max(k, 1), dtype=np.float64)
    hi = np.empty(max(k, 1), dtype=np.int64)
    size = 0
    for j in range(n_acc):
        t = acc_t[j]
        if mark[t] == 0:
            s = n_steps * (acc[t] * acc[t])
            if beta != 0.0:
                s = s / (np.float64(tu_indptr[t + 1] - tu_indptr[t]) ** beta)
            size = _heap_push(hs, hi, size, k, s, t)
        acc[t] = 0.0
    _set_marks(mark, q_user, ex_indptr, ex_indices, ex2_indptr, ex2_indices, -1, 0)
    _heap_drain(hs, hi, size, out_ids, out_scores)
    return steps


@TwinKernel
def _pixie_kernel(
    ut_indptr,
    ut_indices,
    ut_prob,
    ut_alias,
    tu_indptr,
    tu_indices,
    tu_prob,
    tu_alias,
    fo_indptr,
    fo_indices,
    ex_indptr,
    ex_indices,
    ex2_indptr,
    ex2_indices,
    queries,
    k,
    n_steps,
    restart_prob,
    followee_weight,
    max_followees,
    log_c,
    n_p,
    n_v,
    beta,
    seed,
    n_walkers,
    s_i32a,
    s_i32b,
    s_f64,
    s_i32c,
    s_u8,
):
    nq = queries.shape[0]
    n_chunks = s_u8.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float32)
    steps = np.zeros(nq, dtype=np.int64)
    for c in prange(n_chunks):
        # strided split: neighbouring queries (often similar cost) go to different threads
        for i in range(c, nq, n_chunks):
            steps[i] = _pixie_one(
                np.int64(queries[i]),
                ut_indptr,
                ut_indices,
                ut_prob,
                ut_alias,
                tu_indptr,
                tu_indices,
                tu_prob,
                tu_alias,
                fo_indptr,
                fo_indices,
                ex_indptr,
                ex_indices,
                ex2_indptr,
                ex2_indices,
                n_steps,
                restart_prob,
                followee_weight,
                max_followees,
                log_c,
                n_p,
                n_v,
                beta,
                seed,
                n_walkers,
                s_i32a[c],
                s_i32b[c],
                s_f64[c],
                s_i32c[c],
                s_u8[c],
                ids[i],
                scores[i],
            )
    return ids, scores, steps


# ---------------------------------------------------------------------------
# Personalized PageRank: Monte Carlo (walks with restart) and power iteration


@njit(cache=True)
def _ppr_mc_walk(
    u, indptr, indices, prob, alias, restart_prob, n_steps, seed, stream, n_walkers, visits, touched
):
    """Walk with restart from ``u``; visits[v] counts ticks spent at v. Returns
    (number of touched nodes, steps, ticks). Dangling nodes restart at ``u``.

    Per walker and tick: count the current node, draw restart, else draw the edge.
    Walkers advance in lockstep phases with prefetching, as in :func:`_pixie_walk`."""
    n_t = 0
    if not _can_leave(indptr, prob, alias, u) or n_steps <= 0:
        return n_t, np.int64(0), np.int64(0)
    W = n_walkers
    states = np.empty(W, dtype=np.uint64)
    pos = np.empty(W, dtype=np.int64)
    jj = np.empty(W, dtype=np.int64)
    lo = np.empty(W, dtype=np.int64)
    frac = np.empty(W, dtype=np.float64)
    for w in range(W):
        states[w] = _seed_state(seed, u, stream * W + w)
        pos[w] = u
    weighted = prob.shape[0] != 0
    steps = np.int64(0)
    ticks = np.int64(0)
    while steps < n_steps:
        # A: count the tick, restart or draw the slot
        for w in range(W):
            x = pos[w]
            if visits[x] == 0:
                touched[n_t] = x
                n_t += 1
            visits[x] += 1
            ticks += 1
            st, r = _next(states[w])
            j = np.int64(-1)
            if r >= restart_prob:
                st, r = _next(st)
                start = indptr[x]
                end = indptr[x + 1]
                if end > start:
                    j, f = _slot(start, end, r)
                    lo[w] = start
                    frac[w] = f
                    if weighted:
                        _prefetch(prob, j)
                        _prefetch(alias, j)
                    else:
                        _prefetch(indices, j)
            states[w] = st
            jj[w] = j
        # B (weighted only): alias coin
        if weighted:
            for w in range(W):
                j = jj[w]
                if j >= 0:
                    j = _resolve(prob, alias, lo[w], j, frac[w])
                    if j >= 0:
                        _prefetch(indices, j)
                    jj[w] = j
        # Y: follow the edge (restart and dangling nodes go back to u)
        for w in range(W):
            j = jj[w]
            if j < 0:
                pos[w] = u
            else:
                y = np.int64(indices[j])
                pos[w] = y
                steps += 1
                _prefetch(indptr, y)
                _prefetch(visits, y)
    return n_t, steps, ticks


@TwinKernel
def _ppr_mc_kernel(
    indptr,
    indices,
    prob,
    alias,
    ex_indptr,
    ex_indices,
    queries,
    k,
    restart_prob,
    n_steps,
    exclude_self,
    seed,
    n_walkers,
    s_i64,
    s_i32,
    s_u8,
):
    nq = queries.shape[0]
    n_chunks = s_u8.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float32)
    steps = np.zeros(nq, dtype=np.int64)
    empty = np.zeros(1, dtype=np.int64)
    empty_i = np.zeros(0, dtype=np.int32)
    for c in prange(n_chunks):
        visits = s_i64[c]
        touched = s_i32[c]
        mark = s_u8[c]
        hs = np.empty(max(k, 1), dtype=np.float64)
        hi = np.empty(max(k, 1), dtype=np.int64)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_t, st, ticks = _ppr_mc_walk(
                u, indptr, indices, prob, alias, restart_prob, n_steps, seed, 0, n_walkers, visits, touched
            )
            steps[i] = st
            self_idx = u if exclude_self else -1
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, self_idx, 1)
            size = 0
            for j in range(n_t):
                v = touched[j]
                if mark[v] == 0:
                    size = _heap_push(hs, hi, size, k, np.float64(visits[v]) / np.float64(ticks), v)
                visits[v] = 0
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, self_idx, 0)
            _heap_drain(hs, hi, size, ids[i], scores[i])
    return ids, scores, steps


@njit(cache=True)
def _ppr_power_one(u, indptr, indices, weights, row_sum, restart_prob, n_iter, tol, x, y, flag, xt, yt):
    """Power iteration x <- (1-r) (x P + dangling(x) e_u) + r e_u from x = e_u, touching
    only the nodes reached so far. Leaves the result in x over xt; returns (len(xt), iters)."""
    x[u] = 1.0
    xt[0] = u
    nx_ = 1
    it = 0
    damp = 1.0 - restart_prob
    weighted = weights.shape[0] > 0
    while it < n_iter:
        it += 1
        ny = 0
        dangling = 0.0
        for a in range(nx_):
            v = xt[a]
            mass = x[v]
            start = indptr[v]
            end = indptr[v + 1]
            total = row_sum[v] if weighted else np.float64(end - start)
            if not total > 0.0:
                dangling += mass
                continue
            share = damp * mass / total
            for j in range(start, end):
                t = indices[j]
                if flag[t] == 0:
                    flag[t] = 1
                    yt[ny] = t
                    ny += 1
                if weighted:
                    y[t] += share * weights[j]
                else:
                    y[t] += share
        if flag[u] == 0:
            flag[u] = 1
            yt[ny] = u
            ny += 1
        y[u] += restart_prob + damp * dangling
        # L1 change, then y becomes x
        err = 0.0
        for a in range(ny):
            v = yt[a]
            err += abs(y[v] - x[v])
        for a in range(nx_):
            v = xt[a]
            if flag[v] == 0:
                err += x[v]
            x[v] = 0.0
        for a in range(ny):
            v = yt[a]
            x[v] = y[v]
            y[v] = 0.0
            flag[v] = 0
            xt[a] = v
        nx_ = ny
        if err < tol:
            break
    return nx_, it


@TwinKernel
def _ppr_power_kernel(
    indptr,
    indices,
    weights,
    row_sum,
    ex_indptr,
    ex_indices,
    queries,
    k,
    restart_prob,
    n_iter,
    tol,
    exclude_self,
    s_f64a,
    s_f64b,
    s_u8a,
    s_i32a,
    s_i32b,
    s_u8b,
):
    nq = queries.shape[0]
    n_chunks = s_u8a.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float32)
    iters = np.zeros(nq, dtype=np.int64)
    empty = np.zeros(1, dtype=np.int64)
    empty_i = np.zeros(0, dtype=np.int32)
    for c in prange(n_chunks):
        x = s_f64a[c]
        xt = s_i32a[c]
        mark = s_u8b[c]
        hs = np.empty(max(k, 1), dtype=np.float64)
        hi = np.empty(max(k, 1), dtype=np.int64)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_x, it = _ppr_power_one(
                u,
                indptr,
                indices,
                weights,
                row_sum,
                restart_prob,
                n_iter,
                tol,
                x,
                s_f64b[c],
                s_u8a[c],
                xt,
                s_i32b[c],
            )
            iters[i] = it
            self_idx = u if exclude_self else -1
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, self_idx, 1)
            size = 0
            for j in range(n_x):
                v = xt[j]
                if mark[v] == 0 and x[v] > 0.0:
                    size = _heap_push(hs, hi, size, k, x[v], v)
                x[v] = 0.0
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, self_idx, 0)
            _heap_drain(hs, hi, size, ids[i], scores[i])
    return ids, scores, iters


# ---------------------------------------------------------------------------
# SALSA on the circle of trust (WTF)


@njit(cache=True)
def _salsa_one(
    u,
    indptr,
    indices,
    prob,
    alias,
    n_hubs,
    cot_steps,
    cot_restart,
    n_steps,
    restart_prob,
    seed,
    n_walkers,
    visits,
    touched,
    local,
):
    """One SALSA query. On return visits[] holds authority visit counts over touched[:n]
    (caller resets); returns (n, steps)."""
    # 1) circle of trust: the user plus the top PPR users (Monte Carlo) that follow someone
    n_t, cot_used, _ = _ppr_mc_walk(
        u, indptr, indices, prob, alias, cot_restart, cot_steps, seed, 1, n_walkers, visits, touched
    )
    if n_t == 0:
        return 0, np.int64(0)
    hs = np.empty(max(n_hubs, 1), dtype=np.float64)
    hi = np.empty(max(n_hubs, 1), dtype=np.int64)
    size = 0
    u_visits = np.float64(visits[u])
    for j in range(n_t):
        v = touched[j]
        if v != u and _can_leave(indptr, prob, alias, v):
            size = _heap_push(hs, hi, size, n_hubs - 1, np.float64(visits[v]), v)
        visits[v] = 0
    hubs = np.empty(size + 1, dtype=np.int64)
    hub_w = np.empty(size + 1, dtype=np.float64)
    hubs[0] = u
    hub_w[0] = u_visits
    if size > 0:
        tmp_i = np.full(size, -1, dtype=np.int64)
        tmp_s = np.zeros(size, dtype=np.float64)
        _heap_drain(hs, hi, size, tmp_i, tmp_s)
        for j in range(size):
            hubs[j + 1] = tmp_i[j]
            hub_w[j + 1] = tmp_s[j]
    n_h = size + 1
    hub_cdf = np.empty(n_h, dtype=np.float64)
    run = 0.0
    for j in range(n_h):
        run += hub_w[j]
        hub_cdf[j] = run
    # 2) authorities = whom the hubs follow; local in-lists authority -> hubs
    n_edges = 0
    for h in range(n_h):
        n_edges += indptr[hubs[h] + 1] - indptr[hubs[h]]
    auth = np.empty(n_edges, dtype=np.int64)
    n_a = 0
    for h in range(n_h):
        for j in range(indptr[hubs[h]], indptr[hubs[h] + 1]):
            a = indices[j]
            if local[a] == 0:
                auth[n_a] = a
                n_a += 1
                local[a] = n_a  # local id + 1
    in_ptr = np.zeros(n_a + 1, dtype=np.int64)
    for h in range(n_h):
        for j in range(indptr[hubs[h]], indptr[hubs[h] + 1]):
            in_ptr[local[indices[j]]] += 1
    for a in range(n_a):
        in_ptr[a + 1] += in_ptr[a]
    fill = in_ptr[:-1].copy()
    in_hub = np.empty(n_edges, dtype=np.int32)
    for h in range(n_h):
        for j in range(indptr[hubs[h]], indptr[hubs[h] + 1]):
            la = local[indices[j]] - 1
            in_hub[fill[la]] = h
            fill[la] += 1
    # 3) hub -> authority -> hub walks, restarting at a hub drawn by trust
    states = np.empty(n_walkers, dtype=np.uint64)
    pos = np.empty(n_walkers, dtype=np.int64)
    for w in range(n_walkers):
        st = _seed_state(seed, u, 2 * n_walkers + w)
        st, r = _next(st)
        pos[w] = _sample_cdf(hub_cdf, 0, n_h, r)
        states[w] = st
    steps = np.int64(0)
    n_t = 0
    while steps < n_steps:
        for w in range(n_walkers):
            st, r = _next(states[w])
            a = _pick(indptr, indices, prob, alias, hubs[pos[w]], r)
            if a < 0:
                st, r = _next(st)
                pos[w] = _sample_cdf(hub_cdf, 0, n_h, r)
                states[w] = st
                continue
            steps += 1
            if visits[a] == 0:
                touched[n_t] = a
                n_t += 1
            visits[a] += 1
            st, r = _next(st)
            if r < restart_prob:
                st, r = _next(st)
                pos[w] = _sample_cdf(hub_cdf, 0, n_h, r)
            else:
                st, r = _next(st)
                la = local[a] - 1
                start = in_ptr[la]
                deg = in_ptr[la + 1] - start
                j = start + np.int64(r * deg)
                if j >= start + deg:
                    j = start + deg - 1
                pos[w] = in_hub[j]
                steps += 1
            states[w] = st
    for a in range(n_a):
        local[auth[a]] = 0
    return n_t, steps


@TwinKernel
def _salsa_kernel(
    indptr,
    indices,
    prob,
    alias,
    ex_indptr,
    ex_indices,
    queries,
    k,
    n_hubs,
    cot_steps,
    cot_restart,
    n_steps,
    restart_prob,
    seed,
    n_walkers,
    s_i64,
    s_i32a,
    s_i32b,
    s_u8,
):
    nq = queries.shape[0]
    n_chunks = s_u8.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float32)
    steps = np.zeros(nq, dtype=np.int64)
    empty = np.zeros(1, dtype=np.int64)
    empty_i = np.zeros(0, dtype=np.int32)
    for c in prange(n_chunks):
        visits = s_i64[c]
        touched = s_i32a[c]
        mark = s_u8[c]
        hs = np.empty(max(k, 1), dtype=np.float64)
        hi = np.empty(max(k, 1), dtype=np.int64)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_t, st = _salsa_one(
                u,
                indptr,
                indices,
                prob,
                alias,
                n_hubs,
                cot_steps,
                cot_restart,
                n_steps,
                restart_prob,
                seed,
                n_walkers,
                visits,
                touched,
                s_i32b[c],
            )
            steps[i] = st
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, u, 1)
            size = 0
            for j in range(n_t):
                v = touched[j]
                if mark[v] == 0:
                    size = _heap_push(hs, hi, size, k, np.float64(visits[v]), v)
                visits[v] = 0
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, u, 0)
            _heap_drain(hs, hi, size, ids[i], scores[i])
    return ids, scores, steps


# ---------------------------------------------------------------------------
# friends of friends


@TwinKernel
def _fof_kernel(indptr, indices, ex_indptr, ex_indices, queries, k, normalize, s_f64, s_i32, s_u8):
    nq = queries.shape[0]
    n_chunks = s_u8.shape[0]
    ids = np.full((nq, k), -1, dtype=np.int64)
    scores = np.zeros((nq, k), dtype=np.float32)
    empty = np.zeros(1, dtype=np.int64)
    empty_i = np.zeros(0, dtype=np.int32)
    for c in prange(n_chunks):
        acc = s_f64[c]
        touched = s_i32[c]
        mark = s_u8[c]
        hs = np.empty(max(k, 1), dtype=np.float64)
        hi = np.empty(max(k, 1), dtype=np.int64)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_t = 0
            for a in range(indptr[u], indptr[u + 1]):
                f = indices[a]
                deg = indptr[f + 1] - indptr[f]
                if deg == 0:
                    continue
                w = 1.0 / np.float64(deg) if normalize else 1.0
                for b in range(indptr[f], indptr[f + 1]):
                    v = indices[b]
                    if acc[v] == 0.0:
                        touched[n_t] = v
                        n_t += 1
                    acc[v] += w
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, u, 1)
            size = 0
            for j in range(n_t):
                v = touched[j]
                if mark[v] == 0:
                    size = _heap_push(hs, hi, size, k, acc[v], v)
                acc[v] = 0.0
            _set_marks(mark, u, ex_indptr, ex_indices, empty, empty_i, u, 0)
            _heap_drain(hs, hi, size, ids[i], scores[i])
    return ids, scores


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
    threads = _set_threads(n_threads)
    starts = _as_queries(starts, len(indptr) - 1, "start node")
    prob, alias = _sampler(sampler, len(indices))
    return _random_walks_kernel.pick(_n_chunks(len(starts), threads))(
        indptr, indices, prob, alias, starts, int(length), _check_seed(seed)
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
    return _alternating_walks_kernel.pick(_n_chunks(len(starts), threads))(
        a_indptr,
        a_indices,
        *_sampler(a_sampler, len(a_indices)),
        b_indptr,
        b_indices,
        *_sampler(b_sampler, len(b_indices)),
        starts,
        int(length),
        _check_seed(seed),
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
    restart_prob: float = 0.7,
    followee_weight: float = 0.5,
    max_followees: int = 32,
    degree_c: float | None = None,
    n_p: int = 2_000,
    n_v: int = 4,
    beta: float = 0.1,
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
    nu = len(ut_indptr) - 1
    n_items = len(tu_indptr) - 1
    queries = _as_queries(queries, nu, "user")
    k = _check_k(k)
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=True, allow_one=True)
    if n_walkers < 1:
        raise InputError(f"n_walkers must be >= 1, got {n_walkers}")
    if followee_weight < 0:
        raise InputError(f"followee_weight must be >= 0, got {followee_weight}")
    if n_v < 1:
        raise InputError(f"n_v must be >= 1, got {n_v}")
    if len(fo_indptr) - 1 != nu:
        raise InputError(f"follow CSR has {len(fo_indptr) - 1} rows, the engagement CSR {nu} users")
    if degree_c is None:
        max_deg = int(np.diff(ut_indptr).max(initial=1))
        degree_c = math.log(max(max_deg, 1)) + 1.0
    ex = exclude if exclude is not None else empty_csr(nu)
    ex2 = exclude2 if exclude2 is not None else empty_csr(nu)
    n_chunks = _n_chunks(len(queries), _set_threads(n_threads))
    return _pixie_kernel.pick(n_chunks)(
        ut_indptr,
        ut_indices,
        *_sampler(ut_sampler, len(ut_indices)),
        tu_indptr,
        tu_indices,
        *_sampler(tu_sampler, len(tu_indices)),
        fo_indptr,
        fo_indices,
        ex[0],
        ex[1],
        ex2[0],
        ex2[1],
        queries,
        k,
        int(n_steps),
        restart_prob,
        float(followee_weight),
        int(max_followees),
        float(degree_c),
        int(n_p),
        int(n_v),
        float(beta),
        _check_seed(seed),
        int(n_walkers),
        _scratch("pix_cur", n_chunks, n_items, np.int32),
        _scratch("pix_cur.list", n_chunks, n_items, np.int32),
        _scratch("pix_acc", n_chunks, n_items, np.float64),
        _scratch("pix_acc.list", n_chunks, n_items, np.int32),
        _scratch("pix_mark", n_chunks, n_items, np.uint8),
    )


def ppr_montecarlo(
    indptr,
    indices,
    queries,
    k: int,
    *,
    sampler=None,
    exclude=None,
    exclude_self: bool = False,
    restart_prob: float = 0.15,
    n_steps: int = 100_000,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Personalized PageRank by walks with restart: score = fraction of time spent at a
    node (an unbiased estimate of PPR). Returns (ids, scores, steps walked)."""
    n = len(indptr) - 1
    queries = _as_queries(queries, n, "node")
    k = _check_k(k)
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=False, allow_one=False)
    if n_walkers < 1:
        raise InputError(f"n_walkers must be >= 1, got {n_walkers}")
    ex = exclude if exclude is not None else empty_csr(n)
    n_chunks = _n_chunks(len(queries), _set_threads(n_threads))
    return _ppr_mc_kernel.pick(n_chunks)(
        indptr,
        indices,
        *_sampler(sampler, len(indices)),
        ex[0],
        ex[1],
        queries,
        k,
        restart_prob,
        int(n_steps),
        bool(exclude_self),
        _check_seed(seed),
        int(n_walkers),
        _scratch("ppr_visits", n_chunks, n, np.int64),
        _scratch("ppr.list", n_chunks, n, np.int32),
        _scratch("ppr_mark", n_chunks, n, np.uint8),
    )


def ppr_power(
    indptr,
    indices,
    queries,
    k: int,
    *,
    weights=None,
    exclude=None,
    exclude_self: bool = False,
    restart_prob: float = 0.15,
    n_iter: int = 50,
    tol: float = 1e-8,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Personalized PageRank by sparse power iteration from e_u (deterministic).

    Same fixed point as ``networkx.pagerank(G, alpha=1 - restart_prob,
    personalization={u: 1})``: dangling mass returns to ``u``; edge ``weights`` (optional)
    make transitions proportional to weight. Stops after ``n_iter`` iterations or when
    the L1 change is below ``tol``; cost is the edges of the region reached.
    Returns (ids, scores, iterations)."""
    n = len(indptr) - 1
    queries = _as_queries(queries, n, "node")
    k = _check_k(k)
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=False, allow_one=True)
    if weights is None:
        w = np.zeros(0, dtype=np.float64)
        row_sum = np.zeros(0, dtype=np.float64)
    else:
        w = np.ascontiguousarray(weights, dtype=np.float64)
        if w.shape[0] != len(indices) or not (np.isfinite(w).all() and (w >= 0).all()):
            raise InputError("weights must be finite, non-negative and one per edge")
        row_sum = np.add.reduceat(np.append(w, 0.0), np.asarray(indptr[:-1])) * (np.diff(indptr) > 0)
    ex = exclude if exclude is not None else empty_csr(n)
    n_chunks = _n_chunks(len(queries), _set_threads(n_threads))
    return _ppr_power_kernel.pick(n_chunks)(
        indptr,
        indices,
        w,
        row_sum,
        ex[0],
        ex[1],
        queries,
        k,
        restart_prob,
        int(n_iter),
        float(tol),
        bool(exclude_self),
        _scratch("pw_x", n_chunks, n, np.float64),
        _scratch("pw_y", n_chunks, n, np.float64),
        _scratch("pw_flag", n_chunks, n, np.uint8),
        _scratch("pw_x.list", n_chunks, n, np.int32),
        _scratch("pw_y.list", n_chunks, n, np.int32),
        _scratch("pw_mark", n_chunks, n, np.uint8),
    )


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
    n = len(indptr) - 1
    queries = _as_queries(queries, n, "user")
    k = _check_k(k)
    cot_restart = _check_prob("cot_restart", cot_restart, allow_zero=False, allow_one=False)
    restart_prob = _check_prob("restart_prob", restart_prob, allow_zero=True, allow_one=True)
    if n_hubs < 1:
        raise InputError(f"n_hubs must be >= 1, got {n_hubs}")
    if n_walkers < 1:
        raise InputError(f"n_walkers must be >= 1, got {n_walkers}")
    ex = exclude if exclude is not None else empty_csr(n)
    n_chunks = _n_chunks(len(queries), _set_threads(n_threads))
    return _salsa_kernel.pick(n_chunks)(
        indptr,
        indices,
        *_sampler(sampler, len(indices)),
        ex[0],
        ex[1],
        queries,
        k,
        int(n_hubs),
        int(cot_steps),
        cot_restart,
        int(n_steps),
        restart_prob,
        _check_seed(seed),
        int(n_walkers),
        _scratch("sal_visits", n_chunks, n, np.int64),
        _scratch("sal.list", n_chunks, n, np.int32),
        _scratch("sal_local", n_chunks, n, np.int32),
        _scratch("sal_mark", n_chunks, n, np.uint8),
    )


def fof_scores(
    indptr, indices, queries, k: int, *, exclude=None, normalize: bool = False, n_threads: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Friends of friends: score(v) = number of the user's followees who follow v (or,
    with ``normalize``, the sum of 1 / out-degree of those followees: two-step PPR).
    The user and the rows of ``exclude`` are left out. Returns (ids, scores)."""
    n = len(indptr) - 1
    queries = _as_queries(queries, n, "user")
    k = _check_k(k)
    ex = exclude if exclude is not None else empty_csr(n)
    n_chunks = _n_chunks(len(queries), _set_threads(n_threads))
    return _fof_kernel.pick(n_chunks)(
        indptr,
        indices,
        ex[0],
        ex[1],
        queries,
        k,
        bool(normalize),
        _scratch("fof_acc", n_chunks, n, np.float64),
        _scratch("fof.list", n_chunks, n, np.int32),
        _scratch("fof_mark", n_chunks, n, np.uint8),
    )
