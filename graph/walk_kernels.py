"""The compiled walk kernels behind :mod:`graph.walks` (numba), one per entry point.

Each ``*_kernel`` is a :class:`graph.kernels.TwinKernel` (parallel over thread chunks,
plus a serial twin for single-chunk calls); the per-query ``*_one`` / ``*_walk``
functions do the work for one query node. Every kernel ends a query with
:func:`graph.walk_topk._emit_top_k`. Conventions (steps, random streams, scratch memory,
result layout) are described in :mod:`graph.walks`, which validates the inputs; call
the kernels through it.

numba keys its on-disk cache (``cache=True``) on the file of each function only, not
on the functions it inlines from other files: :func:`graph.walk_primitives._share_cache_stamp`
keys the three walk modules on all their sources, so that an edit of any of them
recompiles the lot.
"""

from __future__ import annotations

import math
from collections import namedtuple

import numpy as np
from numba import njit, prange
from numba.extending import overload

from graph.kernels import TwinKernel
from graph.walk_primitives import (
    _can_leave,
    _next,
    _pick,
    _prefetch,
    _resolve,
    _sample_cdf,
    _seed_state,
    _share_cache_stamp,
    _slot,
)
from graph.walk_topk import (
    Fraction,
    PositiveValue,
    Value,
    _emit_top_k,
    _heap_drain,
    _heap_push,
    _new_heap,
    _new_results,
    _no_rows,
    _score,
)

# ---------------------------------------------------------------------------
# inputs: the kernels take (graph, exclusions, queries, k, settings, scratch); graphs,
# exclusions and scratch are flat tuples of arrays (numba hands a tuple to a ``prange``
# body only when it is flat), settings are named tuples

#: Pixie's graph: the engagement CSRs user -> tweet (``ut_*``) and tweet -> user (``tu_*``),
#: each with its alias tables (``prob``/``alias`` empty: uniform sampling), and the follow
#: CSR (``fo_*``).
PixieGraph = namedtuple(
    "PixieGraph",
    "ut_indptr ut_indices ut_prob ut_alias tu_indptr tu_indices tu_prob tu_alias fo_indptr fo_indices",
)
#: Settings of :func:`graph.walks.pixie_walks` (``log_c`` is its ``degree_c``).
PixieSettings = namedtuple(
    "PixieSettings", "n_steps restart_prob followee_weight max_followees log_c n_p n_v beta seed n_walkers"
)
#: Settings of :func:`graph.walks.ppr_montecarlo`.
PprSettings = namedtuple("PprSettings", "restart_prob n_steps exclude_self seed n_walkers")
#: Settings of :func:`graph.walks.ppr_power`.
PowerSettings = namedtuple("PowerSettings", "restart_prob n_iter tol exclude_self")
#: Settings of :func:`graph.walks.salsa_walks`.
SalsaSettings = namedtuple(
    "SalsaSettings", "n_hubs cot_steps cot_restart n_steps restart_prob seed n_walkers"
)


# ---------------------------------------------------------------------------
# plain walks (property tests, benchmarks)


@TwinKernel
def _alternating_walks_kernel(a, b, starts, length, seed):
    """Walks whose even steps follow CSR ``a``, odd steps CSR ``b`` (both (indptr, indices,
    prob, alias)); a plain walk when they are the same."""
    a_indptr, a_indices, a_prob, a_alias = a
    b_indptr, b_indices, b_prob, b_alias = b
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
def _pixie_walk(q, budget, graph, cfg, counts, walkers):
    """Walkers from query node ``q`` (user side) until ``budget`` steps or early stop.

    Each round every walker crosses one edge: at a user it moves to a tweet (a visit,
    counted in cur/cur_t) and then restarts at ``q`` with ``restart_prob``; at a tweet it
    moves to a user. Walkers advance in lockstep phases (A draw the slot, B resolve the
    alias when weighted, Y follow the edge, Z count), each prefetching what the next
    phase reads. Per walker the random draws are: edge choice, then (after a tweet
    visit) restart. Returns (steps, number of distinct tweets visited).

    ``graph``: :class:`PixieGraph`; ``cfg``: :class:`PixieSettings`; ``counts`` =
    (cur, cur_t): visits per tweet, zero on entry, and the visited tweets in first-visit
    order; ``walkers`` = (states, node, side, jj, lo, frac, arrived): per-walker state from
    :func:`_pixie_walkers`, ``states`` seeded by the caller."""
    ut_indptr, ut_indices, ut_prob, ut_alias = (
        graph.ut_indptr,
        graph.ut_indices,
        graph.ut_prob,
        graph.ut_alias,
    )
    tu_indptr, tu_indices, tu_prob, tu_alias = (
        graph.tu_indptr,
        graph.tu_indices,
        graph.tu_prob,
        graph.tu_alias,
    )
    cur, cur_t = counts
    states, node, side, jj, lo, frac, arrived = walkers
    restart_prob = cfg.restart_prob
    n_p = cfg.n_p
    n_v = cfg.n_v
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
def _pixie_walkers(n_walkers):
    """Per-walker state for :func:`_pixie_walk`: (states, node, side, jj, lo, frac, arrived)."""
    return (
        np.empty(n_walkers, dtype=np.uint64),
        np.empty(n_walkers, dtype=np.int64),
        np.empty(n_walkers, dtype=np.int8),
        np.empty(n_walkers, dtype=np.int64),
        np.empty(n_walkers, dtype=np.int64),
        np.empty(n_walkers, dtype=np.float64),
        np.empty(n_walkers, dtype=np.int64),
    )


@njit(cache=True)
def _pixie_query_nodes(q_user, graph, cfg):
    """Query nodes of a Pixie query and their shares of the steps: (nodes, shares); -1
    for the user when it has no edge to leave by.

    Query nodes: the user, then up to max_followees followees ranked by Pixie's degree
    scaling s = deg * (C - log deg) (ties: smaller index first). Step shares: the user
    1 / (1 + followee_weight), the followees together the rest, split among them by s (a
    user alone, or followees alone, get all)."""
    ut_indptr, ut_prob, ut_alias = graph.ut_indptr, graph.ut_prob, graph.ut_alias
    fo_indptr, fo_indices = graph.fo_indptr, graph.fo_indices
    followee_weight = cfg.followee_weight
    max_followees = cfg.max_followees
    n_sel = 0
    sel_s = np.empty(max(max_followees, 1), dtype=np.float64)
    sel_i = np.empty(max(max_followees, 1), dtype=np.int64)
    if followee_weight > 0.0 and max_followees > 0:
        for j in range(fo_indptr[q_user], fo_indptr[q_user + 1]):
            f = np.int64(fo_indices[j])
            if f == q_user or not _can_leave(ut_indptr, ut_prob, ut_alias, f):
                continue
            d = np.float64(ut_indptr[f + 1] - ut_indptr[f])
            n_sel = _heap_push(sel_s, sel_i, n_sel, max_followees, d * (cfg.log_c - math.log(d)), f)
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
    return q_nodes, q_share


#: Pixie's score of a tweet (see :func:`_pixie_one`): n_steps * acc[t]^2 / deg(t)^beta.
PixieScore = namedtuple("PixieScore", "n_steps beta tu_indptr")


@overload(_score, inline="always")
def _score_pixie(how, acc, t):
    if getattr(how, "instance_class", None) is not PixieScore:
        return None

    def impl(how, acc, t):
        # all of ``how`` is read before the branch (see walk_topk._score: numba would
        # otherwise count references to how.tu_indptr for every candidate)
        beta = how.beta
        deg = np.float64(how.tu_indptr[t + 1] - how.tu_indptr[t])
        s = how.n_steps * (acc[t] * acc[t])
        if beta != 0.0:
            s = s / (deg**beta)
        return s

    return impl


@njit(cache=True)
def _pixie_one(q_user, graph, excl, cfg, chunk, out_ids, out_scores):
    """One Pixie query; fills out_ids/out_scores, returns the number of steps walked.

    ``graph``: :class:`PixieGraph`; ``excl`` = (indptr, indices, indptr2, indices2): two
    CSRs of tweets to leave out per user; ``cfg``: :class:`PixieSettings`; ``chunk``: the
    thread's scratch (cur, cur_t, acc, acc_t, mark, heap), left as it was found (zeroed;
    the ``*_t`` lists are written before they are read)."""
    cur, cur_t, acc, acc_t, mark, heap = chunk
    q_nodes, q_share = _pixie_query_nodes(q_user, graph, cfg)
    n_walkers = cfg.n_walkers
    walkers = _pixie_walkers(n_walkers)
    states = walkers[0]
    steps = np.int64(0)
    n_acc = 0
    for qi in range(q_nodes.shape[0]):
        q = q_nodes[qi]
        if q < 0:
            continue
        budget = np.int64(cfg.n_steps * q_share[qi])
        if budget <= 0:
            continue
        for w in range(n_walkers):
            states[w] = _seed_state(cfg.seed, q_user, qi * n_walkers + w)
        q_steps, n_cur = _pixie_walk(q, budget, graph, cfg, (cur, cur_t), walkers)
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
    how = PixieScore(cfg.n_steps, cfg.beta, graph.tu_indptr)
    _emit_top_k(how, acc, acc_t, n_acc, q_user, -1, excl, mark, heap, out_ids, out_scores)
    return steps


@TwinKernel
def _pixie_kernel(graph, exclude, queries, k, cfg, scratch):
    """Pixie for each query user: ``graph``: :class:`PixieGraph`, ``exclude`` as ``excl`` in
    :func:`_pixie_one`, ``cfg``: :class:`PixieSettings`, ``scratch`` = (cur, cur_t, acc,
    acc_t, mark), one row per thread chunk."""
    s_cur, s_cur_t, s_acc, s_acc_t, s_mark = scratch
    nq = queries.shape[0]
    n_chunks = s_mark.shape[0]
    ids, scores = _new_results(nq, k)
    steps = np.zeros(nq, dtype=np.int64)
    for c in prange(n_chunks):
        chunk = (s_cur[c], s_cur_t[c], s_acc[c], s_acc_t[c], s_mark[c], _new_heap(k))
        # strided split: neighbouring queries (often similar cost) go to different threads
        for i in range(c, nq, n_chunks):
            steps[i] = _pixie_one(np.int64(queries[i]), graph, exclude, cfg, chunk, ids[i], scores[i])
    return ids, scores, steps


# ---------------------------------------------------------------------------
# Personalized PageRank: Monte Carlo (walks with restart) and power iteration


@njit(cache=True)
def _ppr_mc_walk(u, graph, restart_prob, n_steps, seed, stream, n_walkers, visits, touched):
    """Walk with restart from ``u`` over ``graph`` = (indptr, indices, prob, alias);
    visits[v] counts ticks spent at v, touched lists the nodes with visits. Returns
    (number of touched nodes, steps, ticks). Dangling nodes restart at ``u``.

    Per walker and tick: count the current node, draw restart, else draw the edge.
    Walkers advance in lockstep phases with prefetching, as in :func:`_pixie_walk`."""
    indptr, indices, prob, alias = graph
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
def _ppr_mc_kernel(graph, exclude, queries, k, cfg, scratch):
    """Monte Carlo PPR for each query node: ``graph`` = (indptr, indices, prob, alias),
    ``exclude`` = (indptr, indices), ``cfg``: :class:`PprSettings`, ``scratch`` = (visits,
    touched, mark), one row per thread chunk."""
    s_visits, s_touched, s_mark = scratch
    nq = queries.shape[0]
    n_chunks = s_mark.shape[0]
    ids, scores = _new_results(nq, k)
    steps = np.zeros(nq, dtype=np.int64)
    excl = exclude + _no_rows()
    for c in prange(n_chunks):
        visits = s_visits[c]
        touched = s_touched[c]
        heap = _new_heap(k)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_t, st, ticks = _ppr_mc_walk(
                u, graph, cfg.restart_prob, cfg.n_steps, cfg.seed, 0, cfg.n_walkers, visits, touched
            )
            steps[i] = st
            self_idx = u if cfg.exclude_self else -1
            how = Fraction(np.float64(ticks))  # score: the fraction of ticks spent at the node
            _emit_top_k(how, visits, touched, n_t, u, self_idx, excl, s_mark[c], heap, ids[i], scores[i])
    return ids, scores, steps


@njit(cache=True)
def _ppr_power_one(u, graph, cfg, work):
    """Power iteration x <- (1-r) (x P + dangling(x) e_u) + r e_u from x = e_u, touching
    only the nodes reached so far, over ``graph`` = (indptr, indices, weights, row_sum)
    (``weights`` empty: unweighted); ``cfg``: :class:`PowerSettings`; ``work`` = (x, y,
    flag, xt, yt), zeroed scratch. Leaves the result in x over xt; returns (len(xt), iters)."""
    indptr, indices, weights, row_sum = graph
    x, y, flag, xt, yt = work
    restart_prob = cfg.restart_prob
    n_iter = cfg.n_iter
    tol = cfg.tol
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
def _ppr_power_kernel(graph, exclude, queries, k, cfg, scratch):
    """PPR by power iteration for each query node: ``graph`` as in :func:`_ppr_power_one`,
    ``exclude`` = (indptr, indices), ``cfg``: :class:`PowerSettings`, ``scratch`` = (x, y,
    flag, xt, yt, mark), one row per thread chunk."""
    s_x, s_y, s_flag, s_xt, s_yt, s_mark = scratch
    nq = queries.shape[0]
    n_chunks = s_mark.shape[0]
    ids, scores = _new_results(nq, k)
    iters = np.zeros(nq, dtype=np.int64)
    excl = exclude + _no_rows()
    for c in prange(n_chunks):
        x = s_x[c]
        xt = s_xt[c]
        work = (x, s_y[c], s_flag[c], xt, s_yt[c])
        heap = _new_heap(k)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_x, it = _ppr_power_one(u, graph, cfg, work)
            iters[i] = it
            self_idx = u if cfg.exclude_self else -1
            # score: the PPR mass; nodes reached with none are no candidates
            _emit_top_k(PositiveValue(), x, xt, n_x, u, self_idx, excl, s_mark[c], heap, ids[i], scores[i])
    return ids, scores, iters


# ---------------------------------------------------------------------------
# SALSA on the circle of trust (WTF)


@njit(cache=True)
def _salsa_one(u, graph, cfg, visits, touched, local):
    """One SALSA query over ``graph`` = (indptr, indices, prob, alias) with ``cfg``:
    :class:`SalsaSettings`; ``visits``, ``touched``, ``local``: zeroed scratch. On return
    visits[] holds authority visit counts over touched[:n] (caller resets); returns (n, steps)."""
    indptr, indices, prob, alias = graph
    n_hubs = cfg.n_hubs
    n_steps = cfg.n_steps
    restart_prob = cfg.restart_prob
    seed = cfg.seed
    n_walkers = cfg.n_walkers
    # 1) circle of trust: the user plus the top PPR users (Monte Carlo) that follow someone
    n_t, cot_used, _ = _ppr_mc_walk(
        u, graph, cfg.cot_restart, cfg.cot_steps, seed, 1, n_walkers, visits, touched
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
def _salsa_kernel(graph, exclude, queries, k, cfg, scratch):
    """SALSA for each query user: ``graph`` = (indptr, indices, prob, alias), ``exclude`` =
    (indptr, indices), ``cfg``: :class:`SalsaSettings`, ``scratch`` = (visits, touched,
    local, mark), one row per thread chunk."""
    s_visits, s_touched, s_local, s_mark = scratch
    nq = queries.shape[0]
    n_chunks = s_mark.shape[0]
    ids, scores = _new_results(nq, k)
    steps = np.zeros(nq, dtype=np.int64)
    excl = exclude + _no_rows()
    for c in prange(n_chunks):
        visits = s_visits[c]
        touched = s_touched[c]
        heap = _new_heap(k)
        for i in range(c, nq, n_chunks):
            u = np.int64(queries[i])
            n_t, st = _salsa_one(u, graph, cfg, visits, touched, s_local[c])
            steps[i] = st
            # score: authority visits; the user is left out
            _emit_top_k(Value(), visits, touched, n_t, u, u, excl, s_mark[c], heap, ids[i], scores[i])
    return ids, scores, steps


# ---------------------------------------------------------------------------
# friends of friends


@TwinKernel
def _fof_kernel(graph, exclude, queries, k, normalize, scratch):
    """Friends of friends for each query user: ``graph`` = (indptr, indices), ``exclude`` =
    (indptr, indices), ``scratch`` = (acc, touched, mark), one row per thread chunk."""
    indptr, indices = graph
    s_acc, s_touched, s_mark = scratch
    nq = queries.shape[0]
    n_chunks = s_mark.shape[0]
    ids, scores = _new_results(nq, k)
    excl = exclude + _no_rows()
    for c in prange(n_chunks):
        acc = s_acc[c]
        touched = s_touched[c]
        heap = _new_heap(k)
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
            # score: followees (or their 1 / out-degree) leading to the node; the user is left out
            _emit_top_k(Value(), acc, touched, n_t, u, u, excl, s_mark[c], heap, ids[i], scores[i])
    return ids, scores


_share_cache_stamp(globals())
