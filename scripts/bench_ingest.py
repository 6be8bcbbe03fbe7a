"""Benchmark: ingest into Neo4j and the local store, export to a snapshot, snapshot memory.

For each graph (flickr; a synthetic graph of ~2M relationships) it measures, in one run:

* batched ``UNWIND`` ingest into Neo4j, relationships per second;
* the same through graphrec's own server procedures (graph/neo4j_plugin), with 1 and 2 writer
  threads (``--writers``): ingest rate, where the server's time goes (the procedures' own
  timers; server and client CPU seconds), the packed full export (to columns and to a
  snapshot), and an incremental export of the last 1% of the follows and engagements;
* the naive baseline, one query per row (on a sample of rows, since it is slow), and the ratio;
* the initial-load path, ``neo4j-admin database import`` into a new home (graph.neo4j_bulk);
* the local store's ingest;
* export from Neo4j and from the local store to a snapshot, relationships per second;
* peak resident memory of loading the saved snapshot (in a fresh process) against the
  size of its arrays.

Usage::

    python scripts/bench_ingest.py --data-dir ../shared/datasets [--synthetic-edges 2000000] [--json OUT]
        [--dataset flickr|synthetic] [--writers 1,2]

Uses NEO4J_URI when set, else starts a local Neo4j (scripts/neo4j_local.py) for the run (with
graphrec's plugin: the procedure rows need it; a server without it skips them).
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
from graph.export import export_snapshot, snapshot_from_columns  # noqa: E402
from graph.ingest import GraphColumns, ingest  # noqa: E402
from graph.local_store import LocalStore  # noqa: E402
from graph.neo4j_bulk import bulk_import  # noqa: E402
from graph.neo4j_procedures import merge_changes  # noqa: E402
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


def _cpu(pid: int | None) -> tuple[float, float]:
    """(server CPU seconds, this process's CPU seconds) so far."""
    import psutil

    server = 0.0
    if pid is not None:
        t = psutil.Process(pid).cpu_times()
        server = t.user + t.system
    me = os.times()
    return server, me.user + me.system


def _head_tail(cols: GraphColumns, f: float) -> tuple[GraphColumns, GraphColumns]:
    """All nodes plus the first ``f`` of the follows and engagements; then the rest of them."""
    nf, ne = int(len(cols.follow_src) * f), int(len(cols.eng_user) * f)
    edge_parts = (
        "follow_src",
        "follow_dst",
        "follow_ts",
        "eng_user",
        "eng_tweet",
        "eng_kind",
        "eng_ts",
        "eng_weight",
    )

    def cut(head: bool) -> GraphColumns:
        kw = {}
        for name in GraphColumns.__dataclass_fields__:
            a = getattr(cols, name)
            if name in edge_parts:
                k = nf if name.startswith("follow") else ne
                a = a[:k] if head else a[k:]
            elif not head and name != "tweet_texts":
                a = a[:0]
            elif not head:
                a = None
            kw[name] = a
        return GraphColumns(**kw)

    return cut(True), cut(False)


def bench_procedures(
    cols: GraphColumns,
    uri: str,
    batch_size: int,
    writers: list[int],
    server_pid: int | None,
    cypher_snap,
    warmup: bool = False,
) -> dict:
    """graphrec's procedures: ingest (99% + the last 1%), full export, incremental export."""
    rels = cols.n_relationships
    result: dict = {}
    head, tail = _head_tail(cols, 0.99)
    tail_rels = len(tail.follow_src) + len(tail.eng_user)
    with Neo4jStore.connect(uri) as store:
        store.procedures = "auto"
        if store.plugin is None:
            print("graphrec procedures: not on this server, skipped")
            return {"procedures": None}
        store.ensure_schema()
        if warmup:
            # One untimed ingest first, so the timed ones do not pay for the server's JIT warm-up.
            ingest(store, head, batch_size=batch_size, progress=False, writers=max(writers))
        for w in writers:
            store.clear()
            store.plugin.stats.clear()
            cpu0 = _cpu(server_pid)
            t0 = time.perf_counter()
            ingest(store, head, batch_size=batch_size, progress=False, writers=w)
            t_head = time.perf_counter() - t0
            cpu1 = _cpu(server_pid)
            base, marker = store.plugin.export()  # the snapshot the incremental export refreshes
            cpu2 = _cpu(server_pid)
            t0 = time.perf_counter()
            ingest(store, tail, batch_size=batch_size, progress=False, writers=w)
            t_tail = time.perf_counter() - t0
            cpu3 = _cpu(server_pid)
            dt = t_head + t_tail
            server_cpu = (cpu1[0] - cpu0[0]) + (cpu3[0] - cpu2[0])
            client_cpu = (cpu1[1] - cpu0[1]) + (cpu3[1] - cpu2[1])
            stats = {k: round(v, 1) for k, v in store.plugin.stats.items() if not k.startswith("export")}
            result[f"proc_ingest_w{w}_s"] = dt
            result[f"proc_ingest_w{w}_rels_per_s"] = rels / dt
            result[f"proc_ingest_w{w}_server_cpu_s"] = server_cpu
            result[f"proc_ingest_w{w}_client_cpu_s"] = client_cpu
            result[f"proc_ingest_w{w}_timers_ms"] = stats
            body = sum(v for k, v in stats.items() if k not in ("call", "calls", "rows"))
            print(
                f"procedure ingest, {w} writer(s), batches of {batch_size:,}: {dt:.1f}s = {rels / dt:,.0f} rels/s; "
                f"server CPU {server_cpu:.1f}s ({server_cpu / dt:.2f} cores), client CPU {client_cpu:.1f}s; "
                f"in calls {stats['call'] / 1e3:.1f}s, of which procedure bodies {body / 1e3:.1f}s "
                f"(nodes {stats.get('nodes', 0) / 1e3:.1f}, relationships {stats.get('relationships', 0) / 1e3:.1f}, "
                f"users+tweets {stats.get('write', 0) / 1e3:.1f}), the rest commit and transfer"
            )
            # incremental export of the last 1%, three times (the first plans the call)
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                changes, marker2 = store.plugin.changes(marker)
                times.append(time.perf_counter() - t0)
            got = len(changes.follow_src) + len(changes.eng_user)
            result[f"proc_incremental_w{w}_s"] = times
            result[f"proc_incremental_w{w}_rels"] = got
            print(
                f"incremental export of the last 1% ({tail_rels:,} follows+engagements given, {got:,} new): "
                f"{min(times) * 1e3:.1f} ms (first call {times[0] * 1e3:.1f} ms)"
            )
        # full export, three times
        times, java = [], []
        for _ in range(3):
            store.plugin.stats.clear()
            t0 = time.perf_counter()
            full, marker3 = store.plugin.export()
            t1 = time.perf_counter()
            snap = snapshot_from_columns(full)
            t2 = time.perf_counter()
            times.append((t1 - t0, t2 - t0))
            java.append(
                (store.plugin.stats["export_nodes_ms"] + store.plugin.stats["export_relationships_ms"]) / 1e3
            )
        best = min(times, key=lambda t: t[1])
        result["proc_export_columns_s"] = [t[0] for t in times]
        result["proc_export_snapshot_s"] = [t[1] for t in times]
        result["proc_export_java_scan_s"] = java
        result["proc_export_columns_rels_per_s"] = rels / min(t[0] for t in times)
        result["proc_export_snapshot_rels_per_s"] = rels / best[1]
        print(
            f"procedure export: columns {min(t[0] for t in times):.2f}s = {result['proc_export_columns_rels_per_s']:,.0f} rels/s "
            f"(server scan {min(java):.2f}s), to a snapshot {best[1]:.2f}s = {result['proc_export_snapshot_rels_per_s']:,.0f} rels/s "
            f"(first of 3: {times[0][1]:.2f}s)"
        )
        merged = snapshot_from_columns(merge_changes(base, changes))
        result["proc_snapshot_equals_cypher"] = bool(snap.equals(cypher_snap))
        result["proc_incremental_merge_equals_full"] = bool(merged.equals(snap))
        print(
            f"procedure snapshot identical to the reference (Cypher path's, or the local store's with --procedures-only): {result['proc_snapshot_equals_cypher']}; "
            f"base + incremental = full export: {result['proc_incremental_merge_equals_full']}"
        )
    return result


def bench_graph(
    name: str,
    cols: GraphColumns,
    uri: str,
    batch_size: int,
    naive_rows: int,
    workdir: Path,
    writers: list[int],
    server_pid: int | None,
    proc_batch_size: int,
    procedures_only: bool = False,
    warmup: bool = False,
) -> dict:
    rels = cols.n_relationships
    rows = len(cols.users) + len(cols.tweet_ids) + len(cols.follow_src) + len(cols.eng_user)
    print(f"\n== {name}: {rels:,} relationships, {rows:,} rows")
    result: dict = {"graph": name, "relationships": rels}
    if procedures_only:
        # The procedure ingest, its exports, and the offline import as the machine's reference:
        # the Cypher path's snapshot is replaced by the local store's (the same graph).
        with LocalStore(workdir / f"{name}-local") as local:
            ingest(local, cols, batch_size=batch_size, progress=False)
            snap = export_snapshot(local, progress=False)
        result.update(bench_procedures(cols, uri, proc_batch_size, writers, server_pid, snap, warmup))
        bench_bulk(name, cols, workdir, result)
        return result

    with Neo4jStore.connect(uri) as store:
        store.procedures = "cypher"  # the transactional Cypher path; the procedures come below
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

    result.update(bench_procedures(cols, uri, proc_batch_size, writers, server_pid, snap, warmup))

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

    bench_bulk(name, cols, workdir, result)

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


def bench_bulk(name: str, cols: GraphColumns, workdir: Path, result: dict) -> None:
    """Initial load the offline way: neo4j-admin import into a new home (server stopped), then
    one server start to create the constraints. Timed: CSV + import tool (JVM start included)."""
    rels = cols.n_relationships
    bulk = bulk_import(cols, workdir / f"{name}-bulk-home", schema=False)
    result["bulk_import_s"] = bulk["total_s"]
    result["bulk_import_rels_per_s"] = rels / bulk["total_s"]
    result["bulk_import_tool_rels_per_s"] = rels / bulk["import_s"]
    naive = result.get("naive_rels_per_s")
    print(
        f"bulk import (neo4j-admin, offline): {bulk['total_s']:.1f}s = {rels / bulk['total_s']:,.0f} rels/s "
        f"(CSV {bulk['csv_s']:.1f}s, import tool {bulk['import_s']:.1f}s = {rels / bulk['import_s']:,.0f} rels/s"
        + (f"; {rels / bulk['total_s'] / naive:.0f}x naive)" if naive else ")")
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--synthetic-edges", type=int, default=2_000_000)
    p.add_argument("--batch-size", type=int, default=20_000)
    p.add_argument("--naive-rows", type=int, default=3000, help="rows for the one-query-per-row baseline")
    p.add_argument("--only", "--dataset", choices=["flickr", "synthetic"], help="run one graph only")
    p.add_argument(
        "--writers", default="1,2", help="writer threads for the procedure ingest, comma-separated"
    )
    p.add_argument("--proc-batch-size", type=int, default=10_000, help="rows per procedure call")
    p.add_argument(
        "--procedures-only",
        action="store_true",
        help="only the procedure ingest and exports (checked against the local store's snapshot) "
        "and the offline import; no naive, Cypher, local-store or snapshot-memory rows",
    )
    p.add_argument(
        "--warmup",
        action="store_true",
        help="ingest once untimed before the timed procedure ingests (the server's JIT warm-up)",
    )
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()

    from graph.neo4j_local import LocalNeo4j, neo4j_uri_from_env

    uri = neo4j_uri_from_env()
    server = None
    if not uri:
        server = LocalNeo4j().start(heap="4g", pagecache="2g")
        uri = server.uri
    writers = [int(w) for w in args.writers.split(",")]
    pid = server.pid if server is not None else None
    results = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            graphs = {
                "flickr": lambda: GraphColumns.from_dataset(load_dataset("flickr", args.data_dir)),
                "synthetic-2M": lambda: GraphColumns.from_synthetic(
                    generate(users_for_edges(args.synthetic_edges), seed=0, with_text=False)
                ),
            }
            for name, columns in graphs.items():
                if args.only not in (None, name.split("-")[0]):
                    continue
                results.append(
                    bench_graph(
                        name,
                        columns(),
                        uri,
                        args.batch_size,
                        args.naive_rows,
                        work,
                        writers,
                        pid,
                        args.proc_batch_size,
                        args.procedures_only,
                        args.warmup,
                    )
                )
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
