"""The local Neo4j server (graph/neo4j_local.py): it starts, answers Cypher, has vector
indexes, and stops; its command line keeps one background server per data directory; and
graph.store.open_store honours NEO4J_URI. Uses NEO4J_URI when set. Never skips: if Neo4j
cannot be started, these tests fail."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import neo4j
import psutil
import pytest

from graph.errors import GraphRecError, InputError, StoreUnavailableError
from graph.neo4j_local import MAIN_CLASS, LocalNeo4j, neo4j_uri_from_env, provision, stop_pid
from graph.neo4j_local import main as neo4j_local_main


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


# -- the command line: background servers are keyed by data directory ------------------------

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "neo4j_local.py"


def _external_server() -> bool:
    """NEO4J_URI names a server this checkout did not start (e.g. docker compose): the machine
    may have no JDK, so tests of our own launcher only prove provisioning there."""
    uri = neo4j_uri_from_env()
    return bool(uri) and os.environ.get("GRAPHREC_NEO4J_LOCAL_URI") != uri


def _cli(state: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SCRIPT), "--state-file", str(state), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


def _launchers_for(home: Path) -> list[psutil.Process]:
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if MAIN_CLASS in cmd and "--home" in cmd and Path(cmd[cmd.index("--home") + 1]) == home.resolve():
            found.append(p)
    return found


def _answers(uri: str) -> bool:
    try:
        with neo4j.GraphDatabase.driver(uri, auth=None, connection_timeout=5) as driver:
            driver.verify_connectivity()
        return True
    except Exception:  # noqa: BLE001
        return False


def test_cli_start_is_keyed_by_data_dir(tmp_path):
    """`start --data-dir B` while A's server runs starts a second server for B (another port);
    `start` for A again prints A's URI without starting anything; `stop` names the server."""
    if _external_server():
        assert provision().is_dir()
        return
    state = tmp_path / "state.json"
    a, b = tmp_path / "a", tmp_path / "b"
    small = ("--heap", "256m", "--pagecache", "16m")
    try:
        first = _cli(state, "start", "--data-dir", str(a), *small)
        assert first.returncode == 0, first.stderr
        uri_a = first.stdout.strip()
        second = _cli(state, "start", "--data-dir", str(b), *small)
        assert second.returncode == 0, second.stderr
        uri_b = second.stdout.strip()
        assert uri_a.startswith("bolt://127.0.0.1:") and uri_b.startswith("bolt://127.0.0.1:")
        assert uri_b != uri_a, f"start --data-dir {b} printed the server of {a}"
        assert len(_launchers_for(a)) == 1 and len(_launchers_for(b)) == 1
        assert f"NEO4J_READY {uri_b}" in (b / "logs" / "launcher.log").read_text()
        assert _answers(uri_a) and _answers(uri_b)

        again = _cli(state, "start", "--data-dir", str(a), *small)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == uri_a
        assert "already running" in again.stderr
        assert len(_launchers_for(a)) == 1

        status = _cli(state, "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert uri_a in status.stdout and uri_b in status.stdout

        # Which one? `stop` without --data-dir refuses and names both.
        ambiguous = _cli(state, "stop")
        assert ambiguous.returncode == 2
        assert str(a.resolve()) in ambiguous.stderr and str(b.resolve()) in ambiguous.stderr
        assert _answers(uri_a) and _answers(uri_b)

        stopped = _cli(state, "stop", "--data-dir", str(a))
        assert stopped.returncode == 0, stopped.stderr
        assert not _launchers_for(a) and _answers(uri_b)
        assert _cli(state, "status", "--data-dir", str(a)).returncode == 3
        status_b = _cli(state, "status", "--data-dir", str(b))
        assert status_b.returncode == 0 and uri_b in status_b.stdout

        assert _cli(state, "stop").returncode == 0  # one left: plain `stop` stops it
        assert not _launchers_for(b)
        assert _cli(state, "status").returncode == 3
    finally:
        for home in (a, b):
            for p in _launchers_for(home):
                stop_pid(p.pid, timeout=30)


def test_cli_forgets_servers_that_are_gone(tmp_path, capsys):
    """A recorded server whose process is gone (here in the one-server state format of older
    versions, with a pid that is no launcher) is dropped: status says stopped, stop succeeds."""
    state = tmp_path / "state.json"
    old = {"pid": os.getpid(), "uri": "bolt://127.0.0.1:9", "data_dir": str(tmp_path), "log": "-"}
    state.write_text(json.dumps(old))
    assert neo4j_local_main(["--state-file", str(state), "status"]) == 3
    assert capsys.readouterr().out.strip() == "stopped"
    assert not state.exists()
    assert neo4j_local_main(["--state-file", str(state), "stop"]) == 0
    assert neo4j_local_main(["--state-file", str(state), "stop", "--all"]) == 0
    assert neo4j_local_main(["--state-file", str(state), "status", "--data-dir", str(tmp_path)]) == 3


# -- NEO4J_URI and graph.store.open_store -----------------------------------------------------


def test_open_store_uses_neo4j_uri_for_neo4j_or_no_target(neo4j_uri, tmp_path, monkeypatch):
    from graph.local_store import LocalStore
    from graph.neo4j_store import Neo4jStore
    from graph.store import open_store

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEO4J_URI", neo4j_uri)
    for target in ("neo4j", None):
        with open_store(target) as store:
            assert isinstance(store, Neo4jStore) and store.uri == neo4j_uri
            assert store.counts().keys() >= {"users", "follows"}

    # An explicit URI always wins over NEO4J_URI; a path is always a local store.
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:9")  # nothing listens there
    with open_store(neo4j_uri) as store:
        assert isinstance(store, Neo4jStore) and store.uri == neo4j_uri
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9"):
        open_store("neo4j", connect_timeout=1.0, retry_time=0.0)
    with open_store(tmp_path / "local", create=True) as store:
        assert isinstance(store, LocalStore)
    with open_store("./neo4j", create=True) as store:  # a directory that happens to be called neo4j
        assert isinstance(store, LocalStore)
    assert (tmp_path / "neo4j").is_dir()

    # Without NEO4J_URI: "neo4j" is an error that says what to set; no target is the local default.
    monkeypatch.delenv("NEO4J_URI")
    with pytest.raises(InputError, match="NEO4J_URI"):
        open_store("neo4j")
    monkeypatch.setenv("NEO4J_URI", "localhost:7687")
    with pytest.raises(InputError, match="bolt://"):
        open_store("neo4j")
    monkeypatch.delenv("NEO4J_URI")
    with pytest.raises(GraphRecError, match="no local store here"):  # reading: never a new empty store
        open_store(None)
    assert not (tmp_path / ".graphrec").exists()
    with open_store(None, create=True) as store:
        assert isinstance(store, LocalStore)
    assert (tmp_path / ".graphrec" / "store").is_dir()
