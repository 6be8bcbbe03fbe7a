"""Cold start for tweets with only their first few engagements: score them by their first engagers.

A tweet born a moment ago has no embedding row, no co-engagement statistics and one or two
engagers. What is known about it is *who* engaged: a user is likely to engage with it when
the first engagers are users like them. Two terms over the tweet's engagers ``V_j``:

* ``similar_users``: ``sum over v in V_j of sim(u, v)``, the user-user similarity of
  :class:`retrieval.sources.SimilarUsersSource` (engagements plus the follow neighbourhood,
  each user's top neighbours): the very score that source gives ``j`` once ``j`` is in a
  snapshot (``neighbours @ engagers.T`` is ``neighbours @ r[:, j]``);
* ``engagers_embedding``: the cosine of the user's embedding with the mean of the engagers'
  embeddings, i.e. the tweet embedded from its engagers' user vectors (what the inductive model's
  first layer does for a tweet without an ID row), which reaches users who are close to the
  engagers in embedding space but outside their top neighbours.

Each term is normalised per user by its best score (the fusion's ``score`` normalisation) and
the two are summed with :data:`COLD_WEIGHTS`, chosen on a validation carve of training items
made cold the same way (``scripts/bench_gnn.py coldstart``; docs/issue21_coldstart.md). The
live stage (:mod:`retrieval.live`) scores the tweets engaged with since the snapshot this way;
the benchmark scores the held-out items with the same functions.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from graph.errors import GraphRecError

#: Weights of the two terms: the embedding share (0.8) that maximises the mean, over flickr and
#: lastfm, of each validation carve's recall@20 relative to its best share (flickr's carve alone
#: picks 0.6, lastfm's 0.9; docs/issue21_coldstart.md). Without user embeddings only the
#: ``similar_users`` term is left (scaled by its weight: the ranking is that source's).
COLD_WEIGHTS: dict[str, float] = {"similar_users": 0.2, "engagers_embedding": 0.8}


def engager_scores(
    neighbours: sp.csr_matrix,
    engagers: sp.csr_matrix,
    user_vectors: np.ndarray | None = None,
    users: np.ndarray | None = None,
) -> dict[str, np.ndarray | sp.csr_matrix]:
    """The terms for a batch of users and a set of tweets.

    ``neighbours``: (batch x all users) similarity rows of the batch (e.g.
    ``SimilarUsersSource.neighbours(users)``); ``engagers``: (tweets x all users), 1 where a user
    engaged with the tweet; ``user_vectors`` (all users x dim) and ``users`` (the batch's rows of
    it) add the embedding term. Returns ``{name: (batch x tweets)}``.
    """
    if neighbours.shape[1] != engagers.shape[1]:
        raise GraphRecError(f"neighbours cover {neighbours.shape[1]} users, engagers {engagers.shape[1]}")
    e = engagers.tocsr().astype(np.float32)
    out: dict[str, np.ndarray | sp.csr_matrix] = {"similar_users": (neighbours @ e.T).tocsr()}
    if user_vectors is not None and users is not None:
        uv = np.asarray(user_vectors, np.float32)
        count = np.asarray(e.sum(axis=1)).ravel()
        items = np.asarray(e @ uv) / np.maximum(count, 1.0)[:, None]  # mean of the engagers' vectors
        items /= np.maximum(np.linalg.norm(items, axis=1, keepdims=True), 1e-12)
        mine = uv[np.asarray(users, np.int64)]
        mine = mine / np.maximum(np.linalg.norm(mine, axis=1, keepdims=True), 1e-12)
        out["engagers_embedding"] = (mine @ items.T).astype(np.float32)
    return out


def _row_max_normalised(m: np.ndarray | sp.csr_matrix) -> np.ndarray:
    """Dense rows divided by their best positive score; non-positive scores become 0."""
    d = m.toarray() if sp.issparse(m) else np.asarray(m, np.float32)
    d = np.maximum(d.astype(np.float32), 0.0)
    peak = d.max(axis=1, keepdims=True) if d.size else np.zeros((len(d), 1), np.float32)
    return np.divide(d, peak, out=np.zeros_like(d), where=peak > 0)


def cold_scores(
    parts: Mapping[str, np.ndarray | sp.csr_matrix], weights: Mapping[str, float] | None = None
) -> np.ndarray:
    """Weighted sum of the per-user-normalised terms (batch x tweets, dense); a term that is
    missing (no embeddings) or weighted 0 is left out."""
    weights = COLD_WEIGHTS if weights is None else weights
    total = None
    for name, w in weights.items():
        if w and name in parts:
            term = _row_max_normalised(parts[name]) * float(w)
            total = term if total is None else total + term
    if total is None:
        shape = next(iter(parts.values())).shape
        return np.zeros(shape, np.float32)
    return total


__all__ = ["COLD_WEIGHTS", "cold_scores", "engager_scores"]
