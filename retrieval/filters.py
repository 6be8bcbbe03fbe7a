"""Filters: what a candidate list must never contain, as a predicate over candidate ids.

The user's history (engaged tweets; followed accounts and the user) is left out by the
sources themselves (:func:`graph.tasks.exclusion_matrix`); the per-request filters here drop
candidates from the fused list. They test candidate ids only, so a call costs what its
candidates cost, never the size of the catalogue.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS


@dataclass
class FilterOptions:
    """Per-request filters. Id lists hold *external* ids; unknown ids are ignored (and reported)."""

    blocked: Iterable[int] = field(default_factory=tuple)  # users never to show (nor their tweets)
    muted: Iterable[int] = field(default_factory=tuple)  # authors whose tweets to hide
    exclude: Iterable[int] = field(default_factory=tuple)  # extra target ids to drop
    exclude_own_tweets: bool = True
    max_age_seconds: float | None = None  # tweets older than this (relative to `now`) are dropped
    now: int | None = None  # default: the newest creation time in the snapshot


@dataclass
class RequestFilter:
    """A compiled :class:`FilterOptions` for one user: ``keep(ids)`` says which candidates stay."""

    task: str
    dropped: np.ndarray  # sorted dense target indices
    hidden_authors: np.ndarray  # sorted dense user indices (tweets task)
    oldest: int | None  # tweets created before this are dropped (0 = unknown time: kept)
    tweet_author: np.ndarray | None = None
    tweet_created: np.ndarray | None = None

    def keep(self, ids: np.ndarray) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        ok = ids >= 0
        safe = np.where(ok, ids, 0)
        if len(self.dropped):
            ok &= ~np.isin(safe, self.dropped)
        if self.task == TASK_FOLLOWS:
            return ok
        # indexed, not converted: a live recommender's attributes cover tweets born since the snapshot
        if len(self.hidden_authors):
            ok &= ~np.isin(np.asarray(self.tweet_author[safe]), self.hidden_authors)
        if self.oldest is not None:
            created = np.asarray(self.tweet_created[safe])
            ok &= ~((created > 0) & (created < self.oldest))
        return ok

    @property
    def is_empty(self) -> bool:
        return not len(self.dropped) and not len(self.hidden_authors) and self.oldest is None


def compile_filters(
    snap: GraphSnapshot, task: str, user: int | None, opts: FilterOptions
) -> tuple[RequestFilter, list[int]]:
    """The request filter for ``user`` (dense index; None for an unknown user) and the external
    ids in ``opts`` that the snapshot does not know."""
    unknown: list[int] = []
    if task == TASK_FOLLOWS:
        dropped = np.concatenate(
            [_known(snap.user_index, ids, unknown) for ids in (opts.blocked, opts.exclude, opts.muted)]
        )
        return RequestFilter(task, np.unique(dropped), np.zeros(0, np.int64), None), unknown
    dropped = _known(snap.tweet_index, opts.exclude, unknown)
    hidden = [_known(snap.user_index, opts.blocked, unknown), _known(snap.user_index, opts.muted, unknown)]
    if opts.exclude_own_tweets and user is not None:
        hidden.append(np.array([user], np.int64))
    oldest = None
    if opts.max_age_seconds is not None:
        now = opts.now if opts.now is not None else int(np.asarray(snap.tweet_created).max(initial=0))
        oldest = now - opts.max_age_seconds
    return (
        RequestFilter(
            task,
            np.unique(dropped),
            np.unique(np.concatenate(hidden)),
            oldest,
            snap.tweet_author,
            snap.tweet_created,
        ),
        unknown,
    )


def _known(lookup, ids: Iterable[int], unknown: list[int]) -> np.ndarray:
    ids = np.asarray(list(ids), dtype=np.int64)
    if not len(ids):
        return np.zeros(0, np.int64)
    idx = lookup(ids, strict=False)
    unknown.extend(ids[idx < 0].tolist())
    return idx[idx >= 0].astype(np.int64)
