import json
import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graph.errors import InputError
from graph.events import (
    COLUMNS,
    EVENT_TYPES,
    MAX_LINE_BYTES,
    SKIP_REPORT_LIMIT,
    Event,
    EventColumns,
    read_events,
)
from graph.ingest import GraphColumns, ingest
from graph.local_store import LocalStore
from graph.schema import DEFAULT_KIND_WEIGHTS, KINDS, MAX_ID
from graph.validation import ID, MAX_TEXT_BYTES, MAX_TS, MAX_WEIGHT, TS, WEIGHT, validate_columns
from graphrec.cli import main as graphrec_main

CSV = """event,user,target,ts,weight,text
user,1,,,,
follow,1,2,100,,
tweet,2,50,90,,hello world
like,1,50,120,,
retweet,1,50,121,,
like,1,50,130,,
"""


def test_csv_tsv_jsonl_agree(tmp_path):
    (tmp_path / "e.csv").write_text(CSV)
    (tmp_path / "e.tsv").write_text(CSV.replace(",", "\t"))
    with (tmp_path / "e.jsonl").open("w") as fh:
        lines = CSV.strip().splitlines()
        header = lines[0].split(",")
        for line in lines[1:]:
            row = {k: v for k, v in zip(header, line.split(",")) if v}
            for k in ("user", "target", "ts"):
                if k in row:
                    row[k] = int(row[k])
            fh.write(json.dumps(row) + "\n")
    parsed = [read_events(tmp_path / f).arrays() for f in ("e.csv", "e.tsv", "e.jsonl")]
    for other in parsed[1:]:
        for key in parsed[0]:
            assert np.array_equal(parsed[0][key], other[key]), key
    a = parsed[0]
    assert a["users"].tolist() == [1]
    assert a["follow_src"].tolist() == [1] and a["follow_dst"].tolist() == [2]
    assert a["tweet_ids"].tolist() == [50] and a["tweet_authors"].tolist() == [2]
    assert a["eng_kind"].tolist() == [KINDS["like"], KINDS["retweet"], KINDS["like"]]
    assert a["eng_weight"].tolist() == [1.0, 2.0, 1.0]  # default kind weights


def test_malformed_line_names_file_and_line(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target\nfollow,1,2\nfollow,1\n")
    with pytest.raises(InputError, match=r"e.csv:3: expected 3 fields"):
        read_events(p)


def test_skip_bad_counts_and_reports(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target\nfollow,1,2\nfollow,1\nlike,x,5\nshout,1,2\nfollow,3,4\n")
    with pytest.raises(InputError, match=r"e.csv:3"):
        read_events(p)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 3 and ev.rows == 5
    assert ev.follow_src == [1, 3]
    assert "e.csv:3" in ev.skipped_examples[0] and "e.csv:4" in ev.skipped_examples[1]


def test_unknown_column(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target,colour\nfollow,1,2,red\n")
    with pytest.raises(InputError, match=r"e.csv:1: unknown column\(s\) \['colour'\]"):
        read_events(p)
    j = tmp_path / "e.jsonl"
    j.write_text('{"event": "follow", "user": 1, "target": 2, "colour": 1}\n')
    with pytest.raises(InputError, match=r"e.jsonl:1: unknown key"):
        read_events(j)


@pytest.mark.parametrize(
    "row,message",
    [
        ({"event": "follow", "user": "abc", "target": 2}, "user id must be a non-negative integer"),
        ({"event": "follow", "user": 1.5, "target": 2}, "user id must be an integer"),
        ({"event": "like", "user": 1, "target": [3]}, "target id must be an integer"),
        ({"event": "follow", "user": 1, "target": 2**63}, "outside"),
        ({"event": "like", "user": 1, "target": 2, "weight": "heavy"}, "weight must be a number"),
        ({"event": "follow", "user": 1, "target": 1}, "cannot follow themselves"),
    ],
)
def test_wrong_types(tmp_path, row, message):
    p = tmp_path / "e.jsonl"
    p.write_text('{"event": "user", "user": 7}\n' + json.dumps(row) + "\n")
    with pytest.raises(InputError, match=rf"e.jsonl:2: .*{message}"):
        read_events(p)


def test_invalid_json(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text('{"event": "user", "user": 7}\n{oops\n')
    with pytest.raises(InputError, match=r"e.jsonl:2: invalid JSON"):
        read_events(p)


# ---------------------------------------------------------------------------
# Issue 15: every field validated, a row kept whole or not at all, bad rows named file:line.


def _expected(rows) -> dict[str, list]:
    """Reference grouping of [event, user, target, ts, weight, text] rows into EventColumns' lists."""
    out = {name: [] for name in _COLUMN_LISTS}
    for event, user, target, ts, weight, text in rows:
        if event == "user":
            out["users"].append(user)
        elif event == "follow":
            out["follow_src"].append(user)
            out["follow_dst"].append(target)
            out["follow_ts"].append(ts)
        elif event == "tweet":
            out["tweet_ids"].append(target)
            out["tweet_authors"].append(user)
            out["tweet_created"].append(ts)
            out["tweet_texts"].append(text)
        else:
            out["eng_user"].append(user)
            out["eng_tweet"].append(target)
            out["eng_kind"].append(KINDS[event])
            out["eng_ts"].append(ts)
            out["eng_weight"].append(DEFAULT_KIND_WEIGHTS[event] if weight is None else float(weight))
    return out


_COLUMN_LISTS = (
    "users",
    "tweet_ids",
    "tweet_authors",
    "tweet_created",
    "tweet_texts",
    "follow_src",
    "follow_dst",
    "follow_ts",
    "eng_user",
    "eng_tweet",
    "eng_kind",
    "eng_ts",
    "eng_weight",
)


def _got(ev: EventColumns) -> dict[str, list]:
    return {name: list(getattr(ev, name)) for name in _COLUMN_LISTS}


def _columns_of(rows) -> GraphColumns:
    ev = EventColumns()
    for row in rows:
        ev.add(Event(*row))
    return GraphColumns.from_events(ev)


def _dump(store) -> dict[str, list]:
    """Everything a store holds, as sorted plain tuples."""
    return {
        "users": sorted(int(u) for b in store.iter_users(1000) for u in b.tolist()),
        "tweets": sorted(
            (i, a, c, t)
            for b in store.iter_tweets(1000)
            for i, a, c, t in zip(b.ids.tolist(), b.authors.tolist(), b.created.tolist(), b.texts)
        ),
        "follows": sorted(zip(*(x.tolist() for f in store.iter_follows(1000) for x in (f.src, f.dst, f.ts))))
        if store.counts()["follows"]
        else [],
        "engagements": sorted(
            (u, t, k, s, w)
            for b in store.iter_engagements(1000)
            for u, t, k, s, w in zip(
                b.users.tolist(), b.tweets.tolist(), b.kinds.tolist(), b.ts.tolist(), b.weights.tolist()
            )
        ),
    }


def _dump_dir(directory: Path) -> dict[str, list]:
    store = LocalStore(directory, create=False)
    try:
        return _dump(store)
    finally:
        store.close()


def _graphrec_ingest(capsys, *argv: str) -> tuple[int, str, str]:
    code = graphrec_main(["ingest", *argv, "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


BASE_EVENTS = "event,user,target,ts,weight,text\nfollow,7,8,5,,\ntweet,8,70,6,,base tweet\nlike,7,70,9,4,\n"


# -- the checked-in corpus of bad inputs --------------------------------------

CORPUS = Path(__file__).resolve().parent / "data" / "bad_events"
MANIFEST = json.loads((CORPUS / "manifest.json").read_text(encoding="utf-8"))["files"]


def test_corpus_manifest_lists_every_file():
    assert set(MANIFEST) == {p.name for p in CORPUS.iterdir() if not p.name.startswith(".")} - {
        "manifest.json"
    }
    assert {case["class"] for case in MANIFEST.values()} == {
        "ids",
        "timestamps",
        "weights",
        "encoding",
        "quoting",
        "sizes",
        "JSON",
        "structure",
    }


def _names_line(message: str, path: Path, line: int, what: str) -> bool:
    return message.startswith(f"{path}:{line}: ") and what in message


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_read_events(name):
    case, path = MANIFEST[name], CORPUS / name
    if "fatal" in case:
        line, what = case["fatal"]
        for skip_bad in (False, True):
            with pytest.raises(InputError) as err:
                read_events(path, skip_bad=skip_bad)
            assert _names_line(str(err.value), path, line, what), str(err.value)
        return
    line, what = case["bad"][0]
    with pytest.raises(InputError) as err:
        read_events(path)
    assert _names_line(str(err.value), path, line, what), str(err.value)
    assert (err.value.path, err.value.line) == (str(path), line)

    ev = read_events(path, skip_bad=True)
    assert ev.skipped == len(case["bad"]) and ev.rows == len(case["bad"]) + len(case["kept"])
    assert len(ev.skipped_examples) == len(case["bad"])
    for message, (line, what) in zip(ev.skipped_examples, case["bad"]):
        assert _names_line(message, path, line, what), message
    assert _got(ev) == _expected(case["kept"])


@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_corpus_through_graphrec_ingest(name, tmp_path, capsys):
    """Without --skip-bad the store is left exactly as it was; with it, it gains exactly the good rows."""
    case, path = MANIFEST[name], CORPUS / name
    base, store_dir = tmp_path / "base.csv", tmp_path / "store"
    base.write_text(BASE_EVENTS)
    assert _graphrec_ingest(capsys, "--events", str(base), "--store", str(store_dir))[0] == 0
    before = _dump_dir(store_dir)
    line, what = case.get("fatal") or case["bad"][0]
    for flags in [()] + ([("--skip-bad",)] if "fatal" in case else []):
        code, _, err = _graphrec_ingest(capsys, "--events", str(path), "--store", str(store_dir), *flags)
        assert code == 2 and f"{path}:{line}: " in err and what in err, err
        assert _dump_dir(store_dir) == before
    if "fatal" in case:
        return
    code, out, _ = _graphrec_ingest(capsys, "--events", str(path), "--store", str(store_dir), "--skip-bad")
    n_bad = len(case["bad"])
    assert code == 0 and f"skipped {n_bad} bad event rows of {n_bad + len(case['kept'])}" in out, out
    reference = LocalStore(tmp_path / "reference")
    try:
        ingest(reference, GraphColumns.from_events(read_events(base)), progress=False)
        ingest(reference, _columns_of(case["kept"]), progress=False)
        assert _dump_dir(store_dir) == _dump(reference)
    finally:
        reference.close()


# -- regression tests for the bugs the probe found ----------------------------


def test_bad_weight_is_skipped_whole_and_does_not_shift_later_weights(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("event,user,target,ts,weight,text\nlike,1,50,10,x,\nlike,2,51,11,3,\nreply,3,52,12,,\n")
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 1
    assert (ev.eng_user, ev.eng_tweet, ev.eng_ts, ev.eng_weight) == ([2, 3], [51, 52], [11, 12], [3.0, 3.0])
    store = LocalStore(tmp_path / "store")
    try:
        ingest(store, GraphColumns.from_events(ev), progress=False)  # used to fail with IndexError here
        assert _dump(store)["engagements"] == [
            (2, 51, KINDS["like"], 11, 3.0),
            (3, 52, KINDS["reply"], 12, 3.0),
        ]
    finally:
        store.close()


def test_skip_bad_ingest_cannot_fail_after_part_of_the_graph_is_written(tmp_path, capsys):
    """The probe's crash: users and follows committed, then the engagement batch failed. Every value
    a store would refuse (misaligned rows, int64 overflow, float32 overflow, lone surrogates) is now
    refused at parse time, so an ingest with --skip-bad writes all of the good rows or fails first."""
    p = tmp_path / "e.jsonl"
    rows = [
        {"event": "user", "user": 1},
        {"event": "follow", "user": 1, "target": 2},
        {"event": "like", "user": 1, "target": 50, "weight": "x"},
        {"event": "like", "user": 1, "target": 50, "ts": 2**64},
        {"event": "like", "user": 1, "target": 51, "weight": 1e39},
        {"event": "tweet", "user": 2, "target": 52, "text": "\ud800"},
        {"event": "like", "user": 2, "target": 53, "weight": 0.5},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = _graphrec_ingest(capsys, "--events", str(p), "--store", str(tmp_path / "s"), "--skip-bad")
    assert code == 0 and "skipped 4 bad event rows of 7" in out
    got = _dump_dir(tmp_path / "s")
    assert got["users"] == [1, 2] and got["follows"] == [(1, 2, 0)]
    assert got["engagements"] == [(2, 53, KINDS["like"], 0, 0.5)] and got["tweets"] == [(53, -1, 0, None)]


def test_unterminated_quote_does_not_swallow_the_following_rows(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text(
        'event,user,target,ts,weight,text\ntweet,2,50,90,,"hello world\nlike,1,50,120,,\nfollow,1,2,,,\n'
    )
    with pytest.raises(InputError, match=r"e\.csv:2: unterminated quote"):
        read_events(p)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 1 and ev.tweet_ids == [] and ev.eng_user == [1] and ev.follow_dst == [2]


def test_a_quoted_text_may_span_lines(tmp_path):
    p = tmp_path / "e.csv"
    p.write_bytes(b'event,user,target,text\r\ntweet,2,50,"one\r\ntwo, ""three""\nfour"\r\nlike,1,50,\r\n')
    ev = read_events(p)
    assert ev.tweet_texts == ['one\r\ntwo, "three"\nfour'] and ev.eng_tweet == [50]


def test_a_long_quoted_text_left_open_costs_one_row(tmp_path):
    """The quote swallows lines until the csv field limit, then they are read again as rows."""
    p = tmp_path / "e.csv"
    body = "".join(f"like,{i},{i + 1},{i},,\n" for i in range(20_000))
    p.write_text('event,user,target,ts,weight,text\ntweet,2,50,90,,"never closed\n' + body)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 1 and ev.eng_user == list(range(20_000))
    assert "e.csv:2: unterminated quote" in ev.skipped_examples[0]


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_undecodable_bytes_spoil_only_their_line(tmp_path, suffix):
    p = tmp_path / f"e{suffix}"
    if suffix == ".csv":
        lines = [b"event,user,target", b"follow,1,2", b"follow,3,\xff4", b"follow,5,6"]
    else:
        lines = [
            b'{"event": "follow", "user": 1, "target": 2}',
            b'{"event": "follow", "user": 3, "target": "\xe94"}',
        ]
        lines += [b'{"event": "follow", "user": 5, "target": 6}']
    p.write_bytes(b"\n".join(lines) + b"\n")
    bad_line = 3 if suffix == ".csv" else 2
    with pytest.raises(InputError, match=rf"e\{suffix}:{bad_line}: invalid UTF-8"):
        read_events(p)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 1 and ev.follow_src == [1, 5]


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_a_line_over_the_size_limit_is_one_bad_row(tmp_path, suffix):
    p = tmp_path / f"e{suffix}"
    if suffix == ".jsonl":
        good = ['{"event": "follow", "user": 1, "target": 2}', '{"event": "follow", "user": 3, "target": 4}']
        long_line = '{"event": "tweet", "user": 1, "target": 5, "text": "' + "x" * MAX_LINE_BYTES + '"}'
        text = good[0] + "\n" + long_line + "\n" + good[1] + "\n"
    else:
        sep = "," if suffix == ".csv" else "\t"
        text = sep.join(["event", "user", "target", "text"]) + "\n"
        text += (
            sep.join(["follow", "1", "2", ""])
            + "\n"
            + sep.join(["tweet", "1", "5", "x" * MAX_LINE_BYTES])
            + "\n"
        )
        text += sep.join(["follow", "3", "4", ""]) + "\n"
    p.write_text(text)
    line = 2 if suffix == ".jsonl" else 3
    with pytest.raises(InputError, match=rf":{line}: line is \d+ bytes long, more than {MAX_LINE_BYTES}"):
        read_events(p)
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 1 and ev.follow_src == [1, 3]


def test_text_size_bound_is_exact(tmp_path):
    p = tmp_path / "e.jsonl"
    at = "\u20ac" * (MAX_TEXT_BYTES // 3) + "x" * (MAX_TEXT_BYTES % 3)  # exactly MAX_TEXT_BYTES of UTF-8
    rows = [{"event": "tweet", "user": 1, "target": 1, "text": at}]
    rows.append({"event": "tweet", "user": 1, "target": 2, "text": at + "x"})
    p.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    ev = read_events(p, skip_bad=True)
    assert ev.tweet_ids == [1] and ev.skipped == 1
    assert (
        f"text is {MAX_TEXT_BYTES + 1} bytes of UTF-8, more than {MAX_TEXT_BYTES}" in ev.skipped_examples[0]
    )
    q = tmp_path / "e.csv"
    q.write_text(
        f"event,user,target,text\ntweet,1,3,{'y' * 200_000}\ntweet,1,4,ok\n"
    )  # past csv's field limit
    with pytest.raises(InputError, match=r"e\.csv:2: a field is longer than"):
        read_events(q)
    assert read_events(q, skip_bad=True).tweet_ids == [4]


@pytest.mark.parametrize("digit", ["\u0663", "\u00b2", "\uff11", "\u07c1", "\u1369"])
def test_ids_and_timestamps_must_be_ascii_digits(tmp_path, digit):
    assert digit.isdigit()  # what the old check accepted
    p = tmp_path / "e.csv"
    p.write_text(
        f"event,user,target,ts\nfollow,1{digit},2,\nfollow,1,2,{digit}\nfollow,1,2,3\n", encoding="utf-8"
    )
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 2 and ev.follow_ts == [3]
    assert all("ASCII digits" in m for m in ev.skipped_examples)


def test_numbers_at_and_past_their_bounds(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text(
        "event,user,target,ts,weight\n"
        f"like,{MAX_ID},{MAX_ID},{MAX_TS},{MAX_WEIGHT:.0f}\n"  # all at the bound: kept
        "like,0,0,0,0\n"
        f"like,{MAX_ID + 1},1,,\n"
        f"like,1,1,{MAX_TS + 1},\n"
        f"like,1,1,,{MAX_WEIGHT * (1 + 1e-12)!r}\n"
        "like,1,1,,1e-400\n"  # underflows to 0.0: a valid weight
    )
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 3
    assert (
        ev.eng_user == [MAX_ID, 0, 1]
        and ev.eng_ts == [MAX_TS, 0, 0]
        and ev.eng_weight == [MAX_WEIGHT, 0.0, 0.0]
    )


def test_skip_bad_logs_each_row_up_to_the_limit_then_a_summary(tmp_path, caplog):
    p = tmp_path / "e.csv"
    n_bad = SKIP_REPORT_LIMIT + 5
    p.write_text("event,user,target\n" + "follow,1,x\n" * n_bad + "follow,1,2\n")
    with caplog.at_level(logging.WARNING, logger="graph.events"):
        ev = read_events(p, skip_bad=True)
    rows = [r.getMessage() for r in caplog.records if r.getMessage().startswith("skipped bad event row: ")]
    assert len(rows) == SKIP_REPORT_LIMIT and rows[0].endswith(
        "e.csv:2: target id must be a non-negative integer of ASCII digits, got 'x'"
    )
    summary = caplog.records[-1].getMessage()
    assert (
        summary
        == f"skipped {n_bad} bad event rows of {n_bad + 1}; only the first {SKIP_REPORT_LIMIT} are listed"
    )
    assert ev.skipped == n_bad and len(ev.skipped_examples) == SKIP_REPORT_LIMIT and ev.follow_dst == [2]


def test_fields_an_event_does_not_use_must_be_empty(tmp_path):
    p = tmp_path / "e.jsonl"
    rows = [
        {"event": "user", "user": 1, "target": 2},
        {"event": "follow", "user": 1, "target": 2, "weight": 1},
        {"event": "like", "user": 1, "target": 2, "text": "hi"},
        {"event": "user", "user": 1, "ts": 5, "target": None, "weight": None, "text": ""},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ev = read_events(p, skip_bad=True)
    assert ev.skipped == 3 and ev.users == [1]
    assert [m.split(": ", 1)[1].split(" must")[0] for m in ev.skipped_examples] == [
        "target",
        "weight",
        "text",
    ]


# -- the same bounds guard every ingest and the bulk import ---------------------


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda c: c.eng_weight.__setitem__(1, np.nan), r"eng_weight\[1\]: weight nan is outside"),
        (
            lambda c: c.eng_weight.__setitem__(0, np.float32(3e38)),
            r"eng_weight\[0\]: weight 3\.\d+e\+38 is outside",
        ),
        (lambda c: c.follow_ts.__setitem__(2, -1), r"follow_ts\[2\]: ts -1 is outside"),
        (lambda c: c.eng_user.__setitem__(0, -4), r"eng_user\[0\]: id -4 is outside"),
        (lambda c: c.tweet_authors.__setitem__(0, -2), r"tweet_authors\[0\]: author -2 is outside"),
        (lambda c: c.eng_kind.__setitem__(0, 9), r"eng_kind\[0\]: engagement kind 9 is not one of"),
        (lambda c: c.tweet_texts.__setitem__(1, "a\ud800"), r"tweet_texts\[1\]: text is not valid Unicode"),
        (lambda c: setattr(c, "eng_ts", c.eng_ts[:-1]), r"the engagement columns differ in length"),
    ],
)
def test_ingest_checks_every_column_before_writing_anything(tmp_path, change, message):
    cols = _columns_of(
        [
            ["follow", 1, 2, 1, None, None],
            ["follow", 2, 3, 1, None, None],
            ["follow", 3, 1, 1, None, None],
            ["tweet", 1, 10, 5, None, "t"],
            ["tweet", 1, 11, 5, None, "u"],
            ["like", 1, 10, 6, 1.0, None],
            ["like", 2, 10, 6, 1.0, None],
        ]
    )
    store = LocalStore(tmp_path / "store")
    try:
        ingest(
            store,
            GraphColumns.from_events(read_events(_write(tmp_path / "base.csv", BASE_EVENTS))),
            progress=False,
        )
        before = _dump(store)
        change(cols)
        with pytest.raises(InputError, match=message):
            ingest(store, cols, batch_size=1, progress=False)
        assert _dump(store) == before
    finally:
        store.close()


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_bounds_agree_on_scalars_and_arrays():
    values = [-1, 0, 1, 0.5, -0.0, np.nan, np.inf, -np.inf, MAX_WEIGHT, np.nextafter(MAX_WEIGHT, np.inf), MAX_TS,
              MAX_TS + 1, MAX_ID]  # fmt: skip
    for bound in (ID, TS, WEIGHT):
        scalar = [bool(bound.ok(v)) for v in values]
        assert scalar == bound.ok(np.array(values, dtype=np.float64)).tolist()
    assert ID.ok(MAX_ID) and not ID.ok(MAX_ID + 1) and ID.ok(np.array([MAX_ID], np.int64)).all()


# -- property-based tests (Hypothesis) -----------------------------------------

#: Examples each property test runs (the whole file stays a few seconds long).
HYPOTHESIS_EXAMPLES = 200
PROPERTY = settings(
    max_examples=HYPOTHESIS_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
FORMATS = (".csv", ".tsv", ".jsonl")


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("events-hypothesis")


_ids = st.one_of(st.integers(0, MAX_ID), st.sampled_from([0, 1, MAX_ID]), st.integers(0, 1000))
_ts = st.one_of(st.integers(0, MAX_TS), st.sampled_from([0, MAX_TS]))
_weights = st.one_of(
    st.none(), st.floats(0, MAX_WEIGHT), st.sampled_from([0.0, MAX_WEIGHT, 5e-324]), st.integers(0, 10**6)
)
_texts = st.one_of(
    st.none(),
    st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), min_size=1, max_size=30),
    st.text(st.sampled_from('a ,\t"\r\n\u2028\u00e9\U0001f600'), min_size=1, max_size=12),
)
_plain_texts = st.one_of(st.none(), st.text(st.sampled_from("abc xyz"), min_size=1, max_size=8))


@st.composite
def _events(draw, texts=_texts):
    """A valid row: [event, user, target, ts, weight, text] (None where it carries nothing)."""
    event = draw(st.sampled_from(EVENT_TYPES))
    user, ts = draw(_ids), draw(_ts)
    if event == "user":
        return [event, user, None, ts, None, None]
    target = draw(_ids)
    if event == "follow":
        if target == user:
            target = user - 1 if user else 1
        return [event, user, target, ts, None, None]
    if event == "tweet":
        return [event, user, target, ts, None, draw(texts)]
    return [event, user, target, ts, draw(_weights), None]


def _csv_line(fields: list[str], sep: str, quote_all: bool) -> str:
    """An RFC 4180 line written independently of the csv module: quotes where needed (or always)."""
    out = []
    for f in fields:
        if quote_all or any(c in f for c in (sep, '"', "\r", "\n")):
            f = '"' + f.replace('"', '""') + '"'
        out.append(f)
    return sep.join(out)


def _fields(row, *, pad: bool) -> list[str]:
    event, user, target, ts, weight, text = row
    return [
        event,
        f" {user} " if pad else str(user),
        "" if target is None else str(target),
        "" if (ts == 0 and pad) else str(ts),
        "" if weight is None else repr(weight),
        text or "",
    ]


def _json_line(row, *, ids_as_text: bool, ascii_only: bool) -> str:
    obj = {k: v for k, v in zip(COLUMNS, row) if v is not None}
    for key in ("user", "target", "ts"):
        if ids_as_text and key in obj:
            obj[key] = str(obj[key])
    return json.dumps(obj, ensure_ascii=ascii_only)


@st.composite
def _layout(draw, fmt):
    """How a file is written: separators, line breaks, quoting, BOM, number spelling."""
    return {
        "newline": draw(st.sampled_from(["\n", "\r\n"])),
        "bom": draw(st.booleans()),
        "quote_all": draw(st.booleans()),
        "pad": draw(st.booleans()),
        "ids_as_text": draw(st.booleans()),
        "ascii_only": draw(st.booleans()),
        "sep": "\t" if fmt == ".tsv" else ",",
    }


def _good_line(row, fmt, lay) -> str:
    if fmt == ".jsonl":
        return _json_line(row, ids_as_text=lay["ids_as_text"], ascii_only=lay["ascii_only"])
    return _csv_line(_fields(row, pad=lay["pad"]), lay["sep"], lay["quote_all"])


def _file_bytes(fmt, lay, lines: list[bytes]) -> bytes:
    nl = lay["newline"].encode()
    head = [] if fmt == ".jsonl" else [_csv_line(list(COLUMNS), lay["sep"], lay["quote_all"]).encode()]
    return (b"\xef\xbb\xbf" if lay["bom"] else b"") + b"".join(line + nl for line in head + lines)


@PROPERTY
@given(data=st.data())
def test_property_valid_rows_round_trip_in_every_format(scratch, data):
    fmt = data.draw(st.sampled_from(FORMATS))
    lay = data.draw(_layout(fmt))
    rows = data.draw(st.lists(_events(), max_size=12))
    path = scratch / f"round{fmt}"
    path.write_bytes(_file_bytes(fmt, lay, [_good_line(r, fmt, lay).encode() for r in rows]))
    ev = read_events(path)
    assert ev.rows == len(rows) and ev.skipped == 0
    assert _got(ev) == _expected(rows)


_BAD_IDS = [
    "-1",
    "1.5",
    "\u0663",
    "\u00b2",
    "\uff11",
    str(2**63),
    "abc",
    "0x1",
    "1e3",
    "+1",
    "1 2",
    "0" * 65 + "1",
]
_BAD_TS = ["-1", str(MAX_TS + 1), "1.5", "1e9", "\u0663", "x", str(2**64)]
_BAD_WEIGHTS = ["nan", "inf", "-1", "1e7", "1000000.5", "heavy", "\u0661", "1e999", "0x1p3", "NaN"]
_BAD_JSON_VALUES = {
    "user": [-1, 1.5, True, "\u0663", 2**63, [1], {"a": 1}, "abc", 1e400, None, "1 2", ""],
    "ts": [-1, 1.5, True, "\u0663", MAX_TS + 1, [1], "abc", 1e400, "-5"],
    "weight": [-1, True, "nan", [1], 1e400, 1e7, "abc", {"w": 1}, "\u0661"],
}


@st.composite
def _bad_line(draw, fmt, lay) -> bytes:
    """One physical line that is a bad row, whatever rows surround it."""
    row = draw(_events(texts=_plain_texts))
    how = draw(st.sampled_from(["field", "bytes", "structure"]))
    if how == "bytes":
        line = _good_line(row, fmt, lay).encode()
        at = draw(st.integers(0, len(line)))
        junk = draw(st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\x00", b"\xc0\xaf"]))
        return line[:at] + junk + line[at:]
    if fmt == ".jsonl":
        obj = {k: v for k, v in zip(COLUMNS, row) if v is not None}
        if how == "field":
            key = draw(st.sampled_from(["user", "ts", "weight"] if row[0] in KINDS else ["user", "ts"]))
            obj[key] = draw(st.sampled_from(_BAD_JSON_VALUES[key]))
            return json.dumps(obj).encode()
        line = json.dumps(obj)
        return draw(
            st.sampled_from(
                [
                    line[:-1],  # truncated
                    '{"user": 0, ' + line[1:],  # duplicate key
                    line[:-1] + ', "colour": 1}',
                    line[:-1] + ', "weight": NaN}' if "weight" not in obj else line.replace("}", "") + "}}",
                    "[" * 3000,
                    "[1]",
                    "null",
                    '"x"',
                    '{"event": "user", "user": ' + "9" * 80 + "}",
                    json.dumps({k: v for k, v in obj.items() if k != "event"}),
                ]
            )
        ).encode()
    fields = _fields(row, pad=False)
    sep = lay["sep"]
    if how == "field":
        column = draw(st.sampled_from(["user", "ts", "weight", "event"]))
        value = {
            "user": _BAD_IDS,
            "ts": _BAD_TS,
            "weight": _BAD_WEIGHTS,
            "event": ["shout", "Like", "", "USER"],
        }[column]
        fields[COLUMNS.index(column)] = draw(st.sampled_from(value))
        return _csv_line(fields, sep, lay["quote_all"]).encode()
    kind = draw(st.sampled_from(["extra", "short", "self", "unterminated", "text", "target"]))
    if kind == "extra":
        fields.append("1")
    elif kind == "short":
        fields.pop()
    elif kind == "self":
        fields = ["follow", fields[1], fields[1].strip(), "", "", ""]
    elif kind == "text" or (kind == "unterminated" and row[0] == "tweet"):
        fields[0], fields[4], fields[5] = "like", "", "some text"
    elif kind == "target":
        fields = ["user", fields[1], "5", "", "", ""]
    if kind == "unterminated":
        # a quote opened in any field of a non-tweet row (one opened in a tweet's text could be
        # closed by a later line into a valid row: valid CSV with another meaning, see the module doc)
        at = draw(st.integers(0, len(fields) - 1))
        fields[at] = '"' + fields[at]
        return sep.join(fields).encode()
    return _csv_line(fields, sep, lay["quote_all"]).encode()


@PROPERTY
@given(data=st.data())
def test_property_skip_bad_keeps_exactly_the_good_rows_in_order(scratch, data):
    fmt = data.draw(st.sampled_from(FORMATS))
    lay = data.draw(_layout(fmt))
    plan = data.draw(st.lists(st.booleans(), min_size=1, max_size=12))  # True: a bad row
    good, lines = [], []
    for bad in plan:
        if bad:
            lines.append(data.draw(_bad_line(fmt, lay)))
        else:
            good.append(data.draw(_events()))
            lines.append(_good_line(good[-1], fmt, lay).encode())
    path = scratch / f"mixed{fmt}"
    path.write_bytes(_file_bytes(fmt, lay, lines))
    ev = read_events(path, skip_bad=True)
    assert ev.skipped == sum(plan), ev.skipped_examples
    assert _got(ev) == _expected(good)
    if any(plan):
        with pytest.raises(InputError) as err:
            read_events(path)
        first_bad = plan.index(True) + 1 + (fmt != ".jsonl")  # line numbers: header, then one line per row
        first_bad += sum(_good_line(r, fmt, lay).count("\n") for r in good[: plan.index(True)])
        assert str(err.value).startswith(f"{path}:{first_bad}: "), str(err.value)


_NOISE = [b'"', b",", b"\t", b"\n", b"\r", b"\r\n", b" ", b"1", b"9" * 20, b"-", b".", b"e", b"like", b"follow",
          b"user", b"tweet", b"\xff", b"\x00", b"{", b"}", b"[", b"]", b":", b'"event"', b'"user"', b'"target"',
          b"NaN", "\u0663".encode(), b"\xef\xbb\xbf"]  # fmt: skip


@PROPERTY
@given(
    fmt=st.sampled_from(FORMATS),
    header=st.sampled_from([b"", b"event,user,target,ts,weight,text\n", b"event\tuser\ttarget\ttext\n"]),
    body=st.one_of(st.binary(max_size=200), st.lists(st.sampled_from(_NOISE), max_size=60).map(b"".join)),
    skip_bad=st.booleans(),
)
def test_property_any_bytes_parse_or_raise_input_error(scratch, fmt, header, body, skip_bad):
    path = scratch / f"noise{fmt}"
    path.write_bytes(header + body)
    try:
        ev = read_events(path, skip_bad=skip_bad)
    except InputError as exc:
        assert str(exc).startswith(f"{path}:")
        return
    assert ev.rows == ev.skipped + sum(
        len(getattr(ev, c)) for c in ("users", "tweet_ids", "follow_src", "eng_user")
    )
    validate_columns(GraphColumns.from_events(ev))  # whatever is kept is storable
