"""The pipeline built from Neo4j gives the same recommendations as from the local store."""

from graph.ingest import GraphColumns, ingest
from graph.synthetic import generate
from retrieval.recommender import Recommender


def test_neo4j_and_local_store_recommend_the_same(neo4j_store, local_store):
    g = generate(400, avg_follows=10, avg_engagements=12, seed=21)
    cols = GraphColumns.from_synthetic(g)
    for store in (neo4j_store, local_store):
        ingest(store, cols, batch_size=1500, progress=False)
    from_neo4j = Recommender.from_store(neo4j_store)
    from_local = Recommender.from_store(local_store)
    assert from_neo4j.snap.snapshot_id == from_local.snap.snapshot_id
    users = g.user_ids[::40].tolist()
    for uid in users:
        a, b = from_neo4j.who_to_follow(uid, k=10), from_local.who_to_follow(uid, k=10)
        assert [(r.id, r.reason) for r in a] == [(r.id, r.reason) for r in b]
        assert [r.score for r in a] == [r.score for r in b]
        a, b = from_neo4j.tweet_candidates(uid, k=10), from_local.tweet_candidates(uid, k=10)
        assert [(r.id, r.reason) for r in a] == [(r.id, r.reason) for r in b]
    assert any(from_local.who_to_follow(uid, k=10) for uid in users)
