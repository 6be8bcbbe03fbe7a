"""The local Neo4j server (graph/neo4j_local.py): it starts, answers Cypher, has vector
indexes, and stops; it requires its generated password (kept owner-only), which clients find
by themselves and `run` exports; its command line keeps one background server per data
directory; and graph.store.open_store honours NEO4J_URI. Uses NEO4J_URI when set. Never skips:
if Neo4j cannot be started, these tests fail."""

from __future__ import annotations

import json
import math
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import neo4j
import psutil
import pytest

from graph import neo4j_auth
from graph.errors import GraphRecError, InputError, StoreAuthError, StoreUnavailableError
from graph.neo4j_auth import ensure_local_password, password_file, read_local_password, resolve_auth
from graph.neo4j_local import MAIN_CLASS, LocalNeo4j, neo4j_uri_from_env, provision, stop_pid
from graph.neo4j_local import main as neo4j_local_main
from graph.neo4j_store import Neo4jStore


def _auth(uri: str) -> tuple[str, str] | None:
    credentials = resolve_auth(uri)  # what every client of the project uses
    return credentials.as_tuple() if credentials else None


def _driver(uri: str) -> neo4j.Driver:
    return neo4j.GraphDatabase.driver(uri, auth=_auth(uri))


def _refused(uri: str, auth) -> str:
    """The server's answer to these credentials: '' if it lets the client in."""
    try:
        with neo4j.GraphDatabase.driver(uri, auth=auth, connection_timeout=5) as driver:
            driver.verify_connectivity()
        return ""
    except neo4j.exceptions.AuthError as exc:
        return exc.message or str(exc)


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


def test_own_server_lifecycle_and_clear_start_failure(tmp_path, monkeypatch):
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
        # Authentication is on: no credentials and a wrong password are refused (on this server of
        # its own, so the failed attempt cannot lock the session server's user for the others).
        assert server.auth is not None and server.auth.as_tuple() == ("neo4j", read_local_password())
        assert _refused(server.uri, None)
        assert _refused(server.uri, ("neo4j", "not-the-password"))
        assert not _refused(server.uri, server.auth.as_tuple())
        assert server.auth.password not in " ".join(psutil.Process(server.pid).cmdline())
        with pytest.raises(
            StoreAuthError, match=r"refused user 'neo4j' with the password from the password argument"
        ):
            Neo4jStore.connect(server.uri, password="not-the-password")
        # A client that has no password at all is told where to put one, not given a driver traceback.
        with monkeypatch.context() as m:
            m.delitem(neo4j_auth._STARTED_HERE, server.uri)  # as if another process had started it
            m.setenv(neo4j_auth.PASSWORD_FILE_ENV, str(tmp_path / "no-password-file"))
            m.delenv("NEO4J_PASSWORD", raising=False)
            m.delenv("NEO4J_AUTH", raising=False)
            with pytest.raises(StoreAuthError, match=r"(?s)none was given.*NEO4J_PASSWORD.*no-password-file"):
                Neo4jStore.connect(server.uri)
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


def test_password_file_is_generated_once_and_owner_only(tmp_path, neo4j_uri):
    path = tmp_path / "conf" / "graphrec" / "neo4j-password"
    assert read_local_password(path) is None
    assert ensure_local_password(path) == path
    password = read_local_password(path)
    assert len(password) >= 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
    ensure_local_password(path)
    assert read_local_password(path) == password  # generated once
    path.chmod(0o644)
    assert read_local_password(path) == password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # a widened file is made owner-only again
    if not _external_server():  # the file the servers of this session use
        assert stat.S_IMODE(password_file().stat().st_mode) == 0o600


def test_clients_take_credentials_in_order(tmp_path, monkeypatch):
    """Arguments, then a server this process started, then NEO4J_PASSWORD, then NEO4J_AUTH, then
    (localhost only) the local password file."""
    monkeypatch.setenv(neo4j_auth.PASSWORD_FILE_ENV, str(tmp_path / "pw"))
    for name in ("NEO4J_USER", "NEO4J_PASSWORD", "NEO4J_AUTH"):
        monkeypatch.delenv(name, raising=False)
    local, remote, mine = "bolt://127.0.0.1:7687", "bolt://graph.example:7687", "bolt://127.0.0.1:1"
    assert resolve_auth(local) is None  # no file yet
    file_password = read_local_password(ensure_local_password())
    assert resolve_auth(local).as_tuple() == ("neo4j", file_password)
    assert resolve_auth("bolt://localhost:7687").as_tuple() == ("neo4j", file_password)
    assert resolve_auth(remote) is None  # the local password never goes to another machine
    monkeypatch.setenv("NEO4J_AUTH", "alice/from-auth")
    assert resolve_auth(local).as_tuple() == ("alice", "from-auth")
    monkeypatch.setenv("NEO4J_PASSWORD", "from-env")
    monkeypatch.setenv("NEO4J_USER", "bob")
    assert resolve_auth(remote).as_tuple() == ("bob", "from-env")
    assert resolve_auth(remote, user="carol", password="explicit").as_tuple() == ("carol", "explicit")
    monkeypatch.setitem(neo4j_auth._STARTED_HERE, mine, neo4j_auth.Credentials("neo4j", "mine", "test"))
    assert resolve_auth(mine).as_tuple() == ("neo4j", "mine")
    assert resolve_auth(mine, password="explicit").password == "explicit"
    monkeypatch.delenv("NEO4J_PASSWORD")
    monkeypatch.setenv("NEO4J_AUTH", "none")
    assert resolve_auth(local) is None
    monkeypatch.setenv("NEO4J_AUTH", "no-slash")
    with pytest.raises(InputError, match="NEO4J_AUTH"):
        resolve_auth(local)


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
        with neo4j.GraphDatabase.driver(uri, auth=_auth(uri), connection_timeout=5) as driver:
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


def test_cli_run_exports_the_password_to_its_command(tmp_path):
    """`run` starts a server with authentication and gives its command NEO4J_USER / NEO4J_PASSWORD
    (replacing ones meant for another server); the password file is generated owner-only."""
    if _external_server():
        assert provision().is_dir()
        return
    pw_file = tmp_path / "config" / "neo4j-password"
    child = textwrap.dedent(
        """
        import os, sys
        from graph.neo4j_store import Neo4jStore
        os.environ["GRAPHREC_NEO4J_PASSWORD_FILE"] = "/nonexistent"  # only the environment may help
        assert os.environ["NEO4J_USER"] == "neo4j", os.environ["NEO4J_USER"]
        assert os.environ["NEO4J_AUTH"] == "neo4j/" + os.environ["NEO4J_PASSWORD"]
        with Neo4jStore.connect(os.environ["NEO4J_URI"]) as store:
            print("PASSWORD", os.environ["NEO4J_PASSWORD"], store.cypher("RETURN 1 AS one")[0]["one"])
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NEO4J_URI", "GRAPHREC_NEO4J_LOCAL_URI")}
    env.update(
        GRAPHREC_NEO4J_PASSWORD_FILE=str(pw_file),
        NEO4J_PASSWORD="meant-for-another-server",
        PYTHONPATH=str(SCRIPT.parents[1]),
    )
    cmd = [sys.executable, str(SCRIPT), "--state-file", str(tmp_path / "state.json"), "run"]
    cmd += ["--heap", "256m", "--pagecache", "16m", "--", sys.executable, "-c", child]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"PASSWORD {pw_file.read_text().strip()} 1" in done.stdout
    assert stat.S_IMODE(pw_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(pw_file.parent.stat().st_mode) == 0o700


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
