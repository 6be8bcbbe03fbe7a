"""The one catalogue of candidate sources: every source by task and name, when the data can
feed it, its default weight, and whether serving precomputes it.

The :class:`~retrieval.recommender.Recommender`, the weight tuning (``graphrec tune``) and the
evaluation (``--method recommender`` / ``hybrid``) all build their sources here, so what is
tuned and evaluated is what is served. A source's own hyper-parameters are declared once, in
its class (or, for the walks, in the candidate function's signature).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from graph.errors import GraphRecError
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, TASKS, check_task
from retrieval import sources as src
from retrieval import walk_sources as walks
from retrieval.precomputed import PrecomputedSource
from retrieval.sources import CandidateSource

#: Catalogue size above which the item-item spectral filter is left out (its work grows as n^2).
SPECTRAL_MAX_TWEETS = 120_000
#: Snapshots with at most this many users run the random-walk sources for every user at fit
#: (parallel batch walks, served from memory); larger ones walk per call on one thread.
WALK_PRECOMPUTE_MAX_USERS = 50_000
#: Walk budgets on snapshots above that size, where a served call walks on one thread and its
#: steps are its latency. The precomputed lists of smaller snapshots keep the full budgets
#: (the candidate functions' defaults). More walkers interleaved per query overlap more cache
#: misses (statistically the same walk: 64 walkers cost 0.8x the time of 16 on the 10M-edge
#: graph). What these budgets cost in recall@20 and buy in latency: BENCHMARKS.md, "Per-call
#: walk budgets".
PER_CALL_WALK_BUDGETS: dict[str, dict[str, int]] = {
    "pixie": {"n_steps": 50_000, "n_walkers": 64},
    "ppr": {"n_steps": 30_000, "n_walkers": 64},
    "salsa": {"n_steps": 25_000, "cot_steps": 10_000, "n_walkers": 64},
}
#: How many candidates each source contributes to fusion (per user), when tuning and serving.
DEFAULT_DEPTH = 300


@dataclass(frozen=True)
class BuildContext:
    """What a source may need beyond the snapshot: a seed and trained embeddings."""

    seed: int = 0
    user_vectors: np.ndarray | None = None
    tweet_vectors: np.ndarray | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One catalogue entry: ``build`` returns an unfitted source, or None when the snapshot
    (or the context) cannot feed it; ``precompute`` says when serving precomputes its lists."""

    build: Callable[[GraphSnapshot, BuildContext], CandidateSource | None]
    weight: float
    precompute: str = "never"  # "never" | "always" | "small" (snapshots up to WALK_PRECOMPUTE_MAX_USERS)
    #: tuned on a validation carve (embeddings are not: they were trained on the carve's answers)
    tunable: bool = True


def _has_text(snap: GraphSnapshot) -> bool:
    return bool(snap.tweet_texts)


def _has_times(snap: GraphSnapshot) -> bool:
    return int(np.asarray(snap.tweet_created).max(initial=0)) > 0


def _tweet_embedding(snap: GraphSnapshot, ctx: BuildContext):
    if ctx.user_vectors is None or ctx.tweet_vectors is None:
        return None
    return src.EmbeddingSource(ctx.user_vectors, ctx.tweet_vectors, TASK_TWEETS)


def _follow_embedding(snap: GraphSnapshot, ctx: BuildContext):
    if ctx.user_vectors is None:
        return None
    return src.EmbeddingSource(ctx.user_vectors, ctx.user_vectors, TASK_FOLLOWS)


def _per_call(snap: GraphSnapshot) -> bool:
    return snap.n_users > WALK_PRECOMPUTE_MAX_USERS


def _walk(cls: type[walks.WalkSource], snap: GraphSnapshot, ctx: BuildContext, **params) -> walks.WalkSource:
    budget = PER_CALL_WALK_BUDGETS.get(cls.name, {}) if _per_call(snap) else {}
    return cls(seed=ctx.seed, **params, **budget)


def per_call_walk(source: walks.WalkSource) -> walks.WalkSource:
    """``source`` with the per-call budgets (Monte Carlo PPR): what a served call can walk when
    the snapshot's precomputed table does not hold the answer (the live stage's walk view)."""
    params = {**source.params, **PER_CALL_WALK_BUDGETS.get(source.name, {})}
    if isinstance(source, walks.PPRSource):
        params["mode"] = "montecarlo"
    return type(source)(**params)


def _ppr(snap: GraphSnapshot, ctx: BuildContext):
    if not snap.n_follows:
        return None
    # Power iteration touches the whole follow graph per user: fine for the batch precompute of
    # small snapshots; per call on larger ones the Monte Carlo walks cost what their steps cost.
    return _walk(walks.PPRSource, snap, ctx, mode="montecarlo" if _per_call(snap) else "power")


CATALOGUE: dict[str, dict[str, SourceSpec]] = {
    TASK_TWEETS: {
        "spectral": SourceSpec(
            lambda s, c: (
                src.SpectralSource(filter="chebycf", seed=c.seed)
                if 0 < s.n_tweets <= SPECTRAL_MAX_TWEETS
                else None
            ),
            1.0,
            precompute="always",  # cheap per batch, slow per call
        ),
        "co_engagement": SourceSpec(lambda s, c: src.CoEngagementSource() if s.n_engagements else None, 0.3),
        "followee_engagement": SourceSpec(
            lambda s, c: src.FolloweeEngagementSource() if s.n_follows and s.n_engagements else None, 0.3
        ),
        "similar_users": SourceSpec(lambda s, c: src.SimilarUsersSource() if s.n_engagements else None, 0.3),
        "pixie": SourceSpec(
            lambda s, c: _walk(walks.PixieSource, s, c) if s.n_engagements else None, 0.3, precompute="small"
        ),
        "content": SourceSpec(lambda s, c: src.ContentSource() if _has_text(s) else None, 0.1),
        "embedding": SourceSpec(_tweet_embedding, 0.5, tunable=False),
        "popular": SourceSpec(lambda s, c: src.PopularitySource(TASK_TWEETS, half_life_days=3.0), 0.05),
        "recent": SourceSpec(lambda s, c: src.RecencySource() if _has_times(s) else None, 0.02),
    },
    TASK_FOLLOWS: {
        "second_hop": SourceSpec(lambda s, c: src.SecondHopSource() if s.n_follows else None, 1.0),
        "follow_back": SourceSpec(lambda s, c: src.FollowBackSource() if s.n_follows else None, 0.6),
        "co_follow": SourceSpec(lambda s, c: src.CoFollowSource() if s.n_follows else None, 0.6),
        "similar_engagers": SourceSpec(
            lambda s, c: src.SimilarEngagersSource() if s.n_engagements else None, 0.1
        ),
        "ppr": SourceSpec(_ppr, 0.3, precompute="small"),
        "salsa": SourceSpec(
            lambda s, c: _walk(walks.SalsaSource, s, c) if s.n_follows else None, 0.3, precompute="small"
        ),
        "embedding": SourceSpec(_follow_embedding, 0.3, tunable=False),
        "popular": SourceSpec(lambda s, c: src.PopularitySource(TASK_FOLLOWS), 0.05),
    },
}


def source_names(task: str) -> list[str]:
    """Every source name of ``task``, in catalogue order."""
    return list(CATALOGUE[check_task(task)])


def default_weights(task: str) -> dict[str, float]:
    """The untuned weight of every source of ``task``."""
    return {name: spec.weight for name, spec in CATALOGUE[check_task(task)].items()}


def tunable(task: str, name: str) -> bool:
    return CATALOGUE[check_task(task)][name].tunable


def check_weights(task: str, weights: dict[str, float]) -> dict[str, float]:
    """``weights`` if every name is a source of ``task`` and every weight finite and >= 0."""
    unknown = set(weights) - set(CATALOGUE[check_task(task)])
    if unknown:
        raise GraphRecError(
            f"unknown {task} source(s) {sorted(unknown)}; the {task} sources are {', '.join(source_names(task))}"
        )
    bad = {n: w for n, w in weights.items() if not (np.isfinite(w) and w >= 0)}
    if bad:
        raise GraphRecError(f"{task} source weights must be finite and >= 0, got {bad}")
    return dict(weights)


def build_sources(
    snap: GraphSnapshot,
    task: str,
    names: Iterable[str],
    *,
    context: BuildContext | None = None,
    serving: bool = True,
    depth: int = DEFAULT_DEPTH,
) -> dict[str, CandidateSource]:
    """Unfitted sources of ``task`` by name, those the snapshot cannot feed left out.

    ``serving``: wrap the sources that serving precomputes in :class:`PrecomputedSource`
    (same lists, computed for every user at fit); tuning scores only its validation users
    and asks for the plain sources.
    """
    context = context or BuildContext()
    catalogue = CATALOGUE[check_task(task)]
    out: dict[str, CandidateSource] = {}
    for name in names:
        if name not in catalogue:
            raise GraphRecError(f"unknown {task} source {name!r}; choose from {', '.join(catalogue)}")
        spec = catalogue[name]
        source = spec.build(snap, context)
        if source is None:
            continue
        precompute = spec.precompute == "always" or (spec.precompute == "small" and not _per_call(snap))
        out[name] = PrecomputedSource(source, depth=depth) if serving and precompute else source
    return out


__all__ = [
    "CATALOGUE",
    "TASKS",
    "BuildContext",
    "SourceSpec",
    "build_sources",
    "check_weights",
    "default_weights",
    "source_names",
]
