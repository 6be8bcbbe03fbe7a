"""Maximum inner product search as nearest-neighbour search: the inner-product-to-cosine augmentation.

A dot-product model (LightGCN, BPR) ranks a user's targets by ``u . t``. A cosine or L2 index
(Neo4j's vector index, HNSW graphs) ranks by angle or distance, which differ from the dot
product as soon as target norms differ (popular items get long vectors), so it returns other
targets than the model's. The standard augmentation (Bachrach et al., RecSys 2014; Neyshabur &
Srebro, ICML 2015) maps the problem onto one they solve exactly: with ``M`` the largest target norm,

* a target ``t`` becomes ``[t, sqrt(M^2 - |t|^2)]`` (every augmented target has norm ``M``),
* a query ``u`` becomes ``[u, 0]``,

so ``[u, 0] . [t, .] = u . t``, and with every target of the same norm, the cosine
``u . t / (|u| M)`` and the squared distance ``|u|^2 + M^2 - 2 u . t`` are both monotone in
the dot product: cosine and L2 neighbours of the augmented query are the model's top targets,
in the model's order. This module is the one implementation, used for what is written to Neo4j
(:mod:`graph.embeddings_store`, by norm range: :func:`augment_targets_by_range`). The
in-process index (:mod:`retrieval.ann`) does not need it: an HNSW graph built on the inner
product itself finds the model's top lists better than an L2 graph over augmented vectors.

For vectors a model already L2-normalised (cosine-trained models), ``M = 1`` and the extra
coordinate is ~0: the augmentation changes nothing there.
"""

from __future__ import annotations

import numpy as np

from graph.errors import InputError


def augment_targets(vectors: np.ndarray, max_norm: float | None = None) -> tuple[np.ndarray, float]:
    """``[t, sqrt(M^2 - |t|^2)]`` for every row ``t`` of ``vectors`` (float32), and ``M``.

    ``max_norm`` defaults to the largest row norm; a larger one may be given (targets added
    later must not be longer than it), a smaller one is an error.
    """
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2:
        raise InputError(f"target vectors must be 2-d, got shape {vectors.shape}")
    sq = np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64)
    top = float(np.sqrt(sq.max(initial=0.0)))
    m = top if max_norm is None else float(max_norm)
    if m < top * (1 - 1e-6):
        raise InputError(f"max_norm {m} is below the largest target norm {top}")
    if m == 0.0:  # an all-zero catalogue: any positive norm keeps the vectors indexable
        m = 1.0
    extra = np.sqrt(np.maximum(m * m - sq, 0.0)).astype(np.float32)
    out = np.empty((len(vectors), vectors.shape[1] + 1), np.float32)
    out[:, :-1] = vectors
    out[:, -1] = extra
    return out, m


def augment_queries(vectors: np.ndarray) -> np.ndarray:
    """``[u, 0]`` for every row ``u`` (a 1-d vector gives a 1-d vector), float32."""
    vectors = np.asarray(vectors, np.float32)
    pad = [(0, 0)] * (vectors.ndim - 1) + [(0, 1)]
    return np.pad(vectors, pad)


#: Norm quantiles that split a catalogue into norm ranges (norm-ranging MIPS, Yan et al.,
#: NeurIPS 2018): the augmentation of one range uses that range's largest norm. With one range
#: for the whole catalogue, the extra coordinate dominates where norms spread (flickr's
#: LightGCN vectors: largest norm 10x the median), nearly every target sits near one pole of
#: the sphere and an HNSW index finds the top 20 poorly (recall 0.62 at a search list of 100);
#: with these five ranges, 0.99 (BENCHMARKS.md, "Vector search"). The long tail gets the finer
#: ranges: the long vectors are the ones that make top lists.
NORM_QUANTILES = (0.5, 0.8, 0.95, 0.99)


def norm_ranges(vectors: np.ndarray, quantiles=NORM_QUANTILES) -> np.ndarray:
    """The norm range (0 .. len(quantiles)) of every row: cut at the ``quantiles`` of the row norms."""
    vectors = np.asarray(vectors, np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
    if not len(norms) or not len(quantiles):
        return np.zeros(len(norms), np.int64)
    cuts = np.quantile(norms, np.asarray(quantiles, np.float64))
    return np.searchsorted(cuts, norms, side="right").astype(np.int64)


def augment_targets_by_range(
    vectors: np.ndarray, quantiles=NORM_QUANTILES
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`augment_targets` within each norm range: ``(augmented, range of each row, the
    ranges' M)``. Within a range, cosine (and L2) to ``[u, 0]`` ranks as ``u . t``; across
    ranges the candidates are compared by their dot products."""
    vectors = np.asarray(vectors, np.float32)
    ranges = norm_ranges(vectors, quantiles)
    out = np.empty((len(vectors), vectors.shape[1] + 1), np.float32)
    maxima = np.zeros(len(quantiles) + 1)
    for b in np.unique(ranges):
        rows = np.flatnonzero(ranges == b)
        out[rows], maxima[b] = augment_targets(vectors[rows])
    return out, ranges, maxima
