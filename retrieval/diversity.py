"""Re-ranking for diversity and fairness over a ranked candidate list."""

from __future__ import annotations

import numpy as np


def cap_per_group(ranked: np.ndarray, groups: np.ndarray, cap: int, k: int) -> np.ndarray:
    """Greedy: keep ranked order, at most ``cap`` items per group (e.g. per author; group -1 = no cap)."""
    counts: dict[int, int] = {}
    out = []
    for item in ranked.tolist():
        g = int(groups[item])
        if g >= 0:
            if counts.get(g, 0) >= cap:
                continue
            counts[g] = counts.get(g, 0) + 1
        out.append(item)
        if len(out) == k:
            break
    return np.asarray(out, dtype=np.int64)


def cap_exposure_share(ranked: np.ndarray, groups: np.ndarray, max_share: float, k: int) -> np.ndarray:
    """At most ``ceil(max_share * k)`` items from any one group (fairness across author groups)."""
    cap = max(1, int(np.ceil(max_share * k)))
    return cap_per_group(ranked, groups, cap, k)


def mmr(
    ranked: np.ndarray, relevance: np.ndarray, vectors: np.ndarray, k: int, lam: float = 0.7
) -> np.ndarray:
    """Maximal marginal relevance: trade relevance against cosine similarity to what is already picked.

    ``relevance[i]`` is the score of ``ranked[i]``."""
    cand = ranked[: max(k * 5, k)]
    if len(cand) == 0:
        return cand.astype(np.int64)
    v = np.zeros((len(cand), vectors.shape[1]), np.float32)
    inside = cand < len(vectors)  # targets born after the vectors were trained have none
    v[inside] = vectors[cand[inside]]
    v /= np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    rel = np.asarray(relevance, np.float32)[: len(cand)]
    rel = rel / max(float(np.abs(rel).max()), 1e-12)
    chosen: list[int] = []
    max_sim = np.full(len(cand), -np.inf, np.float32)
    available = np.ones(len(cand), bool)
    for _ in range(min(k, len(cand))):
        penalty = np.where(np.isfinite(max_sim), max_sim, 0.0)
        score = np.where(available, lam * rel - (1 - lam) * penalty, -np.inf)
        best = int(np.argmax(score))
        chosen.append(best)
        available[best] = False
        max_sim = np.maximum(max_sim, v @ v[best])
    return cand[np.asarray(chosen, dtype=np.int64)].astype(np.int64)
