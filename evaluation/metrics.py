"""Ranking metrics as pure functions over arrays.

Inputs are a matrix of ranked item ids ``topk`` of shape ``(n_users, K)`` (best first, ``-1``
for an empty slot) and the relevant (held-out) items of the same users as a CSR matrix
``truth`` with one row per row of ``topk``. :func:`hit_matrix` turns the two into a boolean
``(n_users, K)`` matrix, and every accuracy metric is a function of that matrix and the number
of relevant items per user, returning one value per user (so the bootstrap and the paired test
can resample users). Definitions follow the all-item protocol of the LightGCN paper:

* ``recall@k`` = hits in the top k / number of relevant items;
* ``precision@k`` = hits in the top k / k;
* ``ndcg@k``: binary relevance, gain 1/log2(rank + 1), ideal DCG over min(#relevant, k) positions;
* ``map@k``: average precision, sum of precision@j at each hit j <= k, divided by min(#relevant, k);
* ``mrr@k``: 1 / rank of the first hit within the top k (0 when none);
* ``hit_rate@k``: 1 when at least one relevant item is in the top k;
* ``auc``: probability that a relevant item is ranked above a non-relevant candidate, computed from
  the ranked list alone; items not in the list tie below every listed item (exact when the list
  holds every candidate).

Beyond accuracy: catalogue coverage, average popularity and novelty (popularity bias), intra-list
diversity, and position-discounted exposure per item group (fairness between e.g. head and tail).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from graph.ranking import check_cutoff, hit_matrix, ndcg_at_k, rank_discounts, recall_at_k

__all__ = [
    "hit_matrix",
    "recall_at_k",
    "precision_at_k",
    "ndcg_at_k",
    "average_precision_at_k",
    "reciprocal_rank_at_k",
    "hit_rate_at_k",
    "auc_from_ranking",
    "recall_curve",
    "catalogue_coverage",
    "average_popularity",
    "novelty",
    "intra_list_diversity",
    "exposure_by_group",
    "popularity_groups",
    "ranking_metrics",
]


def precision_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """Hits in the top ``k`` divided by ``k``."""
    check_cutoff(hits, k)
    return hits[:, :k].sum(axis=1) / float(k)


def average_precision_at_k(hits: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """AP@k: sum over hits at rank j <= k of precision@j, divided by min(#relevant, k)."""
    check_cutoff(hits, k)
    h = hits[:, :k].astype(np.float64)
    prec = np.cumsum(h, axis=1) / np.arange(1, k + 1)
    denom = np.minimum(np.asarray(n_relevant, dtype=np.float64), k)
    return np.divide((prec * h).sum(axis=1), denom, out=np.zeros(len(denom)), where=denom > 0)


def reciprocal_rank_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1 / rank of the first hit within the top ``k``; 0 when there is none."""
    check_cutoff(hits, k)
    h = hits[:, :k]
    first = h.argmax(axis=1)
    return np.where(h.any(axis=1), 1.0 / (first + 1.0), 0.0)


def hit_rate_at_k(hits: np.ndarray, k: int) -> np.ndarray:
    """1.0 when at least one relevant item is in the top ``k``, else 0.0."""
    check_cutoff(hits, k)
    return hits[:, :k].any(axis=1).astype(np.float64)


def auc_from_ranking(
    hits: np.ndarray, list_len: np.ndarray, n_relevant: np.ndarray, n_candidates: np.ndarray
) -> np.ndarray:
    """Per-user AUC of a ranked list over ``n_candidates`` rankable items.

    ``hits[u, :list_len[u]]`` marks the relevant items among the listed ones; every candidate not
    in the list is ranked below all listed items, tied with the other unlisted ones (ties count
    one half). Users with no relevant item or no non-relevant candidate get NaN.
    """
    hits = np.asarray(hits, dtype=bool)
    K = hits.shape[1]
    list_len = np.asarray(list_len, dtype=np.int64)
    in_list = np.arange(K)[None, :] < list_len[:, None]
    h = hits & in_list
    P = np.asarray(n_relevant, dtype=np.float64)
    N = np.asarray(n_candidates, dtype=np.float64) - P
    # non-relevant listed items above each position
    neg_above = np.cumsum(in_list & ~h, axis=1) - (in_list & ~h)
    ranked_pos = (h * (N[:, None] - neg_above)).sum(axis=1)
    hits_total = h.sum(axis=1)
    unlisted_pos = P - hits_total
    unlisted_neg = N - (list_len - hits_total)
    total = ranked_pos + 0.5 * unlisted_pos * unlisted_neg
    denom = P * N
    out = np.full(len(P), np.nan)
    np.divide(total, denom, out=out, where=denom > 0)
    return out


def recall_curve(hits: np.ndarray, n_relevant: np.ndarray, max_k: int | None = None) -> np.ndarray:
    """Mean recall@k for k = 1..max_k (default: the list length)."""
    max_k = hits.shape[1] if max_k is None else max_k
    check_cutoff(hits, max_k)
    n_rel = np.asarray(n_relevant, dtype=np.float64)
    keep = n_rel > 0
    if not keep.any():
        return np.zeros(max_k)
    cum = np.cumsum(hits[keep, :max_k], axis=1) / n_rel[keep, None]
    return cum.mean(axis=0)


# ---------------------------------------------------------------------------
# beyond accuracy


def _valid_topk(topk: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    top = np.asarray(topk)[:, :k]
    return top, top >= 0


def catalogue_coverage(topk: np.ndarray, n_items: int, k: int) -> float:
    """Fraction of the ``n_items`` catalogue that appears in at least one top-``k`` list."""
    top, valid = _valid_topk(topk, k)
    if n_items <= 0:
        return 0.0
    return float(len(np.unique(top[valid])) / n_items)


def average_popularity(topk: np.ndarray, item_popularity: np.ndarray, k: int) -> np.ndarray:
    """Per-user mean training popularity (number of users) of the listed items (NaN for empty lists)."""
    top, valid = _valid_topk(topk, k)
    pop = np.asarray(item_popularity, dtype=np.float64)[np.where(valid, top, 0)]
    n = valid.sum(axis=1)
    out = np.full(len(n), np.nan)
    np.divide((pop * valid).sum(axis=1), n, out=out, where=n > 0)
    return out


def novelty(topk: np.ndarray, item_popularity: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Per-user mean self-information -log2(p_i) of the listed items, p_i = (pop_i + 1) / (n_users + 1).

    Add-one smoothing keeps items nobody trained on finite. NaN for empty lists.
    """
    top, valid = _valid_topk(topk, k)
    p = (np.asarray(item_popularity, dtype=np.float64) + 1.0) / (n_users + 1.0)
    info = -np.log2(p)[np.where(valid, top, 0)]
    n = valid.sum(axis=1)
    out = np.full(len(n), np.nan)
    np.divide((info * valid).sum(axis=1), n, out=out, where=n > 0)
    return out


def intra_list_diversity(
    topk: np.ndarray, item_features: np.ndarray | sp.spmatrix, k: int, *, batch: int = 4096
) -> np.ndarray:
    """Per-user 1 - mean pairwise cosine similarity of the listed items' feature rows.

    Uses ``||sum_i f_i||^2 = sum_ij cos(i, j)`` for unit rows ``f_i``, so it costs one sparse
    product per batch instead of a loop over pairs. Items with an all-zero feature row are
    dissimilar to everything. NaN for lists with fewer than two items.
    """
    top, valid = _valid_topk(topk, k)
    n_users = top.shape[0]
    feats = sp.csr_matrix(item_features, dtype=np.float64)
    norms = np.sqrt(np.asarray(feats.multiply(feats).sum(axis=1)).ravel())
    unit = sp.diags(np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)) @ feats
    self_sim = (norms > 0).astype(np.float64)
    out = np.full(n_users, np.nan)
    for start in range(0, n_users, batch):
        t, v = top[start : start + batch], valid[start : start + batch]
        rows = np.repeat(np.arange(len(t)), v.sum(axis=1))
        ind = sp.csr_matrix((np.ones(len(rows)), (rows, t[v])), shape=(len(t), feats.shape[0]))
        s = ind @ unit
        sq = np.asarray(s.multiply(s).sum(axis=1)).ravel() if sp.issparse(s) else (s * s).sum(axis=1)
        n = v.sum(axis=1).astype(np.float64)
        pair_sum = sq - ind @ self_sim
        pairs = n * (n - 1)
        res = np.full(len(t), np.nan)
        np.divide(pair_sum, pairs, out=res, where=pairs > 0)
        out[start : start + batch] = 1.0 - res
    return out


def popularity_groups(item_popularity: np.ndarray, head_fraction: float = 0.2) -> np.ndarray:
    """Group label per item: 0 = head (the most popular ``head_fraction`` of items), 1 = tail."""
    pop = np.asarray(item_popularity)
    n_head = int(round(head_fraction * len(pop)))
    order = np.lexsort((np.arange(len(pop)), -pop))  # most popular first, ties by id
    groups = np.ones(len(pop), dtype=np.int64)
    groups[order[:n_head]] = 0
    return groups


def exposure_by_group(
    topk: np.ndarray, item_group: np.ndarray, n_groups: int, k: int, *, discount: bool = True
) -> np.ndarray:
    """Share of the total exposure that each item group receives over all top-``k`` lists.

    A slot at rank r carries exposure 1/log2(r + 1) (or 1 with ``discount=False``); empty slots
    carry none. Returns ``(n_groups,)`` shares summing to 1 (all zero when every list is empty).
    """
    top, valid = _valid_topk(topk, k)
    weight = rank_discounts(top.shape[1]) if discount else np.ones(top.shape[1])
    w = np.broadcast_to(weight, top.shape)[valid]
    g = np.asarray(item_group, dtype=np.int64)[top[valid]]
    exposure = np.bincount(g, weights=w, minlength=n_groups)[:n_groups]
    total = exposure.sum()
    return exposure / total if total > 0 else exposure


# ---------------------------------------------------------------------------
# all at once


def ranking_metrics(
    topk: np.ndarray,
    truth: sp.csr_matrix,
    k: int,
    *,
    n_candidates: np.ndarray | None = None,
    item_popularity: np.ndarray | None = None,
    n_train_users: int | None = None,
    item_features: sp.spmatrix | np.ndarray | None = None,
    item_group: np.ndarray | None = None,
    curve_max_k: int | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, float], dict]:
    """Every metric of one ranking run.

    Returns ``(per_user, system, extra)``: per-user arrays (named ``recall@k`` etc.) whose mean
    is the reported value, system-level numbers (coverage, exposure shares) and extras (the
    recall curve for k = 1..``curve_max_k``).
    """
    hits = hit_matrix(topk, truth)
    n_rel = np.diff(sp.csr_matrix(truth).indptr)
    per_user: dict[str, np.ndarray] = {
        f"recall@{k}": recall_at_k(hits, n_rel, k),
        f"ndcg@{k}": ndcg_at_k(hits, n_rel, k),
        f"precision@{k}": precision_at_k(hits, k),
        f"map@{k}": average_precision_at_k(hits, n_rel, k),
        f"mrr@{k}": reciprocal_rank_at_k(hits, k),
        f"hit_rate@{k}": hit_rate_at_k(hits, k),
    }
    if n_candidates is not None:
        list_len = (np.asarray(topk) >= 0).sum(axis=1)
        per_user[f"auc@{hits.shape[1]}"] = auc_from_ranking(hits, list_len, n_rel, n_candidates)
    if item_popularity is not None:
        per_user[f"popularity@{k}"] = average_popularity(topk, item_popularity, k)
        if n_train_users is not None:
            per_user[f"novelty@{k}"] = novelty(topk, item_popularity, n_train_users, k)
    if item_features is not None:
        per_user[f"ild@{k}"] = intra_list_diversity(topk, item_features, k)
    system: dict[str, float] = {f"coverage@{k}": catalogue_coverage(topk, truth.shape[1], k)}
    if item_group is not None:
        shares = exposure_by_group(topk, item_group, 2, k)
        system[f"exposure_head@{k}"] = float(shares[0])
        system[f"exposure_tail@{k}"] = float(shares[1])
        system["catalogue_tail_share"] = float(np.mean(np.asarray(item_group) == 1))
    extra = {}
    if curve_max_k:
        extra["recall_curve"] = recall_curve(hits, n_rel, min(curve_max_k, hits.shape[1]))
    return per_user, system, extra
