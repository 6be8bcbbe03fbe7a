"""Neo4j-specific behaviour, against the real server."""

import os
import signal
import socket
import time

import numpy as np
import pytest

from graph.errors import GraphRecError, StoreUnavailableError
from graph.export import export_snapshot
from graph.ingest import GraphColumns, ingest
from graph.neo4j_store import Neo4jStore
from graph.store import open_store
from graph.synthetic import generate


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_gives_clear_error_fast():
    port = _free_port()  # nothing listens here
    t0 = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=rf"cannot reach Neo4j at bolt://127.0.0.1:{port}"):
        Neo4jStore.connect(f"bolt://127.0.0.1:{port}", connect_timeout=3)
    assert time.monotonic() - t0 < 10


def test_open_store_dispatches_on_uri(neo4j_uri, tmp_path):
    with open_store(neo4j_uri) as s:
        assert isinstance(s, Neo4jStore)
    with open_store(tmp_path / "local", create=True) as s:
        assert s.kind == "local"


def test_cypher_is_read_only_unless_asked(neo4j_store):
    assert neo4j_store.cypher("RETURN $x + 1 AS y", x=41) == [{"y": 42}]
    with pytest.raises(GraphRecError, match="(?i)access mode|read"):
        neo4j_store.cypher("CREATE (:User {id: 1})")
    assert neo4j_store.counts()["users"] == 0
    neo4j_store.cypher("CREATE (:User {id: $id})", write=True, id=1)
    assert neo4j_store.counts()["users"] == 1


def test_read_surface_refuses_admin_commands_and_stops_at_its_timeout(neo4j_store):
    for query in (
        "TERMINATE TRANSACTIONS 'neo4j-transaction-1'",
        "SHOW TRANSACTIONS",
        "USE system SHOW USERS",
    ):
        with pytest.raises(GraphRecError, match="administration"):
            neo4j_store.cypher(query)
    neo4j_store.query_timeout = 0.5
    t0 = time.monotonic()
    with pytest.raises(GraphRecError, match="query timeout"):
        neo4j_store.cypher("UNWIND range(1, 2000000000) AS x WITH x WHERE x < 0 RETURN count(x) AS n")
    assert time.monotonic() - t0 < 30


def test_cypher_cannot_read_files_or_fetch_urls(neo4j_store, neo4j_uri, tmp_path):
    """The local server's hardened settings: LOAD CSV reads no local file and fetches no URL,
    even one a local web server would answer."""
    import http.server
    import threading

    if os.environ.get("GRAPHREC_NEO4J_LOCAL_URI") != neo4j_uri:
        pytest.skip("settings of a server this project did not start are not ours to test")
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    with pytest.raises(GraphRecError):
        neo4j_store.cypher("LOAD CSV FROM $url AS row RETURN row", url=secret.as_uri())

    handler = type("CSV", (http.server.SimpleHTTPRequestHandler,), {"log_message": lambda *a: None})
    web = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: handler(*a, directory=str(tmp_path)))
    threading.Thread(target=web.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{web.server_address[1]}/secret.csv"
        with pytest.raises(GraphRecError, match="(?i)block"):
            neo4j_store.cypher("LOAD CSV FROM $url AS row RETURN row", url=url)
    finally:
        web.shutdown()


def test_exploration_queries(neo4j_store, tmp_path):
    p = tmp_path / "e.csv"
    p.write_text(
        "event,user,target,ts\n"
        "follow,1,2,1\nfollow,1,3,1\nfollow,2,4,1\nfollow,3,4,1\nfollow,3,5,1\nfollow,2,1,1\nfollow,4,6,1\n"
        "tweet,5,100,10\ntweet,6,101,10\n"
        "like,2,100,50\nlike,3,100,60\nretweet,3,101,5\nlike,4,101,70\nlike,1,101,80\n"
    )
    from graph.events import read_events

    ingest(neo4j_store, GraphColumns.from_events(read_events(p)), progress=False)
    fof = neo4j_store.query("followers_of_followers", user=1, limit=10)
    assert [(r["user"], r["via"]) for r in fof] == [(4, 2), (5, 1)]
    assert neo4j_store.query("mutual_follows", user=1, limit=10) == [{"user": 2}]
    recent = neo4j_store.query("followees_recent_engagements", user=1, since=40, limit=10)
    assert [(r["tweet"], r["followees"]) for r in recent] == [(100, 2)]  # 101 already liked by 1
    paths = neo4j_store.query("paths_between", a=1, b=6, max_hops=4, limit=10)
    assert sorted(r["path"] for r in paths) == [[1, 2, 4, 6], [1, 3, 4, 6]]
    top = neo4j_store.query("top_engaged_tweets", since=0, until=1000, limit=1)
    assert top[0]["tweet"] == 101 and top[0]["engagements"] == 3
    with pytest.raises(GraphRecError, match="unknown query"):
        neo4j_store.query("nope")


def test_ingest_interrupted_by_a_crash_then_rerun(tmp_path):
    """Kill Neo4j in the middle of an ingest; a re-run gives the uninterrupted graph."""
    from graph.neo4j_local import LocalNeo4j

    g = generate(400, avg_follows=10, avg_engagements=10, seed=3, with_text=False)
    cols = GraphColumns.from_synthetic(g)
    expected = g.snapshot()
    data = tmp_path / "neo4j-crash"
    server = LocalNeo4j().start(data_dir=data)
    try:
        store = Neo4jStore.connect(server.uri, retry_time=2)
        written = []
        original = store.write_follows

        def crash_after_two_batches(batch):
            if len(written) == 2:
                os.kill(server.pid, signal.SIGKILL)
                server.wait_exit(timeout=30)
            original(batch)
            written.append(len(batch.src))

        store.write_follows = crash_after_two_batches
        with pytest.raises(StoreUnavailableError, match="re-running the same ingest is safe"):
            ingest(store, cols, batch_size=500, progress=False)
        store.close()
    finally:
        server.stop()
    assert len(written) == 2
    server = LocalNeo4j().start(data_dir=data)
    try:
        with Neo4jStore.connect(server.uri) as store:
            partial = store.counts()
            assert 0 < partial["follows"] < expected.n_follows
            ingest(store, cols, batch_size=700, progress=False)
            assert export_snapshot(store, progress=False).equals(expected)
    finally:
        server.stop()
    assert np.all(expected.follow_out_indptr >= 0)
