"""The Python API: ``Recommender.who_to_follow`` and ``Recommender.tweet_candidates``.

Explicit stages, each small and replaceable:
sources -> filters -> fusion -> diversity -> explanation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError, SnapshotError
from graph.snapshot import GraphSnapshot
from retrieval import explain
from retrieval.diversity import cap_exposure_share, cap_per_group, mmr
from retrieval.filters import FilterOptions, apply_filters
from retrieval.fusion import fuse
from retrieval.precomputed import PrecomputedSource
from retrieval.sources import (
    KIND_FOLLOWS,
    KIND_TWEETS,
    CoEngagementSource,
    CoFollowSource,
    ContentSource,
    EmbeddingSource,
    FollowBackSource,
    FolloweeEngagementSource,
    PopularitySource,
    RecencySource,
    SecondHopSource,
    SimilarEngagersSource,
    SimilarUsersSource,
    Source,
    SpectralSource,
    best_anchor,
    history_mask,
)

log = logging.getLogger(__name__)

MAX_K = 10_000
#: Catalogue size above which the item-item spectral filter is left out (its matrix grows as n^2).
SPECTRAL_MAX_TWEETS = 120_000
#: Snapshots with at most this many users run the random-walk sources for every user at fit
#: (parallel batch walks, served from memory); larger ones walk per call on one thread.
WALK_PRECOMPUTE_MAX_USERS = 50_000


class UnknownUserError(GraphRecError):
    """The user id is not in the snapshot and ``strict=True`` was asked."""


@dataclass
class Recommendation:
    """One candidate: external id, fused score, each source's share of it, and a reason."""

    id: int
    score: float
    sources: dict[str, float] = field(default_factory=dict)
    reason: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class RecommenderConfig:
    """Source weights per kind (tuned on validation data by ``retrieval.tuning``) and fusion settings."""

    tweet_weights: dict[str, float] = field(
        default_factory=lambda: {
            "spectral": 1.0,
            "co_engagement": 0.3,
            "followee_engagement": 0.3,
            "similar_users": 0.3,
            "embedding": 0.5,
            "pixie": 0.3,
            "content": 0.1,
            "popular": 0.05,
            "recent": 0.02,
        }
    )
    follow_weights: dict[str, float] = field(
        default_factory=lambda: {
            "second_hop": 1.0,
            "follow_back": 0.6,
            "co_follow": 0.6,
            "similar_engagers": 0.1,
            "salsa": 0.3,
            "embedding": 0.3,
            "popular": 0.05,
        }
    )
    fusion: str = "score"

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def load(cls, path: str | Path) -> RecommenderConfig:
        return cls(**json.loads(Path(path).read_text()))


def default_sources(
    snap: GraphSnapshot,
    kind: str,
    *,
    user_vectors: np.ndarray | None = None,
    tweet_vectors: np.ndarray | None = None,
) -> list[Source]:
    """The sources a kind uses on this snapshot (only those the data can feed)."""
    if kind == KIND_TWEETS:
        sources: list[Source] = [CoEngagementSource(), PopularitySource(KIND_TWEETS, half_life_days=3.0)]
        if snap.n_tweets <= SPECTRAL_MAX_TWEETS:
            # The spectral filter is cheap per batch and slow per call: serve its batch-computed lists.
            sources.append(PrecomputedSource(SpectralSource()))
        if snap.n_follows:
            sources.append(FolloweeEngagementSource())
        if snap.n_engagements:
            sources.append(SimilarUsersSource())
        if int(np.asarray(snap.tweet_created).max(initial=0)) > 0:
            sources.append(RecencySource())
        if snap.tweet_texts:
            sources.append(ContentSource())
        sources += _walk_sources(snap, "pixie")
        if user_vectors is not None and tweet_vectors is not None:
            sources.append(EmbeddingSource(user_vectors, tweet_vectors, KIND_TWEETS))
        return sources
    sources = (
        [PopularitySource(KIND_FOLLOWS), SimilarEngagersSource()]
        if snap.n_engagements
        else [PopularitySource(KIND_FOLLOWS)]
    )
    if snap.n_follows:
        sources += [SecondHopSource(), FollowBackSource(), CoFollowSource()]
    sources += _walk_sources(snap, "salsa")
    if user_vectors is not None:
        sources.append(EmbeddingSource(user_vectors, user_vectors, KIND_FOLLOWS))
    return sources


def _walk_sources(snap: GraphSnapshot, name: str) -> list[Source]:
    from retrieval.hybrid import walk_source

    src = walk_source(name, snap)
    if src is None:
        return []
    # A walk costs milliseconds per user: on snapshots of moderate size, walking for everyone
    # once (in parallel) is cheaper than one walk per call, and keeps each call under a millisecond.
    return [PrecomputedSource(src) if snap.n_users <= WALK_PRECOMPUTE_MAX_USERS else src]


class Recommender:
    """Candidates for a user from a snapshot and its fitted sources."""

    def __init__(
        self,
        snap: GraphSnapshot,
        *,
        config: RecommenderConfig | None = None,
        tweet_sources: Sequence[Source] | None = None,
        follow_sources: Sequence[Source] | None = None,
        user_vectors: np.ndarray | None = None,
        tweet_vectors: np.ndarray | None = None,
    ):
        self.snap = snap
        self.config = config or RecommenderConfig()
        self.user_vectors, self.tweet_vectors = user_vectors, tweet_vectors
        if tweet_sources is None:
            tweet_sources = default_sources(
                snap, KIND_TWEETS, user_vectors=user_vectors, tweet_vectors=tweet_vectors
            )
        if follow_sources is None:
            follow_sources = default_sources(snap, KIND_FOLLOWS, user_vectors=user_vectors)
        # Only sources with a weight are fitted: a tuned config may switch off an expensive one.
        tw, fw = self.config.tweet_weights, self.config.follow_weights
        self.sources = {
            KIND_TWEETS: {s.name: s.fit(snap) for s in tweet_sources if tw.get(s.name)},
            KIND_FOLLOWS: {s.name: s.fit(snap) for s in follow_sources if fw.get(s.name)},
        }
        self._cold = {
            KIND_TWEETS: PopularitySource(KIND_TWEETS, half_life_days=3.0).fit(snap),
            KIND_FOLLOWS: PopularitySource(KIND_FOLLOWS).fit(snap),
        }

    # -- construction ----------------------------------------------------------
    @classmethod
    def from_store(cls, store, **kwargs) -> Recommender:
        """Export a snapshot from any store and build on it."""
        from graph.export import export_snapshot

        return cls(export_snapshot(store, progress=False), **kwargs)

    @classmethod
    def load(cls, snapshot_dir: str | Path, *, embeddings_dir: str | Path | None = None, config_path=None):
        """Build from artifacts: a saved snapshot, optionally an embedding artifact and a tuned config.

        Raises :class:`SnapshotError` when the embeddings were trained on another snapshot.
        """
        snap = GraphSnapshot.load(snapshot_dir)
        user_vectors = tweet_vectors = None
        if embeddings_dir is not None:
            meta_path = Path(embeddings_dir) / "config.json"
            meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
            if meta.get("snapshot_id") != snap.snapshot_id:
                raise SnapshotError(
                    f"embeddings in {embeddings_dir} come from snapshot {meta.get('snapshot_id')!r}, not from "
                    f"{snap.snapshot_id!r} in {snapshot_dir}; re-run `graphrec embed` on this snapshot"
                )
            user_vectors = np.load(Path(embeddings_dir) / "user_embeddings.npy")
            tweet_vectors = np.load(Path(embeddings_dir) / "tweet_embeddings.npy")
        config = RecommenderConfig.load(config_path) if config_path else None
        return cls(snap, config=config, user_vectors=user_vectors, tweet_vectors=tweet_vectors)

    # -- public API ------------------------------------------------------------
    def who_to_follow(
        self,
        user_id: int,
        k: int = 20,
        *,
        filters: FilterOptions | None = None,
        explain: bool = True,
        strict: bool = False,
        max_group_share: float | None = None,
        groups: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Accounts for ``user_id`` to follow, best first.

        An unknown user gets the cold-start path (most followed accounts) unless
        ``strict=True``, which raises :class:`UnknownUserError`.
        """
        return self._recommend(
            KIND_FOLLOWS,
            user_id,
            k,
            filters or FilterOptions(),
            explain,
            strict,
            None,
            None,
            max_group_share,
            groups,
        )

    def tweet_candidates(
        self,
        user_id: int,
        k: int = 50,
        *,
        filters: FilterOptions | None = None,
        explain: bool = True,
        strict: bool = False,
        per_author_cap: int | None = None,
        mmr_lambda: float | None = None,
        max_group_share: float | None = None,
        groups: np.ndarray | None = None,
    ) -> list[Recommendation]:
        """Tweet candidates for ``user_id``, best first (for a ranker downstream).

        ``per_author_cap`` limits tweets per author; ``mmr_lambda`` (0..1) re-ranks
        for diversity with the tweet embeddings; ``max_group_share`` caps the
        share of any author group (``groups`` maps user index -> group).
        """
        return self._recommend(
            KIND_TWEETS,
            user_id,
            k,
            filters or FilterOptions(),
            explain,
            strict,
            per_author_cap,
            mmr_lambda,
            max_group_share,
            groups,
        )

    def who_to_follow_batch(
        self, user_ids: Iterable[int], k: int = 20, **kwargs
    ) -> list[list[Recommendation]]:
        """:meth:`who_to_follow` for many users."""
        return [self.who_to_follow(u, k, **kwargs) for u in user_ids]

    def tweet_candidates_batch(
        self, user_ids: Iterable[int], k: int = 50, **kwargs
    ) -> list[list[Recommendation]]:
        """:meth:`tweet_candidates` for many users."""
        return [self.tweet_candidates(u, k, **kwargs) for u in user_ids]

    # -- pipeline ----------------------------------------------------------------
    def _recommend(
        self, kind, user_id, k, filters, want_reason, strict, author_cap, mmr_lambda, share, groups
    ):
        k = _check_k(k)
        snap = self.snap
        idx = snap.user_index([_check_id(user_id)], strict=False)[0]
        if idx < 0:
            if strict:
                raise UnknownUserError(
                    f"unknown user id {user_id}; pass strict=False for the cold-start path"
                )
            return self._cold_start(kind, k, filters)
        users = np.array([idx])
        weights = self.config.tweet_weights if kind == KIND_TWEETS else self.config.follow_weights
        per_source = {
            name: src.scores(users)[0] for name, src in self.sources[kind].items() if weights.get(name)
        }
        if not per_source:
            return self._cold_start(kind, k, filters)
        stacked = {name: s[None, :] for name, s in per_source.items()}
        fused, parts = fuse(stacked, {n: weights[n] for n in per_source}, method=self.config.fusion)
        row = fused[0]
        unknown = apply_filters(snap, kind, int(idx), row, filters)
        if unknown:
            log.info("ignored %d unknown ids in filters: %s", len(unknown), unknown[:5])
        if np.count_nonzero(row > 0) < k:
            self._backfill(kind, row)
        ranked = _ranked(row, max(k * 5, k) if (author_cap or mmr_lambda or share) else k)
        ranked = self._diversify(kind, ranked, row, k, author_cap, mmr_lambda, share, groups)
        out = []
        names = list(parts)
        shares = np.stack([parts[n][0, ranked] for n in names]) if names else np.zeros((0, len(ranked)))
        masks: dict = {}  # per-call history masks, shared by every explained candidate
        for col, t in enumerate(ranked.tolist()):
            contrib = {n: float(v) for n, v in zip(names, shares[:, col].tolist()) if v > 0}
            if not contrib:  # a backfilled target: no source scored it
                contrib = {"popular": float(row[t])}
            reason = ""
            if want_reason:
                best = _explaining_source(contrib)
                reason = self._reason(kind, int(idx), t, best, masks)
            target_ids = snap.user_ids if kind == KIND_FOLLOWS else snap.tweet_ids
            out.append(Recommendation(int(target_ids[t]), float(row[t]), contrib, reason))
        return out

    def _diversify(self, kind, ranked, row, k, author_cap, mmr_lambda, share, groups):
        if kind == KIND_TWEETS and mmr_lambda is not None:
            if self.tweet_vectors is None:
                raise GraphRecError(
                    "mmr_lambda needs tweet embeddings; build the Recommender with tweet_vectors"
                )
            ranked = mmr(
                ranked, np.where(np.isfinite(row), row, 0), self.tweet_vectors, max(k * 2, k), mmr_lambda
            )
        if kind == KIND_TWEETS and author_cap is not None:
            if author_cap < 1:
                raise GraphRecError(f"per_author_cap must be >= 1, got {author_cap}")
            ranked = cap_per_group(ranked, np.asarray(self.snap.tweet_author), author_cap, len(ranked))
        if share is not None:
            if not 0 < share <= 1:
                raise GraphRecError(f"max_group_share must be in (0, 1], got {share}")
            if groups is None:
                raise GraphRecError("max_group_share needs `groups` (a group label per user index)")
            owner = ranked if kind == KIND_FOLLOWS else np.asarray(self.snap.tweet_author)[ranked]
            group_of_item = np.full(int(ranked.max(initial=-1)) + 1, -1, np.int64)
            group_of_item[ranked] = np.where(owner >= 0, np.asarray(groups)[np.maximum(owner, 0)], -1)
            ranked = cap_exposure_share(ranked, group_of_item, share, k)
        return ranked[:k]

    def _reason(self, kind: str, user: int, target: int, source: str, masks: dict) -> str:
        anchor = -1
        src = self.sources[kind].get(source)
        if kind == KIND_TWEETS:
            co = self.sources[KIND_TWEETS].get("co_engagement")
            if source in ("co_engagement", "spectral", "pixie") and isinstance(co, CoEngagementSource):
                if "engaged" not in masks:
                    masks["engaged"] = history_mask(co.r, user)
                anchor = co.best_anchor(user, target, masks["engaged"])
            peers = None
            if source == "similar_users" and isinstance(src, SimilarUsersSource):
                if "peers" not in masks:  # once per call: the user's neighbours, most similar first
                    nb = src.neighbours(np.array([user]))
                    masks["peers"] = nb.indices[np.lexsort((nb.indices, -nb.data))]
                peers = masks["peers"]
            return explain.tweet_reason(self.snap, user, target, source, anchor, peers)
        if source == "co_follow" and isinstance(src, CoFollowSource):
            if "followed" not in masks:
                masks["followed"] = history_mask(src.f, user)
            anchor = best_anchor(src.f, src.sim_t, user, target, masks["followed"])
        return explain.follow_reason(self.snap, user, target, source, anchor)

    def _backfill(self, kind: str, row: np.ndarray) -> None:
        """The sources found fewer than k targets: rank the other unfiltered targets by popularity,
        below every sourced one (in place; filtered targets are already -inf and stay so)."""
        pop = np.asarray(self._cold[kind].pop, dtype=np.float64)
        fill = (row == 0) & (pop > 0)
        if not fill.any():
            return
        sourced = row[row > 0]
        floor = float(sourced.min()) if len(sourced) else 1.0
        row[fill] = 0.5 * floor * pop[fill] / pop[fill].max()

    def _cold_start(self, kind: str, k: int, filters: FilterOptions) -> list[Recommendation]:
        row = self._cold[kind].pop.copy()
        target_ids = self.snap.user_ids if kind == KIND_FOLLOWS else self.snap.tweet_ids
        lookup = self.snap.user_index if kind == KIND_FOLLOWS else self.snap.tweet_index
        for ids in (filters.exclude, filters.blocked if kind == KIND_FOLLOWS else ()):
            idx = lookup(np.asarray(list(ids), np.int64), strict=False)
            row[idx[idx >= 0]] = -np.inf
        reason = (
            "popular account (you are new here)"
            if kind == KIND_FOLLOWS
            else "popular right now (you are new here)"
        )
        return [
            Recommendation(int(target_ids[t]), float(row[t]), {"popular": float(row[t])}, reason)
            for t in _ranked(row, k).tolist()
        ]


#: Sources whose reason says little; a graph source that contributes a fair share explains better.
_FALLBACK_REASONS = ("embedding", "popular", "recent", "content")


def _explaining_source(contrib: dict[str, float]) -> str:
    """The source to explain a candidate with: the top graph source if it carries >= 30% of the top share."""
    if not contrib:
        return "popular"
    top = max(contrib, key=contrib.get)
    graph = {n: v for n, v in contrib.items() if n not in _FALLBACK_REASONS}
    if graph:
        best_graph = max(graph, key=graph.get)
        if graph[best_graph] >= 0.3 * contrib[top]:
            return best_graph
    return top


def _ranked(row: np.ndarray, n: int) -> np.ndarray:
    """Indices of the ``n`` best finite, positive entries of ``row``, best first (ties by index)."""
    valid = np.flatnonzero(np.isfinite(row) & (row > 0))
    if len(valid) > n:
        # keep every entry tied with the n-th best, so the cut below breaks ties by index too
        nth = -np.partition(-row[valid], n - 1)[n - 1]
        valid = valid[row[valid] >= nth]
    order = np.lexsort((valid, -row[valid]))
    return valid[order][:n]


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise GraphRecError(f"k must be an integer, got {k!r}")
    if k < 1:
        raise GraphRecError(f"k must be at least 1, got {k}")
    if k > MAX_K:
        raise GraphRecError(f"k must be at most {MAX_K}, got {k}")
    return int(k)


def _check_id(user_id) -> int:
    if isinstance(user_id, bool) or not isinstance(user_id, (int, np.integer)):
        raise GraphRecError(f"user id must be an integer, got {user_id!r}")
    return int(user_id)
