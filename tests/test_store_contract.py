"""One contract, run against both store implementations."""

import numpy as np

from graph.events import read_events
from graph.export import export_snapshot
from graph.ingest import GraphColumns, ingest
from graph.schema import KINDS
from graph.synthetic import generate


def small_graph():
    return generate(300, avg_follows=8, avg_engagements=10, tweets_per_user=2, seed=11)


def test_ingest_counts_and_export_matches_direct_snapshot(store):
    g = small_graph()
    ingest(store, GraphColumns.from_synthetic(g), batch_size=1000, progress=False)
    expected = g.snapshot()
    counts = store.counts()
    assert counts == {
        "users": expected.n_users,
        "tweets": expected.n_tweets,
        "follows": expected.n_follows,
        "engagements": expected.n_engagements,
    }
    snap = export_snapshot(store, batch_size=97, progress=False)
    assert snap.equals(expected)


def test_reingest_is_idempotent(store):
    cols = GraphColumns.from_synthetic(small_graph())
    ingest(store, cols, batch_size=500, progress=False)
    first = export_snapshot(store, progress=False)
    ingest(store, cols, batch_size=333, progress=False)  # other batch boundaries, same data
    assert store.counts()["follows"] == first.n_follows
    assert export_snapshot(store, progress=False).equals(first)


def test_duplicate_events_stored_once_first_wins(store, tmp_path):
    p = tmp_path / "events.csv"
    p.write_text(
        "event,user,target,ts,weight,text\n"
        "follow,1,2,100,,\n"
        "follow,1,2,555,,\n"  # duplicate in the same batch
        "like,1,9,10,1.5,\n"
        "like,1,9,20,7,\n"  # duplicate engagement
        "retweet,1,9,30,,\n"  # other kind: a separate edge
        "like,3,9,40,,\n"  # tweet 9 is known before its author
        "tweet,2,9,5,,first text\n"
        "tweet,3,9,6,,second author loses\n"
    )
    cols = GraphColumns.from_events(read_events(p))
    ingest(store, cols, batch_size=2, progress=False)  # duplicates across batches too
    ingest(store, cols, batch_size=100, progress=False)
    snap = export_snapshot(store, progress=False)
    assert store.counts() == {"users": 3, "tweets": 1, "follows": 1, "engagements": 3}
    assert snap.follow_out_ts.tolist() == [100]
    u1 = snap.user_index([1])[0]
    lo, hi = snap.eng_user_indptr[u1], snap.eng_user_indptr[u1 + 1]
    assert snap.eng_user_kinds[lo:hi].tolist() == [KINDS["like"], KINDS["retweet"]]
    assert snap.eng_user_weights[lo:hi].tolist() == [1.5, 2.0]
    assert snap.eng_user_ts[lo:hi].tolist() == [10, 30]
    assert snap.user_ids[snap.tweet_author].tolist() == [2]
    assert snap.tweet_created.tolist() == [5]
    assert snap.tweet_texts == {9: "first text"}


def test_empty_store_exports_empty_snapshot(store):
    snap = export_snapshot(store, progress=False)
    assert snap.n_users == 0 and snap.n_follows == 0 and snap.n_tweets == 0


def test_isolated_users_survive(store):
    e = np.zeros(0, np.int64)
    cols = GraphColumns(
        users=np.array([5, 6]),
        tweet_ids=e,
        tweet_authors=e,
        tweet_created=e,
        tweet_texts=None,
        follow_src=e,
        follow_dst=e,
        follow_ts=e,
        eng_user=e,
        eng_tweet=e,
        eng_kind=e.astype(np.int8),
        eng_ts=e,
        eng_weight=e.astype(np.float32),
    )
    ingest(store, cols, progress=False)
    assert export_snapshot(store, progress=False).user_ids.tolist() == [5, 6]
