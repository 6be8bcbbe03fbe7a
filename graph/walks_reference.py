"""Slow, obviously-correct pure-Python twins of the kernels in :mod:`graph.walks`.

They read the graph as Python lists of neighbours, draw from the same splitmix64
streams in the same order, and sort candidates with ``sorted``; so on small graphs
tests can demand identical results from the compiled kernels. Not for real use.
"""

from __future__ import annotations

import math

import numpy as np

from graph.walks import PPR_POWER_ITERATIONS, PPR_POWER_TOL, PPR_RESTART_PROB

_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_M1 = 0xBF58476D1CE4E5B9
_M2 = 0x94D049BB133111EB


# ---------------------------------------------------------------------------
# random numbers: splitmix64


def _mix(z: int) -> int:
    z = ((z ^ (z >> 30)) * _M1) & _MASK
    z = ((z ^ (z >> 27)) * _M2) & _MASK
    return z ^ (z >> 31)


def seed_state(seed: int, a: int, b: int) -> int:
    s = _mix((seed + _GOLDEN) & _MASK)
    s = _mix(((s ^ a) + _GOLDEN) & _MASK)
    return _mix(((s ^ b) + _GOLDEN) & _MASK)


class Stream:
    """One random stream: ``next()`` gives a float in [0, 1) with 53 random bits."""

    def __init__(self, seed: int, a: int, b: int):
        self.state = seed_state(seed, a, b)

    def next(self) -> float:
        self.state = (self.state + _GOLDEN) & _MASK
        return (_mix(self.state) >> 11) * 2.0**-53


# ---------------------------------------------------------------------------
# graphs as lists


class Adjacency:
    """Neighbour lists of a CSR, with the alias tables of its rows when weighted."""

    def __init__(self, indptr, indices, sampler=None):
        indptr = [int(x) for x in indptr]
        indices = [int(x) for x in indices]
        self.rows = [indices[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
        self.weighted = sampler is not None
        if self.weighted:
            prob = [float(x) for x in np.asarray(sampler[0], dtype=np.float32)]
            alias = [int(x) for x in sampler[1]]
            self.prob = [prob[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]
            self.alias = [alias[indptr[i] : indptr[i + 1]] for i in range(len(indptr) - 1)]

    def can_leave(self, node: int) -> bool:
        if not self.rows[node]:
            return False
        return not self.weighted or self.prob[node][0] > 0 or self.alias[node][0] >= 0

    def pick(self, node: int, u: float) -> int:
        """A neighbour drawn with ``u``: slot floor(u * deg), kept when the fractional part
        is below the slot's probability, else its alias; -1 at a dead end."""
        row = self.rows[node]
        if not row:
            return -1
        f = u * len(row)
        slot = min(int(f), len(row) - 1)
        if not self.weighted:
            return row[slot]
        if f - slot < self.prob[node][slot]:
            return row[slot]
        a = self.alias[node][slot]
        return -1 if a < 0 else row[a]


def sample_cdf(cdf: list[float], u: float) -> int:
    """Position drawn from running sums ``cdf`` with uniform ``u``; -1 if no weight."""
    if not cdf or not cdf[-1] > 0:
        return -1
    total = cdf[-1]
    for j, c in enumerate(cdf):
        if c > u * total:
            return j
    for j, c in enumerate(cdf):  # u * total rounded up to total
        if c >= total:
            return j
    raise AssertionError("unreachable")


def top_k(scores: dict[int, float], k: int, exclude: set[int]) -> tuple[np.ndarray, np.ndarray]:
    """Best ``k`` (score desc, id asc) outside ``exclude``, padded with -1 / 0."""
    best = sorted(((-s, i) for i, s in scores.items() if i not in exclude))[:k]
    ids = np.full(k, -1, dtype=np.int64)
    vals = np.zeros(k, dtype=np.float32)
    for pos, (neg, i) in enumerate(best):
        ids[pos] = i
        vals[pos] = -neg
    return ids, vals


def _stack(rows):
    ids = np.stack([r[0] for r in rows]) if rows else np.zeros((0, 0), np.int64)
    vals = np.stack([r[1] for r in rows]) if rows else np.zeros((0, 0), np.float32)
    return ids, vals


def _per_query(queries, k: int, one) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``one(u) -> (scores, exclusions, steps)`` for each query node: (ids, scores, steps)."""
    results, all_steps = [], []
    for u in (int(q) for q in queries):
        scores, exclude, steps = one(u)
        results.append(top_k(scores, k, exclude))
        all_steps.append(steps)
    ids, vals = _stack(results)
    return ids, vals, np.array(all_steps, dtype=np.int64)


def _row(csr, node) -> set[int]:
    if csr is None:
        return set()
    indptr, indices = csr
    if node >= len(indptr) - 1:
        return set()
    return {int(x) for x in indices[indptr[node] : indptr[node + 1]]}


# ---------------------------------------------------------------------------
# walks


def _walks(graph_at, starts, length: int, seed: int) -> np.ndarray:
    """Walks of ``length`` steps from each start, step s on ``graph_at(s)``; -1 after a dead end."""
    out = np.full((len(starts), length + 1), -1, dtype=np.int64)
    for i, s in enumerate(starts):
        rng = Stream(seed, i, 0)
        node = int(s)
        out[i, 0] = node
        for step in range(length):
            node = graph_at(step).pick(node, rng.next())
            if node < 0:
                break
            out[i, step + 1] = node
    return out


def random_walks(indptr, indices, starts, length, *, sampler=None, seed=0) -> np.ndarray:
    g = Adjacency(indptr, indices, sampler)
    return _walks(lambda step: g, starts, length, seed)


def alternating_walks(
    a_indptr, a_indices, b_indptr, b_indices, starts, length, *, a_sampler=None, b_sampler=None, seed=0
):
    ga = Adjacency(a_indptr, a_indices, a_sampler)
    gb = Adjacency(b_indptr, b_indices, b_sampler)
    return _walks(lambda step: ga if step % 2 == 0 else gb, starts, length, seed)


def pixie_walks(
    ut_indptr,
    ut_indices,
    tu_indptr,
    tu_indices,
    fo_indptr,
    fo_indices,
    queries,
    k,
    *,
    ut_sampler=None,
    tu_sampler=None,
    exclude=None,
    exclude2=None,
    n_steps=100_000,
    restart_prob=0.5,
    followee_weight=0.5,
    max_followees=32,
    degree_c=None,
    n_p=2_000,
    n_v=4,
    beta=0.0,
    seed=0,
    n_walkers=16,
):
    ut = Adjacency(ut_indptr, ut_indices, ut_sampler)
    tu = Adjacency(tu_indptr, tu_indices, tu_sampler)
    fo = Adjacency(fo_indptr, fo_indices)
    if degree_c is None:
        degree_c = math.log(max(max((len(r) for r in ut.rows), default=1), 1)) + 1.0

    def scale(node):  # Pixie: deg * (C - log deg)
        d = float(len(ut.rows[node]))
        return d * (degree_c - math.log(d))

    def one(q_user):
        followees = []
        if followee_weight > 0 and max_followees > 0:
            cands = [f for f in fo.rows[q_user] if f != q_user and ut.can_leave(f)]
            followees = sorted(cands, key=lambda f: (-scale(f), f))[:max_followees]
        # the user gets 1 / (1 + followee_weight) of the steps, the followees the rest in
        # proportion to their Pixie scaling; a user alone or followees alone get all
        nodes, share = [-1], [0.0]
        user_ok = ut.can_leave(q_user)
        if user_ok:
            nodes[0] = q_user
            share[0] = 1.0 / (1.0 + followee_weight) if followees else 1.0
        if followees:
            f_share = followee_weight / (1.0 + followee_weight) if user_ok else 1.0
            s_total = 0.0
            for f in followees:
                s_total += scale(f)
            for f in followees:
                nodes.append(f)
                share.append(f_share * (scale(f) / s_total))
        boosted: dict[int, float] = {}
        steps = 0
        for qi, q in enumerate(nodes):
            if q < 0:
                continue
            budget = int(n_steps * share[qi])
            if budget <= 0:
                continue
            rngs = [Stream(seed, q_user, qi * n_walkers + w) for w in range(n_walkers)]
            node = [q] * n_walkers
            at_user = [True] * n_walkers
            visits: dict[int, int] = {}
            high, q_steps = 0, 0
            # a round: every walker crosses one edge (user -> tweet, or tweet -> user)
            while q_steps < budget and (n_p <= 0 or high < n_p):
                for w in range(n_walkers):
                    nxt = (ut if at_user[w] else tu).pick(node[w], rngs[w].next())
                    if nxt < 0:  # dead end: back to the query node
                        node[w], at_user[w] = q, True
                        continue
                    q_steps += 1
                    if at_user[w]:
                        visits[nxt] = visits.get(nxt, 0) + 1
                        if visits[nxt] == n_v:
                            high += 1
                        if rngs[w].next() < restart_prob:
                            node[w], at_user[w] = q, True
                        else:
                            node[w], at_user[w] = nxt, False
                    else:
                        node[w], at_user[w] = nxt, True
            steps += q_steps
            # same accumulation order as the kernel: first-visit order of this query node
            for t, c in visits.items():
                boosted[t] = boosted.get(t, 0.0) + share[qi] * math.sqrt(c / q_steps)
        scores = {}
        for t, b in boosted.items():
            s = n_steps * (b * b)
            if beta != 0.0:
                s = s / (float(len(tu.rows[t])) ** beta)
            scores[t] = s
        return scores, _row(exclude, q_user) | _row(exclude2, q_user), steps

    return _per_query(queries, k, one)


def ppr_mc_visits(
    g: Adjacency, u: int, restart_prob: float, n_steps: int, seed: int, stream: int, n_walkers: int
):
    """Ticks spent at each node by walkers with restart from ``u``: (visits, steps, ticks)."""
    visits: dict[int, int] = {}
    if not g.can_leave(u) or n_steps <= 0:
        return visits, 0, 0
    rngs = [Stream(seed, u, stream * n_walkers + w) for w in range(n_walkers)]
    pos = [u] * n_walkers
    steps = ticks = 0
    while steps < n_steps:
        for w in range(n_walkers):
            x = pos[w]
            visits[x] = visits.get(x, 0) + 1
            ticks += 1
            if rngs[w].next() < restart_prob:
                pos[w] = u
            else:
                y = g.pick(x, rngs[w].next())
                if y < 0:
                    pos[w] = u
                else:
                    pos[w] = y
                    steps += 1
    return visits, steps, ticks


def _ppr_exclusions(exclude, exclude_self: bool, u: int) -> set[int]:
    return _row(exclude, u) | ({u} if exclude_self else set())


def ppr_montecarlo(
    indptr,
    indices,
    queries,
    k,
    *,
    sampler=None,
    exclude=None,
    exclude_self=False,
    restart_prob=PPR_RESTART_PROB,
    n_steps=100_000,
    seed=0,
    n_walkers=16,
):
    g = Adjacency(indptr, indices, sampler)

    def one(u):
        visits, steps, ticks = ppr_mc_visits(g, u, restart_prob, n_steps, seed, 0, n_walkers)
        return {v: c / ticks for v, c in visits.items()}, _ppr_exclusions(exclude, exclude_self, u), steps

    return _per_query(queries, k, one)


def ppr_vector(indptr, indices, source: int, *, weights=None, restart_prob=0.15, n_iter=1000, tol=1e-12):
    """Dense personalized PageRank by power iteration (dangling mass returns to ``source``)."""
    n = len(indptr) - 1
    rows = [
        [
            (int(indices[j]), 1.0 if weights is None else float(weights[j]))
            for j in range(indptr[i], indptr[i + 1])
        ]
        for i in range(n)
    ]
    x = [0.0] * n
    x[source] = 1.0
    for _ in range(n_iter):
        y = [0.0] * n
        dangling = 0.0
        for v in range(n):
            total = sum(w for _, w in rows[v])
            if total <= 0:
                dangling += x[v]
                continue
            for t, w in rows[v]:
                y[t] += (1 - restart_prob) * x[v] * w / total
        y[source] += restart_prob + (1 - restart_prob) * dangling
        err = sum(abs(a - b) for a, b in zip(x, y))
        x = y
        if err < tol:
            break
    return np.array(x)


def ppr_power(
    indptr,
    indices,
    queries,
    k,
    *,
    weights=None,
    exclude=None,
    exclude_self=False,
    restart_prob=PPR_RESTART_PROB,
    n_iter=PPR_POWER_ITERATIONS,
    tol=PPR_POWER_TOL,
):
    def one(u):
        x = ppr_vector(indptr, indices, u, weights=weights, restart_prob=restart_prob, n_iter=n_iter, tol=tol)
        return {v: float(s) for v, s in enumerate(x) if s > 0}, _ppr_exclusions(exclude, exclude_self, u), 0

    return _per_query(queries, k, one)[:2]


def salsa_walks(
    indptr,
    indices,
    queries,
    k,
    *,
    sampler=None,
    exclude=None,
    n_hubs=200,
    cot_steps=20_000,
    cot_restart=0.3,
    n_steps=50_000,
    restart_prob=0.3,
    seed=0,
    n_walkers=16,
):
    g = Adjacency(indptr, indices, sampler)

    def one(u):
        trust, _, _ = ppr_mc_visits(g, u, cot_restart, cot_steps, seed, 1, n_walkers)
        if not trust:
            return {}, set(), 0
        others = sorted((-c, v) for v, c in trust.items() if v != u and g.can_leave(v))[: n_hubs - 1]
        hubs = [u] + [v for _, v in others]
        weights = [float(trust[u])] + [float(-c) for c, _ in others]
        hub_cdf = list(np.cumsum(weights))
        followers_in_hubs: dict[int, list[int]] = {}  # authority -> hub positions, in hub order
        for h, hub in enumerate(hubs):
            for a in g.rows[hub]:
                followers_in_hubs.setdefault(a, []).append(h)
        rngs = []
        pos = []
        for w in range(n_walkers):
            r = Stream(seed, u, 2 * n_walkers + w)
            pos.append(sample_cdf(hub_cdf, r.next()))
            rngs.append(r)
        visits: dict[int, int] = {}
        steps = 0
        while steps < n_steps:
            for w in range(n_walkers):
                a = g.pick(hubs[pos[w]], rngs[w].next())
                if a < 0:
                    pos[w] = sample_cdf(hub_cdf, rngs[w].next())
                    continue
                steps += 1
                visits[a] = visits.get(a, 0) + 1
                if rngs[w].next() < restart_prob:
                    pos[w] = sample_cdf(hub_cdf, rngs[w].next())
                else:
                    back = followers_in_hubs[a]
                    pos[w] = back[min(int(rngs[w].next() * len(back)), len(back) - 1)]
                    steps += 1
        return {a: float(c) for a, c in visits.items()}, _row(exclude, u) | {u}, steps

    return _per_query(queries, k, one)


def fof_scores(indptr, indices, queries, k, *, exclude=None, normalize=False):
    g = Adjacency(indptr, indices)

    def one(u):
        scores: dict[int, float] = {}
        for f in g.rows[u]:
            if not g.rows[f]:
                continue
            w = 1.0 / len(g.rows[f]) if normalize else 1.0
            for v in g.rows[f]:
                scores[v] = scores.get(v, 0.0) + w
        return scores, _row(exclude, u) | {u}, 0

    return _per_query(queries, k, one)[:2]
