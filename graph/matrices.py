"""SciPy sparse views of a snapshot's CSR arrays (no copies of the index arrays)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph.snapshot import GraphSnapshot


def engagement_matrix(snap: GraphSnapshot, *, binary: bool = True) -> sp.csr_matrix:
    """Users x tweets; 1 per engaged pair (``binary``) or the summed engagement weights."""
    n_u, n_t = snap.n_users, snap.n_tweets
    data = (
        np.ones(snap.n_engagements, np.float32) if binary else np.asarray(snap.eng_user_weights, np.float32)
    )
    # Copies: scipy's sum_duplicates sorts and compacts index arrays in place, and these
    # belong to the (immutable, possibly memory-mapped) snapshot.
    m = sp.csr_matrix(
        (data, np.array(snap.eng_user_indices, copy=True), np.array(snap.eng_user_indptr, copy=True)),
        shape=(n_u, n_t),
    )
    m.sum_duplicates()  # several kinds on one pair collapse into one entry
    if binary:
        m.data[:] = 1.0
    return m


def follow_matrix(snap: GraphSnapshot) -> sp.csr_matrix:
    """Users x users; row = follower, column = followee."""
    n = snap.n_users
    data = np.ones(snap.n_follows, np.float32)
    return sp.csr_matrix(
        (data, np.array(snap.follow_out_indices, copy=True), np.array(snap.follow_out_indptr, copy=True)),
        shape=(n, n),
    )
