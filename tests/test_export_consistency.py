"""Export reads one consistent view of a store while an ingest writes to it, in both stores.

A writer thread commits a stream of small batches (one transaction each) in the way event
ingests arrive: users and tweets first appear as the endpoints of follows and engagements, and a
tweet's author, time and text may come later than the tweet. Meanwhile the test exports again
and again. Every export must succeed and equal the graph after some prefix of the committed
batches: never half a batch, never a later batch's edge without an earlier one.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from graph.export import export_snapshot
from graph.snapshot import build_snapshot
from graph.store import EngagementBatch, FollowBatch, GraphStore, TweetBatch
from graph.synthetic import generate

BATCH = 12


def _event_batches(seed: int = 5) -> list[tuple[str, object]]:
    """Follow, engagement and tweet batches of a small synthetic graph, interleaved at random."""
    g = generate(150, avg_follows=6, avg_engagements=6, tweets_per_user=1.5, seed=seed)
    out: list[tuple[str, object]] = []
    for lo in range(0, len(g.follow_src), BATCH):
        sl = slice(lo, lo + BATCH)
        out.append(("write_follows", FollowBatch(g.follow_src[sl], g.follow_dst[sl], g.follow_ts[sl])))
    for lo in range(0, len(g.eng_user), BATCH):
        sl = slice(lo, lo + BATCH)
        batch = EngagementBatch(
            g.eng_user[sl], g.eng_tweet[sl], g.eng_kind[sl], g.eng_ts[sl], g.eng_weight[sl]
        )
        out.append(("write_engagements", batch))
    for lo in range(0, len(g.tweet_ids), BATCH):
        sl = slice(lo, lo + BATCH)
        texts = list(g.tweet_texts[sl]) if g.tweet_texts is not None else [None] * len(g.tweet_ids[sl])
        out.append(
            ("write_tweets", TweetBatch(g.tweet_ids[sl], g.tweet_author[sl], g.tweet_created[sl], texts))
        )
    order = np.random.default_rng(seed).permutation(len(out))
    return [out[i] for i in order]


def _prefix_snapshot_ids(batches: list[tuple[str, object]]) -> dict[str, int]:
    """snapshot_id of the graph after the first k+1 batches -> k (-1: the empty graph), with the
    stores' first-write-wins rules applied batch by batch."""
    users: dict[int, None] = {}
    tweets: dict[int, list] = {}  # id -> [author or -1, created or 0, text or None]
    follows: dict[tuple[int, int], int] = {}
    engagements: dict[tuple[int, int, int], tuple[int, float]] = {}

    def tweet(i: int) -> list:
        return tweets.setdefault(i, [-1, 0, None])

    def snapshot_id() -> str:
        t_ids = np.array(list(tweets), np.int64)
        f_keys = np.array(list(follows), np.int64).reshape(-1, 2)
        e_keys = np.array(list(engagements), np.int64).reshape(-1, 3)
        e_vals = list(engagements.values())
        snap = build_snapshot(
            user_ids=np.array(list(users), np.int64),
            tweet_ids=t_ids,
            follow_src=f_keys[:, 0],
            follow_dst=f_keys[:, 1],
            follow_ts=np.array(list(follows.values()), np.int64),
            eng_user=e_keys[:, 0],
            eng_tweet=e_keys[:, 1],
            eng_kind=e_keys[:, 2].astype(np.int8),
            eng_ts=np.array([v[0] for v in e_vals], np.int64),
            eng_weight=np.array([v[1] for v in e_vals], np.float32),
            tweet_author=np.array([tweets[i][0] for i in tweets], np.int64),
            tweet_created=np.array([tweets[i][1] for i in tweets], np.int64),
            tweet_texts={i: v[2] for i, v in tweets.items() if v[2]},
        )
        return snap.snapshot_id

    ids = {snapshot_id(): -1}
    for k, (method, b) in enumerate(batches):
        if method == "write_follows":
            for s, d, ts in zip(b.src.tolist(), b.dst.tolist(), b.ts.tolist()):
                users.setdefault(s)
                users.setdefault(d)
                follows.setdefault((s, d), ts)
        elif method == "write_engagements":
            for u, t, kind, ts, w in zip(
                b.users.tolist(), b.tweets.tolist(), b.kinds.tolist(), b.ts.tolist(), b.weights.tolist()
            ):
                users.setdefault(u)
                tweet(t)
                engagements.setdefault((u, t, kind), (ts, w))
        else:
            for i, a, c, text in zip(b.ids.tolist(), b.authors.tolist(), b.created.tolist(), b.texts):
                if a >= 0:
                    users.setdefault(a)
                row = tweet(i)
                row[0] = row[0] if row[0] >= 0 else a
                row[1] = row[1] or c
                row[2] = row[2] or text or None
        ids[snapshot_id()] = k
    return ids


def _check_exports_during_ingest(open_writer, reader: GraphStore) -> None:
    batches = _event_batches()
    prefixes = _prefix_snapshot_ids(batches)
    assert len(prefixes) > len(batches) // 2  # the prefixes are distinguishable graphs
    started = threading.Semaphore(0)
    done = threading.Event()
    errors: list[BaseException] = []

    def write_all() -> None:
        try:
            with open_writer() as writer:
                for i, (method, batch) in enumerate(batches):
                    getattr(writer, method)(batch)
                    # Hand over to an export every few batches (it then runs while we go on writing),
                    # so exports overlap commits all through the ingest.
                    if i % 8 == 7:
                        started.acquire(timeout=30)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            errors.append(exc)
        finally:
            done.set()

    thread = threading.Thread(target=write_all, name="ingest")
    thread.start()
    seen: list[int] = []
    failures: list[str] = []
    try:
        while not done.is_set():
            started.release()
            try:
                snap = export_snapshot(reader, batch_size=40, progress=False)
            except Exception as exc:  # noqa: BLE001 - collected: the test reports every failure
                failures.append(f"{type(exc).__name__}: {exc}")
                continue
            if snap.snapshot_id not in prefixes:
                failures.append(f"export {len(seen) + len(failures)} is no prefix of the committed batches")
                continue
            seen.append(prefixes[snap.snapshot_id])
    finally:
        done.wait(120)
        thread.join(120)
    assert not errors, errors
    assert not failures, f"{len(failures)} of {len(failures) + len(seen)} exports failed: {failures[:3]}"
    assert seen == sorted(seen), "a later export saw fewer batches than an earlier one"
    assert len({k for k in seen if 0 <= k < len(batches) - 1}) >= 3, (
        f"too few exports overlapped the ingest: {seen}"
    )
    final = export_snapshot(reader, progress=False)
    assert prefixes[final.snapshot_id] == len(batches) - 1


def test_local_store_export_is_consistent_during_ingest(local_store, tmp_path):
    from graph.local_store import LocalStore

    # SQLite connections belong to one thread: the writer opens its own on the same directory.
    _check_exports_during_ingest(lambda: LocalStore(tmp_path / "store"), local_store)


@pytest.mark.neo4j
def test_neo4j_export_is_consistent_during_ingest(neo4j_store, neo4j_uri):
    from graph.neo4j_store import Neo4jStore

    _check_exports_during_ingest(lambda: Neo4jStore.connect(neo4j_uri), neo4j_store)


def _columns(view: GraphStore) -> dict[str, list]:
    follows = [(s, d) for b in view.iter_follows(10) for s, d in zip(b.src.tolist(), b.dst.tolist())]
    tweets = [
        (i, a, c, t or None)
        for b in view.iter_tweets(10)
        for i, a, c, t in zip(b.ids.tolist(), b.authors.tolist(), b.created.tolist(), b.texts)
    ]
    engagements = [
        (u, t) for b in view.iter_engagements(10) for u, t in zip(b.users.tolist(), b.tweets.tolist())
    ]
    users = sorted(i for ids in view.iter_users(10) for i in ids.tolist())
    return {"users": users, "tweets": tweets, "follows": sorted(follows), "engagements": engagements}


def test_read_view_does_not_see_later_commits(store, tmp_path):
    """Batches committed after a view opened, including a tweet's late author, time and text,
    are invisible through the view and visible after it."""
    from graph.local_store import LocalStore

    ints = lambda *xs: np.array(xs, np.int64)  # noqa: E731
    store.write_follows(FollowBatch(ints(1), ints(2), ints(10)))
    store.write_engagements(
        EngagementBatch(ints(1), ints(100), np.array([1], np.int8), ints(20), np.ones(1, np.float32))
    )
    # The local store's view is a transaction on its connection: write on another one.
    writer = LocalStore(tmp_path / "store") if store.kind == "local" else store
    try:
        with store.read_view() as view:
            before = _columns(view)
            writer.write_follows(FollowBatch(ints(3), ints(4), ints(11)))
            writer.write_tweets(TweetBatch(ints(100, 101), ints(2, 3), ints(500, 600), ["late text", None]))
            writer.write_engagements(
                EngagementBatch(ints(3), ints(101), np.array([1], np.int8), ints(30), np.ones(1, np.float32))
            )
            assert _columns(view) == before
    finally:
        if writer is not store:
            writer.close()
    assert before == {
        "users": [1, 2],
        "tweets": [(100, -1, 0, None)],
        "follows": [(1, 2)],
        "engagements": [(1, 100)],
    }
    with store.read_view() as view:
        after = _columns(view)
    assert after["users"] == [1, 2, 3, 4]
    assert after["tweets"] == [(100, 2, 500, "late text"), (101, 3, 600, None)]
    assert after["follows"] == [(1, 2), (3, 4)]
    assert sorted(after["engagements"]) == [(1, 100), (3, 101)]


@pytest.mark.neo4j
def test_neo4j_read_view_waits_for_a_batch_in_flight(neo4j_store):
    """A view opened while a write batch is between its first statement and its commit includes
    that batch: it waits for the batch's lock on the clock instead of reading around it."""
    from graph import cypher

    neo4j_store.write_users(np.array([1, 2], np.int64))
    seen: dict[str, list] = {}

    def open_view() -> None:
        with neo4j_store.read_view() as view:
            seen["users"] = _columns(view)["users"]

    with neo4j_store.driver.session(database=neo4j_store.database) as session:
        tx = session.begin_transaction()
        seq = tx.run(cypher.NEXT_BATCH_SEQ).single()["seq"]
        tx.run(cypher.MERGE_USERS, ids=[3], seq=seq).consume()
        reader = threading.Thread(target=open_view)
        reader.start()
        reader.join(1.0)
        assert reader.is_alive(), f"the view did not wait for the batch in flight: {seen}"
        tx.commit()
    reader.join(60)
    assert seen["users"] == [1, 2, 3]
