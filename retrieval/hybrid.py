"""The hybrid candidate generator as an evaluation method (``--method hybrid``).

Graph-neighbour sources, the training-free spectral filter (BSPM), random walks, content and
popularity, fused by weights tuned on validation data carved from the training graph. Each
source contributes its top-``depth`` candidates, normalised per user, as candidate generation
does in production. GNN embeddings are not among its sources: tuning them fairly would mean
training the GNN twice (on the carve, then on the whole graph). The serving ``Recommender``
takes trained embeddings as a source with a fixed weight.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from evaluation.scoring import ScoringMethod, mask_rows, top_k
from graph.snapshot import GraphSnapshot
from retrieval import sources as cs
from retrieval.tuning import carve_validation, coordinate_ascent, exclusions, source_candidates

log = logging.getLogger(__name__)

#: Sources per task, by name; ``None`` entries are skipped when the data cannot feed them.
TWEET_SOURCES = (
    "spectral",
    "co_engagement",
    "similar_users",
    "followee_engagement",
    "pixie",
    "content",
    "popular",
)
FOLLOW_SOURCES = ("second_hop", "follow_back", "co_follow", "similar_engagers", "ppr", "salsa", "popular")


def make_source(name: str, snap: GraphSnapshot, task: str, seed: int):
    """A fresh, unfitted source by name, or None when this snapshot cannot feed it."""
    if name == "spectral":
        return cs.SpectralSource(seed=seed) if snap.n_tweets <= 120_000 else None
    if name == "co_engagement":
        return cs.CoEngagementSource()
    if name == "similar_users":
        return cs.SimilarUsersSource() if snap.n_engagements else None
    if name == "followee_engagement":
        return cs.FolloweeEngagementSource() if snap.n_follows else None
    if name == "content":
        return cs.ContentSource() if snap.tweet_texts else None
    if name == "popular":
        return cs.PopularitySource(task)
    if name == "second_hop":
        return cs.SecondHopSource() if snap.n_follows else None
    if name == "follow_back":
        return cs.FollowBackSource() if snap.n_follows else None
    if name == "co_follow":
        return cs.CoFollowSource() if snap.n_follows else None
    if name == "similar_engagers":
        return cs.SimilarEngagersSource() if snap.n_engagements else None
    if name in ("pixie", "ppr", "salsa"):
        return walk_source(name, snap, seed)
    raise ValueError(f"unknown source {name!r}")


def walk_source(name: str, snap: GraphSnapshot, seed: int = 0) -> MethodSource | None:
    """The random-walk source ``pixie`` (tweets), ``ppr`` or ``salsa`` (follows), or None when
    the snapshot has no edges for it."""
    if name == "pixie" and not snap.n_engagements:
        return None
    if name in ("ppr", "salsa") and not snap.n_follows:
        return None
    from retrieval import walk_sources

    cls = {
        "pixie": walk_sources.PixieMethod,
        "ppr": walk_sources.PPRMethod,
        "salsa": walk_sources.SalsaMethod,
    }[name]
    return MethodSource(name, cls(seed=seed), "tweets" if name == "pixie" else "follows")


class MethodSource(cs.Source):
    """Any evaluation method (``fit``/``recommend``) as a source: its top candidates, scattered densely."""

    def __init__(self, name: str, method, task: str, depth: int = 300):
        self.name, self.method, self.task, self.depth = name, method, task, depth
        self.kind = task

    def fit(self, snap: GraphSnapshot) -> MethodSource:
        self.method.fit(snap, self.task)
        self.n_targets = snap.n_tweets if self.task == "tweets" else snap.n_users
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        ids, vals = self.method.recommend(np.asarray(users, np.int64), self.depth)
        out = np.zeros((len(users), self.n_targets), np.float32)
        ok = (ids >= 0) & np.isfinite(vals) & (vals > 0)
        rows = np.broadcast_to(np.arange(len(users))[:, None], ids.shape)
        out[rows[ok], ids[ok]] = vals[ok]
        return out


class HybridMethod(ScoringMethod):
    """Fusion of every applicable source, weights tuned on a validation carve of the training data."""

    name = "hybrid"
    tasks = ("tweets", "follows")
    batch_size = 1024

    def __init__(
        self,
        *,
        depth: int = 300,
        tune: bool = True,
        val_users: int = 4000,
        sources: tuple[str, ...] | None = None,
        weights: dict[str, float] | None = None,
        seed: int = 0,
    ):
        super().__init__(
            depth=depth, tune=tune, val_users=val_users, sources=sources, weights=weights, seed=seed
        )
        self.depth, self.tune, self.val_users, self.seed = depth, tune, val_users, seed
        self.source_names = sources
        self.fixed_weights = weights

    def _build(self, snap: GraphSnapshot, task: str, names) -> dict[str, cs.Source]:
        built = {}
        for name in names:
            src = make_source(name, snap, task, self.seed)
            if src is None:
                continue
            t0 = time.perf_counter()
            built[name] = src.fit(snap)
            log.info("hybrid: fitted %s in %.1fs", name, time.perf_counter() - t0)
        return built

    def _fit(self, train: GraphSnapshot, task: str) -> None:
        names = self.source_names or (TWEET_SOURCES if task == "tweets" else FOLLOW_SOURCES)
        self.tuning_ = {}
        if self.fixed_weights is not None:
            weights = dict(self.fixed_weights)
        elif self.tune:
            weights = self._tune(train, task, names)
        else:
            weights = {n: 1.0 for n in names}
        self.weights_ = {n: w for n, w in weights.items() if w > 0}
        self.sources_ = self._build(train, task, [n for n in names if self.weights_.get(n)])

    def _tune(self, train: GraphSnapshot, task: str, names) -> dict[str, float]:
        t0 = time.perf_counter()
        val_train, truth = carve_validation(train, task, seed=self.seed)
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if len(users) > self.val_users:
            users = np.sort(np.random.default_rng(self.seed).choice(users, self.val_users, replace=False))
        fitted = self._build(val_train, task, names)
        excl = exclusions(val_train, task)
        cands = {n: source_candidates(src.scores, users, excl, self.depth) for n, src in fitted.items()}
        weights, val_recall, single = coordinate_ascent(cands, truth[users], k=20)
        self.tuning_ = {
            "weights": weights,
            "val_recall@20": val_recall,
            "single_source_val_recall@20": single,
            "val_users": int(len(users)),
            "tune_s": time.perf_counter() - t0,
        }
        return weights

    def get_params(self) -> dict:
        params = dict(self.params)
        if hasattr(self, "weights_"):
            params["tuned_weights"] = self.weights_
        return params

    def _score(self, users: np.ndarray) -> np.ndarray:
        out = np.zeros((len(users), self.n_items_), np.float32)
        excl = self.exclude_[users]
        rows = np.arange(len(users))[:, None]
        for name, src in self.sources_.items():
            s = np.array(src.scores(users), dtype=np.float32, copy=True)
            mask_rows(s, excl)
            ids, v = top_k(s, self.depth)
            ok = (ids >= 0) & (v > 0)
            peak = np.where(ok, v, 0).max(axis=1, keepdims=True)
            v = np.divide(v, peak, out=np.zeros_like(v), where=peak > 0)
            np.add.at(out, (np.broadcast_to(rows, ids.shape)[ok], ids[ok]), self.weights_[name] * v[ok])
        return out
