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

import logging
import threading
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from graph.kernels import serial_kernels
from graph.live import LiveGraph, fold
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS
from retrieval.coldstart import cold_scores, engager_scores

log = logging.getLogger(__name__)

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
        #: The walk view (set by the recommender when it has walk sources).
        self.walks: WalkView | None = None
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


def fold_in(
    user_vectors: np.ndarray | None,
    tweet_vectors: np.ndarray | None,
    followees: np.ndarray,
    engaged: np.ndarray,
) -> np.ndarray | None:
    """An embedding for a user the model never saw, from their live history: the mean of the
    vectors of the accounts they follow and the tweets they engaged with (one propagation step
    of LightGCN, whose user vector is a normalised sum of its neighbours'). Neighbours without a
    vector (born after the snapshot) are skipped; None when none has one."""
    parts = []
    if user_vectors is not None:
        parts.append(user_vectors[followees[(followees >= 0) & (followees < len(user_vectors))]])
    if tweet_vectors is not None:
        parts.append(tweet_vectors[engaged[(engaged >= 0) & (engaged < len(tweet_vectors))]])
    parts = [p for p in parts if len(p)]
    if not parts:
        return None
    return np.concatenate(parts).astype(np.float32).mean(axis=0)


def extend_vectors(
    old: GraphSnapshot, new: GraphSnapshot, user_vectors: np.ndarray | None, tweet_vectors: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Embeddings for ``new`` (a fold of ``old`` plus live events) without retraining: the
    vectors of ``old``'s users and tweets carried over, a user born since folded in from the
    accounts they follow and the tweets they engaged with (:func:`fold_in`), a tweet born since
    from its engagers and its author (zero when none of them has a vector)."""

    def carried(vectors, old_ids, new_index, n_new):
        known = np.zeros(n_new, bool)
        if vectors is None:
            return None, known
        out = np.zeros((n_new, vectors.shape[1]), np.float32)
        pos = new_index(np.asarray(old_ids), strict=True)
        out[pos], known[pos] = vectors, True
        return out, known

    users, u_known = carried(user_vectors, old.user_ids, new.user_index, new.n_users)
    tweets, t_known = carried(tweet_vectors, old.tweet_ids, new.tweet_index, new.n_tweets)

    def near(indptr, indices, i, known):
        nodes = np.asarray(indices[indptr[i] : indptr[i + 1]], np.int64)
        return nodes[known[nodes]]

    if users is not None:
        for u in np.flatnonzero(~u_known).tolist():
            followees = near(new.follow_out_indptr, new.follow_out_indices, u, u_known)
            engaged = near(new.eng_user_indptr, new.eng_user_indices, u, t_known)
            vec = fold_in(users, tweets, followees, engaged)
            if vec is not None:
                users[u] = vec
        if tweets is not None:
            author = np.asarray(new.tweet_author, np.int64)
            for t in np.flatnonzero(~t_known).tolist():
                engagers = np.asarray(
                    new.eng_tweet_indices[new.eng_tweet_indptr[t] : new.eng_tweet_indptr[t + 1]]
                )
                around = np.append(engagers, author[t]) if author[t] >= 0 else engagers
                vec = fold_in(users, None, np.asarray(around, np.int64), np.zeros(0, np.int64))
                if vec is not None:
                    tweets[t] = vec
    return users, tweets


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


#: Default seconds between two folds of the walk view (then at least WALK_FOLD_COST_FACTOR times
#: the last fold's duration, so folding takes at most ~1/5 of a core however large the graph).
WALK_REFRESH_S = 1.0
WALK_FOLD_COST_FACTOR = 5.0


class WalkView:
    """The live graph folded into a snapshot for the random walks (GraphJet's walks over the
    real-time graph): Pixie, SALSA, PPR and friends-of-friends step over live edges once the
    next fold is in, every ``refresh_s`` seconds at most (and at least ``WALK_FOLD_COST_FACTOR``
    x the last fold's duration apart), built on a background thread and swapped in as one
    reference. Users and tweets born since the snapshot are in the fold, so they get walk
    candidates too.

    The fold indexes users and tweets by sorted external id, the live vocabulary by order of
    arrival; :meth:`to_fold` and :meth:`from_fold` translate (per call: a query user and k
    results). ``prepare`` builds each walk's cached graph on a fresh fold before it is swapped
    in; ``forget`` drops the replaced fold's."""

    DEFAULT_REFRESH_S = WALK_REFRESH_S

    def __init__(
        self,
        live: LiveGraph,
        prepare: Callable[[GraphSnapshot], object],
        forget: Callable[[GraphSnapshot], None],
        refresh_s: float = WALK_REFRESH_S,
    ):
        if not refresh_s > 0:
            raise ValueError(f"refresh_s must be > 0, got {refresh_s}")
        self.live = live
        self.refresh_s = float(refresh_s)
        self._prepare, self._forget = prepare, forget
        # (the latest fold, what ``prepare`` built on it): swapped as one reference
        self._state: tuple[GraphSnapshot | None, object] = (None, None)
        self._version: tuple[int, int, int] | None = None
        self.last_build_s = 0.0
        self.folds = 0
        self.fold_edges = 0  # live edges in the current fold
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._build_lock = threading.Lock()

    @property
    def snap(self) -> GraphSnapshot | None:
        """The latest fold (None until the first)."""
        return self._state[0]

    def current(self) -> tuple[GraphSnapshot | None, object]:
        """(the latest fold, what ``prepare`` built on it), read as one reference."""
        return self._state

    def _live_version(self) -> tuple[int, int, int]:
        live = self.live
        with live.lock:
            return live.n_users, live.n_tweets, live.n_edges

    def refresh(self) -> bool:
        """Fold the live graph now if it changed since the last fold; True when a new fold is in."""
        with self._build_lock:
            version = self._live_version()
            if version == self._version:
                return False
            if version == (self.live.snap.n_users, self.live.snap.n_tweets, 0):
                return False  # nothing live yet: the fitted sources walk the snapshot itself
            start = time.perf_counter()
            with serial_kernels():  # a serving worker is a fork: no threading layer in it
                snap = fold(self.live)
                extra = self._prepare(snap)
            old = self.snap
            self._state, self._version = (snap, extra), version
            self.last_build_s = time.perf_counter() - start
            self.folds += 1
            self.fold_edges = version[2]
            if old is not None:
                self._forget(old)
            log.debug("walk view: fold %d of %d edges in %.3f s", self.folds, version[2], self.last_build_s)
            return True

    def start(self) -> WalkView:
        """Refresh on a background thread until :meth:`stop`."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="graphrec-walk-view", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(30.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(max(self.refresh_s, WALK_FOLD_COST_FACTOR * self.last_build_s)):
            try:
                self.refresh()
            except Exception:  # a failed fold keeps the last one; the next try may succeed
                log.exception("walk view: fold failed")

    # -- ids -------------------------------------------------------------------------------
    def to_fold(self, snap: GraphSnapshot, task_user: int) -> int:
        """The fold's index of a live user index (-1: born after this fold)."""
        ext = self.live.users.external(np.array([task_user], np.int64))
        return int(snap.user_index(ext, strict=False)[0])

    def from_fold(self, snap: GraphSnapshot, task: str, ids: np.ndarray) -> np.ndarray:
        """Live indices of the fold's target indices ``ids`` (-1 stays -1)."""
        ids = np.asarray(ids, np.int64)
        out = np.full(len(ids), -1, np.int64)
        ok = ids >= 0
        if task == TASK_FOLLOWS:
            ext, vocab = np.asarray(snap.user_ids)[ids[ok]], self.live.users
        else:
            ext, vocab = np.asarray(snap.tweet_ids)[ids[ok]], self.live.tweets
        out[ok] = vocab.lookup(ext, create=False)
        return out
