"""Bulk import with neo4j-admin into a fresh local Neo4j home, against the real server."""

from dataclasses import replace

import numpy as np
import pytest

from graph.errors import InputError
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
