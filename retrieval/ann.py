"""Approximate maximum-inner-product search for embedding sources on large catalogues.

:class:`InnerProductIndex` is an HNSW graph (hnswlib, the ``ann`` extra) built on the inner
product itself (``space="ip"``: a non-metric similarity graph, ip-NSW, Morozov & Babenko,
NeurIPS 2018), not on the inner-product-to-L2 augmentation of :mod:`graph.mips`: on
catalogues whose vector norms spread (LightGCN's popular items are long), the augmented
vectors all sit near one pole of the sphere and an L2 graph over them finds the model's top
20 far less often at the same search cost (BENCHMARKS.md, "Vector search": recall@20 0.27 vs
0.96 at ``ef`` 640 on gowalla's LightGCN vectors). hnswlib was chosen over faiss (HNSW,
IVF-Flat) and usearch by measurement (``scripts/bench_vectors.py``, BENCHMARKS.md "Vector
search"): faiss HNSW has the same recall at the same ``ef`` (0.955 at 160 on 1M vectors) and
a ~10% slower query, usearch a slower p99 and twice the memory, IVF-Flat does well on gowalla
but far worse on the synthetic catalogue; hnswlib pickles with the recommender and needs
nothing else.

Candidates come back with their exact dot products (the index's own scores, recomputed from
the vectors), best first, ties by lower id: an approximate list differs from the exact one
only by the targets it missed. Exact search (``u @ T.T``) stays the reference: tests compare
the two, and :class:`~retrieval.sources.EmbeddingSource` uses this index only above a
catalogue size (:data:`ANN_MIN_TARGETS`).
"""

from __future__ import annotations

import logging
import os
import time

import numpy as np

from graph.errors import GraphRecError

log = logging.getLogger(__name__)

#: Catalogues with at least this many targets are searched approximately by default. Below
#: it the exact product costs a few milliseconds a user or less on 2 cores (64-d: ~1.5 ms at
#: 100k targets), and every benchmark dataset (gowalla 41k, flickr 82k items) stays exact.
ANN_MIN_TARGETS = 200_000
#: HNSW graph degree and build-time search list (hnswlib's M and ef_construction).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100
#: Search list at query time. 160 is the smallest that gives recall@20 >= 0.95 against the
#: exact ranking on gowalla's LightGCN vectors (0.953) and 1M synthetic vectors (0.955); 320
#: keeps a margin (0.965 / 0.980) for twice the query time (p50 0.56 ms at 1M vs 39.6 ms exact).
HNSW_EF_SEARCH = 320


def ann_available() -> bool:
    """Whether the ``ann`` extra (hnswlib) is installed."""
    try:
        import hnswlib  # noqa: F401
    except ImportError:
        return False
    return True


class InnerProductIndex:
    """HNSW over the inner product of ``vectors`` (rows = targets, ids = row indices).

    ``search(queries, k)`` -> ``(ids int64, scores float32)``, both ``(len(queries), k)``:
    the approximate top ``k`` by dot product, best first, ties by lower id; -1 / 0 where the
    catalogue has fewer than ``k`` targets. ``ef`` (default :data:`HNSW_EF_SEARCH`) is the
    search list; it is raised to ``k`` when ``k`` is larger. Deterministic for a ``seed`` with
    ``threads=1``; with more threads the graph depends on the insertion interleaving.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        *,
        m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef: int = HNSW_EF_SEARCH,
        threads: int | None = None,
        seed: int = 0,
    ):
        try:
            import hnswlib
        except ImportError as exc:  # pragma: no cover - the ann extra is installed in CI
            raise GraphRecError(
                "approximate search needs hnswlib: pip install 'graphrec[ann]' (or pass ann=False)"
            ) from exc
        vectors = np.ascontiguousarray(vectors, np.float32)
        if vectors.ndim != 2 or not len(vectors):
            raise GraphRecError(f"need a non-empty 2-d array of target vectors, got shape {vectors.shape}")
        if m < 2 or ef_construction < 1 or ef < 1:
            raise GraphRecError(
                f"need m >= 2, ef_construction >= 1, ef >= 1; got {m}, {ef_construction}, {ef}"
            )
        self.vectors = vectors
        self.m, self.ef_construction, self.ef, self.seed = int(m), int(ef_construction), int(ef), int(seed)
        self.threads = int(threads or os.cpu_count() or 1)
        t0 = time.perf_counter()
        index = hnswlib.Index(space="ip", dim=vectors.shape[1])
        index.init_index(
            max_elements=len(vectors), M=self.m, ef_construction=self.ef_construction, random_seed=self.seed
        )
        index.add_items(vectors, np.arange(len(vectors)), num_threads=self.threads)
        index.set_ef(self.ef)
        self.index = index
        self.build_seconds = time.perf_counter() - t0
        log.info(
            "built an HNSW inner-product index over %d vectors (dim %d, M %d, ef_construction %d) in %.1f s",
            len(vectors),
            vectors.shape[1],
            self.m,
            self.ef_construction,
            self.build_seconds,
        )

    def __len__(self) -> int:
        return len(self.vectors)

    def search(
        self, queries: np.ndarray, k: int | np.ndarray, *, threads: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` per query (``k`` an int, or one per query: the result is then as wide as the
        largest, and each row holds its own ``k`` then -1 / 0).

        A row's list depends on its query and its ``k`` only, not on the batch: rows are searched
        with the search list ``max(ef, k_row)`` (grouped by it), and HNSW's candidates for a
        search list do not depend on how many of them are returned.
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), np.float32)
        n = len(queries)
        ks = np.broadcast_to(np.asarray(k, np.int64), (n,)) if n else np.zeros(0, np.int64)
        width = int(ks.max(initial=0)) if n else max(int(np.max(k)), 0)
        ids = np.full((n, width), -1, np.int64)
        vals = np.zeros((n, width), np.float32)
        ks = np.minimum(np.maximum(ks, 0), len(self.vectors))
        efs = np.maximum(ks, self.ef)
        for ef in np.unique(efs[ks > 0]):
            rows = np.flatnonzero((efs == ef) & (ks > 0))
            kk = int(ks[rows].max())
            self.index.set_ef(int(ef))
            found = self.index.knn_query(queries[rows], kk, num_threads=int(threads))[0].astype(np.int64)
            # exact scores of the candidates, then best first with ties by lower id
            scores = np.einsum("ij,ikj->ik", queries[rows], self.vectors[found])
            order = np.lexsort((found, -scores), axis=1)
            found = np.take_along_axis(found, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
            keep = np.arange(kk)[None, :] < ks[rows][:, None]
            ids[rows, :kk] = np.where(keep, found, -1)
            vals[rows, :kk] = np.where(keep, scores, 0.0)
        self.index.set_ef(self.ef)
        return ids, vals


def exact_search(vectors: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: exact top ``k`` by dot product, the same contract as :meth:`InnerProductIndex.search`."""
    from graph.ranking import top_k

    scores = np.atleast_2d(np.asarray(queries, np.float32)) @ np.asarray(vectors, np.float32).T
    ids, vals = top_k(scores, k)
    vals[ids < 0] = 0.0
    return ids, vals
