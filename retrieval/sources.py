"""Candidate sources over a snapshot, all with one contract (:class:`CandidateSource`).

A source is fitted on a :class:`~graph.snapshot.GraphSnapshot` and returns, for a batch of
users, sparse candidate lists: ``candidates(users, k, exclude_rows) -> (ids, scores)``, both
``(len(users), k)``, best first, ids -1 / scores 0 in empty slots, never a target stored in
``exclude_rows`` (the users' history, :func:`graph.tasks.exclusion_matrix`). A list costs what
its candidates cost: sources that score by sparse products hand sparse rows to
:func:`graph.ranking.select_candidates`, so a call never fills a row over the whole catalogue
unless the method is dense by nature (spectral filter, embeddings; served precomputed or from
their factors).

Graph-neighbour sources are sparse matrix products (no Python loop per user):

* :class:`CoEngagementSource`: "liked by people who liked X" (item-item cosine);
* :class:`SimilarUsersSource`: "liked by people like you" (user-user cosine);
* :class:`FolloweeEngagementSource`: what the accounts you follow engaged with, time-decayed;
* :class:`SecondHopSource`: accounts followed by accounts you follow (Adamic-Adar weighted);
* :class:`FollowBackSource`: accounts that follow you and you do not follow back;
* :class:`CoFollowSource`: "people who follow X also follow Y";
* :class:`SpectralSource`: a training-free low-pass graph filter (GF-CF, CIKM 2021; BSPM);
* :class:`PopularitySource`, :class:`RecencySource`, :class:`ContentSource`: cold start.

The random-walk sources (Pixie, PPR, SALSA) live in :mod:`retrieval.walk_sources`; the one
catalogue of every source by task and name in :mod:`retrieval.catalogue`.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np
import scipy.sparse as sp

from graph.errors import GraphRecError
from graph.ranking import filter_lists, in_sorted, prune_rows, select_candidates
from graph.snapshot import GraphSnapshot
from graph.tasks import TASK_FOLLOWS, TASK_TWEETS, check_task, interaction_matrix

log = logging.getLogger(__name__)

Candidates = tuple[np.ndarray, np.ndarray]


@runtime_checkable
class CandidateSource(Protocol):
    """The source contract: ``fit(snapshot)`` once, then ``candidates`` for batches of users."""

    name: str
    task: str

    def fit(self, snap: GraphSnapshot) -> CandidateSource: ...

    def candidates(
        self, users: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None
    ) -> Candidates: ...


class Source(ABC):
    """Base of the sources that score: ``scores(users)`` (dense or sparse rows) -> candidate lists."""

    name = "source"
    task = TASK_TWEETS

    def __repr__(self) -> str:
        return f"{type(self).__name__}(task={self.task!r})"

    @abstractmethod
    def fit(self, snap: GraphSnapshot) -> Source: ...

    @abstractmethod
    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        """Scores of every candidate for ``users`` (rows); sparse where the method is sparse."""

    def candidates(self, users: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None) -> Candidates:
        """Top-``k`` ``(ids, scores)`` per user, positive scores only, ``exclude_rows`` left out."""
        return select_candidates(self.scores(np.asarray(users, np.int64)), k, exclude_rows)


def _rows(m: sp.csr_matrix, users: np.ndarray) -> sp.csr_matrix:
    return m[np.asarray(users, np.int64)]


def cosine_similarity(
    m: sp.csr_matrix, *, k: int = 200, shrink: float = 0.0, alpha: float = 0.5
) -> sp.csr_matrix:
    """Column-column asymmetric cosine of ``m`` (rows = users), top-``k`` per column, no self-similarity.

    ``alpha`` = 0.5 is plain cosine; ``shrink`` damps pairs with little support.
    """
    m = m.tocsc().astype(np.float32)
    norms = np.asarray(m.multiply(m).sum(axis=0)).ravel()
    co = (m.T @ m).tocsr()
    co.setdiag(0)
    co.eliminate_zeros()
    rows = np.repeat(np.arange(co.shape[0]), np.diff(co.indptr))
    denom = np.power(norms[rows], alpha) * np.power(norms[co.indices], 1 - alpha) + shrink
    co.data = (co.data / np.maximum(denom, 1e-12)).astype(np.float32)
    return prune_rows(co, k)  # ties at the cut by lower column, as item-kNN


# ---------------------------------------------------------------------------
# tweet sources


class CoEngagementSource(Source):
    """Tweets co-engaged with the user's tweets: sum of item-item cosine ("liked by people who liked X")."""

    name = "co_engagement"
    task = TASK_TWEETS

    def __init__(self, k_neighbors: int = 200, shrink: float = 0.0, alpha: float = 0.5):
        self.k_neighbors, self.shrink, self.alpha = k_neighbors, shrink, alpha

    def fit(self, snap: GraphSnapshot) -> CoEngagementSource:
        self.r = interaction_matrix(snap, TASK_TWEETS)
        self.sim = cosine_similarity(self.r, k=self.k_neighbors, shrink=self.shrink, alpha=self.alpha)
        self.sim_t = self.sim.T.tocsr()  # score_u = r_u @ sim: item j gets sum over engaged i of sim[i, j]
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.r[users] @ self.sim).tocsr()

    def best_anchor(self, user: int, target: int) -> int:
        """The tweet the user engaged with that most explains ``target`` (-1 if none)."""
        return best_anchor(self.r, self.sim_t, user, target)


class SimilarUsersSource(Source):
    """Tweets engaged by the users most like this one (user-based kNN: "liked by people like you").

    Each of the ``k_neighbors`` most cosine-similar users (``shrink`` damping pairs with little
    overlap) votes for what they engaged with, weighted by similarity. A user is described by
    the tweets they engaged with and, where the snapshot has a follow graph, by the accounts
    they follow or are followed by (each such account counting ``follow_weight`` as much as one
    engagement): people who share your follow neighbourhood share tastes, and where
    engagements are sparse (flickr: 3.4 engagers per item) they are found when too few
    engagements overlap. ``follow_weight=0`` is plain user-kNN (the ``userknn`` baseline).
    """

    name = "similar_users"
    task = TASK_TWEETS

    def __init__(self, k_neighbors: int = 200, shrink: float = 10.0, follow_weight: float = 1.0):
        if k_neighbors < 1 or shrink < 0 or follow_weight < 0:
            raise GraphRecError(
                "need k_neighbors >= 1, shrink >= 0 and follow_weight >= 0, "
                f"got {k_neighbors}, {shrink}, {follow_weight}"
            )
        self.k_neighbors, self.shrink, self.follow_weight = k_neighbors, shrink, follow_weight

    def fit(self, snap: GraphSnapshot) -> SimilarUsersSource:
        self.r = interaction_matrix(snap, TASK_TWEETS).astype(np.float32)
        profile = self.r
        if self.follow_weight > 0 and snap.n_follows:
            f = interaction_matrix(snap, TASK_FOLLOWS).astype(np.float32)
            linked = (f + f.T).tocsr()  # undirected: followees and followers alike
            linked.data[:] = self.follow_weight
            profile = sp.hstack([self.r, linked], format="csr")
        self.profile, self.profile_t = profile, profile.T.tocsr()
        self.norms = np.sqrt(np.asarray(profile.multiply(profile).sum(axis=1)).ravel())
        self._last = None
        return self

    def neighbours(self, users: np.ndarray) -> sp.csr_matrix:
        """Rows of user-user similarity for ``users``: top ``k_neighbors`` each, no self-similarity
        (with ``follow_weight=0``, the same neighbours as the ``userknn`` evaluation baseline)."""
        users = np.asarray(users, np.int64)
        last = self._last  # one user's neighbours, kept for the reasons of the same call
        if len(users) == 1 and last is not None and last[0] == int(users[0]):
            return last[1]
        nb = user_neighbours(self.profile, self.profile_t, self.norms, users, self.k_neighbors, self.shrink)
        if len(users) == 1:
            self._last = (int(users[0]), nb)
        return nb

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.neighbours(users) @ self.r).tocsr()


def user_neighbours(
    x: sp.csr_matrix, xt: sp.csr_matrix, norms: np.ndarray, users: np.ndarray, k_neighbors: int, shrink: float
) -> sp.csr_matrix:
    """Rows of user-user cosine similarity (``x`` = users x items, ``xt`` its transpose, ``norms``
    its row norms; ``shrink`` damps pairs with little overlap) for ``users``: the top
    ``k_neighbors`` of each row, the user themself left out (ties by lower user index)."""
    users = np.asarray(users, np.int64)
    c = (x[users] @ xt).tocsr()  # batch x all users: shared items
    rows = np.repeat(np.arange(len(users)), np.diff(c.indptr))
    self_entry = c.indices == users[rows]
    denom = norms[users][rows] * norms[c.indices] + shrink
    c.data = np.where(self_entry, 0.0, c.data / np.maximum(denom, 1e-12)).astype(np.float32)
    c.eliminate_zeros()
    return prune_rows(c, k_neighbors)


def best_anchor(history: sp.csr_matrix, sim_t: sp.csr_matrix, user: int, target: int) -> int:
    """Among the columns of ``history[user]`` (a canonical CSR), the one most similar to
    ``target`` (-1 if none). Reads the raw CSR arrays: this runs once per explained candidate,
    and costs the target's similarity row, not the catalogue."""
    lo, hi = sim_t.indptr[target], sim_t.indptr[target + 1]
    cols, vals = sim_t.indices[lo:hi], sim_t.data[lo:hi]
    hit = in_sorted(history.indices[history.indptr[user] : history.indptr[user + 1]], cols)
    if not hit.any():
        return -1
    return int(cols[hit][np.argmax(vals[hit])])


class FolloweeEngagementSource(Source):
    """What the accounts the user follows engaged with, weighted by kind and decayed by age."""

    name = "followee_engagement"
    task = TASK_TWEETS

    def __init__(self, half_life_days: float = 3.0):
        self.half_life_days = half_life_days

    def fit(self, snap: GraphSnapshot) -> FolloweeEngagementSource:
        ts = np.asarray(snap.eng_user_ts)
        w = np.asarray(snap.eng_user_weights, np.float32)
        if ts.max(initial=0) > 0 and self.half_life_days > 0:
            age = (ts.max() - ts).astype(np.float64) / 86_400.0
            w = (w * np.power(0.5, age / self.half_life_days)).astype(np.float32)
        self.r = sp.csr_matrix(  # copies: sum_duplicates rewrites index arrays in place
            (w, np.array(snap.eng_user_indices, copy=True), np.array(snap.eng_user_indptr, copy=True)),
            shape=(snap.n_users, snap.n_tweets),
        )
        self.r.sum_duplicates()
        f = interaction_matrix(snap, TASK_FOLLOWS)
        # Followees with many engagements count less per engagement (each follower sees a feed, not everything).
        deg = np.diff(self.r.indptr).astype(np.float32)
        self.f = f @ sp.diags(1.0 / np.sqrt(np.maximum(deg, 1.0)))
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.f[users] @ self.r).tocsr()


SPECTRAL_FILTERS = ("bspm", "chebycf")


def chebyshev_plateau_coefficients(order: int, flatness: float) -> np.ndarray:
    """Chebyshev coefficients c_0..c_order of ChebyCF's smoothed ideal low-pass filter.

    The target is a "plateau" on the rescaled Laplacian's spectrum [-1, 1] (-1 = the smoothest
    signals): 1 at -1, 0 at +1, ``0.5 ± 0.5 |x|^flatness`` in between, sampled at ``order + 1``
    points and interpolated at the Chebyshev nodes (Kim et al., SIGIR 2025, "Graph Spectral
    Filtering with Chebyshev Interpolation for Recommendation"; the reference code rounds the
    grid and the targets to 3 decimals, and so do we, to reproduce its coefficients).
    """
    if order < 1:
        raise GraphRecError(f"cheby_order must be >= 1, got {order}")
    grid = np.round(np.cos((order - np.arange(order + 1)) / order * np.pi), 3)
    target = np.where(grid < 0, np.abs(grid) ** flatness * 0.5 + 0.5, np.abs(grid) ** flatness * -0.5 + 0.5)
    target = np.round(target, 3)
    nodes = np.cos((order + 1 + 0.5 - np.arange(1, order + 2)) / (order + 1) * np.pi)
    basis = [np.ones_like(nodes), nodes]  # T_k at the nodes, by the three-term recurrence
    for _ in range(2, order + 1):
        basis.append(2 * nodes * basis[-1] - basis[-2])
    coeffs = np.array([(b * target).sum() for b in basis[: order + 1]]) * (2.0 / (order + 1))
    coeffs[0] /= 2
    return coeffs


class SpectralSource(Source):
    """Training-free graph filters over the normalised engagement matrix R̃ = D_u^-1/2 R D_i^-1/2.

    Two filters over the item-item graph ``P̃ = R̃ᵀR̃`` (eigenvalues in [0, 1]), chosen by ``filter``:

    * ``"bspm"``: ``score = y0 exp(-sharpen P̃)`` (4th-order Taylor) with
      ``y0 = r P̃ + ideal_weight * r D_i^-1/2 V Vᵀ D_i^1/2``. With ``sharpen=0`` this is GF-CF
      (Shen et al., CIKM 2021: a linear filter plus an ideal low-pass filter from the top right
      singular vectors V); with ``sharpen > 0`` it adds BSPM's sharpening (Choi et al., SIGIR
      2023): one RK4 step of the reverse heat equation, a 4th-order Taylor polynomial of
      ``exp(-sharpen P̃)``.
    * ``"chebycf"``: ChebyCF (Kim et al., SIGIR 2025): ``score = (Σ_k c_k T_k(L̃) x +
      ideal_weight * x V Vᵀ) D_i^degree_power`` with ``x = r D_i^-degree_power`` and
      ``L̃ = I - 2P̃``: a Chebyshev interpolation (order ``cheby_order``) of a near-ideal low-pass
      filter (:func:`chebyshev_plateau_coefficients`), computed by the three-term recurrence,
      plus the ideal pass filter, between degree-based pre- and post-normalisation.

    Every product goes through the sparse R̃, never a dense item-item matrix. ``n_factors``
    None takes each filter's published gowalla setting (448 for BSPM, 512 for ChebyCF).
    """

    name = "spectral"
    task = TASK_TWEETS

    def __init__(
        self,
        filter: str = "bspm",
        n_factors: int | None = None,
        ideal_weight: float = 0.2,
        sharpen: float = 2.5,
        sharpen_order: int = 4,
        cheby_order: int = 8,
        flatness: float = 1.5,
        degree_power: float = 0.4,
        seed: int = 0,
    ):
        if filter not in SPECTRAL_FILTERS:
            raise GraphRecError(
                f"unknown spectral filter {filter!r}; choose one of {', '.join(SPECTRAL_FILTERS)}"
            )
        self.filter = filter
        self.n_factors = n_factors if n_factors is not None else (512 if filter == "chebycf" else 448)
        self.ideal_weight, self.seed = ideal_weight, seed
        self.sharpen, self.sharpen_order = sharpen, sharpen_order
        self.cheby_order, self.flatness, self.degree_power = cheby_order, flatness, degree_power

    def fit(self, snap: GraphSnapshot) -> SpectralSource:
        return self.fit_matrix(interaction_matrix(snap, TASK_TWEETS))

    def fit_matrix(self, r: sp.csr_matrix) -> SpectralSource:
        from scipy.sparse.linalg import svds

        self.r = r.tocsr().astype(np.float32)
        du = np.asarray(self.r.sum(axis=1)).ravel()
        di = np.asarray(self.r.sum(axis=0)).ravel()
        inv_su = np.where(du > 0, 1.0 / np.sqrt(np.maximum(du, 1e-12)), 0.0).astype(np.float32)
        self.inv_si = np.where(di > 0, 1.0 / np.sqrt(np.maximum(di, 1e-12)), 0.0).astype(np.float32)
        self.si = np.sqrt(di).astype(np.float32)
        # ChebyCF's degree normalisation: x D_i^-p before the filter, D_i^p after (0 for unseen items).
        pw = self.degree_power if self.filter == "chebycf" else 0.5
        self.pre = np.where(di > 0, np.maximum(di, 1e-12) ** -pw, 0.0).astype(np.float32)
        self.post = np.where(di > 0, np.maximum(di, 1e-12) ** pw, 0.0).astype(np.float32)
        self.coeffs = (
            chebyshev_plateau_coefficients(self.cheby_order, self.flatness)
            if self.filter == "chebycf"
            else None
        )
        self.r_norm = (sp.diags(inv_su) @ self.r @ sp.diags(self.inv_si)).tocsr().astype(np.float32)
        self.r_norm_t = self.r_norm.T.tocsr()
        # Small graphs get fewer factors: the ideal filter is a low-pass filter, and svds needs k << n.
        k = int(min(self.n_factors, max(8, min(self.r.shape) // 8), min(self.r.shape) - 1))
        if self.ideal_weight > 0 and k > 0:
            if min(self.r.shape) <= 4000:  # small: a dense SVD is faster than ARPACK with a large k
                _, _, vt = np.linalg.svd(self.r_norm.toarray().astype(np.float64), full_matrices=False)
                vt = vt[:k]
            else:
                rng = np.random.default_rng(self.seed)
                v0 = rng.standard_normal(min(self.r.shape)).astype(np.float64)
                _, _, vt = svds(self.r_norm.astype(np.float64), k=k, v0=v0)
            self.vt = vt.astype(np.float32)
        else:
            self.vt = np.zeros((0, self.r.shape[1]), np.float32)
        return self

    def _item_filter(self, x) -> np.ndarray:
        """x P̃ = (x R̃ᵀ) R̃ for a dense or sparse batch x (rows = users)."""
        return np.asarray(_dense(x @ self.r_norm_t) @ self.r_norm, dtype=np.float32)

    def _ideal(self, x) -> np.ndarray:
        """x V Vᵀ: the projection onto the top ``n_factors`` right singular vectors of R̃."""
        return (np.asarray(_dense(x), np.float32) @ self.vt.T) @ self.vt

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        r_u = self.r[users]
        if self.filter == "chebycf":
            return self._chebycf(r_u)
        y = self._item_filter(r_u)
        if len(self.vt):
            y += self.ideal_weight * (self._ideal(r_u @ sp.diags(self.pre)) * self.post)
        if self.sharpen:
            # One RK4 step of dy/dt = -y P̃ over time `sharpen` is the 4th-order Taylor polynomial of
            # exp(-sharpen P̃) applied to y (BSPM's gowalla setting: rk4, K_s=1, T_s=2.5).
            term = y
            for order in range(1, self.sharpen_order + 1):
                term = self._item_filter(term) * (-self.sharpen / order)
                y = y + term
        return y

    def _chebycf(self, r_u: sp.csr_matrix) -> np.ndarray:
        """Σ_k c_k T_k(L̃) x (+ the ideal part), L̃ = I - 2P̃, by T_k = 2 T_{k-1} L̃ - T_{k-2}."""
        x = (r_u @ sp.diags(self.pre)).tocsr()
        prev = _dense(x).astype(np.float32)
        cur = prev - 2.0 * self._item_filter(x)
        out = self.coeffs[0] * prev + self.coeffs[1] * cur
        for c in self.coeffs[2:]:
            prev, cur = cur, 2.0 * (cur - 2.0 * self._item_filter(cur)) - prev
            out += c * cur
        if len(self.vt):
            out += self.ideal_weight * self._ideal(x)
        return (out * self.post).astype(np.float32, copy=False)


def _dense(x) -> np.ndarray:
    return x.toarray() if sp.issparse(x) else np.asarray(x)


class StaticSource(Source):
    """A source with one score vector for everyone: candidates walk its precomputed order.

    ``candidates`` takes each user's first ``k`` targets of the order that are not in the
    user's exclusions: the cost grows with ``k`` plus the user's history, not the catalogue.
    """

    def _vector(self, snap: GraphSnapshot) -> np.ndarray:
        raise NotImplementedError

    def fit(self, snap: GraphSnapshot) -> StaticSource:
        self.vector = np.asarray(self._vector(snap), np.float32)
        positive = np.flatnonzero(self.vector > 0)
        self.order = positive[np.lexsort((positive, -self.vector[positive]))]  # best first, ties by id
        return self

    def scores(self, users: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self.vector, (len(users), len(self.vector))).copy()

    def first(
        self, n: int, skip: np.ndarray, keep: Callable[[np.ndarray], np.ndarray] | None = None
    ) -> Candidates:
        """The first ``n`` targets of the order not in ``skip`` (sorted) that pass ``keep`` (a
        predicate over target ids), with their scores: one user's filtered fallback. The order is
        read in growing chunks, so the cost grows with what is skipped, not the catalogue."""
        got, start, chunk = [], 0, max(4 * n, 64)
        while start < len(self.order) and sum(len(g) for g in got) < n:
            part = self.order[start : start + chunk]
            part = part[~in_sorted(skip, part)]
            if keep is not None:
                part = part[keep(part)]
            got.append(part)
            start, chunk = start + chunk, chunk * 2
        ids = np.concatenate(got)[:n] if got else np.zeros(0, np.int64)
        return ids, self.vector[ids]

    def candidates(self, users: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None) -> Candidates:
        n, k = len(users), max(int(k), 0)
        longest = int(np.diff(exclude_rows.indptr).max(initial=0)) if exclude_rows is not None else 0
        head = self.order[: k + longest]  # enough for the user with the longest history
        # The order is ranked (best first, ties by id), so filtering it keeps the ranking.
        return filter_lists(np.tile(head, (n, 1)), np.tile(self.vector[head], (n, 1)), k, exclude_rows)


class PopularitySource(StaticSource):
    """Most engaged (tweets) or most followed (follows) targets, time-decayed when
    ``half_life_days`` > 0 and timestamps exist: the cold-start fallback."""

    name = "popular"

    def __init__(self, task: str = TASK_TWEETS, half_life_days: float = 0.0):
        self.task, self.half_life_days = check_task(task), half_life_days

    def _vector(self, snap: GraphSnapshot) -> np.ndarray:
        if self.task == TASK_FOLLOWS:
            pop = np.diff(snap.follow_in_indptr).astype(np.float32)
        else:
            w = np.ones(snap.n_engagements, np.float32)
            ts = np.asarray(snap.eng_user_ts)
            if self.half_life_days > 0 and ts.max(initial=0) > 0:
                w = np.power(0.5, (ts.max() - ts) / 86_400.0 / self.half_life_days).astype(np.float32)
            pop = np.bincount(snap.eng_user_indices, weights=w, minlength=snap.n_tweets).astype(np.float32)
        return pop / max(float(pop.max(initial=0.0)), 1e-12)

    @property
    def pop(self) -> np.ndarray:
        return self.vector


class RecencySource(StaticSource):
    """Newest tweets first (exponential decay from the newest creation time)."""

    name = "recent"
    task = TASK_TWEETS

    def __init__(self, half_life_days: float = 1.0):
        self.half_life_days = half_life_days

    def _vector(self, snap: GraphSnapshot) -> np.ndarray:
        created = np.asarray(snap.tweet_created, np.float64)
        if created.max(initial=0) <= 0:
            return np.zeros(snap.n_tweets, np.float32)
        age = (created.max() - created) / 86_400.0
        return np.where(created > 0, np.power(0.5, age / self.half_life_days), 0.0).astype(np.float32)


class ContentSource(Source):
    """Cosine between a tweet's TF-IDF text and the user's profile (mean of engaged tweets' texts),
    through an impact-ordered inverted index.

    A profile keeps its ``profile_terms`` heaviest terms and each term's posting list its
    ``postings_per_term`` highest-weighted tweets (index pruning, as search engines do): a
    call costs at most ``profile_terms * postings_per_term`` postings instead of every tweet
    that shares a word with the user (with a small vocabulary, nearly the whole catalogue).
    ``None`` for either keeps it exact.
    """

    name = "content"
    task = TASK_TWEETS

    def __init__(
        self, max_features: int = 2**16, profile_terms: int | None = 16, postings_per_term: int | None = 1000
    ):
        for name, value in (("profile_terms", profile_terms), ("postings_per_term", postings_per_term)):
            if value is not None and value < 1:
                raise GraphRecError(f"{name} must be >= 1 (or None for no pruning), got {value}")
        self.max_features = max_features
        self.profile_terms, self.postings_per_term = profile_terms, postings_per_term

    def fit(self, snap: GraphSnapshot) -> ContentSource:
        self.tfidf = tfidf_matrix(snap, self.max_features)
        postings = self.tfidf.T.tocsr()
        self.postings = (
            postings if self.postings_per_term is None else prune_rows(postings, self.postings_per_term)
        )
        self.r = interaction_matrix(snap, TASK_TWEETS)
        return self

    def profile(self, users: np.ndarray) -> sp.csr_matrix:
        prof = (self.r[users] @ self.tfidf).tocsr()
        if self.profile_terms is not None:
            prof = prune_rows(prof, self.profile_terms)
        norms = np.sqrt(np.asarray(prof.multiply(prof).sum(axis=1)).ravel())
        # Rows scaled in place (the same float32 products as a diagonal matrix product, without it).
        prof.data *= np.repeat(1.0 / np.maximum(norms, 1e-12), np.diff(prof.indptr))
        return prof

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.profile(users) @ self.postings).tocsr()


def tfidf_matrix(snap: GraphSnapshot, max_features: int = 2**16) -> sp.csr_matrix:
    """Tweets x hashed words, L2-normalised TF-IDF of the tweet texts (empty rows without text)."""
    import zlib

    rows, cols = [], []
    index = {int(t): i for i, t in enumerate(np.asarray(snap.tweet_ids).tolist())} if snap.tweet_texts else {}
    for tweet_id, text in snap.tweet_texts.items():
        i = index.get(int(tweet_id))
        if i is None:
            continue
        for word in text.lower().split():
            rows.append(i)
            cols.append(zlib.crc32(word.encode()) % max_features)
    m = sp.csr_matrix(
        (np.ones(len(rows), np.float32), (np.asarray(rows, np.int64), np.asarray(cols, np.int64))),
        shape=(snap.n_tweets, max_features),
    )
    m.sum_duplicates()
    df = np.bincount(m.indices, minlength=max_features).astype(np.float32)
    idf = np.log((1.0 + snap.n_tweets) / (1.0 + df)) + 1.0
    m = m @ sp.diags(idf.astype(np.float32))
    norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
    return (sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m).tocsr().astype(np.float32)


# ---------------------------------------------------------------------------
# follow sources


class SecondHopSource(Source):
    """Accounts followed by the accounts the user follows, Adamic-Adar weighted (1 / log degree of the middle)."""

    name = "second_hop"
    task = TASK_FOLLOWS

    def fit(self, snap: GraphSnapshot) -> SecondHopSource:
        f = interaction_matrix(snap, TASK_FOLLOWS)
        deg = np.diff(f.indptr) + np.diff(f.tocsc().indptr)
        self.f = f
        self.f_weighted = (f @ sp.diags(1.0 / np.log(2.0 + deg)).astype(np.float32)).tocsr()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.f_weighted[users] @ self.f).tocsr()


class FollowBackSource(Source):
    """Accounts that follow the user (reciprocity is the strongest single follow signal)."""

    name = "follow_back"
    task = TASK_FOLLOWS

    def fit(self, snap: GraphSnapshot) -> FollowBackSource:
        self.ft = interaction_matrix(snap, TASK_FOLLOWS).T.tocsr()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return _rows(self.ft, users)


class CoFollowSource(Source):
    """ "People who follow X also follow Y": item-item cosine on the follow matrix."""

    name = "co_follow"
    task = TASK_FOLLOWS

    def __init__(self, k_neighbors: int = 200, alpha: float = 0.5):
        self.k_neighbors, self.alpha = k_neighbors, alpha

    def fit(self, snap: GraphSnapshot) -> CoFollowSource:
        self.f = interaction_matrix(snap, TASK_FOLLOWS)
        self.sim = cosine_similarity(self.f, k=self.k_neighbors, alpha=self.alpha)
        self.sim_t = self.sim.T.tocsr()
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return (self.f[users] @ self.sim).tocsr()


class SimilarEngagersSource(Source):
    """Accounts whose engagements resemble the user's (user-user cosine on engagements)."""

    name = "similar_engagers"
    task = TASK_FOLLOWS

    def __init__(self, k_neighbors: int = 100):
        self.k_neighbors = k_neighbors

    def fit(self, snap: GraphSnapshot) -> SimilarEngagersSource:
        r = interaction_matrix(snap, TASK_TWEETS)
        self.sim = cosine_similarity(r.T.tocsr(), k=self.k_neighbors)
        return self

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return _rows(self.sim, users)


class EmbeddingSource(Source):
    """Dot product of user embeddings with target embeddings.

    Exact (``u @ T.T``) on catalogues below ``ann_min_targets`` targets; above it (``ann="auto"``,
    the default, where hnswlib is installed) or always (``ann=True``), the candidates come from
    an HNSW inner-product index (:class:`retrieval.ann.InnerProductIndex`, search list ``ann_ef``)
    built at ``fit``: recall@20 >= 0.95 against the exact ranking (BENCHMARKS.md, "Vector
    search"), with the candidates' exact dot products as scores. ``ann=False``: always exact.
    ``scores`` is always exact (the reference). The index is built with ``ann_threads`` threads
    (default: every core); with one it is the same for the same vectors, with more it may differ
    by a few neighbours between fits.
    """

    name = "embedding"

    def __init__(
        self,
        user_vectors: np.ndarray,
        target_vectors: np.ndarray,
        task: str = TASK_TWEETS,
        *,
        ann: bool | str = "auto",
        ann_min_targets: int | None = None,
        ann_ef: int | None = None,
        ann_threads: int | None = None,
    ):
        if user_vectors.shape[1] != target_vectors.shape[1]:
            raise GraphRecError(
                f"embedding dimensions differ: users {user_vectors.shape[1]}, targets {target_vectors.shape[1]}"
            )
        if ann not in (True, False, "auto"):
            raise GraphRecError(f"ann must be True, False or 'auto', got {ann!r}")
        self.u = np.ascontiguousarray(user_vectors, np.float32)
        self.t = np.ascontiguousarray(target_vectors, np.float32)
        self.task = check_task(task)
        self.ann, self.ann_min_targets, self.ann_ef, self.ann_threads = (
            ann,
            ann_min_targets,
            ann_ef,
            ann_threads,
        )
        self.index = None

    def fit(self, snap: GraphSnapshot) -> EmbeddingSource:
        n_targets = snap.n_users if self.task == TASK_FOLLOWS else snap.n_tweets
        if len(self.u) != snap.n_users or len(self.t) != n_targets:
            raise GraphRecError(
                f"embeddings do not match the snapshot: {len(self.u)} users / {len(self.t)} targets vs "
                f"{snap.n_users} / {n_targets}; retrain them on this snapshot"
            )
        self.index = None
        if self._use_ann():
            from retrieval.ann import HNSW_EF_SEARCH, InnerProductIndex

            self.index = InnerProductIndex(self.t, ef=self.ann_ef or HNSW_EF_SEARCH, threads=self.ann_threads)
        return self

    def _use_ann(self) -> bool:
        from retrieval.ann import ANN_MIN_TARGETS, ann_available

        if self.ann is True:
            return True
        threshold = ANN_MIN_TARGETS if self.ann_min_targets is None else self.ann_min_targets
        if self.ann is False or len(self.t) < threshold:
            return False
        if not ann_available():
            log.warning(
                "%d targets: exact embedding search (install graphrec[ann] for the approximate index)",
                len(self.t),
            )
            return False
        return True

    def scores(self, users: np.ndarray) -> np.ndarray | sp.csr_matrix:
        return self.u[users] @ self.t.T

    def candidates(self, users: np.ndarray, k: int, exclude_rows: sp.csr_matrix | None = None) -> Candidates:
        if getattr(self, "index", None) is None:
            return super().candidates(users, k, exclude_rows)
        users = np.asarray(users, np.int64)
        # per user, enough neighbours that k remain once their excluded targets are dropped
        extra = np.diff(exclude_rows.indptr) if exclude_rows is not None else 0
        ids, vals = self.index.search(self.u[users], int(k) + extra)
        return filter_lists(ids, vals, k, exclude_rows)
