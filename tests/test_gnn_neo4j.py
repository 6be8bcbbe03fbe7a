"""The embed job against the real Neo4j: write-back, vector index, nearest neighbours."""

from __future__ import annotations

import numpy as np
import pytest

from gnn import artifacts
from gnn.job import run_embed
from graph.embeddings_store import index_name, vector_query, write_embeddings
from graph.errors import GraphRecError, InputError
from graph.ingest import GraphColumns, ingest
from graph.synthetic import generate

pytestmark = pytest.mark.neo4j

PARAMS = {
    "epochs": 3,
    "dim": 16,
    "batch_size": 2048,
    "chunk_size": 2048,
    "n_negatives": 128,
    "val_users": 100,
}


def _dot_top_k(vectors: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = vectors @ query
    return np.lexsort((np.arange(len(vectors)), -scores))[:k]


def test_embed_job_writes_back_and_vector_index_agrees_with_python(neo4j_store, neo4j_uri, tmp_path):
    g = generate(300, seed=5)
    ingest(neo4j_store, GraphColumns.from_synthetic(g), progress=False)
    report = run_embed(neo4j_uri, "lightgcn", tmp_path / "emb", task="both", params=PARAMS, progress=False)
    assert report.written == {"User": 300, "Tweet": len(g.tweet_ids)}
    art = artifacts.load_artifact(report.artifact)
    assert art.snapshot["kind"] == "neo4j" and art.snapshot["source"] == neo4j_uri

    rows = neo4j_store.cypher(
        "MATCH (u:User) WHERE u.embedding IS NOT NULL RETURN count(u) AS n, collect(DISTINCT u.embedding_version) AS v"
    )
    assert rows[0]["n"] == 300 and rows[0]["v"] == [report.version]
    # the stored vectors are the artifact's
    uid = int(art.user_ids[7])
    stored = neo4j_store.cypher("MATCH (u:User {id: $id}) RETURN u.embedding AS e", id=uid)[0]["e"]
    np.testing.assert_allclose(stored, art.user_vectors[7], rtol=1e-6, atol=1e-7)

    # nearest neighbours through db.index.vector.queryNodes vs the model's exact ranking (dot
    # product) in Python, for a sample of users; the indexes are unquantised (exact scores).
    for name in index_name("User"):
        assert not _quantized(neo4j_store, name)
    users = np.asarray(art.user_vectors)
    rng = np.random.default_rng(0)
    k, agree = 10, []
    for i in rng.choice(len(users), size=20, replace=False):
        ids, scores = vector_query(neo4j_store, "User", users[i], k)
        expected = art.user_ids[_dot_top_k(users, users[i], k)]
        agree.append(len(set(ids.tolist()) & set(expected.tolist())) / k)
        np.testing.assert_allclose(
            scores, users[np.searchsorted(art.user_ids, ids)] @ users[i], rtol=1e-4, atol=1e-5
        )
        assert np.all(np.diff(scores) <= 1e-6)
    assert np.mean(agree) >= 0.95, agree

    tweets = np.asarray(art.tweet_vectors)
    ids, _ = vector_query(neo4j_store, "Tweet", users[3], 5)
    overlap = len(set(ids.tolist()) & set(art.tweet_ids[_dot_top_k(tweets, users[3], 5)].tolist()))
    assert overlap >= 4


def _quantized(store, index: str) -> bool:
    rows = store.cypher("SHOW INDEXES YIELD name, options WHERE name = $name RETURN options", name=index)
    assert rows, f"no index {index}"
    return bool(rows[0]["options"]["indexConfig"].get("vector.quantization.enabled", True))


def test_rewrite_with_other_dimension_replaces_the_index(neo4j_store):
    g = generate(50, seed=2)
    ingest(neo4j_store, GraphColumns.from_synthetic(g), progress=False)
    rng = np.random.default_rng(1)
    write_embeddings(neo4j_store, "User", g.user_ids, rng.standard_normal((50, 8)), "v1")
    write_embeddings(neo4j_store, "User", g.user_ids, rng.standard_normal((50, 4)).astype(np.float32), "v2")
    ids, _ = vector_query(neo4j_store, "User", np.ones(4), 3)
    assert len(ids) == 3
    versions = neo4j_store.cypher("MATCH (u:User) RETURN collect(DISTINCT u.embedding_version) AS v")[0]["v"]
    assert versions == ["v2"]
    assert (
        index_name("Tweet")[0] == "tweet_embedding_mips_0"
        and index_name("Tweet", mips=False) == "tweet_embedding"
    )


def test_write_embeddings_validates_input(neo4j_store, local_store):
    with pytest.raises(InputError, match="label"):
        write_embeddings(neo4j_store, "Post", np.arange(2), np.zeros((2, 2)), "v")
    with pytest.raises(InputError, match="NaN"):
        write_embeddings(neo4j_store, "User", np.arange(2), np.full((2, 2), np.nan), "v")
    with pytest.raises(GraphRecError, match="Neo4j"):
        write_embeddings(local_store, "User", np.arange(2), np.zeros((2, 2)), "v")
