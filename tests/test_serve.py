"""`graphrec serve` for real: a subprocess on a free loopback port, called over HTTP.

Two servers per module: one with two pre-fork workers and an admin token (answers, errors,
metrics, reload across workers), one with a single worker, no token and a 1 ms deadline.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from graph.synthetic import generate
from graphrec.serve.app import create_app
from graphrec.serve.model import LoadedModel
from graphrec.serve.runtime import DeadlineExceededError, WorkerRuntime, run_with_deadline
from graphrec.serve.settings import ModelPaths, ServeSettings
from retrieval.filters import FilterOptions
from retrieval.recommender import MAX_K, Recommender

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "s3cret-token"
UNKNOWN = 10**12


@dataclass
class Artifacts:
    root: Path
    snapshot: Path
    model: Path
    refs: dict  # snapshot id -> the in-process Recommender loaded from the same files
    first_id: str
    next_snap: object  # the snapshot a reload switches to
    next_rec: Recommender


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory) -> Artifacts:
    root = tmp_path_factory.mktemp("serve")
    snap = generate(300, avg_follows=8, avg_engagements=10, seed=11).snapshot()
    snap.save(root / "snap")
    Recommender(snap).save(root / "model")
    ref = Recommender.load(root / "model", root / "snap")
    for uid in snap.user_ids[:3].tolist():  # compiles (and caches) the serving kernels before the servers run
        ref.who_to_follow(uid, 10)
        ref.tweet_candidates(uid, 10, per_author_cap=1)
    next_snap = generate(250, avg_follows=8, avg_engagements=10, seed=12).snapshot()
    next_rec = Recommender(next_snap)
    (root / "token").write_text(TOKEN + "\n")
    return Artifacts(
        root,
        root / "snap",
        root / "model",
        {snap.snapshot_id: ref, next_snap.snapshot_id: next_rec},
        snap.snapshot_id,
        next_snap,
        next_rec,
    )


class Server:
    def __init__(self, args: list[str], log_dir: Path, env: dict | None = None):
        self.out, self.err = log_dir / "stdout.txt", log_dir / "stderr.txt"
        full_env = {k: v for k, v in os.environ.items() if k != "GRAPHREC_ADMIN_TOKEN"}
        full_env.update({"PYTHONPATH": str(ROOT), **(env or {})})
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "graphrec", "serve", "--port", "0", *args],
                stdout=out,
                stderr=err,
                cwd=ROOT,
                env=full_env,
            )
        deadline = time.monotonic() + 180
        while True:
            found = re.search(r"http://127\.0\.0\.1:(\d+)", self.out.read_text())
            if found:
                break
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"graphrec serve did not start:\n{self.err.read_text()}")
            time.sleep(0.1)
        self.base = f"http://127.0.0.1:{found.group(1)}"
        while call(self, "GET", "/readyz")[0] != 200:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                pytest.fail(f"graphrec serve never got ready:\n{self.err.read_text()}")
            time.sleep(0.1)

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def call(server, method: str, path: str, body=None, headers: dict | None = None):
    """(status, parsed JSON or text, raw text) of one request on a new connection."""
    data = body if isinstance(body, bytes) else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(
        server.base + path,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", **(headers or {})},
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            status, raw = resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read().decode()
    except (urllib.error.URLError, ConnectionError):
        return 0, None, ""
    try:
        return status, json.loads(raw), raw
    except json.JSONDecodeError:
        return status, raw, raw


@pytest.fixture(scope="module")
def server(artifacts, tmp_path_factory):
    s = Server(
        [
            "--snapshot",
            str(artifacts.snapshot),
            "--model",
            str(artifacts.model),
            "--workers",
            "2",
            "--max-batch",
            "8",
            "--admin-token-file",
            str(artifacts.root / "token"),
        ],
        tmp_path_factory.mktemp("server-a"),
    )
    yield s
    assert s.stop() == 0, s.err.read_text()  # SIGTERM: a clean shutdown


@pytest.fixture(scope="module")
def tight_server(artifacts, tmp_path_factory):
    s = Server(
        ["--snapshot", str(artifacts.snapshot), "--model", str(artifacts.model), "--deadline-ms", "1"],
        tmp_path_factory.mktemp("server-b"),
    )
    yield s
    assert s.stop() == 0, s.err.read_text()


def _served(server, task: str, uid: int, query: str = ""):
    path = "who-to-follow" if task == "follows" else "tweet-candidates"
    status, body, raw = call(server, "GET", f"/v1/users/{uid}/{path}?{query}")
    assert status == 200, raw
    return body


def _ids(recs) -> list[int]:
    return [r.id for r in recs]


def test_both_endpoints_answer_what_the_python_api_answers(server, artifacts):
    ref = artifacts.refs[artifacts.first_id]
    users = ref.snap.user_ids[::37].tolist()
    for uid in users:
        body = _served(server, "follows", uid, "k=10")
        assert body["snapshot_id"] == artifacts.first_id and body["user_id"] == uid
        expected = ref.who_to_follow(uid, 10)
        assert [i["id"] for i in body["items"]] == _ids(expected)
        assert [i["score"] for i in body["items"]] == pytest.approx([r.score for r in expected], rel=1e-6)
        assert [i["reason"] for i in body["items"]] == [r.reason for r in expected]
        body = _served(server, "tweets", uid, "k=15&explain=false")
        assert [i["id"] for i in body["items"]] == _ids(ref.tweet_candidates(uid, 15))
        assert set(body["items"][0]) == {"id", "score"}
    # filters and diversity, as the Python API applies them
    uid = users[1]
    first = _ids(ref.tweet_candidates(uid, 10))
    query = f"k=10&exclude={first[0]}&exclude={first[2]}&exclude={UNKNOWN}&per_author_cap=1&max_age_days=20"
    opts = FilterOptions(exclude=[first[0], first[2], UNKNOWN], max_age_seconds=20 * 86_400)
    assert [i["id"] for i in _served(server, "tweets", uid, query)["items"]] == _ids(
        ref.tweet_candidates(uid, 10, filters=opts, per_author_cap=1)
    )
    follow = _ids(ref.who_to_follow(uid, 10))
    query = f"k=10&exclude={follow[0]}&blocked={follow[1]}&muted={follow[2]}"
    opts = FilterOptions(exclude=[follow[0]], blocked=[follow[1]], muted=[follow[2]])
    assert [i["id"] for i in _served(server, "follows", uid, query)["items"]] == _ids(
        ref.who_to_follow(uid, 10, filters=opts)
    )


def test_batch_endpoints(server, artifacts):
    ref = artifacts.refs[artifacts.first_id]
    users = ref.snap.user_ids[:3].tolist()
    status, body, raw = call(
        server, "POST", "/v1/who-to-follow", {"user_ids": [*users, UNKNOWN], "k": 5, "strict": True}
    )
    assert status == 200, raw
    assert [r["user_id"] for r in body["results"]] == [*users, UNKNOWN]
    for uid, result in zip(users, body["results"]):
        assert [i["id"] for i in result["items"]] == _ids(ref.who_to_follow(uid, 5))
    assert body["results"][-1]["error"]["code"] == "unknown_user"
    status, body, raw = call(
        server, "POST", "/v1/tweet-candidates", {"user_ids": users, "per_author_cap": 1, "explain": False}
    )
    assert status == 200, raw
    for uid, result in zip(users, body["results"]):
        assert [i["id"] for i in result["items"]] == _ids(ref.tweet_candidates(uid, 50, per_author_cap=1))


def test_unknown_user_gets_the_cold_start_list_or_404_when_strict(server, artifacts):
    ref = artifacts.refs[artifacts.first_id]
    body = _served(server, "follows", UNKNOWN, "k=7")
    assert [i["id"] for i in body["items"]] == _ids(ref.who_to_follow(UNKNOWN, 7))
    assert len(body["items"]) == 7 and "new here" in body["items"][0]["reason"]
    status, body, raw = call(server, "GET", f"/v1/users/{UNKNOWN}/tweet-candidates?strict=true")
    assert (
        status == 404 and body["error"]["code"] == "unknown_user" and body["error"]["parameter"] == "user_id"
    )


_U = "/v1/users/1"
BAD_REQUESTS = [
    ("GET", "/v1/users/abc/who-to-follow", None, 400, "user_id"),
    ("GET", "/v1/users/99999999999999999999999/who-to-follow", None, 400, "user_id"),
    ("GET", f"{_U}/who-to-follow?k=0", None, 400, "k"),
    ("GET", f"{_U}/who-to-follow?k={MAX_K + 1}", None, 400, "k"),
    ("GET", f"{_U}/tweet-candidates?k=ten", None, 400, "k"),
    ("GET", f"{_U}/who-to-follow?explain=maybe", None, 400, "explain"),
    ("GET", f"{_U}/who-to-follow?exclude=x", None, 400, "exclude"),
    ("GET", f"{_U}/who-to-follow?per_author_cap=2", None, 400, "per_author_cap"),  # tweets only
    ("GET", f"{_U}/tweet-candidates?kk=3", None, 400, "kk"),
    ("GET", f"{_U}/tweet-candidates?max_age_days=-1", None, 400, "max_age_days"),
    ("GET", f"{_U}/tweet-candidates?per_author_cap=0", None, 400, "per_author_cap"),
    ("GET", f"{_U}/tweet-candidates?mmr_lambda=2", None, 400, "mmr_lambda"),
    ("GET", f"{_U}/tweet-candidates?mmr_lambda=0.5", None, 400, "mmr_lambda"),  # no tweet embeddings
    ("POST", "/v1/who-to-follow", b'{"user_ids": [1,', 400, "body"),
    ("POST", "/v1/who-to-follow", b"", 400, "body"),
    ("POST", "/v1/who-to-follow", [1, 2], 400, "body"),
    ("POST", "/v1/who-to-follow", {"user_ids": []}, 400, "user_ids"),
    ("POST", "/v1/who-to-follow", {"user_ids": ["x"]}, 400, "user_ids"),
    ("POST", "/v1/who-to-follow", {"user_ids": [1], "k": 0}, 400, "k"),
    ("POST", "/v1/who-to-follow", {"user_ids": [1], "mmr_lambda": 0.5}, 400, "mmr_lambda"),  # tweets only
    ("POST", "/v1/tweet-candidates", {"user_ids": [1], "per_author_cap": -1}, 400, "per_author_cap"),
    ("POST", "/v1/tweet-candidates", {"user_ids": list(range(9))}, 413, "user_ids"),  # --max-batch 8
    ("POST", "/v1/tweet-candidates", {"user_ids": [1], "exclude": [1] * 10_001}, 400, "exclude"),
    (
        "POST",
        "/v1/who-to-follow",
        {"user_ids": [1], "exclude": list(range(10**12, 10**12 + 200_000))},
        413,
        "body",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "parameter"), BAD_REQUESTS)
def test_bad_requests_get_a_4xx_json_error_naming_the_parameter(
    server, method, path, body, status, parameter
):
    got, payload, raw = call(server, method, path, body)
    assert got == status, raw
    assert isinstance(payload, dict) and payload["error"]["parameter"] == parameter, raw
    assert payload["error"]["code"] and payload["error"]["message"]
    assert "Traceback" not in raw and 'File "' not in raw


def test_unknown_routes_and_methods_answer_json(server):
    status, body, _ = call(server, "GET", "/v2/nothing")
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body, _ = call(server, "DELETE", "/v1/who-to-follow")
    assert status == 405 and body["error"]["code"] == "method_not_allowed"


def test_health_readiness_metrics_and_docs(server, artifacts):
    assert call(server, "GET", "/healthz")[:2] == (200, {"status": "ok"})
    status, body, _ = call(server, "GET", "/readyz")
    assert status == 200 and body["snapshot_id"] in artifacts.refs
    for _ in range(4):
        _served(server, "follows", 1, "k=3")
    status, text, _ = call(server, "GET", "/metrics")
    assert status == 200
    for name in (
        "graphrec_http_requests_total",
        "graphrec_http_request_duration_seconds_bucket",
        "graphrec_http_request_duration_seconds_sum",
        "graphrec_snapshot_info",
        "graphrec_snapshot_age_seconds",
        "graphrec_model_generation",
        "graphrec_reloads_total",
    ):
        assert f"\n{name}" in text, name
    assert "graphrec_workers 2\n" in text
    follows = re.search(
        r'graphrec_http_requests_total\{endpoint="/v1/users/\{user_id\}/who-to-follow",status="200"\} (\d+)',
        text,
    )
    assert follows and int(follows.group(1)) >= 4  # summed over both workers
    assert re.search(r'graphrec_snapshot_info\{snapshot_id="[0-9a-f]+"\} 2', text)
    status, spec, _ = call(server, "GET", "/openapi.json")
    assert (
        status == 200
        and "/v1/users/{user_id}/who-to-follow" in spec["paths"]
        and "/v1/tweet-candidates" in spec["paths"]
    )
    assert call(server, "GET", "/docs")[0] == 200


def test_admin_reload_needs_the_token(server):
    status, body, _ = call(server, "POST", "/admin/reload")
    assert status == 401 and body["error"]["parameter"] == "Authorization"
    status, body, _ = call(server, "POST", "/admin/reload", headers={"Authorization": "Bearer wrong"})
    assert status == 403


def test_admin_endpoints_are_off_without_a_token(tight_server):
    status, body, _ = call(
        tight_server, "POST", "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert status == 404 and body["error"]["code"] == "not_found"


def test_a_request_past_its_deadline_gets_a_504_json_error(tight_server, artifacts):
    users = artifacts.refs[artifacts.first_id].snap.user_ids[:100].tolist()
    status, body, raw = call(tight_server, "POST", "/v1/tweet-candidates", {"user_ids": users, "k": MAX_K})
    assert status == 504 and body["error"]["code"] == "deadline_exceeded", raw
    assert call(tight_server, "GET", "/healthz")[0] == 200  # the event loop was never blocked


def test_run_with_deadline():
    async def main():
        with ThreadPoolExecutor(1) as pool:
            assert await run_with_deadline(pool, lambda: 42, 5.0) == 42
            with pytest.raises(DeadlineExceededError):
                await run_with_deadline(pool, lambda: time.sleep(0.3), 0.05)

    asyncio.run(main())


def _asgi_get(app, path: str):
    """(status, JSON body) of a GET through the ASGI app in this process."""

    async def run():
        sent = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": b"",
            "headers": [],
            "server": ("test", 80),
            "client": ("test", 1),
        }

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
        return sent[0]["status"], json.loads(body)

    return asyncio.run(run())


def test_readyz_is_503_until_a_recommender_is_loaded(artifacts):
    runtime = WorkerRuntime(ServeSettings(ModelPaths(artifacts.snapshot)), None)
    app = create_app(runtime)
    status, body = _asgi_get(app, "/readyz")
    assert status == 503 and body["error"]["code"] == "not_ready"
    status, body = _asgi_get(app, "/v1/users/1/who-to-follow")
    assert status == 503 and body["error"]["code"] == "not_ready"
    assert _asgi_get(app, "/healthz")[0] == 200
    runtime._swap(LoadedModel.of(artifacts.refs[artifacts.first_id], generation=0))
    status, body = _asgi_get(app, "/readyz")
    assert status == 200 and body["snapshot_id"] == artifacts.first_id


def test_a_dead_worker_is_replaced(server):
    import psutil

    workers = psutil.Process(server.proc.pid).children()
    assert len(workers) == 2
    workers[0].kill()
    deadline = time.monotonic() + 30
    while True:
        now = psutil.Process(server.proc.pid).children()
        text = call(server, "GET", "/metrics")[1]
        if len(now) == 2 and workers[0].pid not in {p.pid for p in now} and "graphrec_workers 2\n" in text:
            break
        assert time.monotonic() < deadline, "the dead worker was not replaced"
        time.sleep(0.2)
    assert call(server, "GET", "/readyz")[0] == 200


def test_reload_reaches_every_worker_and_drops_no_request(server, artifacts):
    """Runs last: it replaces the snapshot and model on disk with another graph."""
    import http.client

    import psutil

    failures, done, closed_by_server, stop = [], [0], [0], threading.Event()
    old_workers = {p.pid for p in psutil.Process(server.proc.pid).children()}

    def load():  # a new connection per request
        while not stop.is_set():
            for path in ("who-to-follow?k=5", "tweet-candidates?k=5"):
                status, _, raw = call(server, "GET", f"/v1/users/{done[0] % 200}/{path}")
                if status != 200:
                    failures.append((status, raw))
                done[0] += 1

    def keep_alive_load():  # one persistent connection, reopened only when the server says close
        conn = http.client.HTTPConnection(server.base.removeprefix("http://"), timeout=60)
        while not stop.is_set():
            try:
                conn.request("GET", f"/v1/users/{done[0] % 200}/who-to-follow?k=5")
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    failures.append((resp.status, "keep-alive"))
                if resp.will_close:
                    closed_by_server[0] += 1
                    conn.close()
            except (OSError, http.client.HTTPException) as exc:  # a closed keep-alive connection
                failures.append((0, repr(exc)))
                conn.close()
            done[0] += 1
        conn.close()

    threads = [threading.Thread(target=load) for _ in range(2)] + [threading.Thread(target=keep_alive_load)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        artifacts.next_snap.save(artifacts.snapshot)
        artifacts.next_rec.save(artifacts.model)
        before = done[0]
        status, body, raw = call(
            server, "POST", "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"}
        )
        assert status == 200, raw
        new_id = artifacts.next_snap.snapshot_id
        assert body["snapshot_id"] == new_id and body["generation"] == 1 and body["workers_behind"] == 0
        assert f'graphrec_snapshot_info{{snapshot_id="{new_id}"}} 2' in call(server, "GET", "/metrics")[1]
        time.sleep(0.3)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert done[0] - before > 10
    assert not failures, failures[:3]
    assert closed_by_server[0] >= 1  # the drained worker told its keep-alive client to reconnect
    deadline = time.monotonic() + 30
    while old_workers & {p.pid for p in psutil.Process(server.proc.pid).children()}:
        assert time.monotonic() < deadline, "the replaced workers did not drain and exit"
        time.sleep(0.1)
    metrics = call(server, "GET", "/metrics")[1]
    assert 'graphrec_reloads_total{result="ok"} 1' in metrics and "graphrec_model_generation 1" in metrics
    ref = artifacts.next_rec
    for uid in ref.snap.user_ids[:6].tolist():  # new connections: both workers answer
        body = _served(server, "follows", uid, "k=8")
        assert body["snapshot_id"] == new_id
        assert [i["id"] for i in body["items"]] == _ids(ref.who_to_follow(uid, 8))


def test_without_a_model_it_fits_at_start_and_refits_on_reload(artifacts, tmp_path):
    """No --model: the supervisor fits (at start and on reload) and forks new workers from its fit;
    the admin token comes from $GRAPHREC_ADMIN_TOKEN."""
    snap_dir = tmp_path / "snap"
    generate(200, avg_follows=8, avg_engagements=10, seed=21).snapshot().save(snap_dir)
    s = Server(["--snapshot", str(snap_dir), "--workers", "2"], tmp_path, env={"GRAPHREC_ADMIN_TOKEN": TOKEN})
    try:
        status, body, _ = call(s, "GET", "/readyz")
        old_id = body["snapshot_id"]
        artifacts.next_snap.save(snap_dir)
        status, body, raw = call(s, "POST", "/admin/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert status == 200 and body["snapshot_id"] == artifacts.next_snap.snapshot_id != old_id, raw
        assert body["workers_behind"] == 0  # answered once both new workers serve
        uid = artifacts.next_snap.user_ids[3].item()
        for _ in range(4):
            served = _served(s, "tweets", uid, "k=10")
            assert served["snapshot_id"] == body["snapshot_id"]
            assert [i["id"] for i in served["items"]] == _ids(artifacts.next_rec.tweet_candidates(uid, 10))
    finally:
        assert s.stop() == 0, s.err.read_text()
