"""Bulk import with neo4j-admin into a fresh local Neo4j home, against the real server."""

from dataclasses import replace

import numpy as np
import pytest

from graph import neo4j_bulk
from graph.errors import InputError, StoreUnavailableError
from graph.events import read_events
from graph.export import export_snapshot
from graph.ingest import GraphColumns, ingest
from graph.local_store import LocalStore
from graph.neo4j_bulk import _first_rows, bulk_import
from graph.neo4j_local import LocalNeo4j
from graph.neo4j_store import Neo4jStore
from graph.synthetic import generate


def test_first_rows_keeps_the_first_of_each_key_in_input_order():
    a = np.array([3, 1, 3, 2, 1, 3])
    b = np.array([0, 5, 0, 1, 5, 1])
    assert _first_rows([a, b]).tolist() == [0, 1, 3, 5]


def test_bulk_import_gives_the_same_graph_as_the_batched_ingest(tmp_path):
    cols = GraphColumns.from_synthetic(generate(150, avg_follows=6, avg_engagements=8, seed=11))
    # duplicates with different timestamps and weights: the first row must win, as in the ingest
    n_f, n_e = 40, 60
    cols = replace(
        cols,
        follow_src=np.concatenate([cols.follow_src, cols.follow_src[:n_f]]),
        follow_dst=np.concatenate([cols.follow_dst, cols.follow_dst[:n_f]]),
        follow_ts=np.concatenate([cols.follow_ts, cols.follow_ts[:n_f] + 999]),
        eng_user=np.concatenate([cols.eng_user, cols.eng_user[:n_e]]),
        eng_tweet=np.concatenate([cols.eng_tweet, cols.eng_tweet[:n_e]]),
        eng_kind=np.concatenate([cols.eng_kind, cols.eng_kind[:n_e]]),
        eng_ts=np.concatenate([cols.eng_ts, cols.eng_ts[:n_e] + 999]),
        eng_weight=np.concatenate([cols.eng_weight, cols.eng_weight[:n_e] * 3]),
    )
    home = tmp_path / "neo4j-home"
    res = bulk_import(cols, home)
    assert res["import_s"] > 0 and res["schema_s"] > 0

    local = LocalStore(tmp_path / "local")
    ingest(local, cols, progress=False)
    expected = export_snapshot(local, progress=False)
    with LocalNeo4j().start(data_dir=home) as server:
        store = Neo4jStore.connect(server.uri)
        try:
            got = export_snapshot(store, progress=False)
            names = {r["name"] for r in store.cypher("SHOW CONSTRAINTS YIELD name RETURN name")}
        finally:
            store.close()
    assert got.snapshot_id == expected.snapshot_id
    assert {"user_id", "tweet_id"} <= names

    with pytest.raises(InputError, match="already has a database"):
        bulk_import(cols, home)


def test_graphrec_ingest_bulk_path_refuses_bad_events_before_the_tool(tmp_path, capsys):
    from graphrec.cli import main

    events, home = tmp_path / "e.csv", tmp_path / "home"
    events.write_text("event,user,target,weight\nfollow,1,2,\nlike,1,5,nan\n")
    assert main(["ingest", "--events", str(events), "--neo4j-import-home", str(home)]) == 2
    assert f"{events}:3: weight must be a number" in capsys.readouterr().err
    assert not home.exists()


def test_bulk_import_validates_the_columns_before_the_tool_starts(tmp_path):
    cols = GraphColumns.from_synthetic(generate(30, seed=2))
    cols.eng_weight = cols.eng_weight.copy()
    cols.eng_weight[3] = np.inf
    home = tmp_path / "home"
    with pytest.raises(InputError, match=r"eng_weight\[3\]: weight inf is outside"):
        bulk_import(cols, home)
    assert not home.exists()


TRICKY_TEXTS = (
    "event,user,target,ts,weight,text\n"
    'tweet,1,10,5,,"two\nlines"\n'
    'tweet,1,11,5,,"crlf\r\nand a ""quote"", a comma"\n'
    'tweet,2,12,5,,"\n"\n'
    'tweet,2,13,5,,""""\n'
    "tweet,2,14,5,,back\\slash \u00e9\U0001f600\u2028\n"
    "like,1,12,6,,\n"
    "follow,1,2,7,,\n"
)


def test_a_failed_import_leaves_no_database_behind_and_texts_spanning_lines_import(tmp_path, monkeypatch):
    events = tmp_path / "e.csv"
    events.write_bytes(TRICKY_TEXTS.encode())
    cols = GraphColumns.from_events(read_events(events))
    home = tmp_path / "home"
    real_prepare = neo4j_bulk.prepare_csv

    def without_multiline(*args, **kwargs):
        files = real_prepare(*args, **kwargs)
        files[
            "multiline"
        ] = []  # what every import did before: the tool fails on the first text with a newline
        return files

    monkeypatch.setattr(neo4j_bulk, "prepare_csv", without_multiline)
    with pytest.raises(StoreUnavailableError, match="nothing was written"):
        bulk_import(cols, home, schema=False)
    assert not (home / "data").exists()  # the tool's unusable store files went with the staging home
    assert sorted(p.name for p in home.iterdir()) == ["logs"]
    monkeypatch.undo()

    bulk_import(cols, home, schema=False)  # the same home: nothing was left that would refuse it
    local = LocalStore(tmp_path / "local")
    ingest(local, cols, progress=False)
    expected = export_snapshot(local, progress=False)
    with LocalNeo4j().start(data_dir=home) as server:
        store = Neo4jStore.connect(server.uri)
        try:
            got = export_snapshot(store, progress=False)
        finally:
            store.close()
    assert got.tweet_texts == expected.tweet_texts and len(got.tweet_texts) == 5
    assert got.tweet_texts[11] == 'crlf\r\nand a "quote", a comma'
    assert got.snapshot_id == expected.snapshot_id
