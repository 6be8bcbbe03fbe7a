"""graphrec's Neo4j procedures (graph/neo4j_plugin, graph/neo4j_procedures.py) against the real
server: the same graph as the Cypher path, bad rows, re-runs, the change log."""

from __future__ import annotations

import os
import signal
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from graph.errors import InputError, SnapshotError, StoreUnavailableError
from graph.events import read_events
from graph.export import export_snapshot, snapshot_from_columns
from graph.ingest import GraphColumns, ingest
from graph.neo4j_procedures import ChangeMarker, merge_changes
from graph.neo4j_store import Neo4jStore
from graph.store import EngagementBatch, FollowBatch, TweetBatch
from graph.synthetic import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def plugin_store(neo4j_store, neo4j_server):
    """The session's server through graphrec's procedures (a server we did not start may lack them)."""
    if neo4j_store.plugin is None:
        if neo4j_server[1] is None:
            pytest.skip("the server in NEO4J_URI has no graphrec plugin (graph/neo4j_plugin)")
        pytest.fail("the local server started without graphrec's plugin")
    neo4j_store.procedures = "plugin"
    neo4j_store.ensure_schema()
    return neo4j_store


def _cols(n_users=250, seed=5) -> GraphColumns:
    """A synthetic graph with every part: texts, authors, all engagement kinds, duplicates."""
    cols = GraphColumns.from_synthetic(generate(n_users, avg_follows=7, avg_engagements=9, seed=seed))
    k = 30  # duplicate keys with other values: the first row must win on both paths
    return replace(
        cols,
        follow_src=np.concatenate([cols.follow_src, cols.follow_src[:k]]),
        follow_dst=np.concatenate([cols.follow_dst, cols.follow_dst[:k]]),
        follow_ts=np.concatenate([cols.follow_ts, cols.follow_ts[:k] + 7]),
        eng_user=np.concatenate([cols.eng_user, cols.eng_user[:k]]),
        eng_tweet=np.concatenate([cols.eng_tweet, cols.eng_tweet[:k]]),
        eng_kind=np.concatenate([cols.eng_kind, cols.eng_kind[:k]]),
        eng_ts=np.concatenate([cols.eng_ts, cols.eng_ts[:k] + 7]),
        eng_weight=np.concatenate([cols.eng_weight, cols.eng_weight[:k] * 2]),
    )


def _shape(store: Neo4jStore) -> list:
    """Labels, property keys and relationship types with their keys, and how many of each."""
    nodes = store.cypher(
        "MATCH (n) WHERE n:User OR n:Tweet UNWIND [k IN keys(n) | k] AS key "
        "RETURN labels(n) AS labels, key, count(*) AS n ORDER BY labels, key"
    )
    rels = store.cypher(
        "MATCH (a)-[r]->(b) UNWIND (CASE WHEN size(keys(r)) = 0 THEN [''] ELSE keys(r) END) AS key "
        "RETURN labels(a) AS a, type(r) AS type, labels(b) AS b, key, count(*) AS n ORDER BY a, type, b, key"
    )
    values = store.cypher(
        "MATCH ()-[r]->() WHERE r.weight IS NOT NULL RETURN DISTINCT valueType(r.weight) AS w, valueType(r.ts) AS ts"
    )
    constraints = store.cypher("SHOW CONSTRAINTS YIELD name RETURN collect(name) AS names")
    return [nodes, rels, values, sorted(constraints[0]["names"])]


def test_plugin_pom_follows_the_launchers_neo4j_version():
    ns = {"m": "http://maven.apache.org/POM/4.0.0"}

    def version(pom: Path) -> str:
        return ET.parse(pom).getroot().findtext("m:properties/m:neo4j.version", namespaces=ns)

    assert version(ROOT / "graph/neo4j_plugin/pom.xml") == version(ROOT / "graph/neo4j_launcher/pom.xml")


def test_both_paths_write_the_same_graph_and_export_the_same_snapshot(plugin_store, tmp_path):
    cols = _cols()
    p = tmp_path / "events.csv"
    p.write_text(
        "event,user,target,ts,weight,text\n"
        "like,3001,9001,40,,\n"  # tweet known before its author
        "tweet,3002,9001,5,,first text\n"
        "tweet,3003,9001,6,,second author loses\n"
        "tweet,3004,9002,0,,\n"  # no creation time, no text
    )
    events = GraphColumns.from_events(read_events(p))
    store = plugin_store
    snaps, shapes = {}, {}
    for path in ("cypher", "plugin", "plugin, 3 writers"):
        store.clear()
        store.procedures = path.split(",")[0]
        writers = 3 if "writers" in path else 1
        ingest(store, cols, batch_size=300, progress=False, writers=writers)
        ingest(store, events, batch_size=2, progress=False, writers=writers)
        shapes[path] = _shape(store)
        for reader in ("cypher", "plugin"):  # each path reads what the other wrote
            store.procedures = reader
            snaps[path, reader] = export_snapshot(store, batch_size=97, progress=False)
    ids = {key: s.snapshot_id for key, s in snaps.items()}
    assert len(set(ids.values())) == 1, ids
    assert shapes["cypher"] == shapes["plugin"] == shapes["plugin, 3 writers"]
    snap = snaps["plugin", "plugin"]
    assert snap.tweet_texts[9001] == "first text"
    t = snap.tweet_ids.tolist().index(9001)
    assert snap.user_ids[snap.tweet_author[t]] == 3002 and snap.tweet_created[t] == 5


def test_a_bad_row_writes_nothing_and_names_the_row(plugin_store):
    store = plugin_store
    ok = np.array([1, 2, 3, 4])
    with pytest.raises(InputError, match=r"follows batch row 2: followee id -7 is negative"):
        store.write_follows(FollowBatch(ok, np.array([2, 3, -7, 1]), np.zeros(4, np.int64)))
    with pytest.raises(InputError, match=r"engagements batch row 3: unknown engagement kind 9"):
        store.write_engagements(
            EngagementBatch(
                ok, ok + 100, np.array([0, 1, 2, 9], np.int8), np.zeros(4, np.int64), np.ones(4, np.float32)
            )
        )
    with pytest.raises(InputError, match=r"engagements batch row 1: weight NaN"):
        store.write_engagements(
            EngagementBatch(
                ok,
                ok + 100,
                np.zeros(4, np.int8),
                np.zeros(4, np.int64),
                np.array([1, np.nan, 1, 1], np.float32),
            )
        )
    with pytest.raises(InputError, match=r"tweets batch row 0: author id -2"):
        store.write_tweets(TweetBatch(ok + 100, np.array([-2, 1, 1, 1]), np.zeros(4, np.int64), [None] * 4))
    with pytest.raises(InputError, match=r"users batch row 1: user id -1"):
        store.write_users(np.array([5, -1]))
    assert store.counts() == {"users": 0, "tweets": 0, "follows": 0, "engagements": 0}
    marker = store.plugin.export()[1]
    assert marker.seq == 0  # nothing reached the change log either


def test_a_rerun_adds_nothing(plugin_store):
    store = plugin_store
    cols = _cols(seed=8)
    ingest(store, cols, batch_size=400, progress=False)
    first, marker = store.plugin.export()
    counts = store.counts()
    ingest(store, cols, batch_size=333, progress=False)  # other batch boundaries, same data
    again, marker2 = store.plugin.export()
    assert store.counts() == counts
    assert marker2 == marker  # no call changed anything, so none logged a change
    assert snapshot_from_columns(again).snapshot_id == snapshot_from_columns(first).snapshot_id
    changes, _ = store.plugin.changes(marker)
    assert (
        len(changes.users) == len(changes.tweet_ids) == len(changes.follow_src) == len(changes.eng_user) == 0
    )


def _split(cols: GraphColumns, f: float) -> tuple[GraphColumns, GraphColumns]:
    """Two ingests: the first fraction of every part, then the rest (plus some of the first again)."""

    def cut(a, lo, hi):
        return a[int(lo * len(a)) : int(hi * len(a))]

    def part(lo, hi, dup):
        def take(a):
            a = np.asarray(a)
            return np.concatenate([cut(a, lo, hi), cut(a, 0, dup)])

        texts = None if cols.tweet_texts is None else list(take(np.asarray(cols.tweet_texts, dtype=object)))
        return GraphColumns(
            **{
                name: take(getattr(cols, name))
                for name in GraphColumns.__dataclass_fields__
                if name != "tweet_texts"
            },
            tweet_texts=texts,
        )

    return part(0, f, 0), part(f, 1, 0.1)


def test_incremental_export_returns_exactly_what_was_written_after_the_marker(plugin_store):
    store = plugin_store
    cols = _cols(seed=13)
    # Tweets are first known through engagements (no author yet); their authors come later.
    first, second = _split(cols, 0.8)
    late_authors = replace(
        first, tweet_authors=np.full(len(first.tweet_ids), -1), tweet_created=first.tweet_created * 0
    )
    ingest(store, late_authors, batch_size=250, progress=False)
    base, marker = store.plugin.export(chunk_rows=100)  # several chunks per part
    assert marker is not None and marker.seq > 0

    ingest(store, second, batch_size=250, progress=False)
    ingest(store, first, batch_size=250, progress=False)  # sets the authors and times of known tweets
    changes, marker2 = store.plugin.changes(marker)
    assert marker2.epoch == marker.epoch and marker2.seq > marker.seq

    full, marker3 = store.plugin.export()
    assert marker3 == marker2
    # exactly the follows and engagements that are new since the marker
    key = lambda s, d: set(zip(s.tolist(), d.tolist()))  # noqa: E731
    assert key(changes.follow_src, changes.follow_dst) == key(full.follow_src, full.follow_dst) - key(
        base.follow_src, base.follow_dst
    )
    assert len(changes.follow_src) == len(full.follow_src) - len(base.follow_src)
    assert len(changes.eng_user) == len(full.eng_user) - len(base.eng_user)
    assert set(changes.users.tolist()) == set(full.users.tolist()) - set(base.users.tolist())
    assert len(changes.users) == len(full.users) - len(base.users)
    # base + changes = the graph now, authors and creation times included
    merged = snapshot_from_columns(merge_changes(base, changes))
    assert merged.equals(snapshot_from_columns(full))
    assert merged.equals(export_snapshot(store, progress=False))
    assert (merged.tweet_author >= 0).sum() > 0

    nothing, marker4 = store.plugin.changes(marker2)
    assert marker4 == marker2 and len(nothing.follow_src) == 0

    # The change log and a scan of the stamps give the same changes: before a prune the log
    # answers, after it (entries gone) the scan does.
    older = ChangeMarker(marker.epoch, marker.seq - 1)
    from_log, _ = store.plugin.changes(older)
    assert store.plugin.prune(marker) > 0
    from_scan, _ = store.plugin.changes(older)
    _assert_same_changes(from_log, from_scan, base)
    assert len(store.plugin.changes(marker)[0].follow_src) == len(changes.follow_src)
    store.clear()
    store.write_users(np.array([1]))
    with pytest.raises(SnapshotError, match="another graph"):
        store.plugin.changes(marker2)
    assert ChangeMarker.parse(str(marker2)) == marker2


def _assert_same_changes(a: GraphColumns, b: GraphColumns, base: GraphColumns) -> None:
    def keys(*cols):
        return sorted(zip(*(np.asarray(c).tolist() for c in cols)))

    assert keys(a.users) == keys(b.users)
    assert keys(a.follow_src, a.follow_dst, a.follow_ts) == keys(b.follow_src, b.follow_dst, b.follow_ts)
    assert keys(a.eng_user, a.eng_tweet, a.eng_kind, a.eng_ts) == keys(
        b.eng_user, b.eng_tweet, b.eng_kind, b.eng_ts
    )
    assert snapshot_from_columns(merge_changes(base, a)).equals(snapshot_from_columns(merge_changes(base, b)))


def test_both_paths_share_one_clock_and_interleave(plugin_store):
    """Cypher-path and procedure batches from several threads at once take their numbers from the
    one GraphClock: every batch gets its own number, stamped on exactly its relationships, and an
    incremental export across Cypher batches (no log entries: a scan) equals the log's answer."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from graph.neo4j_store import Neo4jStore as _Store

    store = plugin_store
    base, marker = store.plugin.export()
    cypher_store = _Store(store.driver, database=store.database)
    cypher_store.procedures = "cypher"
    n_batches, per = 15, 4
    lock = threading.Lock()
    done = []

    def writer(w: int) -> None:
        target = store if w % 2 else cypher_store
        for b in range(n_batches):
            src = np.full(per, 1000 * (w + 1) + b)
            target.write_follows(FollowBatch(src, np.arange(per) + 10, np.full(per, w)))
            with lock:
                done.append(w)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(writer, range(4)))
    rows = store.cypher("MATCH ()-[f:FOLLOWS]->() RETURN f.batch_seq AS seq, count(*) AS n")
    assert sorted(r["n"] for r in rows) == [per] * (4 * n_batches)  # one number per batch, none shared
    clock = store.cypher("MATCH (c:GraphClock) RETURN c.seq AS seq")[0]["seq"]
    assert clock == marker.seq + 4 * n_batches
    changes, marker2 = store.plugin.changes(marker)  # Cypher batches among them: the scan
    assert marker2.seq == clock and len(changes.follow_src) == 4 * n_batches * per
    full, _ = store.plugin.export()
    assert snapshot_from_columns(merge_changes(base, changes)).equals(snapshot_from_columns(full))
    # the procedure batches alone are answered from the log, with the same rows
    plugin_only = [r["seq"] for r in store.cypher("MATCH (d:GraphrecDelta) RETURN d.seq AS seq ORDER BY seq")]
    assert len(plugin_only) == 2 * n_batches
    last = plugin_only[-1]  # from there on: the log when it is the last batch, else the scan
    tail, _ = store.plugin.changes(ChangeMarker(marker2.epoch, last - 1))
    assert len(tail.follow_src) == per * (clock - last + 1)


def test_a_stock_server_gets_the_cypher_path(tmp_path):
    """A server without the plugin (a managed Neo4j): `auto` falls back, `plugin` refuses."""
    from graph.neo4j_local import LocalNeo4j

    server = LocalNeo4j().start(data_dir=tmp_path / "stock", plugin=False)
    try:
        with Neo4jStore.connect(server.uri) as store:
            store.procedures = "auto"
            assert store.plugin is None
            cols = GraphColumns.from_synthetic(generate(60, avg_follows=4, avg_engagements=4, seed=2))
            ingest(store, cols, batch_size=100, progress=False)
            assert export_snapshot(store, progress=False).equals(
                generate(60, avg_follows=4, avg_engagements=4, seed=2).snapshot()
            )
            store.procedures = "plugin"
            with pytest.raises(StoreUnavailableError, match="no graphrec plugin"):
                store.write_users(np.array([1]))
    finally:
        server.stop()


def test_crash_mid_ingest_then_rerun_gives_the_same_graph_and_log(tmp_path):
    """SIGKILL the server between two procedure batches; after a restart and a re-run the graph
    is the uninterrupted one, and replaying the whole change log gives the same graph."""
    from graph.neo4j_local import LocalNeo4j

    g = generate(300, avg_follows=8, avg_engagements=8, seed=21, with_text=False)
    cols = GraphColumns.from_synthetic(g)
    data = tmp_path / "neo4j-crash"
    server = LocalNeo4j().start(data_dir=data)
    try:
        store = Neo4jStore.connect(server.uri, retry_time=2)
        store.procedures = "plugin"
        calls = []
        original = store.plugin.write_engagements

        def crash_on_the_third(batch):
            if len(calls) == 2:
                os.kill(server.pid, signal.SIGKILL)
                server.wait_exit(timeout=30)
            calls.append(original(batch))

        store.plugin.write_engagements = crash_on_the_third
        with pytest.raises(StoreUnavailableError):
            ingest(store, cols, batch_size=300, progress=False)
        store.close()
    finally:
        server.stop()
    server = LocalNeo4j().start(data_dir=data)
    try:
        with Neo4jStore.connect(server.uri) as store:
            store.procedures = "plugin"
            assert 0 < store.counts()["engagements"] < g.snapshot().n_engagements
            ingest(store, cols, batch_size=700, progress=False)
            full, marker = store.plugin.export()
            assert snapshot_from_columns(full).equals(g.snapshot())
            replay, _ = store.plugin.changes(ChangeMarker(marker.epoch, 0))
            assert snapshot_from_columns(replay).equals(g.snapshot())
    finally:
        server.stop()


def test_concurrent_writers_of_the_same_keys_create_each_once(plugin_store):
    """Four threads write the same follows and engagements (other ts and weights) at once:
    each key is created once, with the values of one of the writers (all its values)."""
    from concurrent.futures import ThreadPoolExecutor

    store = plugin_store
    rng = np.random.default_rng(4)
    src, dst = rng.integers(0, 60, 3000), rng.integers(0, 60, 3000)
    users, tweets = rng.integers(0, 60, 3000), rng.integers(100, 160, 3000)
    store.write_users(np.arange(60))

    def write(i: int) -> None:
        store.write_follows(FollowBatch(src, dst, np.full(3000, i)))
        kinds = np.zeros(3000, np.int8)
        store.write_engagements(
            EngagementBatch(users, tweets, kinds, np.full(3000, i), np.full(3000, i, np.float32))
        )

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(write, range(4)))
    snap = export_snapshot(store, progress=False)
    assert snap.n_follows == len(set(zip(src.tolist(), dst.tolist())))
    assert snap.n_engagements == len(set(zip(users.tolist(), tweets.tolist())))
    # one call won each key whole: per engagement, ts and weight come from the same writer
    assert np.array_equal(snap.eng_user_ts.astype(np.float32), snap.eng_user_weights)


def test_an_open_write_holds_back_the_marker(plugin_store):
    """A write call whose transaction is still open holds the clock: a later batch and a reader
    wait for its commit, so a marker never skips a change."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    store = plugin_store
    from graph import cypher

    marker = store.plugin.ensure_schema()
    packed = lambda a: np.asarray(a, "<i8").tobytes()  # noqa: E731
    with store.driver.session(database=store.database) as session, ThreadPoolExecutor(2) as pool:
        tx = session.begin_transaction()
        tx.run(cypher.PLUGIN_WRITE["follows"], src=packed([1]), dst=packed([2]), ts=packed([5])).consume()
        later = pool.submit(store.write_follows, FollowBatch(np.array([3]), np.array([4]), np.array([6])))
        reader = pool.submit(store.plugin.changes, marker)
        time.sleep(1.5)
        assert not later.done() and not reader.done()
        tx.commit()
        later.result(timeout=30)
        held, marker2 = reader.result(timeout=30)
        assert (1, 2) in set(zip(held.follow_src.tolist(), held.follow_dst.tolist()))
    both, marker3 = store.plugin.changes(marker)
    assert sorted(zip(both.follow_src.tolist(), both.follow_dst.tolist())) == [(1, 2), (3, 4)]
    assert marker3.seq > marker.seq
    assert len(store.plugin.changes(marker3)[0].follow_src) == 0


class _Recorder:
    """A store that records what each write touches (for the concurrent schedule)."""

    def __init__(self):
        self.nodes: set = set()
        self.follows: dict = {}
        self.engagements: dict = {}

    def write_users(self, ids):
        self.nodes.update(("u", int(i)) for i in ids)

    def write_tweets(self, b):
        self.nodes.update(("t", int(i)) for i in b.ids)
        self.nodes.update(("u", int(a)) for a in b.authors if a >= 0)

    def write_follows(self, b):
        for s, d, t in zip(b.src.tolist(), b.dst.tolist(), b.ts.tolist()):
            self.nodes.update((("u", s), ("u", d)))
            self.follows.setdefault((s, d), t)

    def write_engagements(self, b):
        for u, t, k, ts in zip(b.users.tolist(), b.tweets.tolist(), b.kinds.tolist(), b.ts.tolist()):
            self.nodes.update((("u", u), ("t", t)))
            self.engagements.setdefault((u, t, k), ts)


def test_concurrent_schedule_gives_writers_disjoint_nodes_and_keeps_the_first_rows():
    from itertools import combinations

    from graph.ingest import _rounds

    cols = _cols(seed=17)
    first_follows, first_engagements = {}, {}
    for s, d, t in zip(cols.follow_src.tolist(), cols.follow_dst.tolist(), cols.follow_ts.tolist()):
        first_follows.setdefault((s, d), t)
    for u, t, k, ts in zip(
        cols.eng_user.tolist(), cols.eng_tweet.tolist(), cols.eng_kind.tolist(), cols.eng_ts.tolist()
    ):
        first_engagements.setdefault((u, t, k), ts)
    for writers in (1, 2, 3):
        everything = _Recorder()
        rows = 0
        for tasks in _rounds(cols, 40, writers):
            assert len(tasks) >= 1
            touched = []
            for task in tasks:
                rec = _Recorder()
                for _, n, write in task:
                    write(rec)
                    write(everything)
                    rows += n
                touched.append(rec.nodes)
            for a, b in combinations(touched, 2):
                assert not (a & b)  # concurrent tasks never share a node
        assert everything.follows == first_follows and everything.engagements == first_engagements
        assert rows == len(np.unique(cols.users)) + len(cols.tweet_ids) + len(cols.follow_src) + len(
            cols.eng_user
        )
