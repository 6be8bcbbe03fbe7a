"""Where a procedure ingest's server time goes: JFR CPU samples of the Neo4j server while the
synthetic graph (or flickr) is written through graphrec's procedures, summarised by frame.

    python scripts/profile_proc_ingest.py [--edges 2000000] [--batch-size 10000] [--writers 1] [--top 40]

Starts its own local Neo4j (with the plugin), records with ``jcmd <pid> JFR.start`` and prints
the hottest top frames and the share of samples under a few telling frames (commit, index
updates, tx-log append, the procedure bodies).
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.ingest import GraphColumns, ingest  # noqa: E402
from graph.neo4j_local import LocalNeo4j  # noqa: E402
from graph.neo4j_store import Neo4jStore  # noqa: E402
from graph.synthetic import generate, users_for_edges  # noqa: E402

MARKERS = {
    "procedure body (graphrec Writes)": "io.graphrec.neo4j.plugin.Writes.",
    "commit (KernelTransactionImplementation.commit)": "KernelTransactionImplementation.commit",
    "tx state -> commands": "TransactionRecordState",
    "index updates": "IndexUpdates",
    "tx log append": "TransactionLogWriter",
    "store apply": "TransactionApplier",
    "bolt / procedure call decode": "org.neo4j.bolt",
    "GC": "GC",
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--edges", type=int, default=2_000_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--writers", type=int, default=1)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--json")
    a = p.parse_args()
    cols = GraphColumns.from_synthetic(generate(users_for_edges(a.edges), seed=0, with_text=False))
    rels = cols.n_relationships
    with tempfile.TemporaryDirectory() as tmp:
        server = LocalNeo4j().start(data_dir=Path(tmp) / "home", heap="1g", pagecache="512m")
        try:
            jfr = Path(tmp) / "ingest.jfr"
            with Neo4jStore.connect(server.uri) as store:
                store.procedures = "plugin"
                store.ensure_schema()
                run = ["jcmd", str(server.pid)]
                subprocess.run(
                    [*run, "JFR.start", "name=ingest", "settings=profile"], check=True, capture_output=True
                )
                t0 = time.perf_counter()
                ingest(store, cols, batch_size=a.batch_size, progress=False, writers=a.writers)
                dt = time.perf_counter() - t0
                subprocess.run(
                    [*run, "JFR.stop", "name=ingest", f"filename={jfr}"], check=True, capture_output=True
                )
                stats = dict(store.plugin.stats)
            out = subprocess.run(
                ["jfr", "print", "--json", "--events", "jdk.ExecutionSample", str(jfr)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        finally:
            server.stop()
    events = json.loads(out)["recording"]["events"]
    top, under = collections.Counter(), collections.Counter()
    for e in events:
        frames = e["values"]["stackTrace"]["frames"]
        names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
        if names:
            top[names[0]] += 1
        joined = " ".join(names)
        for label, marker in MARKERS.items():
            if marker in joined:
                under[label] += 1
    n = len(events)
    print(f"{rels:,} relationships in {dt:.1f}s = {rels / dt:,.0f} rels/s; {n} CPU samples")
    print(f"procedure timers (ms): { {k: round(v) for k, v in stats.items()} }")
    print("share of samples under:")
    for label, c in under.most_common():
        print(f"  {c / n:6.1%}  {label}")
    print("hottest top frames:")
    for name, c in top.most_common(a.top):
        print(f"  {c / n:6.1%}  {name}")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    "rels_per_s": rels / dt,
                    "samples": n,
                    "under": {k: v / n for k, v in under.items()},
                    "top": [(k, v / n) for k, v in top.most_common(a.top)],
                    "timers_ms": stats,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
