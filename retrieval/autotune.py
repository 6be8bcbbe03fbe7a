"""Tune the serving API's source weights on validation data carved from its own snapshot.

:class:`~retrieval.recommender.Recommender` fuses its sources with the weights of a
:class:`~retrieval.recommender.RecommenderConfig`. :func:`tune_config` fits the same sources
(:func:`~retrieval.recommender.default_sources`) on the snapshot minus 20% of a sample of
users' items, and picks the weights that maximise recall@20 on those held-out items with the
hybrid method's gated coordinate ascent (:func:`retrieval.tuning.coordinate_ascent`). The
result is saved as JSON and loaded by ``graphrec recommend --config`` or
``Recommender.load(..., config_path=...)``.

The embedding source keeps its configured weight: embeddings are trained on the whole
snapshot, validation edges included, so scoring it on them would overrate it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from graph.errors import GraphRecError
from graph.snapshot import GraphSnapshot
from retrieval.precomputed import PrecomputedSource
from retrieval.recommender import RecommenderConfig, default_sources
from retrieval.sources import KIND_FOLLOWS, KIND_TWEETS
from retrieval.tuning import carve_validation, coordinate_ascent, exclusions, source_candidates

log = logging.getLogger(__name__)

KINDS = (KIND_TWEETS, KIND_FOLLOWS)


def tune_config(
    snap: GraphSnapshot,
    *,
    base: RecommenderConfig | None = None,
    kinds: Sequence[str] = KINDS,
    val_users: int = 2000,
    depth: int = 300,
    k: int = 20,
    seed: int = 0,
) -> tuple[RecommenderConfig, dict]:
    """Source weights for ``kinds`` tuned on a validation carve of ``snap``; returns (config, report).

    Weights of kinds not tuned (or without data) and of the embedding source come from ``base``.
    The report holds, per kind, the weights, the fused and single-source validation recall@k,
    the number of validation users and the seconds spent.
    """
    base = base or RecommenderConfig()
    if val_users < 1:
        raise GraphRecError(f"val_users must be >= 1, got {val_users}")
    for kind in kinds:
        if kind not in KINDS:
            raise GraphRecError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    weights = {KIND_TWEETS: dict(base.tweet_weights), KIND_FOLLOWS: dict(base.follow_weights)}
    report: dict[str, dict] = {}
    for kind in kinds:
        has_data = snap.n_engagements if kind == KIND_TWEETS else snap.n_follows
        if not has_data:
            report[kind] = {
                "skipped": f"the snapshot has no {'engagements' if kind == KIND_TWEETS else 'follows'}"
            }
            continue
        t0 = time.perf_counter()
        val_train, truth = carve_validation(snap, kind, seed=seed)
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
        if not len(users):
            report[kind] = {"skipped": "no user has enough items to hold some out"}
            continue
        if len(users) > val_users:
            users = np.sort(np.random.default_rng(seed).choice(users, val_users, replace=False))
        exclude = exclusions(val_train, kind)
        cands = {}
        for src in default_sources(val_train, kind):
            # Score the validation users only: a precomputed source would score every user.
            inner = src.inner if isinstance(src, PrecomputedSource) else src
            inner.fit(val_train)
            cands[src.name] = source_candidates(inner.scores, users, exclude, depth)
        tuned, fused, single = coordinate_ascent(cands, truth[users], k=k)
        weights[kind].update(tuned)
        report[kind] = {
            "weights": tuned,
            f"val_recall@{k}": fused,
            f"single_source_val_recall@{k}": single,
            "val_users": int(len(users)),
            "seconds": round(time.perf_counter() - t0, 2),
        }
        log.info("tuned %s weights %s (validation recall@%d %.4f)", kind, tuned, k, fused)
    config = RecommenderConfig(
        tweet_weights=weights[KIND_TWEETS], follow_weights=weights[KIND_FOLLOWS], fusion=base.fusion
    )
    return config, report
