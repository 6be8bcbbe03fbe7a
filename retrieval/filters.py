"""Filters: what a candidate list must never contain. Applied as -inf masks on score rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from graph.snapshot import GraphSnapshot
from retrieval.sources import KIND_FOLLOWS


@dataclass
class FilterOptions:
    """Per-request filters. Id lists hold *external* ids; unknown ids are ignored (and reported)."""

    blocked: Iterable[int] = field(
        default_factory=tuple
    )  # users never to show (or whose tweets never to show)
    muted: Iterable[int] = field(default_factory=tuple)  # authors whose tweets to hide
    exclude: Iterable[int] = field(default_factory=tuple)  # extra target ids to drop
    exclude_own_tweets: bool = True
    max_age_seconds: float | None = None  # tweets older than this (relative to `now`) are dropped
    now: int | None = None  # default: the newest timestamp in the snapshot


def apply_filters(
    snap: GraphSnapshot, kind: str, user: int, scores: np.ndarray, opts: FilterOptions
) -> list[int]:
    """Mask ``scores`` (one row, dense over targets) in place; returns external ids that were unknown."""
    unknown: list[int] = []
    if kind == KIND_FOLLOWS:
        scores[user] = -np.inf
        followed = snap.follow_out_indices[snap.follow_out_indptr[user] : snap.follow_out_indptr[user + 1]]
        scores[followed] = -np.inf
        for ids in (opts.blocked, opts.exclude, opts.muted):
            idx = _known(snap.user_index, ids, unknown)
            scores[idx] = -np.inf
        return unknown
    engaged = snap.eng_user_indices[snap.eng_user_indptr[user] : snap.eng_user_indptr[user + 1]]
    scores[engaged] = -np.inf
    scores[_known(snap.tweet_index, opts.exclude, unknown)] = -np.inf
    hidden_authors = np.concatenate(
        [_known(snap.user_index, opts.blocked, unknown), _known(snap.user_index, opts.muted, unknown)]
    )
    if opts.exclude_own_tweets:
        hidden_authors = np.append(hidden_authors, user)
    if len(hidden_authors):
        scores[np.isin(snap.tweet_author, hidden_authors)] = -np.inf
    if opts.max_age_seconds is not None:
        created = np.asarray(snap.tweet_created)
        now = opts.now if opts.now is not None else int(created.max(initial=0))
        too_old = (created > 0) & (created < now - opts.max_age_seconds)
        scores[too_old] = -np.inf
    return unknown


def _known(lookup, ids: Iterable[int], unknown: list[int]) -> np.ndarray:
    ids = np.asarray(list(ids), dtype=np.int64)
    if not len(ids):
        return np.zeros(0, np.int64)
    idx = lookup(ids, strict=False)
    unknown.extend(ids[idx < 0].tolist())
    return idx[idx >= 0].astype(np.int64)
