"""Vector search that agrees with the model (issue 19, item 4): the inner-product-to-cosine
augmentation, the in-process HNSW index against exact search, and Neo4j's vector index ranking
as the dot-product model does, through ``db.index.vector.queryNodes`` on the real server."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from graph import cypher
from graph.embeddings_store import index_name, vector_query, vector_query_for_user, write_embeddings
from graph.errors import GraphRecError, InputError
from graph.ingest import GraphColumns, ingest
from graph.mips import augment_queries, augment_targets, augment_targets_by_range, norm_ranges
from graph.synthetic import generate
from graph.tasks import exclusion_matrix
from retrieval.ann import InnerProductIndex, exact_search
from retrieval.sources import EmbeddingSource

K = 20


def catalogue(n_items: int, n_users: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """LightGCN-like vectors: clustered, with norms that spread like popularity (heavy tail)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((64, dim)).astype(np.float32)
    items = centres[rng.integers(64, size=n_items)] + 0.7 * rng.standard_normal((n_items, dim))
    items *= ((rng.pareto(1.2, n_items) + 1.0) ** 0.4)[:, None]
    users = centres[rng.integers(64, size=n_users)] + rng.standard_normal((n_users, dim))
    return users.astype(np.float32), items.astype(np.float32)


def overlap(found: np.ndarray, truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f.tolist()) & set(t.tolist())) / truth.shape[1] for f, t in zip(found, truth)])
    )


# ---------------------------------------------------------------------------
# the augmentation


def test_augmentation_turns_cosine_and_l2_into_the_dot_product_ranking():
    users, items = catalogue(3000, 50, dim=16)
    aug, m = augment_targets(items)
    q = augment_queries(users)
    assert aug.shape == (3000, 17) and q.shape == (50, 17) and (q[:, -1] == 0).all()
    assert m == pytest.approx(float(np.linalg.norm(items, axis=1).max()), rel=1e-6)
    np.testing.assert_allclose(np.linalg.norm(aug.astype(np.float64), axis=1), m, rtol=1e-6)
    np.testing.assert_array_equal(aug[:, :-1], items)
    dot = users.astype(np.float64) @ items.T.astype(np.float64)
    a64, q64 = aug.astype(np.float64), q.astype(np.float64)
    cos = (q64 @ a64.T) / np.linalg.norm(q64, axis=1)[:, None] / np.linalg.norm(a64, axis=1)[None, :]
    l2 = ((q64[:, None, :] - a64[None, :, :]) ** 2).sum(-1)
    for r in range(len(users)):
        order = np.argsort(-dot[r], kind="stable")
        np.testing.assert_array_equal(np.argsort(-cos[r], kind="stable"), order)  # the whole ranking
        # L2 too, up to float32 rounding of |a|^2 = M^2 (it reorders near-ties far down the list)
        np.testing.assert_array_equal(np.argsort(l2[r], kind="stable")[:K], order[:K])
    # plain cosine on the model's vectors does not rank as the model does (why this exists)
    plain = (users @ items.T) / np.linalg.norm(items, axis=1)[None, :]
    assert overlap(np.argsort(-plain, axis=1)[:, :K], np.argsort(-dot, axis=1)[:, :K]) < 0.8


def test_augmentation_edges():
    one, m = augment_targets(np.zeros((3, 4)))
    assert m == 1.0 and (one[:, -1] == 1.0).all()  # an all-zero catalogue stays indexable
    wider, m2 = augment_targets(np.eye(3), max_norm=2.0)
    assert m2 == 2.0 and np.allclose(wider[:, -1], np.sqrt(3.0))
    with pytest.raises(InputError, match="below the largest"):
        augment_targets(np.eye(3) * 5, max_norm=1.0)
    with pytest.raises(InputError, match="2-d"):
        augment_targets(np.ones(3))
    assert augment_queries(np.ones(3)).tolist() == [1, 1, 1, 0]
    vecs = np.arange(1, 101, dtype=np.float32)[:, None] * np.array([[0.6, 0.8]], np.float32)  # norms 1..100
    ranges = norm_ranges(vecs)
    assert np.bincount(ranges).tolist() == [50, 30, 15, 4, 1]  # cut at the 0.5, 0.8, 0.95, 0.99 quantiles
    aug, ranges, maxima = augment_targets_by_range(vecs)
    np.testing.assert_allclose(np.linalg.norm(aug, axis=1), maxima[ranges], rtol=1e-6)
    assert (norm_ranges(vecs, ()) == 0).all()
    normalised = np.eye(4, dtype=np.float32)
    assert np.allclose(augment_targets(normalised)[0][:, -1], 0.0)  # a cosine model is unchanged


# ---------------------------------------------------------------------------
# the in-process approximate index


def test_hnsw_recall_at_20_against_exact_search():
    users, items = catalogue(30_000, 300)
    index = InnerProductIndex(items, threads=2)
    ids, vals = index.search(users, K)
    truth, tvals = exact_search(items, users, K)
    rec = overlap(ids, truth)
    assert rec >= 0.95, rec
    # the scores are the exact dot products, best first
    np.testing.assert_allclose(vals, np.einsum("ij,ikj->ik", users, items[ids]), rtol=1e-5, atol=1e-5)
    assert (np.diff(vals, axis=1) <= 0).all()
    # where a list is right, it is the exact list
    full = (ids == truth).all(axis=1)
    assert full.mean() > 0.5
    np.testing.assert_allclose(vals[full], tvals[full], rtol=1e-5)
    # the augmentation to L2 is exact in theory but an L2 graph over it finds far less (why "ip")
    import hnswlib

    aug, _ = augment_targets(items)
    l2 = hnswlib.Index(space="l2", dim=aug.shape[1])
    l2.init_index(max_elements=len(aug), M=16, ef_construction=100, random_seed=0)
    l2.add_items(aug, num_threads=2)
    l2.set_ef(index.ef)
    assert overlap(l2.knn_query(augment_queries(users), K)[0], truth) < rec


def test_hnsw_search_is_batch_invariant_pickles_and_pads():
    users, items = catalogue(5000, 40, dim=16, seed=1)
    index = InnerProductIndex(items, threads=1, ef=32)
    ks = np.array([5, 20, 60, 20] * 10)
    ids, vals = index.search(users, ks)
    assert ids.shape == (40, 60)
    for r in (0, 1, 2, 7):
        one, one_vals = index.search(users[r : r + 1], int(ks[r]))
        np.testing.assert_array_equal(one[0], ids[r, : ks[r]])
        assert (ids[r, ks[r] :] == -1).all() and (vals[r, ks[r] :] == 0).all()
    again = pickle.loads(pickle.dumps(index))
    np.testing.assert_array_equal(again.search(users, ks)[0], ids)
    same = InnerProductIndex(items, threads=1, ef=32)  # one thread: the same graph
    np.testing.assert_array_equal(same.search(users, ks)[0], ids)
    tiny = InnerProductIndex(items[:3], threads=1)
    ids, vals = tiny.search(users[:2], 5)
    assert (ids[:, 3:] == -1).all() and sorted(ids[0, :3].tolist()) == [0, 1, 2]
    with pytest.raises(GraphRecError, match="non-empty"):
        InnerProductIndex(np.zeros((0, 4)))


@pytest.fixture(scope="module")
def snap():
    return generate(300, avg_follows=10, avg_engagements=12, seed=11).snapshot()


def test_embedding_source_with_the_index_keeps_the_source_contract(snap):
    rng = np.random.default_rng(0)
    u = rng.standard_normal((snap.n_users, 8)).astype(np.float32) + 0.5
    t = (rng.standard_normal((snap.n_tweets, 8)) * rng.pareto(2.0, (snap.n_tweets, 1))).astype(
        np.float32
    ) + 0.5
    exact = EmbeddingSource(u, t, ann=False).fit(snap)
    approx = EmbeddingSource(u, t, ann=True, ann_threads=1).fit(snap)
    assert exact.index is None and approx.index is not None
    users = np.arange(snap.n_users)
    exclude = exclusion_matrix(snap, "tweets")[users]
    a_ids, a_vals = approx.candidates(users, K, exclude)
    e_ids, e_vals = exact.candidates(users, K, exclude)
    assert a_ids.shape == a_vals.shape == (len(users), K)
    assert a_ids.dtype == np.int64 and a_vals.dtype == np.float32
    assert overlap(a_ids, e_ids) >= 0.95
    for r in range(len(users)):
        row = a_ids[r][a_ids[r] >= 0]
        v = a_vals[r][: len(row)]
        assert not set(row.tolist()) & set(exclude[r].indices.tolist())  # history never returned
        assert (v > 0).all() and ((v[:-1] > v[1:]) | ((v[:-1] == v[1:]) & (row[:-1] < row[1:]))).all()
        np.testing.assert_allclose(v, t[row] @ u[r], rtol=1e-5)
    one, _ = approx.candidates(users[17:18], K, exclude[17:18])
    np.testing.assert_array_equal(one[0], a_ids[17])  # a user's list does not depend on its batch
    fresh = EmbeddingSource(u, t, ann=True, ann_threads=1).fit(snap).candidates(users, K, exclude)
    np.testing.assert_array_equal(fresh[0], a_ids)
    again = pickle.loads(pickle.dumps(approx)).candidates(users, K, exclude)
    np.testing.assert_array_equal(again[0], a_ids)


def test_embedding_source_uses_the_index_above_its_threshold_only(snap):
    rng = np.random.default_rng(1)
    u = rng.standard_normal((snap.n_users, 4)).astype(np.float32)
    t = rng.standard_normal((snap.n_tweets, 4)).astype(np.float32)
    assert EmbeddingSource(u, t).fit(snap).index is None  # default: a catalogue this small is exact
    assert EmbeddingSource(u, t, ann_min_targets=snap.n_tweets).fit(snap).index is not None
    assert EmbeddingSource(u, t, ann_min_targets=snap.n_tweets + 1).fit(snap).index is None
    assert EmbeddingSource(u, t, ann=False, ann_min_targets=1).fit(snap).index is None
    with pytest.raises(GraphRecError, match="ann must be"):
        EmbeddingSource(u, t, ann="yes")


# ---------------------------------------------------------------------------
# Neo4j: the vector index ranks as the model does


def _nodes(n_users: int, n_tweets: int) -> GraphColumns:
    e = np.zeros(0, np.int64)
    return GraphColumns(
        users=np.arange(n_users, dtype=np.int64),
        tweet_ids=np.arange(n_tweets, dtype=np.int64),
        tweet_authors=np.full(n_tweets, -1, np.int64),
        tweet_created=np.zeros(n_tweets, np.int64),
        tweet_texts=None,
        follow_src=e,
        follow_dst=e,
        follow_ts=e,
        eng_user=e,
        eng_tweet=e,
        eng_kind=np.zeros(0, np.int8),
        eng_ts=e,
        eng_weight=np.zeros(0, np.float32),
    )


@pytest.mark.neo4j
def test_neo4j_vector_index_ranks_as_the_dot_product_model(neo4j_store):
    users, items = catalogue(4000, 60)
    ids_ = np.arange(len(items))
    ingest(neo4j_store, _nodes(len(users), len(items)), progress=False)
    truth, _ = exact_search(items, users, K)

    def through_query_nodes(**kw) -> float:
        found = []
        for u in users:
            ids, scores = vector_query(neo4j_store, "Tweet", u, K, **kw)
            np.testing.assert_allclose(scores, items[ids] @ u, rtol=1e-4, atol=1e-4)  # the model's scores
            assert (np.diff(scores) <= 0).all()
            found.append(ids)
        return overlap(np.asarray(found), truth)

    # before: the plain cosine index, its own top 20
    write_embeddings(neo4j_store, "Tweet", ids_, items, "plain", mips=False)
    plain = [
        [
            r["id"]
            for r in neo4j_store.cypher(
                cypher.QUERY_VECTOR_INDEX, index="tweet_embedding", k=K, vector=u.tolist()
            )
        ]
        for u in users
    ]
    before = overlap(np.asarray(plain), truth)
    assert before < 0.5, before  # the plain cosine index does not rank as the model does

    # after: the augmented vectors by norm range, an index per range, merged by dot product
    write_embeddings(neo4j_store, "Tweet", ids_, items, "mips")
    indexes = neo4j_store.cypher(
        "SHOW VECTOR INDEXES YIELD name, properties, options WHERE name STARTS WITH 'tweet' RETURN * ORDER BY name"
    )
    assert [r["name"] for r in indexes] == index_name("Tweet")
    assert [r["properties"] for r in indexes] == [[p] for p in cypher.MIPS_PROPERTIES]
    assert all(r["options"]["indexConfig"]["vector.quantization.enabled"] is False for r in indexes)
    aug, ranges, _ = augment_targets_by_range(items)
    stored = neo4j_store.cypher(
        "MATCH (t:Tweet {id: 7}) RETURN t.embedding AS e, [k IN keys(t) WHERE k STARTS WITH 'embedding_mips'] AS p"
    )[0]
    np.testing.assert_allclose(stored["e"], items[7], rtol=1e-6)
    assert stored["p"] == [cypher.MIPS_PROPERTIES[ranges[7]]]  # one range's property only
    after = through_query_nodes()
    assert after >= 0.95, (before, after)
    # one range for the whole catalogue (the plain augmentation) finds much less where norms spread
    write_embeddings(neo4j_store, "Tweet", ids_, items, "one-range", norm_quantiles=())
    one_range = through_query_nodes()
    assert one_range < after, (one_range, after)
    with pytest.raises(InputError, match="zero"):
        vector_query(neo4j_store, "Tweet", np.zeros(items.shape[1]), K)


@pytest.mark.neo4j
def test_neo4j_rewrite_moves_targets_between_ranges_and_queries_from_a_users_embedding(neo4j_store):
    users, items = catalogue(1500, 30, dim=16, seed=2)
    ingest(neo4j_store, _nodes(len(users), len(items)), progress=False)
    ids_ = np.arange(len(items))
    write_embeddings(neo4j_store, "User", np.arange(len(users)), users, "v1")
    write_embeddings(neo4j_store, "Tweet", ids_, items[::-1].copy(), "v1")  # other vectors, other ranges
    write_embeddings(neo4j_store, "Tweet", ids_, items, "v2")
    n_props = neo4j_store.cypher(
        "MATCH (t:Tweet) RETURN max(size([k IN keys(t) WHERE k STARTS WITH 'embedding_mips'])) AS n"
    )[0]["n"]
    assert n_props == 1  # a target left its old range's index
    truth, _ = exact_search(items, users, 10)
    found = [vector_query_for_user(neo4j_store, "Tweet", i, 10)[0] for i in range(len(users))]
    assert overlap(np.asarray(found), truth) >= 0.95
    ids, scores = vector_query_for_user(neo4j_store, "Tweet", 4, 10)
    np.testing.assert_allclose(scores, items[ids] @ users[4], rtol=1e-4, atol=1e-4)
    ids, _ = vector_query_for_user(neo4j_store, "User", 3, 5)  # accounts, by the same dot product
    assert set(ids.tolist()) <= set(range(len(users)))
    with pytest.raises(InputError, match="no embedding"):
        vector_query_for_user(neo4j_store, "Tweet", 10_000, 5)
