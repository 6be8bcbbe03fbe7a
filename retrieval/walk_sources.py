"""Random-walk candidate sources: Pixie tweets, and PPR / SALSA / friends-of-friends follows.

Thin functions over :mod:`graph.walks`: they pick the snapshot arrays, derive edge
weights, set the exclusions and return ``(ids, scores)`` arrays (dense indices into
``snap.tweet_ids`` / ``snap.user_ids``, best first, -1 / 0 padded to ``k``).

* ``*_candidates(snap, user_index, k, ...)``: one user, 1-D arrays, one thread by default
  (the serving path).
* ``*_candidates_batch(snap, users, k, ...)``: many users, 2-D arrays, parallel across
  users in numba.
* ``PixieMethod``, ``PPRMethod``, ``SalsaMethod``, ``FriendsOfFriendsMethod``: the
  evaluation method contract (``fit(train, task)``, ``recommend(users, k)``).

Exclusions are built in: the user, accounts they already follow (follows), tweets they
already engaged with and, unless ``exclude_authored=False``, tweets they wrote (tweets).
A user with an empty neighbourhood gets an all -1 row, never an error.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from graph import walks
from graph.errors import InputError
from graph.schema import DEFAULT_KIND_WEIGHTS, KINDS
from graph.snapshot import GraphSnapshot

log = logging.getLogger(__name__)

DAY = 86_400
TASK_TWEETS = "tweets"
TASK_FOLLOWS = "follows"


# ---------------------------------------------------------------------------
# Pixie edge weights


@dataclass(frozen=True)
class PixieGraph:
    """The user<->tweet CSRs with their sampling cdfs (None = uniform) and the follow CSR."""

    ut_indptr: np.ndarray
    ut_indices: np.ndarray
    ut_cdf: np.ndarray | None
    tu_indptr: np.ndarray
    tu_indices: np.ndarray
    tu_cdf: np.ndarray | None
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
    w = table[np.asarray(kinds, dtype=np.int64)]
    if half_life_s is not None and ref_time > 0:
        if not half_life_s > 0:
            raise InputError(f"half_life_s must be > 0 (or None for no decay), got {half_life_s}")
        ts = np.asarray(ts, dtype=np.int64)
        age = np.where(ts > 0, np.maximum(ref_time - ts, 0), 0).astype(np.float64)
        w = w * np.exp2(-age / float(half_life_s))
    if stored is not None:
        w = w * np.asarray(stored, dtype=np.float64)
    return w


def _cdf_unless_uniform(indptr: np.ndarray, w: np.ndarray) -> np.ndarray | None:
    # Equal weights sample exactly like uniform, which is faster (no search).
    if w.size == 0 or (w.min() == w.max() and w[0] > 0):
        return None
    return walks.row_cdf(indptr, w)


def pixie_graph(
    snap: GraphSnapshot,
    *,
    kind_weights: dict[str, float] | None = None,
    half_life_s: float | None = 7 * DAY,
    ref_time: int | None = None,
    stored_weights: bool = False,
) -> PixieGraph:
    """Arrays for :func:`graph.walks.pixie_walks`; cached per snapshot and parameters.

    ``ref_time`` defaults to the snapshot's latest engagement time (0 when unknown:
    no decay). ``stored_weights`` multiplies in the snapshot's per-edge weights
    (e.g. listen counts).
    """
    key = (
        id(snap),
        snap.snapshot_id,
        tuple(sorted((kind_weights or {}).items())),
        half_life_s,
        ref_time,
        stored_weights,
    )
    with _cache_lock:
        hit = _graph_cache.get(key)
        if hit is not None and hit[0] is snap:
            _graph_cache.move_to_end(key)
            return hit[1]
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
    g = PixieGraph(
        ut_indptr=np.ascontiguousarray(snap.eng_user_indptr),
        ut_indices=np.ascontiguousarray(snap.eng_user_indices),
        ut_cdf=_cdf_unless_uniform(snap.eng_user_indptr, w_ut),
        tu_indptr=np.ascontiguousarray(snap.eng_tweet_indptr),
        tu_indices=np.ascontiguousarray(snap.eng_tweet_indices),
        tu_cdf=_cdf_unless_uniform(snap.eng_tweet_indptr, w_tu),
        fo_indptr=np.ascontiguousarray(snap.follow_out_indptr),
        fo_indices=np.ascontiguousarray(snap.follow_out_indices),
        ref_time=int(ref_time),
    )
    with _cache_lock:
        _graph_cache[key] = (snap, g)
        while len(_graph_cache) > 4:
            _graph_cache.popitem(last=False)
    return g


_graph_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


# ---------------------------------------------------------------------------
# candidate sources


def _one(users) -> np.ndarray:
    return np.array([int(users)], dtype=np.int64)


def pixie_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    n_steps: int = 100_000,
    restart_prob: float = 0.5,
    followee_weight: float = 0.5,
    max_followees: int = 32,
    n_p: int = 0,
    n_v: int = 4,
    beta: float = 0.0,
    kind_weights: dict[str, float] | None = None,
    half_life_s: float | None = 7 * DAY,
    ref_time: int | None = None,
    stored_weights: bool = False,
    exclude_authored: bool = True,
    seed: int = 0,
    n_walkers: int = 16,
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
        ut_cdf=g.ut_cdf,
        tu_cdf=g.tu_cdf,
        exclude=(g.ut_indptr, g.ut_indices),
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


def pixie_candidates(snap: GraphSnapshot, user_index: int, k: int = 100, *, n_threads: int = 1, **params):
    """Pixie tweet candidates for one user: (ids (k,), scores (k,)). Parameters as in
    :func:`pixie_candidates_batch`."""
    ids, scores = pixie_candidates_batch(snap, _one(user_index), k, n_threads=n_threads, **params)
    return ids[0], scores[0]


def _follow_csr(snap: GraphSnapshot) -> tuple[np.ndarray, np.ndarray]:
    return np.ascontiguousarray(snap.follow_out_indptr), np.ascontiguousarray(snap.follow_out_indices)


def ppr_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    mode: str = "power",
    restart_prob: float = 0.15,
    n_iter: int = 30,
    tol: float = 1e-6,
    n_steps: int = 100_000,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Who to follow by personalized PageRank over the follow graph from each user.

    ``mode="power"``: deterministic sparse power iteration (``n_iter``, ``tol``);
    ``mode="montecarlo"``: ``n_steps`` steps of walks with restart (cost independent of
    the graph size; deterministic for a seed). Scores estimate PPR probabilities."""
    indptr, indices = _follow_csr(snap)
    exclude = (indptr, indices)
    if mode == "power":
        ids, scores, _ = walks.ppr_power(
            indptr,
            indices,
            users,
            k,
            exclude=exclude,
            exclude_self=True,
            restart_prob=restart_prob,
            n_iter=n_iter,
            tol=tol,
            n_threads=n_threads,
        )
    elif mode == "montecarlo":
        ids, scores, _ = walks.ppr_montecarlo(
            indptr,
            indices,
            users,
            k,
            exclude=exclude,
            exclude_self=True,
            restart_prob=restart_prob,
            n_steps=n_steps,
            seed=seed,
            n_walkers=n_walkers,
            n_threads=n_threads,
        )
    else:
        raise InputError(f"mode must be 'power' or 'montecarlo', got {mode!r}")
    return ids, scores


def ppr_candidates(snap: GraphSnapshot, user_index: int, k: int = 100, *, n_threads: int = 1, **params):
    """PPR follow candidates for one user: (ids (k,), scores (k,))."""
    ids, scores = ppr_candidates_batch(snap, _one(user_index), k, n_threads=n_threads, **params)
    return ids[0], scores[0]


def salsa_candidates_batch(
    snap: GraphSnapshot,
    users: np.ndarray,
    k: int = 100,
    *,
    n_hubs: int = 200,
    cot_steps: int = 20_000,
    cot_restart: float = 0.3,
    n_steps: int = 50_000,
    restart_prob: float = 0.3,
    seed: int = 0,
    n_walkers: int = 16,
    n_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Who to follow by SALSA on the user's circle of trust (WTF); see
    :func:`graph.walks.salsa_walks`."""
    indptr, indices = _follow_csr(snap)
    ids, scores, _ = walks.salsa_walks(
        indptr,
        indices,
        users,
        k,
        exclude=(indptr, indices),
        n_hubs=n_hubs,
        cot_steps=cot_steps,
        cot_restart=cot_restart,
        n_steps=n_steps,
        restart_prob=restart_prob,
        seed=seed,
        n_walkers=n_walkers,
        n_threads=n_threads,
    )
    return ids, scores


def salsa_candidates(snap: GraphSnapshot, user_index: int, k: int = 100, *, n_threads: int = 1, **params):
    """SALSA follow candidates for one user: (ids (k,), scores (k,))."""
    ids, scores = salsa_candidates_batch(snap, _one(user_index), k, n_threads=n_threads, **params)
    return ids[0], scores[0]


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


def fof_candidates(snap: GraphSnapshot, user_index: int, k: int = 100, *, n_threads: int = 1, **params):
    """Friends-of-friends follow candidates for one user: (ids (k,), scores (k,))."""
    ids, scores = fof_candidates_batch(snap, _one(user_index), k, n_threads=n_threads, **params)
    return ids[0], scores[0]


# ---------------------------------------------------------------------------
# evaluation methods


class _WalkMethod:
    name = ""
    tasks: tuple[str, ...] = ()
    _batch = staticmethod(lambda snap, users, k, **params: None)

    def __init__(self, **params):
        self.params = params
        self.snap: GraphSnapshot | None = None
        self.task: str | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params.items())
        return f"{type(self).__name__}({args})"

    def fit(self, train: GraphSnapshot, task: str):
        if task not in self.tasks:
            raise InputError(f"method {self.name!r} supports task(s) {list(self.tasks)}, not {task!r}")
        self.snap, self.task = train, task
        return self

    def recommend(self, users: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.snap is None:
            raise InputError(f"method {self.name!r}: call fit() before recommend()")
        users = np.asarray(users, dtype=np.int64).reshape(-1)
        return type(self)._batch(self.snap, users, k, **self.params)


class PixieMethod(_WalkMethod):
    """Pixie / UTEG tweet candidates (parameters of :func:`pixie_candidates_batch`)."""

    name = "pixie"
    tasks = (TASK_TWEETS,)
    _batch = staticmethod(pixie_candidates_batch)

    def __init__(
        self,
        *,
        n_steps: int = 100_000,
        restart_prob: float = 0.5,
        followee_weight: float = 0.5,
        max_followees: int = 32,
        n_p: int = 0,
        n_v: int = 4,
        beta: float = 0.0,
        kind_weights: dict[str, float] | None = None,
        half_life_s: float | None = 7 * DAY,
        stored_weights: bool = False,
        seed: int = 0,
        n_threads: int | None = None,
    ):
        super().__init__(
            n_steps=n_steps,
            restart_prob=restart_prob,
            followee_weight=followee_weight,
            max_followees=max_followees,
            n_p=n_p,
            n_v=n_v,
            beta=beta,
            kind_weights=kind_weights,
            half_life_s=half_life_s,
            stored_weights=stored_weights,
            seed=seed,
            n_threads=n_threads,
        )

    def fit(self, train: GraphSnapshot, task: str) -> PixieMethod:
        super().fit(train, task)
        p = self.params
        pixie_graph(
            train,
            kind_weights=p["kind_weights"],
            half_life_s=p["half_life_s"],
            stored_weights=p["stored_weights"],
        )  # warm the weight cache
        return self


class PPRMethod(_WalkMethod):
    """Personalized PageRank who-to-follow (parameters of :func:`ppr_candidates_batch`)."""

    name = "ppr"
    tasks = (TASK_FOLLOWS,)
    _batch = staticmethod(ppr_candidates_batch)

    def __init__(
        self,
        *,
        mode: str = "power",
        restart_prob: float = 0.15,
        n_iter: int = 30,
        tol: float = 1e-6,
        n_steps: int = 100_000,
        seed: int = 0,
        n_threads: int | None = None,
    ):
        if mode not in ("power", "montecarlo"):
            raise InputError(f"mode must be 'power' or 'montecarlo', got {mode!r}")
        super().__init__(
            mode=mode,
            restart_prob=restart_prob,
            n_iter=n_iter,
            tol=tol,
            n_steps=n_steps,
            seed=seed,
            n_threads=n_threads,
        )


class SalsaMethod(_WalkMethod):
    """WTF SALSA who-to-follow (parameters of :func:`salsa_candidates_batch`)."""

    name = "salsa"
    tasks = (TASK_FOLLOWS,)
    _batch = staticmethod(salsa_candidates_batch)

    def __init__(
        self,
        *,
        n_hubs: int = 200,
        cot_steps: int = 20_000,
        cot_restart: float = 0.3,
        n_steps: int = 50_000,
        restart_prob: float = 0.3,
        seed: int = 0,
        n_threads: int | None = None,
    ):
        super().__init__(
            n_hubs=n_hubs,
            cot_steps=cot_steps,
            cot_restart=cot_restart,
            n_steps=n_steps,
            restart_prob=restart_prob,
            seed=seed,
            n_threads=n_threads,
        )


class FriendsOfFriendsMethod(_WalkMethod):
    """Friends-of-friends who-to-follow (parameters of :func:`fof_candidates_batch`)."""

    name = "fof"
    tasks = (TASK_FOLLOWS,)
    _batch = staticmethod(fof_candidates_batch)

    def __init__(self, *, normalize: bool = False, seed: int = 0, n_threads: int | None = None):
        # seed is accepted for the method contract; friends of friends is deterministic
        super().__init__(normalize=normalize, n_threads=n_threads)
        self.seed = seed
