"""The two recommendation tasks and the interaction matrices every layer reads them through.

* ``tweets``: targets are tweets; a user's history is the tweets they engaged with.
* ``follows``: targets are users; a user's history is the accounts they follow (and, for
  exclusion, themselves).

One name per idea: the target axis is a *task* everywhere (sources, tuning, training,
evaluation); an engagement type is a *kind* (``graph.schema.KINDS``).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph.errors import InputError
from graph.snapshot import GraphSnapshot

TASK_TWEETS = "tweets"
TASK_FOLLOWS = "follows"
TASKS = (TASK_TWEETS, TASK_FOLLOWS)


def check_task(task: str, allowed: tuple[str, ...] = TASKS) -> str:
    """``task`` itself, or :class:`InputError` naming the allowed tasks."""
    if task not in allowed:
        raise InputError(f"unknown task {task!r}; choose one of {', '.join(allowed)}")
    return task


def n_targets(snap: GraphSnapshot, task: str) -> int:
    """Number of rankable targets of ``task`` (tweets, or users for ``follows``)."""
    return snap.n_tweets if check_task(task) == TASK_TWEETS else snap.n_users


def target_ids(snap: GraphSnapshot, task: str) -> np.ndarray:
    """External ids of the targets of ``task`` (dense index -> id)."""
    return snap.tweet_ids if check_task(task) == TASK_TWEETS else snap.user_ids


def interaction_matrix(snap: GraphSnapshot, task: str, *, weighted: bool = False) -> sp.csr_matrix:
    """Users x targets: engagements (tweets) or follow adjacency, row = follower (follows).

    One entry per (user, target) pair: 1, or for ``weighted`` tweets the summed engagement
    weights over kinds (follows are always 1). Built from copies of the snapshot's CSR arrays:
    SciPy's in-place canonicalisation must never touch the (possibly memory-mapped) snapshot.
    """
    if check_task(task) == TASK_TWEETS:
        prefix, n_cols = "eng_user", snap.n_tweets
        data = np.asarray(snap.eng_user_weights, np.float32) if weighted else None
    else:
        prefix, n_cols = "follow_out", snap.n_users
        data = None
    indptr = np.array(snap.arrays[f"{prefix}_indptr"], dtype=np.int64)
    indices = np.array(snap.arrays[f"{prefix}_indices"], dtype=np.int32)
    data = np.ones(len(indices), np.float32) if data is None else np.array(data, dtype=np.float32)
    m = sp.csr_matrix((data, indices, indptr), shape=(snap.n_users, n_cols))
    m.sum_duplicates()  # several engagement kinds on one pair become one entry (also sorts)
    if not weighted:
        m.data[:] = 1.0
    return m


def exclusion_matrix(snap: GraphSnapshot, task: str) -> sp.csr_matrix:
    """Users x targets never to recommend: the user's history (and the user, for follows)."""
    m = interaction_matrix(snap, task)
    if task == TASK_FOLLOWS:
        m = (m + sp.identity(snap.n_users, dtype=np.float32, format="csr")).tocsr()
    m.data[:] = 1.0
    m.sort_indices()
    return m
