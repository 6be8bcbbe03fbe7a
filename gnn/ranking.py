"""Batched all-item ranking over embeddings: top-k with exclusions, recall@k and NDCG@k.

Used by the trainer for validation and by the methods' ``recommend``. Protocol (datasets
README): score every target, drop the user's training items, take the top k; recall =
hits / |held-out items|, NDCG with binary relevance and IDCG over min(|held-out|, k)
positions; averaged over users with held-out items. Scores are computed in user blocks so
memory stays at ``block * n_targets`` floats.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from graph.ranking import hit_matrix, ndcg_at_k, recall_at_k


def topk_scores(
    user_vecs: torch.Tensor,
    target_vecs: torch.Tensor,
    users: np.ndarray,
    k: int,
    exclude: sp.csr_matrix | None = None,
    *,
    block: int = 2048,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` targets by dot product for each of ``users``, excluded pairs removed.

    Returns ``(ids, scores)``, both ``(len(users), k)``: int64 target indices (-1 where
    fewer than k candidates remain) and float32 scores, best first.
    """
    users = np.asarray(users, np.int64)
    n_t = int(target_vecs.shape[0])
    kk = min(k, n_t)
    ids = np.full((len(users), k), -1, np.int64)
    scores = np.full((len(users), k), -np.inf, np.float32)
    if kk <= 0 or not len(users):
        return ids, scores
    tt = target_vecs.T.contiguous()
    with torch.no_grad():
        for s in range(0, len(users), block):
            ub = users[s : s + block]
            sc = user_vecs[torch.from_numpy(ub).to(user_vecs.device)] @ tt
            if exclude is not None:
                ex = exclude[ub].tocoo()
                if ex.nnz:
                    r = torch.from_numpy(ex.row.astype(np.int64)).to(sc.device)
                    c = torch.from_numpy(ex.col.astype(np.int64)).to(sc.device)
                    sc[r, c] = -torch.inf
            val, idx = torch.topk(sc, kk, dim=1)
            val, idx = val.float().cpu().numpy(), idx.cpu().numpy()
            bad = ~np.isfinite(val)
            idx[bad] = -1
            ids[s : s + len(ub), :kk] = idx
            scores[s : s + len(ub), :kk] = val
    return ids, scores


def recall_ndcg(
    ids: np.ndarray, truth: sp.csr_matrix, users: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per-user recall@k and NDCG@k of ranked ``ids`` against held-out ``truth`` rows."""
    rows = truth.tocsr()[np.asarray(users, np.int64)]
    hits = hit_matrix(ids[:, :k], rows)
    n_true = np.diff(rows.indptr)
    return recall_at_k(hits, n_true, k), ndcg_at_k(hits, n_true, k)


def evaluate_embeddings(
    user_vecs: torch.Tensor,
    target_vecs: torch.Tensor,
    truth: sp.csr_matrix,
    exclude: sp.csr_matrix | None,
    k: int = 20,
    *,
    users: np.ndarray | None = None,
    block: int = 2048,
) -> dict[str, float]:
    """Mean recall@k / NDCG@k over users with held-out targets (or the given ``users``)."""
    truth = truth.tocsr()
    if users is None:
        users = np.flatnonzero(np.diff(truth.indptr) > 0)
    if not len(users):
        return {f"recall@{k}": 0.0, f"ndcg@{k}": 0.0, "users": 0}
    ids, _ = topk_scores(user_vecs, target_vecs, users, k, exclude, block=block)
    rec, nd = recall_ndcg(ids, truth, users, k)
    return {f"recall@{k}": float(rec.mean()), f"ndcg@{k}": float(nd.mean()), "users": len(users)}
