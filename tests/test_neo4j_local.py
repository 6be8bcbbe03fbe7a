"""The local Neo4j server (graph/neo4j_local.py): it starts, answers Cypher, has vector
indexes, and stops. Uses NEO4J_URI when set. Never skips: if Neo4j cannot be started,
these tests fail."""

from __future__ import annotations

import math
import os
import signal
import time

import neo4j
import pytest

from graph.errors import InputError, StoreUnavailableError
from graph.neo4j_local import LocalNeo4j, neo4j_uri_from_env, provision


def _driver(uri: str) -> neo4j.Driver:
    password = os.environ.get("NEO4J_PASSWORD")
    auth = (os.environ.get("NEO4J_USER", "neo4j"), password) if password else None
    return neo4j.GraphDatabase.driver(uri, auth=auth)


def test_neo4j_uri_from_env(monkeypatch):
    monkeypatch.setenv("NEO4J_URI", "bolt://example:7687")
    assert neo4j_uri_from_env() == "bolt://example:7687"
    monkeypatch.delenv("NEO4J_URI")
    assert neo4j_uri_from_env() is None


def test_return_one_and_vector_index(neo4j_uri):
    vectors = {i: [math.cos(i * 0.3 + k) for k in range(8)] for i in range(1, 21)}
    with _driver(neo4j_uri) as driver:
        driver.verify_connectivity()
        assert driver.execute_query("RETURN 1 AS one").records[0]["one"] == 1

        driver.execute_query("MATCH (n:VecProbe) DETACH DELETE n")
        driver.execute_query("DROP INDEX vec_probe IF EXISTS")
        driver.execute_query(
            "CREATE VECTOR INDEX vec_probe IF NOT EXISTS FOR (n:VecProbe) ON n.embedding "
            "OPTIONS {indexConfig: {`vector.dimensions`: 8, `vector.similarity_function`: 'cosine'}}"
        )
        driver.execute_query("CALL db.awaitIndex('vec_probe', 120)")
        driver.execute_query(
            "UNWIND $rows AS row CREATE (:VecProbe {id: row.id, embedding: row.v})",
            rows=[{"id": i, "v": v} for i, v in vectors.items()],
        )
        # Index updates become visible asynchronously; the exact neighbour is itself.
        query = (
            "CALL db.index.vector.queryNodes('vec_probe', 3, $q) YIELD node, score "
            "RETURN node.id AS id, score ORDER BY score DESC"
        )
        records = []
        for _ in range(50):
            records = driver.execute_query(query, q=vectors[7]).records
            if len(records) == 3:
                break
            time.sleep(0.1)
        assert [r["id"] for r in records][0] == 7
        assert records[0]["score"] == pytest.approx(1.0, abs=1e-4)
        assert len(records) == 3 and all(r["score"] <= records[0]["score"] for r in records)
        index = driver.execute_query("SHOW VECTOR INDEXES YIELD name, state WHERE name = 'vec_probe'").records
        assert index[0]["state"] == "ONLINE"
        driver.execute_query("DROP INDEX vec_probe")
        driver.execute_query("MATCH (n:VecProbe) DETACH DELETE n")


def test_own_server_lifecycle_and_clear_start_failure(tmp_path):
    """A server on its own store starts and answers; a second one on the same (locked) store
    fails with the log tail in the error; stopping is clean and leaves no process behind."""
    with pytest.raises(InputError, match="heap"):
        LocalNeo4j().start(heap="lots")
    if neo4j_uri_from_env():
        # The shared fixture already proved the external server; still prove provisioning works.
        assert provision().is_dir()
        return
    config = {"db.transaction.timeout": "42s"}
    with LocalNeo4j().start(data_dir=tmp_path / "n4j", heap="512m", pagecache="32m", config=config) as server:
        assert server.uri.startswith("bolt://127.0.0.1:")
        with _driver(server.uri) as driver:
            driver.execute_query("CREATE (:Probe {x: 1})")
            setting = "SHOW SETTINGS YIELD name, value WHERE name = 'db.transaction.timeout' RETURN value"
            assert driver.execute_query(setting).records[0]["value"] == "42s"
        second = LocalNeo4j()
        with pytest.raises(StoreUnavailableError, match=r"(?s)exited with code .*launcher\.log"):
            second.start(data_dir=server.data_dir, heap="256m", pagecache="16m", timeout=120)
        assert not second.is_running()
        assert server.is_running()
        with _driver(server.uri) as driver:
            assert driver.execute_query("MATCH (p:Probe) RETURN count(p) AS n").records[0]["n"] == 1
        pid = server.pid
    assert not server.is_running()
    assert server.wait_exit(timeout=1) in (0, 128 + signal.SIGTERM, -signal.SIGTERM)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert "NEO4J_STOPPED" in server.log_path.read_text()  # the shutdown hook ran to the end
