"""Where a procedure ingest's server time goes: JFR CPU samples of the Neo4j server while the
synthetic graph (or flickr) is written through graphrec's procedures, summarised by frame.

    python scripts/profile_proc_ingest.py [--dataset synthetic|flickr] [--data-dir DIR] [--edges 2000000]
        [--batch-size 10000] [--writers 1] [--top 40] [--keep-jfr FILE] [--json OUT]

Starts its own local Neo4j (with the plugin), records with ``jcmd <pid> JFR.start`` and prints
the hottest top frames and the share of samples under a few telling frames (commit, index
updates, tx-log append, the procedure bodies).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.datasets import load_dataset  # noqa: E402
from graph.ingest import GraphColumns, ingest  # noqa: E402
from graph.neo4j_local import LocalNeo4j  # noqa: E402
from graph.neo4j_store import Neo4jStore  # noqa: E402
from graph.synthetic import generate, users_for_edges  # noqa: E402

# Inclusive: a sample counts under every marker that one of its frames contains. Only Java
# threads are sampled (GC and JIT threads are not in jdk.ExecutionSample).
MARKERS = {
    "under Bolt workers (everything a request does)": "org.neo4j.bolt",
    "procedure bodies (graphrec plugin)": "io.graphrec.neo4j.plugin.",
    "  node lookups and creates (KernelGraph.getOrCreate)": "KernelGraph.getOrCreate",
    "  kernel relationshipCreate": "Operations.relationshipCreate",
    "  kernel relationship property writes": (
        "Operations.relationshipSetProperty",
        "Operations.relationshipApplyChanges",
    ),
    "  stamping and the change-log entry (Writes.stampAndLog)": "Writes.stampAndLog",
    "commit (KernelTransactionImplementation.commit)": "KernelTransactionImplementation.commit",
    "  tx state -> records (TransactionRecordState)": "TransactionRecordState",
    "    relationship records, chain links (RelationshipModifier)": "RelationshipModifier",
    "      commit-time node and group locks (RelationshipModifier.acquire*)": "RelationshipModifier.acquire",
    "      relationship group records (RelationshipGroupGetter)": "RelationshipGroupGetter",
    "    property records (PropertyCreator)": "PropertyCreator",
    "  index updates, gathered and applied (*IndexUpdates*)": "IndexUpdates",
    "    in the index applier (IndexTransactionApplier)": "IndexTransactionApplier",
    "  commands -> tx log bytes (LogCommandSerialization)": "LogCommandSerialization",
    "  tx log append / flush (TransactionLogWriter)": "TransactionLogWriter",
    "  store apply (NeoStoreTransactionApplier)": "NeoStoreTransactionApplier",
    "  counts store": "CountsStoreTransactionApplier",
    "  degrees store (dense nodes)": "DegreeStoreTransactionApplier",
    "locks (ForsetiClient), anywhere": "ForsetiClient",
    "id generators, anywhere": "org.neo4j.internal.id.",
    "page cache (MuninnPageCursor), anywhere": "MuninnPageCursor",
    "kernel tx state (TxState), anywhere": "impl.api.state.TxState",
}


def _under(joined: str, marker: str | tuple[str, ...]) -> bool:
    return any(m in joined for m in ((marker,) if isinstance(marker, str) else marker))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--dataset", choices=["synthetic", "flickr"], default="synthetic")
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--edges", type=int, default=2_000_000, help="synthetic graph size")
    p.add_argument("--keep-jfr", help="copy the recording here (for `jfr print` / `jfr summary`)")
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--writers", type=int, default=1)
    p.add_argument("--top", type=int, default=40)
    p.add_argument("--json")
    p.add_argument(
        "--analyze", help="summarise this recording (from --keep-jfr) instead of running an ingest"
    )
    a = p.parse_args()
    if a.analyze:
        summarise(samples(Path(a.analyze)), a, header="recording " + a.analyze)
        return 0
    if a.dataset == "flickr":
        cols = GraphColumns.from_dataset(load_dataset("flickr", a.data_dir))
    else:
        cols = GraphColumns.from_synthetic(generate(users_for_edges(a.edges), seed=0, with_text=False))
    rels = cols.n_relationships
    # JFR keeps 64 frames of a stack by default; a procedure call's commit runs under ~100 frames
    # of Bolt and Cypher, so deeper stacks are needed to see which samples are under it.
    os.environ["JAVA_TOOL_OPTIONS"] = (
        os.environ.get("JAVA_TOOL_OPTIONS", "") + " -XX:FlightRecorderOptions:stackdepth=2048"
    ).strip()
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
            if a.keep_jfr:
                shutil.copyfile(jfr, a.keep_jfr)
            events = samples(jfr)
        finally:
            server.stop()
    header = f"{rels:,} relationships in {dt:.1f}s = {rels / dt:,.0f} rels/s"
    summarise(events, a, header=header, extra={"rels_per_s": rels / dt, "timers_ms": stats})
    return 0


def samples(jfr: Path) -> list:
    """The recording's CPU samples with whole stacks (`jfr print` cuts them to 5 frames by default)."""
    out = subprocess.run(
        ["jfr", "print", "--json", "--stack-depth", "4096", "--events", "jdk.ExecutionSample", str(jfr)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)["recording"]["events"]


def summarise(events: list, a: argparse.Namespace, header: str, extra: dict | None = None) -> None:
    top, under = collections.Counter(), collections.Counter()
    for e in events:
        frames = e["values"]["stackTrace"]["frames"]
        names = [f"{f['method']['type']['name']}.{f['method']['name']}" for f in frames]
        if names:
            top[names[0]] += 1
        joined = " ".join(names)
        for label, marker in MARKERS.items():
            if _under(joined, marker):
                under[label] += 1
    n = len(events)
    print(f"{header}; {n} CPU samples")
    if extra:
        print(f"procedure timers (ms): { {k: round(v) for k, v in extra['timers_ms'].items()} }")
    print("share of samples under:")
    for label in MARKERS:
        c = under[label]
        print(f"  {c / n:6.1%}  {label}")
    print("hottest top frames:")
    for name, c in top.most_common(a.top):
        print(f"  {c / n:6.1%}  {name}")
    if a.json:
        Path(a.json).write_text(
            json.dumps(
                {
                    **(extra or {}),
                    "samples": n,
                    "under": {k: v / n for k, v in under.items()},
                    "top": [(k, v / n) for k, v in top.most_common(a.top)],
                },
                indent=1,
            )
        )


if __name__ == "__main__":
    raise SystemExit(main())
