"""Benchmark: ingest into Neo4j and the local store, export to a snapshot, snapshot memory.

For each graph (flickr; a synthetic graph of ~2M relationships) it measures, in one run:

* batched ``UNWIND`` ingest into Neo4j, relationships per second;
* the naive baseline, one query per row (on a sample of rows, since it is slow), and the ratio;
* the initial-load path, ``neo4j-admin database import`` into a new home (graph.neo4j_bulk);
* the local store's ingest;
* export from Neo4j and from the local store to a snapshot, relationships per second;
* peak resident memory of loading the saved snapshot (in a fresh process) against the
  size of its arrays.

Usage::

    python scripts/bench_ingest.py --data-dir ../shared/datasets [--synthetic-edges 2000000] [--json OUT]

Uses NEO4J_URI when set, else starts a local Neo4j (scripts/neo4j_local.py) for the run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph import cypher  # noqa: E402
from graph.datasets import load_dataset  # noqa: E402
from graph.export import export_snapshot  # noqa: E402
from graph.ingest import GraphColumns, ingest  # noqa: E402
from graph.local_store import LocalStore  # noqa: E402
from graph.neo4j_bulk import bulk_import  # noqa: E402
from graph.neo4j_store import Neo4jStore  # noqa: E402
from graph.synthetic import generate, users_for_edges  # noqa: E402

MEASURE_LOAD = """
import sys, numpy as np
from graph.snapshot import GraphSnapshot

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

# Reset the peak (VmHWM) after the imports, so it covers the load only (Linux >= 4.0).
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")
before = status("VmRSS:")
snap = GraphSnapshot.load(sys.argv[1], mmap=sys.argv[2] == "mmap")
total = 0
for a in snap.arrays.values():
    total += int(np.asarray(a).sum(dtype=np.float64) != 0)  # touch every page
print(snap.nbytes, status("VmHWM:") - before)
"""


def naive_ingest(store: Neo4jStore, cols: GraphColumns, n_rows: int) -> tuple[int, float]:
    """One auto-commit query per follow row: the baseline a first attempt would write."""
    src, dst, ts = cols.follow_src[:n_rows], cols.follow_dst[:n_rows], cols.follow_ts[:n_rows]
    query = (
        "MERGE (a:User {id: $src}) MERGE (b:User {id: $dst}) "
        "MERGE (a)-[f:FOLLOWS]->(b) ON CREATE SET f.ts = $ts"
    )
    t0 = time.perf_counter()
    with store.driver.session(database=store.database) as session:
        for s, d, t in zip(src.tolist(), dst.tolist(), ts.tolist()):
            session.run(query, src=s, dst=d, ts=t).consume()
    return len(src), time.perf_counter() - t0


def snapshot_memory(snap_dir: Path, mode: str) -> tuple[int, int]:
    root = str(Path(__file__).resolve().parents[1])
    out = subprocess.run(
        [sys.executable, "-c", MEASURE_LOAD, str(snap_dir), mode],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": root},
    ).stdout.split()
    return int(out[0]), int(out[1])


def bench_graph(
    name: str, cols: GraphColumns, uri: str, batch_size: int, naive_rows: int, workdir: Path
) -> dict:
    rels = cols.n_relationships
    rows = len(cols.users) + len(cols.tweet_ids) + len(cols.follow_src) + len(cols.eng_user)
    print(f"\n== {name}: {rels:,} relationships, {rows:,} rows")
    result: dict = {"graph": name, "relationships": rels}

    with Neo4jStore.connect(uri) as store:
        store.clear()
        store.ensure_schema()
        n, dt = naive_ingest(store, cols, naive_rows)
        result["naive_rels_per_s"] = n / dt
        print(f"naive one-query-per-row ingest: {n:,} follows in {dt:.1f}s = {n / dt:,.0f} rels/s")
        store.clear()
        t0 = time.perf_counter()
        ingest(store, cols, batch_size=batch_size, progress=False)
        dt = time.perf_counter() - t0
        result["neo4j_ingest_s"] = dt
        result["neo4j_ingest_rels_per_s"] = rels / dt
        print(
            f"batched UNWIND ingest into Neo4j: {dt:.1f}s = {rels / dt:,.0f} rels/s "
            f"({rels / dt / result['naive_rels_per_s']:.1f}x naive)"
        )
        t0 = time.perf_counter()
        snap = export_snapshot(store, progress=False)
        dt = time.perf_counter() - t0
        result["neo4j_export_s"] = dt
        result["neo4j_export_rels_per_s"] = rels / dt
        print(f"export Neo4j -> snapshot: {dt:.1f}s = {rels / dt:,.0f} rels/s")

    local_dir = workdir / f"{name}-local"
    with LocalStore(local_dir) as local:
        t0 = time.perf_counter()
        ingest(local, cols, batch_size=batch_size, progress=False)
        dt = time.perf_counter() - t0
        result["local_ingest_rels_per_s"] = rels / dt
        print(f"ingest into the local store: {dt:.1f}s = {rels / dt:,.0f} rels/s")
        t0 = time.perf_counter()
        local_snap = export_snapshot(local, progress=False)
        dt = time.perf_counter() - t0
        result["local_export_rels_per_s"] = rels / dt
        print(f"export local store -> snapshot: {dt:.1f}s = {rels / dt:,.0f} rels/s")
    result["snapshots_identical"] = bool(local_snap.equals(snap))
    print(f"Neo4j and local snapshots identical: {result['snapshots_identical']}")

    # Initial load the offline way: neo4j-admin import into a new home (server stopped), then
    # one server start to create the constraints. Timed: CSV + import tool (JVM start included).
    home = workdir / f"{name}-bulk-home"
    bulk = bulk_import(cols, home, schema=False)
    result["bulk_import_s"] = bulk["total_s"]
    result["bulk_import_rels_per_s"] = rels / bulk["total_s"]
    print(
        f"bulk import (neo4j-admin, offline): {bulk['total_s']:.1f}s = {rels / bulk['total_s']:,.0f} rels/s "
        f"(CSV {bulk['csv_s']:.1f}s, import tool {bulk['import_s']:.1f}s; "
        f"{rels / bulk['total_s'] / result['naive_rels_per_s']:.0f}x naive)"
    )

    snap_dir = snap.save(workdir / f"{name}-snapshot")
    for mode in ("load", "mmap"):
        nbytes, peak = snapshot_memory(snap_dir, mode)
        result[f"snapshot_{mode}_peak_over_arrays"] = peak / nbytes
        print(
            f"snapshot {mode}: arrays {nbytes / 1e6:.1f} MB, peak RSS growth {peak / 1e6:.1f} MB "
            f"= {peak / nbytes:.2f}x"
        )
    result["snapshot_array_bytes"] = nbytes
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--synthetic-edges", type=int, default=2_000_000)
    p.add_argument("--batch-size", type=int, default=20_000)
    p.add_argument("--naive-rows", type=int, default=3000, help="rows for the one-query-per-row baseline")
    p.add_argument("--only", choices=["flickr", "synthetic"], help="run one graph only")
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    from graph.neo4j_local import LocalNeo4j, neo4j_uri_from_env

    uri = neo4j_uri_from_env()
    server = None
    if not uri:
        server = LocalNeo4j().start(heap="4g", pagecache="2g")
        uri = server.uri
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            if args.only in (None, "flickr"):
                cols = GraphColumns.from_dataset(load_dataset("flickr", args.data_dir))
                results.append(bench_graph("flickr", cols, uri, args.batch_size, args.naive_rows, work))
            if args.only in (None, "synthetic"):
                g = generate(users_for_edges(args.synthetic_edges), seed=0, with_text=False)
                cols = GraphColumns.from_synthetic(g)
                results.append(bench_graph("synthetic-2M", cols, uri, args.batch_size, args.naive_rows, work))
    finally:
        if server is not None:
            server.stop()
    meta = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "command": " ".join(sys.argv),
        "schema_statements": len(cypher.SCHEMA),
    }
    if args.json:
        Path(args.json).write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
