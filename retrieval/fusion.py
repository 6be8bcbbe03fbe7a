"""Fusion of candidate-source scores: pure functions over score matrices."""

from __future__ import annotations

import numpy as np

from graph.errors import GraphRecError

FUSION_METHODS = ("score", "rrf")


def normalize_rows(scores: np.ndarray) -> np.ndarray:
    """Scale each row into [0, 1] by its maximum (rows without a positive score stay 0)."""
    scores = np.maximum(np.asarray(scores, np.float32), 0.0)
    peak = scores.max(axis=1, keepdims=True)
    return np.divide(scores, peak, out=np.zeros_like(scores), where=peak > 0)


def reciprocal_ranks(scores: np.ndarray, depth: int = 200, k0: float = 60.0) -> np.ndarray:
    """Per row, 1 / (k0 + rank) for the top ``depth`` positive entries, 0 elsewhere."""
    scores = np.asarray(scores, np.float32)
    n_rows, n_cols = scores.shape
    depth = min(depth, n_cols)
    out = np.zeros_like(scores)
    if depth == 0:
        return out
    part = np.argpartition(-scores, depth - 1, axis=1)[:, :depth]
    vals = np.take_along_axis(scores, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    ranked = np.take_along_axis(part, order, axis=1)
    ranked_vals = np.take_along_axis(vals, order, axis=1)
    rr = (1.0 / (k0 + np.arange(1, depth + 1, dtype=np.float32)))[None, :] * (ranked_vals > 0)
    np.put_along_axis(out, ranked, rr.astype(np.float32), axis=1)
    return out


def fuse(
    per_source: dict[str, np.ndarray],
    weights: dict[str, float],
    *,
    method: str = "score",
    rrf_depth: int = 200,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Weighted fusion. Returns the fused matrix and each source's weighted, normalised part.

    ``score``: weighted sum of row-normalised scores. ``rrf``: weighted reciprocal rank fusion.
    """
    if method not in FUSION_METHODS:
        raise GraphRecError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    unknown = set(weights) - set(per_source)
    if unknown:
        raise GraphRecError(f"weights given for unknown sources: {sorted(unknown)}")
    parts: dict[str, np.ndarray] = {}
    fused = None
    for name, scores in per_source.items():
        w = float(weights.get(name, 0.0))
        if w == 0.0:
            continue
        part = w * (normalize_rows(scores) if method == "score" else reciprocal_ranks(scores, rrf_depth))
        parts[name] = part
        fused = part.copy() if fused is None else fused + part
    if fused is None:
        shape = next(iter(per_source.values())).shape if per_source else (0, 0)
        fused = np.zeros(shape, np.float32)
    return fused, parts
