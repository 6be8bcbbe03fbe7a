"""`graphrec compact` and `graphrec serve --compact-every`: the events since a snapshot folded
into the next snapshot and model, from the real broker; the result equals a batch ingest of the
same events, and each compaction starts where the previous one stopped."""

from __future__ import annotations

import json
import re
import time
import uuid

import numpy as np
import pytest

from graph.kafka_client import ensure_topics, produce_events
from graph.snapshot import GraphSnapshot
from graph.stream_checks import batch_graph, sample_events, snapshot_diff
from graphrec.compact import compact, read_offsets
from graphrec.serve.live_feed import LiveSettings
from retrieval.live import fold_in
from retrieval.recommender import Recommender
from tests.test_serve import Server, call

pytestmark = pytest.mark.kafka


def _snapshot(events: list[dict], directory) -> GraphSnapshot:
    """The snapshot a batch ingest of ``events`` into a fresh store exports."""
    return batch_graph(events, directory, snapshot=True)[1]


@pytest.fixture
def topic(kafka_bootstrap) -> str:
    name = f"events-{uuid.uuid4().hex[:10]}"
    ensure_topics(kafka_bootstrap, {name: 3})
    return name


def test_compactions_equal_a_batch_ingest_and_start_where_the_last_stopped(kafka_bootstrap, topic, tmp_path):
    events = sample_events(seed=3, n=600, n_users=40)
    first, second, third = events[:300], events[300:500], events[500:]
    liked = next(e["target"] for e in first if e["event"] == "tweet")
    second += [  # a user born since the snapshot
        {"event": "follow", "user": 10**6, "target": 1, "ts": 2000},
        {"event": "follow", "user": 10**6, "target": 2, "ts": 2001},
        {"event": "like", "user": 10**6, "target": liked, "ts": 2002},
    ]
    events = first + second + third
    base = _snapshot(first, tmp_path / "store0")
    base.save(tmp_path / "snap")
    rng = np.random.default_rng(0)
    users_v = rng.standard_normal((base.n_users, 4)).astype(np.float32)
    tweets_v = rng.standard_normal((base.n_tweets, 4)).astype(np.float32)
    Recommender(base, user_vectors=users_v, tweet_vectors=tweets_v).save(tmp_path / "model")
    settings = LiveSettings(kafka_bootstrap, topic=topic, start="earliest")

    produce_events(kafka_bootstrap, topic, first + second)  # the topic replays what the base holds
    one = compact(tmp_path / "snap", settings, tmp_path / "gen-1", model=tmp_path / "model")
    got = GraphSnapshot.load(tmp_path / "gen-1" / "snapshot")
    assert snapshot_diff(got, _snapshot(first + second, tmp_path / "store1")) == []
    assert one.events == len(first + second) and sum(one.offsets.values()) == len(first + second)
    assert read_offsets(tmp_path / "gen-1", topic) == one.offsets

    # embeddings carried over for known users and tweets, folded in for users born since
    rec = Recommender.load(tmp_path / "gen-1" / "model", tmp_path / "gen-1" / "snapshot")
    old_pos = got.user_index(base.user_ids)
    assert np.array_equal(rec.user_vectors[old_pos], users_v)
    born = np.setdiff1d(np.asarray(got.user_ids), np.asarray(base.user_ids))
    assert len(born)
    u = int(got.user_index(born[:1])[0])
    followees = np.asarray(got.follow_out_indices[got.follow_out_indptr[u] : got.follow_out_indptr[u + 1]])
    engaged = np.asarray(got.eng_user_indices[got.eng_user_indptr[u] : got.eng_user_indptr[u + 1]])
    known_f = base.user_index(np.asarray(got.user_ids)[followees], strict=False)
    known_t = base.tweet_index(np.asarray(got.tweet_ids)[engaged], strict=False)
    want = fold_in(users_v, tweets_v, known_f[known_f >= 0], known_t[known_t >= 0])
    assert np.allclose(rec.user_vectors[u], want if want is not None else 0.0)

    produce_events(kafka_bootstrap, topic, third)
    two = compact(
        tmp_path / "gen-1" / "snapshot",
        settings,
        tmp_path / "gen-2",
        model=tmp_path / "gen-1" / "model",
        start_offsets=one.offsets,
    )
    assert two.events == len(third)  # only what came after the first compaction
    got = GraphSnapshot.load(tmp_path / "gen-2" / "snapshot")
    assert snapshot_diff(got, _snapshot(events, tmp_path / "store2")) == []
    with pytest.raises(Exception, match="exists"):
        compact(tmp_path / "gen-1" / "snapshot", settings, tmp_path / "gen-2", start_offsets=one.offsets)


def test_a_compaction_that_cannot_read_the_topic_writes_nothing(kafka_bootstrap, tmp_path):
    base = _snapshot(sample_events(seed=4, n=50), tmp_path / "store")
    base.save(tmp_path / "snap")
    settings = LiveSettings(kafka_bootstrap, topic=f"missing-{uuid.uuid4().hex[:8]}")
    with pytest.raises(Exception, match="no topic|feed"):
        compact(tmp_path / "snap", settings, tmp_path / "gen-1", catch_up_timeout_s=20)
    assert not (tmp_path / "gen-1").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".gen-1")]


def test_serve_compacts_in_the_background_and_keeps_every_event(kafka_bootstrap, topic, tmp_path):
    events = sample_events(seed=5, n=500, n_users=40)
    base = _snapshot(events[:300], tmp_path / "store")
    base.save(tmp_path / "snap")
    Recommender(base).save(tmp_path / "model")
    produce_events(kafka_bootstrap, topic, events)
    newcomer = 10**9 + 3
    followee = int(base.user_ids[0])
    produce_events(
        kafka_bootstrap, topic, [{"event": "follow", "user": newcomer, "target": followee, "ts": 5000}]
    )
    server = Server(
        [
            "--snapshot",
            str(tmp_path / "snap"),
            "--model",
            str(tmp_path / "model"),
            "--workers",
            "2",
            "--live-bootstrap",
            kafka_bootstrap,
            "--live-topic",
            topic,
            "--live-start",
            "earliest",
            "--compact-every",
            "2",
            "--compact-dir",
            str(tmp_path / "compactions"),
        ],
        tmp_path,
    )
    try:

        def compacted() -> bool:
            status, body, _ = call(server, "GET", f"/v1/users/{newcomer}/who-to-follow?k=20&strict=true")
            return status == 200 and body["snapshot_id"] != base.snapshot_id

        deadline = time.monotonic() + 180
        while not compacted():
            assert time.monotonic() < deadline, server.err.read_text()[-3000:]
            time.sleep(0.2)
        gen = sorted((tmp_path / "compactions").glob("gen-*"))[0]
        snap = GraphSnapshot.load(gen / "snapshot")
        assert newcomer in set(np.asarray(snap.user_ids).tolist())  # the newcomer is in the snapshot now
        want = _snapshot(
            events + [{"event": "follow", "user": newcomer, "target": followee, "ts": 5000}], tmp_path / "all"
        )
        assert snapshot_diff(snap, want) == []
        offsets = json.loads((gen / "offsets.json").read_text())["offsets"]
        assert sum(offsets.values()) == len(events) + 1
        for _ in range(6):  # every worker: the followee stays out, on the compacted snapshot
            status, body, _ = call(server, "GET", f"/v1/users/{newcomer}/who-to-follow?k=50&strict=true")
            assert status == 200 and followee not in [i["id"] for i in body["items"]]

        def small_live() -> bool:  # the new workers' live segments start at the compaction's offsets
            metrics = call(server, "GET", "/metrics")[1]
            edges = re.findall(r'graphrec_live_edges\{worker="\d+"\} (\d+)', metrics)
            return len(edges) == 2 and all(int(e) == 0 for e in edges)

        deadline = time.monotonic() + 30
        while not small_live():
            assert time.monotonic() < deadline, call(server, "GET", "/metrics")[1]
            time.sleep(0.2)
    finally:
        assert server.stop() == 0, server.err.read_text()[-3000:]
