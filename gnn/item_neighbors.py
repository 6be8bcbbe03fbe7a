"""Each target's most similar targets on the co-engagement graph, with UltraGCN's weights.

UltraGCN (Mao et al., CIKM 2021) adds a constraint that pulls a user towards the nearest
neighbours ``S(i)`` of each item ``i`` the user engaged with, on the item-item graph
``G = R^T R``: the weight of neighbour ``j`` is ``G_ij / (g_i - G_ii) * sqrt(g_i / g_j)`` with
``g_i`` the row sums of ``G``, and ``S(i)`` keeps the ``k`` largest. The trainer's
``item_neighbors`` option uses them as extra, weighted positives of the pairwise loss
(:func:`gnn.losses.sampled_loss`).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gnn.data import PairSet
from graph.errors import InputError
from graph.ranking import top_k_csr


def item_neighbors(pairs: PairSet, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(ids, weights)``, both ``(n_targets, k)``: each target's ``k`` heaviest neighbours on
    the co-engagement graph of ``pairs`` (itself excluded) and their weights, normalised to sum
    to 1 per row. Rows with fewer than ``k`` neighbours are padded with the target itself at
    weight 0 (so a padded slot adds nothing to the loss)."""
    if k < 1:
        raise InputError(f"item_neighbors must be >= 1, got {k}")
    n = pairs.n_targets
    r = sp.csr_matrix(
        (np.ones(len(pairs), np.float32), (pairs.users, pairs.targets)), shape=(pairs.n_users, n)
    )
    r.data[:] = 1.0  # a repeated pair counts once
    rt = r.T.tocsr()
    counts = np.diff(rt.indptr).astype(np.float64)  # G_ii: the target's own engagements
    rowsum = rt @ np.asarray(r.sum(axis=1)).ravel().astype(np.float64)  # g_i = sum_j G_ij
    scale = np.sqrt(1.0 / np.maximum(rowsum, 1e-12))
    ids = np.repeat(np.arange(n, dtype=np.int64)[:, None], k, axis=1)
    weights = np.zeros((n, k), np.float32)
    for s in range(0, n, 4096):  # rows of G in blocks: G itself can hold 10^8 entries
        rows = np.arange(s, min(s + 4096, n))
        g = (rt[rows] @ r).tocsr()
        row = np.repeat(rows, np.diff(g.indptr))
        off = np.maximum(rowsum[row] - counts[row], 1e-12)
        w = g.data.astype(np.float64) / off * np.sqrt(rowsum[row]) * scale[g.indices]
        w[g.indices == row] = -np.inf  # a target is not its own neighbour
        g.data = w.astype(np.float32)
        top, val = top_k_csr(g, k)  # compiled; ties by the lower column
        r_i, slot = np.nonzero(top >= 0)  # slots with a neighbour; the rest keep the padding
        ids[rows[r_i], slot] = top[r_i, slot]
        weights[rows[r_i], slot] = val[r_i, slot]
    total = weights.sum(axis=1, keepdims=True)
    np.divide(weights, total, out=weights, where=total > 0)
    return ids, weights


def item_neighbors_reference(pairs: PairSet, k: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`item_neighbors` with dense matrices and a loop per row (the slow reference)."""
    n = pairs.n_targets
    r = np.zeros((pairs.n_users, n))
    r[pairs.users, pairs.targets] = 1.0
    g = r.T @ r
    rowsum = g.sum(axis=1)
    ids = np.repeat(np.arange(n)[:, None], k, axis=1)
    weights = np.zeros((n, k))
    for i in range(n):
        cand = []
        for j in range(n):
            if j != i and g[i, j] > 0:
                off = max(rowsum[i] - g[i, i], 1e-12)
                w = np.float32(g[i, j] / off * np.sqrt(rowsum[i]) * np.sqrt(1.0 / max(rowsum[j], 1e-12)))
                cand.append((-w, j))
        for s, (neg_w, j) in enumerate(sorted(cand)[:k]):
            ids[i, s], weights[i, s] = j, -neg_w
        if weights[i].sum() > 0:
            weights[i] /= weights[i].sum()
    return ids, weights.astype(np.float32)
