"""Fusion of candidate lists: pure functions over sparse (users x targets) matrices.

Every source's lists are normalised the same way for tuning and for serving, after the
users' history is masked and each source has cut its own top ``depth``:

* ``score``: each list divided by its own best score (so every source peaks at 1 per user);
* ``rrf``: reciprocal rank, ``1 / (k0 + rank)`` (rank 1 = the source's best).

The fused list is the weighted sum of the normalised lists.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import scipy.sparse as sp

from graph.errors import GraphRecError
from graph.ranking import lists_to_csr

FUSION_METHODS = ("score", "rrf")
RRF_K0 = 60.0


def check_fusion(method: str) -> str:
    if method not in FUSION_METHODS:
        raise GraphRecError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    return method


def normalised_lists(
    ids: np.ndarray, vals: np.ndarray, n_targets: int, method: str = "score"
) -> sp.csr_matrix:
    """One source's candidate lists ``(ids, vals)`` (best first, -1 = empty) as normalised CSR rows."""
    check_fusion(method)
    ok = (ids >= 0) & (vals > 0)
    if method == "score":
        peak = np.where(ok, vals, 0).max(axis=1, keepdims=True) if vals.size else np.zeros((len(vals), 1))
        norm = np.divide(vals, peak, out=np.zeros_like(vals, dtype=np.float32), where=peak > 0)
    else:
        rank = np.cumsum(ok, axis=1)  # lists are best first: the j-th valid entry has rank j
        norm = (1.0 / (RRF_K0 + rank)).astype(np.float32)
    return lists_to_csr(np.where(ok, ids, -1), np.where(ok, norm, 0).astype(np.float32), n_targets)


def fuse(
    parts: Mapping[str, sp.csr_matrix], weights: Mapping[str, float]
) -> tuple[sp.csr_matrix, dict[str, sp.csr_matrix]]:
    """Weighted sum of normalised lists; returns the fused rows and each source's weighted part."""
    unknown = set(weights) - set(parts)
    if unknown:
        raise GraphRecError(f"weights given for unknown sources: {sorted(unknown)}")
    weighted = {name: m * float(weights[name]) for name, m in parts.items() if weights.get(name)}
    if not weighted:
        shape = next(iter(parts.values())).shape if parts else (0, 0)
        return sp.csr_matrix(shape, dtype=np.float32), {}
    fused = None
    for m in weighted.values():
        fused = m.copy() if fused is None else fused + m
    return fused.tocsr(), weighted
