"""Shared fixtures. Neo4j tests use the real server: NEO4J_URI when set, else a
local Neo4j Community started from Maven artifacts for the whole session. They
never skip: if no server can be started, they fail."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

DATA_DIR = Path(
    os.environ.get("GRAPHREC_DATA_DIR", Path(__file__).resolve().parents[2] / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not (DATA_DIR / "gowalla" / "train.txt").is_file():
        pytest.fail(f"datasets not found under {DATA_DIR}; set GRAPHREC_DATA_DIR")
    return DATA_DIR


@pytest.fixture(scope="session")
def neo4j_server(tmp_path_factory):
    """A running Neo4j server for the session: (uri, server-or-None)."""
    from graph.neo4j_local import LocalNeo4j, neo4j_uri_from_env

    uri = neo4j_uri_from_env()
    if uri:
        yield uri, None
        return
    server = LocalNeo4j().start(data_dir=tmp_path_factory.mktemp("neo4j-data"))
    try:
        yield server.uri, server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def neo4j_uri(neo4j_server) -> str:
    return neo4j_server[0]


@pytest.fixture
def neo4j_store(neo4j_uri):
    """An empty Neo4jStore (the database is cleared before each test)."""
    from graph.neo4j_store import Neo4jStore

    store = Neo4jStore.connect(neo4j_uri)
    store.clear()
    store.ensure_schema()
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def local_store(tmp_path):
    from graph.local_store import LocalStore

    store = LocalStore(tmp_path / "store")
    try:
        yield store
    finally:
        store.close()


@pytest.fixture
def neo4j_cypher_store(neo4j_store):
    """The same server through the Cypher path (what a server without graphrec's plugin gets)."""
    neo4j_store.procedures = "cypher"
    return neo4j_store


@pytest.fixture(params=["local", "neo4j", "neo4j_cypher"])
def store(request):
    """Each contract test runs once per store implementation."""
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture(scope="session")
def kafka_bootstrap():
    """A Kafka broker for the session: KAFKA_BOOTSTRAP when set, else a local Kafka 4 (KRaft)
    started from Maven artifacts. Never skipped: if no broker can be started, the tests fail."""
    from graph.kafka_local import LocalKafka, kafka_bootstrap_from_env

    bootstrap = kafka_bootstrap_from_env()
    if bootstrap:
        yield bootstrap
        return
    broker = LocalKafka().start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()
