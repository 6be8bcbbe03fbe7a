"""Write embeddings back to Neo4j as node properties, with a vector index per label, and query it.

Uses the statements of :mod:`graph.cypher` (``SET_EMBEDDINGS``, ``CREATE_VECTOR_INDEX``,
``DROP_VECTOR_INDEX``, ``QUERY_VECTOR_INDEX``, ``AWAIT_INDEXES``); writes go in
``UNWIND $rows`` batches, one managed write transaction each. The indexes are dropped and
recreated on every write, since the dimension may change between model versions.

Each node gets the model's vector (``embedding``) and its maximum-inner-product augmentation
within its norm range (``embedding_mips_<b>``, :func:`graph.mips.augment_targets_by_range`),
with a cosine, unquantised vector index per range (``tweet_embedding_mips_0`` ...).
:func:`vector_query` (``VECTOR_QUERY``; ``VECTOR_QUERY_FOR_USER`` from Cypher) asks every
range's index with the model's vector and a 0 appended and ranks the union by the dot product,
so the answer is the model's ranking, not the angle between the model's vectors (what a cosine
index on ``embedding`` gives: top-20 overlap 0.56 with the model's ranking on lastfm,
BENCHMARKS.md "Vector search").
"""

from __future__ import annotations

import logging

import numpy as np
from tqdm.auto import tqdm

from graph import cypher
from graph.errors import GraphRecError, InputError
from graph.mips import NORM_QUANTILES, augment_targets_by_range

log = logging.getLogger(__name__)

LABELS = ("User", "Tweet")


#: HNSW parameters of the indexes (Neo4j's defaults are m=16, ef_construction=100).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 100


#: Search list of each index at query time (Neo4j's queryNodes ``k``); the ``k`` best of each
#: range's candidates are merged by dot product.
EF_SEARCH = 100


def index_name(label: str, *, mips: bool = True) -> str | list[str]:
    """The label's vector indexes: one per norm range on the augmented vectors (``mips``), or
    the plain cosine one on the model's vectors."""
    _check_label(label)
    if mips:
        return [f"{label.lower()}_{prop}" for prop in cypher.MIPS_PROPERTIES]
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
    mips: bool = True,
    norm_quantiles=NORM_QUANTILES,
    hnsw_m: int = HNSW_M,
    hnsw_ef_construction: int = HNSW_EF_CONSTRUCTION,
    await_seconds: int = 300,
    progress: bool = False,
) -> int:
    """Set ``embedding``, ``embedding_mips_<b>`` and ``embedding_version`` on the ``label`` nodes with these ids.

    ``vectors`` are the model's (scored by dot product); ``embedding_mips_<b>`` is a vector's
    augmentation within its norm range ``b`` (ranges cut at the ``norm_quantiles`` of the
    norms of all of ``vectors``; ``()``: one range). Rows whose id has no node are skipped by
    the MATCH. With ``index=True`` the label's vector indexes are dropped, then the indexes on
    the ranges' properties (``mips=True``) or the plain cosine index on ``embedding``
    (``mips=False``: for comparison; it does not rank as a dot-product model does) are created
    for the vectors' dimension and awaited. Returns the number of rows sent.
    """
    if len(norm_quantiles) >= cypher.MIPS_BUCKETS:
        raise InputError(f"at most {cypher.MIPS_BUCKETS - 1} norm quantiles, got {len(norm_quantiles)}")
    _check_label(label)
    if not hasattr(store, "cypher") or getattr(store, "kind", "") != "neo4j":
        raise GraphRecError(f"embeddings can only be written back to a Neo4j store, not {store!r}")
    ids = np.asarray(ids, np.int64)
    vectors = np.asarray(vectors, np.float32)
    if vectors.ndim != 2 or len(vectors) != len(ids):
        raise InputError(f"vectors must be (len(ids), dim); got {vectors.shape} for {len(ids)} ids")
    if not np.isfinite(vectors).all():
        raise InputError("vectors contain NaN or infinite values")
    augmented, ranges, _ = augment_targets_by_range(vectors, norm_quantiles)
    dims = int(vectors.shape[1])
    if index:
        for statement in cypher.DROP_VECTOR_INDEX[label]:
            store.cypher(statement, write=True)
    props = cypher.MIPS_PROPERTIES
    for start in tqdm(range(0, len(ids), batch_size), desc=f"write {label} embeddings", disable=not progress):
        part = slice(start, start + batch_size)
        rows = [
            [i, v, {props[b]: a}]
            for i, v, b, a in zip(
                ids[part].tolist(),
                vectors[part].astype(np.float64).tolist(),
                ranges[part].tolist(),
                augmented[part].astype(np.float64).tolist(),
            )
        ]
        store.cypher(cypher.SET_EMBEDDINGS[label], write=True, rows=rows, version=version)
    if index and len(ids):
        options = {"m": int(hnsw_m), "ef_construction": int(hnsw_ef_construction)}
        if mips:
            for statement in cypher.CREATE_VECTOR_INDEX[label]:
                store.cypher(statement, write=True, dims=dims + 1, **options)
        else:
            store.cypher(cypher.CREATE_PLAIN_VECTOR_INDEX[label], write=True, dims=dims, **options)
        store.cypher(cypher.AWAIT_INDEXES, write=True, seconds=int(await_seconds))
    log.info("wrote %d %s embeddings (dim %d, version %s)", len(ids), label, dims, version)
    return len(ids)


def vector_query(
    store, label: str, vector: np.ndarray, k: int, *, mips: bool = True, ef: int = EF_SEARCH
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` ``label`` nodes whose embeddings score highest against ``vector`` (a model vector,
    e.g. a user's), as the model scores them: ``(ids, dot products)``, best first, ties by id.

    Every norm range's index is searched with ``[vector, 0]`` and a search list of
    ``max(ef, k)`` (HNSW is approximate: a longer list raises recall), keeps its ``k`` best,
    and the union is ranked by dot product. ``mips=False`` searches the plain cosine index
    instead and ranks its ``ef`` best by dot product (what a cosine index can do).
    """
    _check_label(label)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    vec = np.asarray(vector, np.float32).ravel()
    if not np.any(vec):
        raise InputError("the query vector is zero; cosine indexes cannot rank against it")
    ef = max(int(ef), int(k))
    query = vec.astype(np.float64).tolist()
    names = index_name(label, mips=mips)
    rows = store.cypher(
        cypher.VECTOR_QUERY,
        indexes=names if mips else [names],
        ef=ef,
        per_index=int(k) if mips else ef,
        k=int(k),
        vector=query + [0.0] if mips else query,
        model=query,
    )
    return _result(rows)


def vector_query_for_user(
    store, label: str, user: int, k: int, *, ef: int = EF_SEARCH
) -> tuple[np.ndarray, np.ndarray]:
    """As :func:`vector_query` with the stored embedding of user ``user`` (external id) as the
    query, all in Cypher (``VECTOR_QUERY_FOR_USER``). For ``label="User"`` the user themself
    may be among the results (no history is excluded here)."""
    _check_label(label)
    if k < 1:
        raise InputError(f"k must be >= 1, got {k}")
    rows = store.cypher(
        cypher.VECTOR_QUERY_FOR_USER,
        user=int(user),
        indexes=index_name(label),
        ef=max(int(ef), int(k)),
        k=int(k),
    )
    if not rows:
        raise InputError(f"user {user} has no embedding in the store (or there are no {label} embeddings)")
    return _result(rows)


def _result(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    ids = np.asarray([r["id"] for r in rows], np.int64)
    scores = np.asarray([r["score"] for r in rows], np.float32)
    return ids, scores
