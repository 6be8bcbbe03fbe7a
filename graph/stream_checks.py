"""What a streamed graph must equal, for the stream tests and the fault matrix
(``tests/test_stream.py``, ``tests/test_stream_faults.py``, ``scripts/fault_stream.py``).

* :func:`sample_events`: a seeded event stream with every event type, engagements of tweets
  published later and repeated events (so first-write-wins is exercised);
* :func:`store_graph`: everything a store holds, comparable across store kinds, with how many
  rows each part returned (a relationship stored twice shows there, not in a set);
* :func:`batch_graph`: the same for a batch ingest of events into a fresh local store, the
  reference a streamed store must equal;
* :func:`graph_diff`: lost and duplicated (or extra) rows between two such graphs;
* :func:`snapshot_diff`: which arrays of two snapshots differ (texts aside: live segments keep
  none), for ``fold(live)`` against a fresh snapshot of the same events;
* :class:`graph.live.LiveSink` (re-exported): the part of a recommender a serving worker's live feed writes to
  (``snap``, ``live``, ``attach_live``, ``apply_events``), without fitting one.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from graph.events import EventColumns, add_event
from graph.ingest import GraphColumns, ingest
from graph.live import LiveGraph, LiveSink  # noqa: F401 - LiveSink re-exported for the checks
from graph.snapshot import ARRAY_DTYPES, GraphSnapshot

#: Invalid messages of every kind the stream must dead-letter: (raw message, part of the reason).
MALFORMED = (
    (b'{"event": "follow", "user": 1,', "invalid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (b'{"event": "poke", "user": 1, "target": 2}', "unknown event"),
    (b'{"event": "follow", "user": 1, "target": 2, "colour": "red"}', "unknown key"),
    (b'{"event": "follow", "user": 4, "target": 4}', "cannot follow themselves"),
    (b'{"event": "like", "user": -1, "target": 2}', "user id -1"),
    (b'{"event": "like", "user": 1, "target": 2, "weight": "heavy"}', "weight must be a number"),
    (b'{"event": "follow", "user": 5, "target": 6, "ts": 1.5}', "ts must be an integer"),
    (b"\xff\xfe not utf-8", "not UTF-8"),
)
PARTS = ("users", "tweets", "follows", "engagements")


def sample_events(seed: int, n: int = 400, n_users: int = 30, *, repeats: int = 40) -> list[dict]:
    """Every event type; engagements of tweets published later; repeated events (with other
    timestamps) from the same user, so they share a partition and the first one wins."""
    rng = random.Random(seed)
    kinds = ["like", "retweet", "reply", "quote", "engage"]
    out: list[dict] = []
    for i in range(n):
        user = rng.randrange(n_users)
        r = rng.random()
        if r < 0.08:
            out.append({"event": "user", "user": user})
        elif r < 0.35:
            target = rng.randrange(n_users)
            if target != user:
                out.append({"event": "follow", "user": user, "target": target, "ts": 1000 + i})
        elif r < 0.5:
            tweet = {"event": "tweet", "user": user, "target": 10_000 + i, "ts": 1000 + i}
            if i % 3:
                tweet["text"] = f"tweet {i} by {user}"
            out.append(tweet)
        else:
            event = {
                "event": rng.choice(kinds),
                "user": user,
                "target": 10_000 + rng.randrange(n),
                "ts": 1000 + i,
            }
            if rng.random() < 0.3:
                event["weight"] = round(rng.uniform(0.5, 3.0), 2)
            out.append(event)
    for e in rng.sample(out, min(repeats, len(out))):
        if e["event"] != "tweet":  # a tweet repeated with other fields would fill in unset ones
            out.append({**e, "ts": e.get("ts", 0) + 1})
    return out


def store_graph(store, batch_size: int = 5000) -> dict:
    """Everything a store holds, comparable across store kinds: ``users`` (set), ``tweets``
    (id -> (author, created, text)), ``follows`` and ``engagements`` (sets), and ``rows``: how
    many rows each part returned (more rows than set members = something stored twice)."""
    rows = dict.fromkeys(PARTS, 0)
    users: set[int] = set()
    for ids in store.iter_users(batch_size):
        users.update(int(u) for u in ids.tolist())
        rows["users"] += len(ids)
    tweets = {}
    for b in store.iter_tweets(batch_size):
        for i, a, c, t in zip(b.ids.tolist(), b.authors.tolist(), b.created.tolist(), b.texts):
            tweets[i] = (a, c, t or None)
        rows["tweets"] += len(b.ids)
    follows = set()
    for b in store.iter_follows(batch_size):
        follows.update(zip(b.src.tolist(), b.dst.tolist(), b.ts.tolist()))
        rows["follows"] += len(b.src)
    engagements = set()
    for b in store.iter_engagements(batch_size):
        engagements.update(
            (u, t, k, ts, round(w, 4))
            for u, t, k, ts, w in zip(
                b.users.tolist(), b.tweets.tolist(), b.kinds.tolist(), b.ts.tolist(), b.weights.tolist()
            )
        )
        rows["engagements"] += len(b.users)
    return {"users": users, "tweets": tweets, "follows": follows, "engagements": engagements, "rows": rows}


def events_columns(events: Iterable[Mapping]) -> GraphColumns:
    ev = EventColumns()
    for e in events:
        add_event(ev, e)
    return GraphColumns.from_events(ev)


def batch_graph(events: Iterable[Mapping], directory: str | Path, *, snapshot: bool = False):
    """:func:`store_graph` of a batch ingest of ``events`` into a fresh local store in
    ``directory``; with ``snapshot``, ``(graph, exported snapshot)``."""
    from graph.export import export_snapshot
    from graph.local_store import LocalStore

    with LocalStore(directory) as store:
        ingest(store, events_columns(events), progress=False)
        graph = store_graph(store)
        return (graph, export_snapshot(store, progress=False)) if snapshot else graph


def equal_graphs(a: dict, b: dict) -> bool:
    """Same content, and no part returned more rows than it has members."""
    return all(a[p] == b[p] for p in PARTS) and not graph_diff(a, b)["duplicated"]


def graph_diff(actual: dict, expected: dict) -> dict:
    """``lost`` (expected, missing), ``duplicated`` (stored twice, or present but not expected)
    and ``changed`` (tweets whose author, time or text differ), per part and in total."""
    out: dict = {"lost": 0, "duplicated": 0, "changed": 0, "by_part": {}}
    for part in PARTS:
        have, want = actual[part], expected[part]
        lost = len(set(want) - set(have))
        extra = len(set(have) - set(want)) + (actual["rows"][part] - len(have))
        changed = sum(have[k] != want[k] for k in set(have) & set(want)) if part == "tweets" else 0
        out["by_part"][part] = {"lost": lost, "duplicated": extra, "changed": changed}
        out["lost"] += lost
        out["duplicated"] += extra
        out["changed"] += changed
    return out


def snapshot_diff(a: GraphSnapshot, b: GraphSnapshot) -> list[str]:
    """The arrays that differ between two snapshots (empty: the same graph). Texts are not
    compared: live segments hold none (a compaction takes them from the store)."""
    return [
        name
        for name in ARRAY_DTYPES
        if a.arrays[name].shape != b.arrays[name].shape or not np.array_equal(a.arrays[name], b.arrays[name])
    ]
