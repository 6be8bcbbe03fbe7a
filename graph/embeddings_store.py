"""Write embeddings back to Neo4j as node properties, with a vector index per label, and query it.

Uses the statements of :mod:`graph.cypher` (``SET_EMBEDDINGS``, ``CREATE_VECTOR_INDEX``,
``DROP_VECTOR_INDEX``, ``QUERY_VECTOR_INDEX``, ``AWAIT_INDEXES``); writes go in
``UNWIND $rows`` batches, one managed write transaction each. The index (cosine
similarity) is dropped and recreated on every write, since its dimension may change
between model versions.
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from graph import cypher
from graph.errors import GraphRecError, InputError

log = logging.getLogger(__name__)

LABELS = ("User", "Tweet")


def index_name(label: str) -> str:
    _check_label(label)
    return f"{label.lower()}_embedding"


def _check_label(label: str) -> None:
    if label not in LABELS:
        raise InputError(f"label must be one of {', '.join(LABELS)}, got {label!r}")


def write_embeddings(
    store,
    label: str,
    ids: np.ndarray,
    vectors: np.ndarray,
    version: str,
    *,
    batch_size: int = 2000,
    index: bool = True,
    await_seconds: int = 300,
    progress: bool = False,
) -> int:
    """Set ``embedding`` and ``embedding_version`` on the ``label`` nodes with these ids.

    Rows whose id has no node are skipped by the MATCH. With ``index=True`` the label's
    vector index is (re)created for ``vectors.shape[1]`` dimensions and awaited. Returns the
    number of rows sent.
    """
    _check_label(label)
    if not hasattr(store, "cypher") or getattr(store, "kind", "") != "neo4j":
        raise GraphRecError(f"embeddings can only be written back to a Neo4j store, not {store!r}")
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise InputError(f"vectors must be (len(ids), dim); got {vectors.shape} for {len(ids)} ids")
    if not np.isfinite(vectors).all():
        raise InputError("vectors contain NaN or infinite values")
    dims = int(vectors.shape[1])
    if index:
        store.cypher(cypher.DROP_VECTOR_INDEX[label], write=True)
    for start in tqdm(range(0, len(ids), batch_size), desc=f"write {label} embeddings", disable=not progress):
        part = slice(start, start + batch_size)
        rows = [[i, v] for i, v in zip(ids[part].tolist(), vectors[part].astype(np.float64).tolist())]
        store.cypher(cypher.SET_EMBEDDINGS[label], write=True, rows=rows, version=version)
    if index and len(ids):
        store.cypher(cypher.CREATE_VECTOR_INDEX[label], write=True, dims=dims)
        store.cypher(cypher.AWAIT_INDEXES, write=True, seconds=int(await_seconds))
    log.info("wrote %d %s embeddings (dim %d, version %s)", len(ids), label, dims, version)
    return len(ids)


def vector_query(store, label: str, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nearest ``label`` nodes to ``vector`` by the index's cosine similarity: (ids, scores)."""
    _check_label(label)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    vec = np.asarray(vector, np.float64).ravel().tolist()
    # The index is approximate (HNSW): asking it for more neighbours than needed and keeping the
    # best k raises recall against exact search, as a larger search list (ef) would.
    k_search = max(int(k) * 5, 50)
    rows = store.cypher(cypher.QUERY_VECTOR_INDEX, index=index_name(label), k=k_search, vector=vec)
    ids = np.asarray([r["id"] for r in rows], np.int64)
    scores = np.asarray([r["score"] for r in rows], np.float32)
    order = np.lexsort((ids, -scores))[: int(k)]
    return ids[order], scores[order]
