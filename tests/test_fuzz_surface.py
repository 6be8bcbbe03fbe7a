"""Property-based fuzzing of the two argument surfaces a user types into: the HTTP API (through
the ASGI app in this process, the same app `graphrec serve` runs) and the `graphrec` command line.

Whatever arrives, the HTTP app answers with a known status and a JSON body (an ``error`` object
naming what was wrong for every 4xx), never a 500 or a stack trace; the command line either
works, or exits 2 with ``graphrec CMD: error: ...`` / argparse's usage error, never with an
uncaught exception. The example budgets are named so the reliability table can cite them.
"""

from __future__ import annotations

import asyncio
import json
import string
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from graph.synthetic import generate
from graphrec.serve.app import create_app
from graphrec.serve.model import LoadedModel
from graphrec.serve.runtime import WorkerRuntime
from graphrec.serve.settings import ModelPaths, ServeSettings
from retrieval.recommender import Recommender

#: Hypothesis examples per run of each fuzz test (CI runs them all on every push).
HTTP_EXAMPLES = 300
CLI_EXAMPLES = 60
#: Statuses the HTTP app may answer with; anything else (500 above all) is a bug.
EXPECTED_STATUSES = {200, 400, 404, 405, 413, 504}

FUZZ_SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    snap = generate(150, avg_follows=6, avg_engagements=8, seed=3).snapshot()
    snap.save(root / "snap")
    rec = Recommender(snap)
    rec.save(root / "model")
    return root, snap, rec


@pytest.fixture(scope="module")
def app(fitted):
    root, _, rec = fitted
    settings_ = ServeSettings(ModelPaths(root / "snap", model=root / "model"), max_batch=8, deadline_ms=5000)
    return create_app(WorkerRuntime(settings_, LoadedModel.of(rec, generation=0)))


def asgi_call(app, method: str, path: str, query: bytes = b"", body: bytes = b"") -> tuple[int, bytes]:
    """(status, body) of one request through the ASGI app, lifespan not run (no workers)."""

    async def run():
        sent = []
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode("utf-8", "surrogateescape"),
            "root_path": "",
            "query_string": query,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "server": ("test", 80),
            "client": ("test", 1),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        async def send(message):
            sent.append(message)

        await app(scope, receive, send)
        status = next(m["status"] for m in sent if m["type"] == "http.response.start")
        return status, b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")

    return asyncio.run(run())


# -- the HTTP surface -------------------------------------------------------------------------

PARAMS = [
    "k",
    "explain",
    "strict",
    "exclude",
    "blocked",
    "muted",
    "max_age_days",
    "exclude_own_tweets",
    "per_author_cap",
    "mmr_lambda",
]
nasty_text = st.one_of(
    st.text(max_size=30),
    st.sampled_from(
        ["", "-1", "0", "1", "20", "1e308", "nan", "inf", "-inf", "true", "1.5", "9" * 40, "%00", "\x00", "é"]
    ),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
user_segment = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0", "1", "00", "+5", " 3", "1.0", "1e3", "abc", "", "%20", "..", "-0"]),
    st.text(alphabet=string.printable, max_size=12).map(lambda s: quote(s, safe="")),
)
query = st.lists(
    st.tuples(st.one_of(st.sampled_from(PARAMS), st.text(max_size=8)), nasty_text), max_size=6
).map(lambda pairs: "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in pairs).encode())
json_value = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**70), max_value=2**70),
        st.floats(allow_nan=False),
        st.text(max_size=10),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=5), st.dictionaries(st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=20,
)
batch_body = st.one_of(
    st.fixed_dictionaries(
        {"user_ids": st.lists(st.integers(min_value=-(2**64), max_value=2**64), max_size=10)},
        optional={
            "k": json_value,
            "explain": json_value,
            "strict": json_value,
            "exclude": json_value,
            "per_author_cap": json_value,
            "mmr_lambda": json_value,
            "max_age_days": json_value,
            "extra": json_value,
        },
    ).map(lambda d: json.dumps(d).encode()),
    json_value.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=200),
)


def _check_answer(status: int, raw: bytes) -> None:
    event(f"status {status}")  # --hypothesis-show-statistics: how the examples spread over answers
    assert status in EXPECTED_STATUSES, (status, raw[:300])
    assert b"Traceback" not in raw and b'File "' not in raw
    body = json.loads(raw)
    if status >= 400:
        assert body["error"]["code"] and body["error"]["message"], body


@settings(max_examples=HTTP_EXAMPLES, **FUZZ_SETTINGS)
@given(
    endpoint=st.sampled_from(["who-to-follow", "tweet-candidates"]),
    user=user_segment,
    query=query,
)
def test_any_get_gets_a_json_answer_never_a_500(app, endpoint, user, query):
    status, raw = asgi_call(app, "GET", f"/v1/users/{user}/{endpoint}", query)
    _check_answer(status, raw)


@settings(max_examples=HTTP_EXAMPLES, **FUZZ_SETTINGS)
@given(endpoint=st.sampled_from(["/v1/who-to-follow", "/v1/tweet-candidates"]), body=batch_body)
def test_any_batch_body_gets_a_json_answer_never_a_500(app, endpoint, body):
    status, raw = asgi_call(app, "POST", endpoint, body=body)
    _check_answer(status, raw)


def test_the_fuzzer_reaches_the_recommender(app, fitted):
    """The fuzz tests are not only exercising the validation: valid requests get answers."""
    _, snap, _ = fitted
    uid = int(snap.user_ids[0])
    status, raw = asgi_call(app, "GET", f"/v1/users/{uid}/tweet-candidates", b"k=5&per_author_cap=1")
    assert status == 200 and len(json.loads(raw)["items"]) == 5
    status, raw = asgi_call(
        app, "POST", "/v1/who-to-follow", body=json.dumps({"user_ids": [uid], "k": 3}).encode()
    )
    assert status == 200 and len(json.loads(raw)["results"][0]["items"]) == 3


# -- the command line ---------------------------------------------------------------------------

cli_value = st.one_of(
    nasty_text,
    st.sampled_from(["{snap}", "{model}", "{missing}", "{file}"]),
)


def _recommend_argv(draw_pairs) -> list[str]:
    argv = ["recommend"]
    for flag, value in draw_pairs:
        argv += [flag] if value is None else [flag, value]
    return argv


recommend_options = st.lists(
    st.tuples(
        st.sampled_from(
            [
                "--user",
                "-k",
                "--task",
                "--snapshot",
                "--model",
                "--config",
                "--embeddings",
                "--per-author-cap",
                "--max-age-days",
                "--exclude",
                "--store",
                "--strict",
                "--json",
                "--explain",
                "--bogus",
            ]
        ),
        st.one_of(st.none(), cli_value),
    ),
    max_size=7,
)


@settings(max_examples=CLI_EXAMPLES, **FUZZ_SETTINGS)
@given(options=recommend_options)
def test_any_recommend_command_line_works_or_exits_2_with_a_message(
    fitted, options, capsys, tmp_path_factory
):
    from graphrec.cli import main

    root, _, _ = fitted
    (root / "afile.txt").write_text("not json\n")
    paths = {
        "{snap}": str(root / "snap"),
        "{model}": str(root / "model"),
        "{missing}": str(root / "does-not-exist"),
        "{file}": str(root / "afile.txt"),
    }
    argv = _recommend_argv([(flag, paths.get(v, v) if v is not None else None) for flag, v in options])
    if "--store" not in argv and "--snapshot" not in argv:
        argv += ["--store", paths["{missing}"]]  # never the default store of the working directory
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse: a usage error
        code = exc.code
    err = capsys.readouterr().err
    event(f"exit {code}")
    assert code in (0, 2), (argv, code, err[-500:])
    assert "Traceback" not in err
    if code == 2:
        assert "error:" in err, (argv, err[-500:])


def test_the_cli_fuzzer_reaches_a_real_answer(fitted, capsys):
    from graphrec.cli import main

    root, snap, _ = fitted
    uid = str(int(snap.user_ids[1]))
    argv = ["recommend", "--snapshot", str(root / "snap"), "--model", str(root / "model")]
    assert main([*argv, "--user", uid, "-k", "3", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)) == 3
