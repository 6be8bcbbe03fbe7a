"""Training data for the embedding models, built from a :class:`~graph.snapshot.GraphSnapshot`.

Everything lives in one *node space*: users are rows ``0..n_users-1`` and tweets rows
``n_users..n_users+n_tweets-1`` of the joint graph. A task says which pairs are training
positives and which node range its targets live in:

* ``tweets``: (user, tweet) engagements, targets are tweets;
* ``follows``: (follower, followee) follows, targets are users;
* ``both``: the union, each positive drawing negatives from its own target range.

Positives are binary and de-duplicated (several engagement kinds on one pair count once).
:class:`PairSet` keeps the sorted ``user * n_targets + target`` keys that negative sampling
and masking look positives up in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from graph.errors import InputError
from graph.snapshot import GraphSnapshot
from graph.tasks import TASKS, check_task, interaction_matrix

log = logging.getLogger(__name__)

#: Training tasks: each recommendation task, or both at once on the joint graph.
TRAIN_TASKS = (*TASKS, "both")


def check_train_task(task: str) -> str:
    """``task`` if it is a training task (``tweets``, ``follows`` or ``both``)."""
    return check_task(task, TRAIN_TASKS)


@dataclass
class PairSet:
    """Positive (user, target) pairs of one relation; targets are indices within the target range."""

    relation: str  # "tweets" or "follows"
    users: np.ndarray  # int64, sorted by (user, target)
    targets: np.ndarray  # int64
    n_users: int
    n_targets: int
    target_offset: int  # first node-space row of the target range

    @classmethod
    def from_matrix(cls, relation: str, m: sp.csr_matrix, target_offset: int) -> PairSet:
        m = m.tocsr().copy()
        m.sum_duplicates()
        m.eliminate_zeros()
        m.sort_indices()
        users = np.repeat(np.arange(m.shape[0], dtype=np.int64), np.diff(m.indptr))
        return cls(relation, users, m.indices.astype(np.int64), m.shape[0], m.shape[1], target_offset)

    def __len__(self) -> int:
        return len(self.users)

    @property
    def keys(self) -> np.ndarray:
        """Sorted int64 keys ``user * n_targets + target`` (rows are kept sorted)."""
        k = self.__dict__.get("_keys")
        if k is None:
            k = self.users * self.n_targets + self.targets
            if len(k) > 1 and not (k[1:] >= k[:-1]).all():
                k = np.sort(k)
            self.__dict__["_keys"] = k
        return k

    def contains(self, users: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Boolean array: is (users[i], targets[i]) a positive? (broadcasts)."""
        keys = self.keys
        q = np.asarray(users, np.int64) * self.n_targets + np.asarray(targets, np.int64)
        if not len(keys):
            return np.zeros(q.shape, bool)
        pos = np.minimum(np.searchsorted(keys, q), len(keys) - 1)
        return keys[pos] == q

    def matrix(self) -> sp.csr_matrix:
        data = np.ones(len(self.users), np.float32)
        return sp.csr_matrix((data, (self.users, self.targets)), shape=(self.n_users, self.n_targets))

    def subset(self, keep: np.ndarray) -> PairSet:
        return PairSet(
            self.relation,
            self.users[keep],
            self.targets[keep],
            self.n_users,
            self.n_targets,
            self.target_offset,
        )


def positives(snap: GraphSnapshot, relation: str) -> PairSet:
    """Training positives of one relation (``tweets`` or ``follows``) of a snapshot."""
    check_task(relation, TASKS)
    if relation == "tweets":
        return PairSet.from_matrix("tweets", interaction_matrix(snap, "tweets"), snap.n_users)
    f = interaction_matrix(snap, "follows")
    f.setdiag(0)  # a self-follow is no signal
    f.eliminate_zeros()
    return PairSet.from_matrix("follows", f, 0)


def task_relations(task: str) -> tuple[str, ...]:
    check_train_task(task)
    return ("tweets", "follows") if task == "both" else (task,)


def carve_early_stopping(
    pairs: PairSet, *, n_users: int = 2000, share: float = 0.2, min_items: int = 3, seed: int = 0
) -> tuple[PairSet, PairSet]:
    """Split ``pairs`` into (train, validation) for early stopping.

    Samples up to ``n_users`` users that have at least ``min_items`` positives and moves
    ``ceil(share * degree)`` of each one's positives (at least one, always leaving one) to
    validation. Deterministic for a seed.
    """
    rng = np.random.default_rng(seed)
    indptr = np.zeros(pairs.n_users + 1, np.int64)
    np.cumsum(np.bincount(pairs.users, minlength=pairs.n_users), out=indptr[1:])
    deg = np.diff(indptr)
    eligible = np.flatnonzero(deg >= min_items)
    if n_users <= 0 or not len(eligible):
        return pairs, pairs.subset(np.zeros(len(pairs), bool))
    chosen = np.sort(rng.choice(eligible, size=min(n_users, len(eligible)), replace=False))
    take = np.minimum(np.maximum(np.ceil(share * deg[chosen]).astype(np.int64), 1), deg[chosen] - 1)
    # random rank of each positive inside its user's row; the lowest `take` ranks go to validation
    keys = rng.random(len(pairs))
    rank = np.empty(len(pairs), np.int64)
    order = np.lexsort((keys, pairs.users))
    rank[order] = np.arange(len(pairs)) - np.repeat(indptr[:-1], deg)
    limit = np.zeros(pairs.n_users, np.int64)
    limit[chosen] = take
    val = rank < limit[pairs.users]
    return pairs.subset(~val), pairs.subset(val)


def merge_pairs(a: PairSet, b: PairSet) -> PairSet:
    """The union of two disjoint pair sets of one relation, sorted by (user, target)."""
    if (a.relation, a.n_users, a.n_targets, a.target_offset) != (
        b.relation,
        b.n_users,
        b.n_targets,
        b.target_offset,
    ):
        raise InputError(f"cannot merge {a.relation!r} pairs with {b.relation!r} pairs of another shape")
    users = np.concatenate([a.users, b.users])
    targets = np.concatenate([a.targets, b.targets])
    order = np.lexsort((targets, users))
    return PairSet(a.relation, users[order], targets[order], a.n_users, a.n_targets, a.target_offset)


def user_indptr(pairs: PairSet) -> np.ndarray:
    indptr = np.zeros(pairs.n_users + 1, np.int64)
    np.cumsum(np.bincount(pairs.users, minlength=pairs.n_users), out=indptr[1:])
    return indptr


def joint_adjacency(
    n_users: int,
    n_tweets: int,
    engagements: PairSet | None,
    follows: PairSet | None,
    *,
    follow_weight: float = 1.0,
    degree_reg: float | str = 0.0,
    exponents: tuple[float, float] = (0.5, 0.5),
) -> sp.csr_matrix:
    """Symmetric-normalised adjacency ``D^-1/2 A D^-1/2`` of the joint user+tweet graph.

    ``A`` has the user-tweet engagements in both directions and the follows as undirected
    user-user edges (weight ``follow_weight``). Built once and cached by the models.

    ``degree_reg`` (tau): normalise by ``D + tau`` instead (regularised spectral clustering,
    Qin & Rohe 2013); ``"mean"`` is the mean degree of the nodes with edges. The spectral warm
    start uses it: on a catalogue where most items are seen once, the top eigenvectors of
    the plain normalisation localise on heavy users and their private tails (each such star
    is nearly a component of its own, with an eigenvalue near 1), and the warm start then
    ranks those tail items first for everyone.

    ``exponents`` ``(a, b)``: ``D^-a A D^-b`` instead (LightGCN++, Lee et al. RecSys 2024: a
    receiving node is damped by its degree to the power ``a``, a sending one by ``b``); not
    symmetric unless ``a == b``.
    """
    a_exp, b_exp = (float(x) for x in exponents)
    n = n_users + n_tweets
    rows, cols, vals = [], [], []
    if engagements is not None and len(engagements):
        u, t = engagements.users, engagements.targets + n_users
        rows += [u, t]
        cols += [t, u]
        vals += [np.ones(2 * len(u), np.float32)]
    if follows is not None and len(follows) and follow_weight > 0:
        u, v = follows.users, follows.targets
        rows += [u, v]
        cols += [v, u]
        vals += [np.full(2 * len(u), follow_weight, np.float32)]
    if rows:
        a = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
        a.sum_duplicates()
        # reciprocal follows would count twice; keep the graph binary-weighted
        np.minimum(a.data, max(follow_weight, 1.0), out=a.data)
    else:
        a = sp.csr_matrix((n, n), dtype=np.float32)
    deg = np.asarray(a.sum(axis=1)).ravel()
    tau = _degree_reg(degree_reg, deg)
    safe = np.maximum(deg + tau, 1e-12)

    def damping(exp: float) -> np.ndarray:
        power = 1.0 / np.sqrt(safe) if exp == 0.5 else safe**-exp
        return np.where(deg > 0, power, 0.0).astype(np.float32)

    left = damping(a_exp)
    right = left if b_exp == a_exp else damping(b_exp)
    norm = sp.diags(left) @ a @ sp.diags(right)
    norm = norm.tocsr().astype(np.float32)
    norm.sort_indices()
    return norm


def _degree_reg(value: float | str, deg: np.ndarray) -> float:
    """tau of :func:`joint_adjacency`: a number >= 0, or ``"mean"`` (mean degree of the nodes with edges)."""
    if isinstance(value, str):
        if value != "mean":
            raise InputError(f"degree regularisation must be a number >= 0 or 'mean', got {value!r}")
        return float(deg[deg > 0].mean()) if (deg > 0).any() else 0.0
    if not float(value) >= 0:
        raise InputError(f"degree regularisation must be >= 0, got {value}")
    return float(value)
