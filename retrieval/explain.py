"""Reasons: one short human-readable sentence per candidate, from the source that contributed most."""

from __future__ import annotations

import numpy as np

from graph.ranking import in_sorted
from graph.snapshot import GraphSnapshot


def _names(snap: GraphSnapshot, user_idx: np.ndarray, limit: int = 2) -> str:
    ids = [f"@{int(snap.user_ids[u])}" for u in user_idx[:limit]]
    more = len(user_idx) - len(ids)
    text = " and ".join(ids) if len(ids) <= 2 else ", ".join(ids)
    return text + (f" and {more} more" if more > 0 else "")


def _followees(snap: GraphSnapshot, user: int) -> np.ndarray:
    return np.asarray(
        snap.follow_out_indices[snap.follow_out_indptr[user] : snap.follow_out_indptr[user + 1]]
    )


def _engagers(snap: GraphSnapshot, tweet: int) -> np.ndarray:
    return np.asarray(snap.eng_tweet_indices[snap.eng_tweet_indptr[tweet] : snap.eng_tweet_indptr[tweet + 1]])


def _common(snap_row: np.ndarray, mine: np.ndarray) -> np.ndarray:
    """The entries of ``mine`` (the user's followees: a sorted row without repeats) that are also
    in ``snap_row`` (sorted): their intersection, already sorted and unique."""
    return mine[in_sorted(snap_row, mine)]


def follow_reason(snap: GraphSnapshot, user: int, target: int, source: str, anchor: int = -1) -> str:
    """Why ``target`` (dense user index) is suggested to ``user`` to follow."""
    if source in ("second_hop", "ppr", "salsa", "fof"):
        followers = snap.follow_in_indices[snap.follow_in_indptr[target] : snap.follow_in_indptr[target + 1]]
        via = _common(followers, _followees(snap, user))
        if len(via):
            return f"followed by {_names(snap, via)}, whom you follow"
        return "close to you in the follow graph"
    if source == "follow_back":
        return "follows you"
    if source == "co_follow":
        if anchor >= 0:
            return f"followed by people who follow @{int(snap.user_ids[anchor])}"
        return "followed by people who follow the accounts you follow"
    if source == "similar_engagers":
        return "engages with the same tweets as you"
    if source == "embedding":
        return "similar to accounts you interact with"
    if source == "popular":
        return "popular account"
    return f"suggested by {source}"


def tweet_reason(
    snap: GraphSnapshot,
    user: int,
    target: int,
    source: str,
    anchor: int = -1,
    peers: np.ndarray | None = None,
) -> str:
    """Why ``target`` (dense tweet index) is suggested to ``user``.

    ``anchor``: the user's engaged tweet most like ``target``; ``peers``: the user's most similar
    users, most similar first (``similar_users``).
    """
    if source == "similar_users" and peers is not None:
        engagers = _engagers(snap, target)
        via = peers[in_sorted(engagers, peers)]
        if len(via):
            return f"liked by {_names(snap, via)}, whose tastes match yours"
    if source in ("followee_engagement", "pixie"):
        engagers = _engagers(snap, target)
        via = _common(engagers, _followees(snap, user))
        if len(via):
            return f"engaged by {_names(snap, via)}, whom you follow"
        if source == "pixie" and anchor >= 0:
            return f"liked by people who liked {int(snap.tweet_ids[anchor])}"
        return "popular with people near you in the graph"
    if source in ("co_engagement", "spectral", "similar_users"):
        if anchor >= 0:
            return f"liked by people who liked {int(snap.tweet_ids[anchor])}"
        return "liked by people with tastes like yours"
    if source == "embedding":
        return "similar to tweets you engaged with"
    if source == "content":
        return "about topics you engage with"
    if source == "recent":
        return "new"
    if source == "popular":
        return "popular right now"
    return f"suggested by {source}"
