"""Random-walk candidate sources: Pixie tweets, and PPR / SALSA / friends-of-friends follows.

Thin functions over :mod:`graph.walks`: they pick the snapshot arrays, derive edge
weights, set the exclusions and return ``(ids, scores)`` arrays (dense indices into
``snap.tweet_ids`` / ``snap.user_ids``, best first, -1 / 0 padded to ``k``).

* ``*_candidates(snap, user_index, k, ...)``: one user, 1-D arrays, one thread by default
  (the serving path).
* ``*_candidates_batch(snap, users, k, ...)``: many users, 2-D arrays, parallel across
  users in numba.
* ``PixieSource``, ``PPRSource``, ``SalsaSource``, ``FriendsOfFriendsSource``: the same
  functions under the candidate-source contract (:class:`retrieval.sources.CandidateSource`).

Exclusions are built in: the user, accounts they already follow (follows), tweets they
already engaged with and, unless ``exclude_authored=False``, tweets they wrote (tweets).
A user with an empty neighbourhood gets an all -1 row, never an error.
"""

from __future__ import annotations

import inspect
import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from graph import walks
from graph.errors import InputError
from graph.ranking import filter_lists
from graph.schema import DEFAULT_KIND_WEIGHTS, KINDS
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, interaction_matrix

log = logging.getLogger(__name__)

DAY = 86_400


def _default(fn, name: str):
    """The default of walk function ``fn``'s parameter ``name``: each walk parameter is declared
    once, in :mod:`graph.walks`, and the candidate functions here take it from there."""
    return inspect.signature(fn).parameters[name].default


# ---------------------------------------------------------------------------
# Pixie edge weights


@dataclass(frozen=True)
class PixieGraph:
    """The user<->tweet CSRs with their alias tables (None = uniform) and the follow CSR."""

    ut_indptr: np.ndarray
    ut_indices: np.ndarray
    ut_sampler: tuple[np.ndarray, np.ndarray] | None
    tu_indptr: np.ndarray
    tu_indices: np.ndarray
    tu_sampler: tuple[np.ndarray, np.ndarray] | None
    fo_indptr: np.ndarray
    fo_indices: np.ndarray
    ref_time: int


def engagement_weights(
    kinds: np.ndarray,
    ts: np.ndarray,
    stored: np.ndarray | None,
    *,
    kind_weights: dict[str, float] | None = None,
    half_life_s: float | None = 7 * DAY,
    ref_time: int = 0,
) -> np.ndarray:
    """Weight of each engagement: kind weight x 0.5 ** (age / half_life) (x ``stored``).

    Age is ``ref_time - ts`` clipped at 0; timestamps of 0 (unknown) are not decayed,
    nor is anything when ``half_life_s`` is None or ``ref_time`` is 0.
    """
    kw = dict(DEFAULT_KIND_WEIGHTS)
    if kind_weights:
        unknown = set(kind_weights) - set(KINDS)
        if unknown:
            raise InputError(
                f"kind_weights: unknown engagement kind(s) {sorted(unknown)}; known: {list(KINDS)}"
            )
        kw.update(kind_weights)
    if any(not (math.isfinite(v) and v >= 0) for v in kw.values()):
        raise InputError(f"kind_weights must be finite and >= 0, got {kw}")
    table = np.zeros(max(KINDS.values()) + 1, dtype=np.float64)
    for name, code in KINDS.items():
        table[code] = kw[name]
    w = table[np.asarray(kinds, dtype=np.int64)] * time_decay(ts, half_life_s=half_life_s, ref_time=ref_time)
    if stored is not None:
        w = w * np.asarray(stored, dtype=np.float64)
    return w


def time_decay(ts: np.ndarray, *, half_life_s: float | None, ref_time: int) -> np.ndarray:
    """0.5 ** (age / half_life) with age = ref_time - ts clipped at 0; 1 where ts is 0
    (unknown), and everywhere when ``half_life_s`` is None or ``ref_time`` is 0."""
    ts = np.asarray(ts, dtype=np.int64)
    if half_life_s is None or ref_time <= 0:
        return np.ones(ts.shape, dtype=np.float64)
    if not half_life_s > 0:
        raise InputError(f"half_life_s must be > 0 (or None for no decay), got {half_life_s}")
    age = np.where(ts > 0, np.maximum(ref_time - ts, 0), 0).astype(np.float64)
    return np.exp2(-age / float(half_life_s))


def _with_authorship(snap: GraphSnapshot, w_ut: np.ndarray, author_w: np.ndarray):
    """User->tweet and tweet->user CSRs of engagements plus authorship edges (weighted)."""
    nu, nt = snap.n_users, snap.n_tweets
    rows = np.concatenate(
        [
            np.repeat(np.arange(nu, dtype=np.int64), np.diff(snap.eng_user_indptr)),
            np.repeat(np.arange(nu, dtype=np.int64), np.diff(snap.authored_indptr)),
        ]
    )
    cols = np.concatenate([snap.eng_user_indices, snap.authored_indices]).astype(np.int64)
    w = np.concatenate([w_ut, author_w])
    out = []
    for r, c, n in ((rows, cols, nu), (cols, rows, nt)):
        order = np.lexsort((c, r))
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        out.append((indptr, c[order].astype(np.int32), w[order]))
    return out


def _sampler_unless_uniform(indptr: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    # Equal weights sample exactly like uniform, which is faster (no alias lookup).
    if w.size == 0 or (w.min() == w.max() and w[0] > 0):
        return None
    return walks.alias_table(indptr, w)


def pixie_graph(
    snap: GraphSnapshot,
    *,
    kind_weights: dict[str, float] | None = None,
    half_life_s: float | None = 7 * DAY,
    ref_time: int | None = None,
    stored_weights: bool = False,
    author_weight: float = 2.0,
) -> PixieGraph:
    """Arrays for :func:`graph.walks.pixie_walks`; cached per snapshot and parameters.

    Edge weights: engagement kind weight x time decay (:func:`engagement_weights`).
    ``ref_time`` defaults to the snapshot's latest engagement time (0 when unknown:
    no decay). ``stored_weights`` multiplies in the snapshot's per-edge weights
    (e.g. listen counts). ``author_weight > 0`` adds authorship as user<->tweet edges of
    that weight (decayed by the tweet's age), so walks also reach what accounts post.
    """
    if not (math.isfinite(author_weight) and author_weight >= 0):
        raise InputError(f"author_weight must be finite and >= 0, got {author_weight}")
    key = (
        id(snap),
        snap.snapshot_id,
        tuple(sorted((kind_weights or {}).items())),
        half_life_s,
        ref_time,
        stored_weights,
        author_weight,
    )
    return _cached(
        key,
        snap,
        lambda: _build_pixie_graph(snap, kind_weights, half_life_s, ref_time, stored_weights, author_weight),
    )


def _build_pixie_graph(
    snap, kind_weights, half_life_s, ref_time, stored_weights, author_weight
) -> PixieGraph:
    if ref_time is None:
        ts = snap.eng_user_ts
        ref_time = int(ts.max()) if len(ts) else 0
    common = dict(kind_weights=kind_weights, half_life_s=half_life_s, ref_time=int(ref_time))
    w_ut = engagement_weights(
        snap.eng_user_kinds, snap.eng_user_ts, snap.eng_user_weights if stored_weights else None, **common
    )
    w_tu = engagement_weights(
        snap.eng_tweet_kinds, snap.eng_tweet_ts, snap.eng_tweet_weights if stored_weights else None, **common
    )
    if author_weight > 0 and len(snap.authored_indices):
        created = snap.tweet_created[snap.authored_indices]
        author_w = author_weight * time_decay(created, half_life_s=half_life_s, ref_time=int(ref_time))
        (ut_indptr, ut_indices, w_ut), (tu_indptr, tu_indices, w_tu) = _with_authorship(snap, w_ut, author_w)
    else:
        ut_indptr, ut_indices = (
            np.ascontiguousarray(snap.eng_user_indptr),
            np.ascontiguousarray(snap.eng_user_indices),
        )
        tu_indptr, tu_indices = (
            np.ascontiguousarray(snap.eng_tweet_indptr),
            np.ascontiguousarray(snap.eng_tweet_indices),
        )
    g = PixieGraph(
        ut_indptr=ut_indptr,
        ut_indices=ut_indices,
        ut_sampler=_sampler_unless_uniform(ut_indptr, w_ut),
        tu_indptr=tu_indptr,
        tu_indices=tu_indices,
        tu_sampler=_sampler_unless_uniform(tu_indptr, w_tu),
        fo_indptr=np.ascontiguousarray(snap.follow_out_indptr),
        fo_indices=np.ascontiguousarray(snap.follow_out_indices),
        ref_time=int(ref_time),
    )
    return g


def _cached(key: tuple, snap: GraphSnapshot, build):
    """The cached value for ``key`` (whose first part is ``id(snap)``), built on a miss."""
    with _cache_lock:
        hit = _graph_cache.get(key)
        if hit is not None and hit[0] is snap:
            _graph_cache.move_to_end(key)
            return hit[1]
    value = build()
    with _cache_lock:
        _graph_cache[key] = (snap, value)
        while len(_graph_cache) > _CACHE_SIZE:
            _graph_cache.popitem(last=False)
    return value


def forget(snap: GraphSnapshot) -> None:
    """Drop the cached walk graphs of ``snap`` (a snapshot about to be replaced)."""
    with _cache_lock:
        for key in [key for key, (held, _) in _graph_cache.items() if held is snap]:
            del _graph_cache[key]


#: Per-snapshot walk graphs (Pixie graphs, undirected follow CSR), least recently used dropped
#: first; an entry holds its snapshot, so a key's id() cannot be reused while it is cached.
_graph_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()
_CACHE_SIZE = 8


# ---------------------------------------------------------------------------
# candidate sources


def _one_user(batch: Callable, what: str) -> Callable:
    """The one-user form of candidate function ``batch``: (ids (k,), scores (k,)), on one
    thread unless told otherwise (the serving path)."""

    def one(
        snap: GraphSnapshot, user_index: int, k: int = 100, *, n_threads: int = 1, **params
    ) -> tuple[np.ndarray, np.ndarray]:
        users = np.array([int(user_index)], dtype=np.int64)
        ids, scores = batch(snap, users, k, n_threads=n_threads, **params)
        return ids[0], scores[0]

    one.__name__ = one.__qualname__ = batch.__name__.removesuffix("_batch")
    one.__doc__ = f"{what} for one user: (ids (k,), scores (k,)). Parameters as in :func:`{batch.__name__}`."
    return one


def pixie_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    n_steps: int = _default(walks.pixie_walks, "n_steps"),
    restart_prob: float = _default(walks.pixie_walks, "restart_prob"),
    followee_weight: float = _default(walks.pixie_walks, "followee_weight"),
    max_followees: int = _default(walks.pixie_walks, "max_followees"),
    n_p: int = _default(walks.pixie_walks, "n_p"),
    n_v: int = _default(walks.pixie_walks, "n_v"),
    beta: float = _default(walks.pixie_walks, "beta"),
    kind_weights: dict[str, float] | None = None,
    half_life_s: float | None = 7 * DAY,
    ref_time: int | None = None,
    stored_weights: bool = False,
    author_weight: float = 2.0,
    exclude_authored: bool = True,
    seed: int = _default(walks.pixie_walks, "seed"),
    n_walkers: int = _default(walks.pixie_walks, "n_walkers"),
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixie tweet candidates for many users: (ids (n, k), scores (n, k)).

    Walks user -> tweet -> user from the user and its followees (see
    :func:`graph.walks.pixie_walks` for the parameters), over edges weighted by
    engagement kind and time decay (:func:`pixie_graph`)."""
    g = pixie_graph(
        snap,
        kind_weights=kind_weights,
        half_life_s=half_life_s,
        ref_time=ref_time,
        stored_weights=stored_weights,
        author_weight=author_weight,
    )
    ids, scores, _ = walks.pixie_walks(
        g.ut_indptr,
        g.ut_indices,
        g.tu_indptr,
        g.tu_indices,
        g.fo_indptr,
        g.fo_indices,
        users,
        k,
        ut_sampler=g.ut_sampler,
        tu_sampler=g.tu_sampler,
        exclude=(snap.eng_user_indptr, snap.eng_user_indices),
        exclude2=(snap.authored_indptr, snap.authored_indices) if exclude_authored else None,
        n_steps=n_steps,
        restart_prob=restart_prob,
        followee_weight=followee_weight,
        max_followees=max_followees,
        n_p=n_p,
        n_v=n_v,
        beta=beta,
        seed=seed,
        n_walkers=n_walkers,
        n_threads=n_threads,
    )
    return ids, scores


pixie_candidates = _one_user(pixie_candidates_batch, "Pixie tweet candidates")


DIRECTIONS = ("out", "undirected")


def _check_direction(direction: str) -> None:
    if direction not in DIRECTIONS:
        raise InputError(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")


def _follow_csr(snap: GraphSnapshot, direction: str = "out") -> tuple[np.ndarray, np.ndarray]:
    """The follow graph the walks move on: ``out`` (follower -> followee) or ``undirected``
    (also followee -> follower: being followed by someone is a tie too, as Adamic-Adar's
    undirected mode assumes). The walks default to ``undirected``: tuned on validation it wins
    on flickr's directed graph (SALSA recall@20 0.137 vs 0.081 walking out-edges only) and is
    the same graph on symmetric ones."""
    if direction == "out":
        return np.ascontiguousarray(snap.follow_out_indptr), np.ascontiguousarray(snap.follow_out_indices)
    _check_direction(direction)
    # Built once per snapshot (same cache as the Pixie graphs): the transpose-and-add costs
    # ~150 ms at 3.8M follows, which a per-call walk (who_to_follow on a large graph) cannot
    # pay every time.
    return _cached(
        (id(snap), snap.snapshot_id, "undirected follows"), snap, lambda: _undirected_follows(snap)
    )


def _undirected_follows(snap: GraphSnapshot) -> tuple[np.ndarray, np.ndarray]:
    f = interaction_matrix(snap, TASK_FOLLOWS)
    both = (f + f.T).tocsr()
    both.sort_indices()
    return both.indptr.astype(np.int64), both.indices.astype(np.int64)


def _walk_follows(
    walk: Callable, snap: GraphSnapshot, users: np.ndarray, k: int, direction: str, **params
) -> tuple[np.ndarray, np.ndarray]:
    """``walk`` over the follow graph in ``direction`` from each user, accounts already
    followed left out: (ids, scores)."""
    indptr, indices = _follow_csr(snap, direction)
    ids, scores, _ = walk(indptr, indices, users, k, exclude=_follow_csr(snap, "out"), **params)
    return ids, scores


def ppr_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    mode: str = "power",
    restart_prob: float = walks.PPR_RESTART_PROB,
    n_iter: int = walks.PPR_POWER_ITERATIONS,
    tol: float = walks.PPR_POWER_TOL,
    n_steps: int = _default(walks.ppr_montecarlo, "n_steps"),
    direction: str = "undirected",
    seed: int = _default(walks.ppr_montecarlo, "seed"),
    n_walkers: int = _default(walks.ppr_montecarlo, "n_walkers"),
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Who to follow by personalized PageRank over the follow graph from each user.

    ``mode="power"``: deterministic sparse power iteration (``n_iter``, ``tol``);
    ``mode="montecarlo"``: ``n_steps`` steps of walks with restart (cost independent of
    the graph size; deterministic for a seed). Scores estimate PPR probabilities.
    ``direction``: the graph walked (:func:`_follow_csr`); accounts already followed are
    always excluded."""
    params = dict(exclude_self=True, restart_prob=restart_prob, n_threads=n_threads)
    if mode == "power":
        walk = walks.ppr_power
        params.update(n_iter=n_iter, tol=tol)
    elif mode == "montecarlo":
        walk = walks.ppr_montecarlo
        params.update(n_steps=n_steps, seed=seed, n_walkers=n_walkers)
    else:
        _check_direction(direction)  # of two bad arguments, the direction is reported
        raise InputError(f"mode must be 'power' or 'montecarlo', got {mode!r}")
    return _walk_follows(walk, snap, users, k, direction, **params)


ppr_candidates = _one_user(ppr_candidates_batch, "PPR follow candidates")


def salsa_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    n_hubs: int = _default(walks.salsa_walks, "n_hubs"),
    cot_steps: int = _default(walks.salsa_walks, "cot_steps"),
    cot_restart: float = _default(walks.salsa_walks, "cot_restart"),
    n_steps: int = _default(walks.salsa_walks, "n_steps"),
    restart_prob: float = _default(walks.salsa_walks, "restart_prob"),
    direction: str = "undirected",
    seed: int = _default(walks.salsa_walks, "seed"),
    n_walkers: int = _default(walks.salsa_walks, "n_walkers"),
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Who to follow by SALSA on the user's circle of trust (WTF); see
    :func:`graph.walks.salsa_walks`. ``direction`` as in :func:`ppr_candidates_batch`."""
    return _walk_follows(
        walks.salsa_walks,
        snap,
        users,
        k,
        direction,
        n_hubs=n_hubs,
        cot_steps=cot_steps,
        cot_restart=cot_restart,
        n_steps=n_steps,
        restart_prob=restart_prob,
        seed=seed,
        n_walkers=n_walkers,
        n_threads=n_threads,
    )


salsa_candidates = _one_user(salsa_candidates_batch, "SALSA follow candidates")


def fof_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    normalize: bool = False,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Friends of friends: accounts followed by the most of the user's followees."""
    indptr, indices = _follow_csr(snap)
    return walks.fof_scores(
        indptr, indices, users, k, exclude=(indptr, indices), normalize=normalize, n_threads=n_threads
    )


fof_candidates = _one_user(fof_candidates_batch, "Friends-of-friends follow candidates")


# ---------------------------------------------------------------------------
# the walks as candidate sources


class WalkSource:
    """A random-walk candidate function as a :class:`~retrieval.sources.CandidateSource`.

    ``params`` go to the candidate function unchanged: its signature holds the one set of
    defaults. One user per call runs on one thread (the serial kernels: safe in forked
    serving workers); batches walk in parallel. Walks are seeded per (seed, user), so a
    user's list does not depend on the batch it is walked in.
    """

    name = ""
    task = ""
    _batch = staticmethod(lambda snap, users, k, **params: None)

    def __init__(self, **params):
        declared = inspect.signature(type(self)._batch).parameters
        if "direction" in declared:  # a bad direction fails here, not at the first call
            _check_direction(params.get("direction", declared["direction"].default))
        accepted = [p for p in declared if p not in ("snap", "users", "k")]
        unknown = sorted(set(params) - set(accepted))
        if unknown:
            raise InputError(
                f"source {self.name!r} has no parameter(s) {unknown}; it accepts {', '.join(accepted)}"
            )
        self.params = params
        self.snap: GraphSnapshot | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def fit(self, snap: GraphSnapshot) -> WalkSource:
        self.snap = snap
        self.prepare(snap)
        return self

    def prepare(self, snap: GraphSnapshot) -> None:
        """Build what a walk on ``snap`` reads (cached per snapshot: the undirected follow graph,
        the Pixie weights), so that no served call pays for it."""
        direction = self.params.get("direction")
        declared = inspect.signature(type(self)._batch).parameters
        if direction is None and "direction" in declared:
            direction = declared["direction"].default
        if direction is not None:
            _follow_csr(snap, direction)

    def candidates(self, users: np.ndarray, k: int, exclude_rows=None) -> tuple[np.ndarray, np.ndarray]:
        if self.snap is None:
            raise InputError(f"source {self.name!r}: call fit() before candidates()")
        return self.candidates_on(self.snap, users, k, exclude_rows)

    def candidates_on(
        self, snap: GraphSnapshot, users: np.ndarray, k: int, exclude_rows=None
    ) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`candidates` walked on ``snap`` instead of the fitted snapshot (the live stage
        walks the snapshot with the live edges folded in, :class:`retrieval.live.WalkView`)."""
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        params = dict(self.params)
        if len(users) <= 1:
            params["n_threads"] = 1
        ids, vals = type(self)._batch(snap, users, k, **params)
        # The walks rank best first, ties by lower id: the rule select_candidates applies.
        return filter_lists(ids, vals, k, exclude_rows)


class PixieSource(WalkSource):
    """Pixie / UTEG tweet candidates (parameters of :func:`pixie_candidates_batch`)."""

    name = "pixie"
    task = TASK_TWEETS
    _batch = staticmethod(pixie_candidates_batch)

    def prepare(self, snap: GraphSnapshot) -> None:
        keys = ("kind_weights", "half_life_s", "stored_weights", "author_weight")
        pixie_graph(snap, **{k: self.params[k] for k in keys if k in self.params})  # weights now


class PPRSource(WalkSource):
    """Personalized PageRank who-to-follow (parameters of :func:`ppr_candidates_batch`)."""

    name = "ppr"
    task = TASK_FOLLOWS
    _batch = staticmethod(ppr_candidates_batch)

    def __init__(self, **params):
        if params.get("mode", "power") not in ("power", "montecarlo"):
            raise InputError(f"mode must be 'power' or 'montecarlo', got {params['mode']!r}")
        super().__init__(**params)


class SalsaSource(WalkSource):
    """WTF SALSA who-to-follow (parameters of :func:`salsa_candidates_batch`)."""

    name = "salsa"
    task = TASK_FOLLOWS
    _batch = staticmethod(salsa_candidates_batch)


class FriendsOfFriendsSource(WalkSource):
    """Friends-of-friends who-to-follow (parameters of :func:`fof_candidates_batch`)."""

    name = "fof"
    task = TASK_FOLLOWS
    _batch = staticmethod(fof_candidates_batch)
