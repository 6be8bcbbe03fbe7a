"""What the live segments add to a served call: the user's fresh history, which the answer must
leave out at once, and the candidates reachable through at least one live edge.

The fitted sources keep reading the snapshot; this stage reads the snapshot *and* the live
segments (:class:`graph.live.LiveGraph`) for the paths that use a live edge, so their sum covers
the graph as it is now (GraphJet's split between the batch model and the real-time graph):

* follows: accounts followed by the accounts the user follows, over every path with a live edge
  (the user's new follows, or a followee's new follows), weighted by the middle account's
  degree as the second-hop source is; and accounts that just followed the user (follow-back).
* tweets: what the user's followees (old and new) engaged with since the snapshot, their new
  tweets, what the users who engaged with the user's new engagements engaged with since, and
  the cold-start path (:mod:`retrieval.coldstart`): the tweets the users most like this one
  (the recommender's ``similar_users`` neighbours) engaged with since, each scored by its first
  engagers: their similarity to the user plus, with user embeddings, the cosine of the user's
  vector with the mean of the engagers' vectors.

Candidates are dense target indices of the live vocabulary: users and tweets born after the
snapshot come after the snapshot's (``n_users + j``, ``n_tweets + j``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph.live import LiveGraph
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS
from retrieval.coldstart import cold_scores, engager_scores

#: Most co-engagers of the user's new engagements whose own new engagements are read per call.
MAX_CO_ENGAGERS = 2_000
#: Scores of the parts of a live list (they are then normalised like any source's list).
FOLLOW_BACK_SCORE = 1.0
NEW_TWEET_SCORE = 1.0
#: Most tweets engaged with since the snapshot by the user's neighbours scored per call (cold start).
MAX_COLD_TWEETS = 2_000
#: Scale of the cold-start scores (at most the sum of the cold-start weights) in the live list.
COLD_START_SCORE = 1.0


def _row(indptr: np.ndarray, indices: np.ndarray, rows: np.ndarray, n_rows: int) -> np.ndarray:
    """Concatenated CSR rows (rows outside the snapshot have none)."""
    rows = rows[(rows >= 0) & (rows < n_rows)]
    if not len(rows):
        return np.zeros(0, np.int64)
    parts = [indices[indptr[r] : indptr[r + 1]] for r in rows.tolist()]
    return np.concatenate(parts).astype(np.int64)


def _scored(
    ids: np.ndarray, scores: np.ndarray, skip: np.ndarray, depth: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sum scores per id, drop ``skip`` (sorted), best ``depth`` first (ties by id)."""
    if not len(ids):
        return np.zeros(0, np.int64), np.zeros(0, np.float32)
    uniq, inv = np.unique(ids, return_inverse=True)
    total = np.bincount(inv, weights=scores).astype(np.float32)
    keep = ~np.isin(uniq, skip) & (total > 0)
    uniq, total = uniq[keep], total[keep]
    order = np.lexsort((uniq, -total))[:depth]
    return uniq[order], total[order]


class LiveOverlay:
    """The live stage of a :class:`retrieval.recommender.Recommender` (one per live graph)."""

    def __init__(self, live: LiveGraph, *, similar_users=None, user_vectors: np.ndarray | None = None):
        """``similar_users``: a fitted :class:`retrieval.sources.SimilarUsersSource` (its
        neighbours drive the cold-start path; None leaves that path out); ``user_vectors``: the
        snapshot's user embeddings, for the cold-start path's embedding term."""
        self.live = live
        self.similar_users, self.user_vectors = similar_users, user_vectors
        snap = live.snap
        self.snap: GraphSnapshot = snap
        deg = np.diff(snap.follow_out_indptr) + np.diff(snap.follow_in_indptr)
        self._hop_weight = (1.0 / np.log(2.0 + deg)).astype(np.float32)  # as SecondHopSource

    # -- ids ---------------------------------------------------------------------------
    def user_index(self, user_id: int) -> int:
        """Dense index of a user of the snapshot or born since (-1: unknown)."""
        return int(self.live.users.lookup(np.array([user_id], np.int64), create=False)[0])

    def n_targets(self, task: str) -> int:
        return self.live.n_users if task == TASK_FOLLOWS else self.live.n_tweets

    def external_ids(self, task: str, dense: np.ndarray) -> np.ndarray:
        vocab = self.live.users if task == TASK_FOLLOWS else self.live.tweets
        return vocab.external(dense)

    # -- history -----------------------------------------------------------------------
    def followees(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """The user's followees: (in the snapshot, since the snapshot)."""
        snap = self.snap
        base = _row(snap.follow_out_indptr, snap.follow_out_indices, np.array([u]), snap.n_users)
        return base, self.live.follows.out_edges(np.array([u]))[1]

    def exclusions(self, task: str, u: int) -> np.ndarray:
        """Sorted targets the user's live history rules out (the snapshot's history is the
        sources' own exclusion); a user born since the snapshot also excludes themselves."""
        live = self.live
        if task == TASK_FOLLOWS:
            fresh = live.follows.out_edges(np.array([u]))[1]
            return np.union1d(fresh, [u]).astype(np.int64)
        return np.unique(live.engagements.out_edges(np.array([u]))[1])

    # -- candidates ----------------------------------------------------------------------
    def candidates(self, task: str, u: int, depth: int, skip: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Top ``depth`` ``(ids, scores)`` through live edges, ``skip`` (sorted) left out."""
        with self.live.lock:
            if task == TASK_FOLLOWS:
                ids, scores = self._follow_paths(u)
            else:
                ids, scores = self._tweet_paths(u)
        return _scored(ids, scores, skip, depth)

    def _weight(self, middle: np.ndarray) -> np.ndarray:
        inside = middle < self.snap.n_users
        w = np.full(len(middle), 1.0 / np.log(2.0), np.float32)  # a user born since: degree 0
        w[inside] = self._hop_weight[middle[inside]]
        return w

    def _follow_paths(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        snap, follows = self.snap, self.live.follows
        base_f, live_f = self.followees(u)
        ids, scores = [], []
        # the user's new followees -> whom they follow (snapshot and live)
        for middle in np.unique(live_f).tolist():
            m = np.array([middle])
            second = np.concatenate(
                [
                    _row(snap.follow_out_indptr, snap.follow_out_indices, m, snap.n_users),
                    follows.out_edges(m)[1],
                ]
            )
            ids.append(second)
            scores.append(np.full(len(second), self._weight(m)[0], np.float32))
        # the user's old followees -> whom they followed since
        if len(base_f):
            src, dst, *_ = follows.out_edges(base_f)
            ids.append(dst)
            scores.append(self._weight(src))
        # accounts that followed the user since: follow back
        back = follows.in_edges(np.array([u]))[0]
        ids.append(back)
        scores.append(np.full(len(back), FOLLOW_BACK_SCORE, np.float32))
        return np.concatenate(ids), np.concatenate(scores)

    def _tweet_paths(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        snap, live = self.snap, self.live
        base_f, live_f = self.followees(u)
        followees = np.union1d(base_f, live_f)
        ids, scores = [], []
        # the network: what the user's followees engaged with since, and their new tweets
        _, tweets, _, _, w = live.engagements.out_edges(followees)
        ids.append(tweets)
        scores.append(w)
        new = live.new_tweets_by(followees)
        ids.append(new)
        scores.append(np.full(len(new), NEW_TWEET_SCORE, np.float32))
        # co-engagers of the user's new engagements -> what they engaged with since
        mine = np.unique(live.engagements.out_edges(np.array([u]))[1])
        if len(mine):
            engagers = np.concatenate(
                [
                    _row(snap.eng_tweet_indptr, snap.eng_tweet_indices, mine, snap.n_tweets),
                    live.engagements.in_edges(mine)[0],
                ]
            )
            engagers = np.unique(engagers[engagers != u])[:MAX_CO_ENGAGERS]
            _, tweets, _, _, w = live.engagements.out_edges(engagers)
            ids.append(tweets)
            scores.append(w)
        cold_ids, cold = self._cold_start(u)
        ids.append(cold_ids)
        scores.append(cold)
        return np.concatenate(ids), np.concatenate(scores).astype(np.float32)

    def _cold_start(self, u: int) -> tuple[np.ndarray, np.ndarray]:
        """Tweets the user's neighbours engaged with since the snapshot, scored by their engagers
        (:func:`retrieval.coldstart.engager_scores`, snapshot and live engagers alike)."""
        snap, live = self.snap, self.live
        empty = np.zeros(0, np.int64), np.zeros(0, np.float32)
        if self.similar_users is None or u >= snap.n_users:
            return empty
        nb = self.similar_users.neighbours(np.array([u], np.int64))
        if not nb.nnz:
            return empty
        tweets = np.unique(live.engagements.out_edges(nb.indices.astype(np.int64))[1])[:MAX_COLD_TWEETS]
        if not len(tweets):
            return empty
        # each tweet's engagers: those in the snapshot and those since (users born since have no
        # neighbours or vectors, so they are left out)
        src, dst, _ = live.engagements.in_edges(tweets)
        old = tweets[tweets < snap.n_tweets]
        if len(old):
            indptr, indices = np.asarray(snap.eng_tweet_indptr), np.asarray(snap.eng_tweet_indices)
            counts = np.diff(indptr)[old]
            src = np.concatenate([src, _row(indptr, indices, old, snap.n_tweets)])
            dst = np.concatenate([dst, np.repeat(old, counts)])
        keep = src < snap.n_users
        row = np.searchsorted(tweets, dst[keep])
        engagers = sp.csr_matrix(
            (np.ones(int(keep.sum()), np.float32), (row, src[keep])), shape=(len(tweets), snap.n_users)
        )
        engagers.sum_duplicates()
        engagers.data[:] = 1.0
        vectors = self.user_vectors
        parts = engager_scores(nb, engagers, vectors, np.array([u]) if vectors is not None else None)
        return tweets, cold_scores(parts)[0] * COLD_START_SCORE

    # -- what filters and diversity need about targets born since -------------------------
    def tweet_author(self, dense) -> np.ndarray | int:
        out = self.live.tweet_author(np.atleast_1d(dense))
        return out if np.ndim(dense) else int(out[0])

    def tweet_created(self, dense) -> np.ndarray | int:
        out = self.live.tweet_created(np.atleast_1d(dense))
        return out if np.ndim(dense) else int(out[0])


class TargetAttribute:
    """``tweet_author`` / ``tweet_created`` indexable by any live tweet index (``x[ids]``)."""

    def __init__(self, fn):
        self.fn = fn

    def __getitem__(self, ids):
        return self.fn(ids)

    def __array__(self, dtype=None):  # pragma: no cover - guards against a silent full copy
        raise TypeError("a live target attribute is indexed by ids, not converted to an array")


def live_reason(task: str) -> str:
    if task == TASK_FOLLOWS:
        return "followed just now by accounts in your network"
    if task == TASK_TWEETS:
        return "engaged with just now by people in your network"
    return ""
