"""`graphrec serve --live-bootstrap`: each worker follows the events topic on the real broker and
serves the snapshot plus everything since it, over HTTP."""

from __future__ import annotations

import re
import time
import uuid

import pytest

from graph.kafka_client import ensure_topics, produce_events
from graph.synthetic import generate
from retrieval.recommender import Recommender
from tests.test_serve import Server, call

pytestmark = pytest.mark.kafka


@pytest.fixture(scope="module")
def live_server(kafka_bootstrap, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-live")
    snap = generate(200, avg_follows=8, avg_engagements=10, tweets_per_user=2, seed=31).snapshot()
    snap.save(root / "snap")
    rec = Recommender(snap)
    rec.save(root / "model")
    topic = f"events-{uuid.uuid4().hex[:8]}"
    ensure_topics(kafka_bootstrap, {topic: 2})
    uid = int(snap.user_ids[1])  # follows the account the snapshot would propose first
    early = {"event": "follow", "user": uid, "target": rec.who_to_follow(uid, 1)[0].id}
    produce_events(kafka_bootstrap, topic, [early])  # before the server starts: caught up at start
    s = Server(
        [
            "--snapshot",
            str(root / "snap"),
            "--model",
            str(root / "model"),
            "--workers",
            "2",
            "--live-bootstrap",
            kafka_bootstrap,
            "--live-topic",
            topic,
            "--live-start",
            "earliest",
        ],
        root,
    )
    yield s, snap, topic, early
    assert s.stop() == 0, s.err.read_text()


def _who(server, uid: int, query: str = "k=50") -> list[int]:
    status, body, raw = call(server, "GET", f"/v1/users/{uid}/who-to-follow?{query}")
    assert status == 200, raw
    return [item["id"] for item in body["items"]]


def _until(predicate, what: str, timeout: float = 20.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"not within {timeout:g} s: {what}"
        time.sleep(0.05)


def test_events_before_the_start_are_served_at_once(live_server):
    server, _, _, early = live_server
    for _ in range(6):  # new connections: both workers answer, each caught up before it was ready
        assert early["target"] not in _who(server, early["user"], "k=10000")


def test_a_new_follow_reaches_every_worker(live_server, kafka_bootstrap):
    server, snap, topic, _ = live_server
    uid = int(snap.user_ids[20])
    target = _who(server, uid)[0]
    produce_events(kafka_bootstrap, topic, [{"event": "follow", "user": uid, "target": target}])

    def gone_everywhere() -> bool:
        return all(target not in _who(server, uid) for _ in range(6))

    _until(gone_everywhere, f"user {uid}'s new followee {target} out of who-to-follow on every worker")


def test_a_user_born_after_the_snapshot_and_invalid_events(live_server, kafka_bootstrap):
    server, snap, topic, _ = live_server
    newcomer, tweet = 10**10, 10**13
    author = int(snap.user_ids[4])
    produce_events(
        kafka_bootstrap,
        topic,
        [
            {"event": "user", "user": newcomer},
            {"event": "follow", "user": newcomer, "target": author},
            {"event": "tweet", "user": author, "target": tweet, "ts": 10**9},
            {"event": "follow", "user": "not-a-number", "target": 1},  # invalid: skipped, counted
            "{broken json",
        ],
    )

    def served() -> bool:
        status, body, _ = call(server, "GET", f"/v1/users/{newcomer}/tweet-candidates?k=20&strict=true")
        return status == 200 and tweet in [i["id"] for i in body["items"]]

    _until(served, "a user born after the snapshot gets the new tweet of the account they follow")

    def reported() -> bool:  # each worker publishes its feed's figures every half second
        metrics = call(server, "GET", "/metrics")[1]
        invalid = re.findall(r'graphrec_live_events_invalid_total\{worker="\d+"\} (\d+)', metrics)
        edges = re.findall(r'graphrec_live_edges\{worker="\d+"\} (\d+)', metrics)
        return len(invalid) == 2 and all(int(v) == 2 for v in invalid) and all(int(e) >= 3 for e in edges)

    _until(reported, "both workers report the live feed in /metrics (2 invalid events, live edges)")


def test_the_walks_step_over_live_edges_on_every_worker(live_server, kafka_bootstrap):
    server, snap, topic, _ = live_server
    newcomer = 10**10 + 7
    followees = [int(snap.user_ids[i]) for i in (11, 12)]
    produce_events(
        kafka_bootstrap, topic, [{"event": "follow", "user": newcomer, "target": f} for f in followees]
    )

    def walked_everywhere() -> bool:  # PPR / SALSA only know the newcomer once a fold has them
        for _ in range(6):
            status, body, _ = call(server, "GET", f"/v1/users/{newcomer}/who-to-follow?k=50&strict=true")
            if status != 200 or not any({"ppr", "salsa"} & set(i["sources"]) for i in body["items"]):
                return False
        return True

    _until(walked_everywhere, "walk candidates for a user born after the snapshot on every worker")
    metrics = call(server, "GET", "/metrics")[1]
    folds = re.findall(r'graphrec_live_walk_folds_total\{worker="\d+"\} (\d+)', metrics)
    assert len(folds) == 2 and all(int(f) >= 1 for f in folds)
