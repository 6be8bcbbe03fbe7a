"""The ``graphrec`` command line: ingest, snapshot, demo, recommend, fit, serve, tune, evaluate, embed,
stream, produce, batch.

Entry points talk (print results); libraries log. ``-v`` shows info logs.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from graph.errors import GraphRecError, command_parser, run_command

log = logging.getLogger("graphrec")

#: --store default: None = the Neo4j server in NEO4J_URI when set, else the local store .graphrec/store
DEFAULT_STORE = None
STORE_HELP = (
    "local store directory, bolt:// / neo4j:// URI, or `neo4j` for the server in NEO4J_URI "
    "(default: NEO4J_URI when set, else .graphrec/store). Neo4j credentials: NEO4J_USER / NEO4J_PASSWORD "
    "or NEO4J_AUTH=user/password; for a localhost URI, the local servers' password file by default"
)
DEFAULT_DATA_DIR = "../shared/datasets"


def _add_ingest(sub) -> None:
    p = sub.add_parser(
        "ingest",
        help="load a dataset, a synthetic graph or event files into a store",
        description="Load graph data into a store. Batched, transactional and idempotent: re-running adds nothing.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument(
        "--dataset", choices=["gowalla", "lastfm", "flickr", "synthetic"], help="dataset to load"
    )
    src.add_argument(
        "--events", nargs="+", metavar="FILE", help="event files (.csv, .tsv, .jsonl); see README"
    )
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="folder holding the datasets (default: %(default)s)"
    )
    p.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help=STORE_HELP,
    )
    p.add_argument("--splits", default="train,val,test", help="dataset splits to load (default: %(default)s)")
    p.add_argument(
        "--users", type=int, default=2000, help="synthetic: number of users (default: %(default)s)"
    )
    p.add_argument("--edges", type=int, help="synthetic: target number of relationships (overrides --users)")
    p.add_argument("--seed", type=int, default=0, help="synthetic: random seed (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=20_000, help="rows per transaction (default: %(default)s)"
    )
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="events: skip bad rows (each logged as file:line: what; the count is in the summary) instead of "
        "failing before anything is written",
    )
    p.add_argument(
        "--neo4j-import-home",
        metavar="DIR",
        help="instead of --store: bulk-load into a new local Neo4j home with `neo4j-admin database import` "
        "(offline, initial loads only); serve it with `scripts/neo4j_local.py start --data-dir DIR`",
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_ingest)


def _add_snapshot(sub) -> None:
    p = sub.add_parser(
        "snapshot",
        help="export a store to an immutable snapshot directory",
        description="Export the graph of a store to a snapshot (id vocabularies + CSR arrays, memory-mappable).",
    )
    p.add_argument("--store", default=DEFAULT_STORE, help=STORE_HELP)
    p.add_argument("--out", required=True, help="snapshot directory to write")
    p.add_argument(
        "--batch-size", type=int, default=20_000, help="rows per read batch (default: %(default)s)"
    )
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=cmd_snapshot)


def _add_demo(sub) -> None:
    p = sub.add_parser(
        "demo",
        help="run the whole pipeline on a real dataset in the local store",
        description="End-to-end demo on the embedded local store (no server needed): ingest, snapshot, "
        "random walks, GNN embeddings, recommendations with reasons, an evaluation table.",
    )
    p.add_argument("--dataset", default="lastfm", choices=["gowalla", "lastfm", "flickr", "synthetic"])
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="folder holding the datasets (default: %(default)s)"
    )
    p.add_argument(
        "--store", default=".graphrec/demo-store", help="local store directory (default: %(default)s)"
    )
    p.add_argument("--user", type=int, help="user to recommend for (default: the most active one)")
    p.add_argument("--no-eval", action="store_true", help="skip the evaluation table")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=cmd_demo)


def _add_recommend(sub) -> None:
    p = sub.add_parser(
        "recommend",
        help="who to follow / tweet candidates for one user",
        description="Recommendations for a user from a store (or a saved snapshot), with reasons.",
    )
    p.add_argument("--store", default=DEFAULT_STORE, help=STORE_HELP)
    p.add_argument("--snapshot", help="use this saved snapshot instead of exporting the store")
    p.add_argument(
        "--embeddings", help="embedding artifact directory (from `graphrec embed`) to add as a source"
    )
    p.add_argument("--config", help="tuned recommender config JSON (source weights)")
    p.add_argument(
        "--model",
        help="a fitted recommender saved by `graphrec fit` (with --snapshot): no refitting per call",
    )
    p.add_argument("--user", type=int, required=True, help="external user id")
    p.add_argument(
        "--task",
        "--kind",
        dest="task",
        choices=["follows", "tweets"],
        default="follows",
        help="what to recommend",
    )
    p.add_argument("-k", type=int, default=20, help="number of results (default: %(default)s)")
    p.add_argument("--explain", action="store_true", help="print the reason and per-source scores")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument(
        "--strict", action="store_true", help="fail for an unknown user instead of the cold-start path"
    )
    p.add_argument("--per-author-cap", type=int, help="tweets: at most this many per author")
    p.add_argument("--max-age-days", type=float, help="tweets: drop tweets older than this")
    p.add_argument("--exclude", type=int, nargs="*", default=[], help="ids never to return")
    p.set_defaults(func=cmd_recommend)


def _add_fit(sub) -> None:
    p = sub.add_parser(
        "fit",
        help="fit the recommender on a snapshot once and save it, for fast `recommend --model`",
        description="Fit every weighted source of the recommender on a saved snapshot (precomputed lists "
        "included) and save the fitted model; `graphrec recommend --snapshot S --model DIR` then answers "
        "without refitting.",
    )
    p.add_argument("--snapshot", required=True, help="saved snapshot directory (`graphrec snapshot --out`)")
    p.add_argument("--config", help="tuned recommender config JSON (`graphrec tune --out`)")
    p.add_argument("--embeddings", help="embedding artifact directory (`graphrec embed --out`)")
    p.add_argument("--out", required=True, help="directory to save the fitted recommender in")
    p.set_defaults(func=cmd_fit)


def cmd_fit(args) -> int:
    from retrieval.recommender import Recommender

    t0 = time.perf_counter()
    rec = Recommender.from_artifacts(args.snapshot, embeddings_dir=args.embeddings, config_path=args.config)
    rec.save(args.out)
    sources = {task: sorted(s) for task, s in rec.sources.items()}
    print(f"fitted in {time.perf_counter() - t0:.1f}s and saved to {args.out}; sources {sources}")
    return 0


def _add_serve(sub) -> None:
    p = sub.add_parser(
        "serve",
        help="serve who-to-follow and tweet candidates over HTTP (FastAPI on uvicorn)",
        description="Serve the recommender over HTTP: GET /v1/users/{id}/who-to-follow and "
        "/v1/users/{id}/tweet-candidates, their POST batch variants /v1/who-to-follow and "
        "/v1/tweet-candidates, /healthz, /readyz, /metrics (Prometheus), POST /admin/reload, and "
        "the OpenAPI docs at /docs. The recommender is loaded (--model) or fitted once, then N "
        "worker processes are forked that share it copy-on-write. SIGTERM or Ctrl-C stops it.",
        epilog="example: graphrec fit --snapshot snap --out model && "
        "graphrec serve --snapshot snap --model model --workers 2",
    )
    p.add_argument("--snapshot", required=True, help="saved snapshot directory (`graphrec snapshot --out`)")
    p.add_argument(
        "--model",
        help="fitted recommender saved by `graphrec fit --out` (default: fit on the snapshot at start)",
    )
    p.add_argument("--config", help="tuned recommender config JSON, when fitting at start (`graphrec tune`)")
    p.add_argument(
        "--embeddings", help="embedding artifact directory, when fitting at start (`graphrec embed`)"
    )
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; 0.0.0.0 for every interface (default: %(default)s)",
    )
    p.add_argument(
        "--port", type=int, default=8080, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    p.add_argument(
        "--workers", type=int, default=1, help="worker processes forked after loading (default: %(default)s)"
    )
    p.add_argument(
        "--deadline-ms",
        type=float,
        default=1000.0,
        help="a recommendation request still unanswered after this long gets a 504 JSON error "
        "(default: %(default)s)",
    )
    p.add_argument(
        "--max-batch", type=int, default=100, help="most user ids in one batch request (default: %(default)s)"
    )
    p.add_argument(
        "--admin-token-file",
        help="file holding the bearer token of POST /admin/reload (default: $GRAPHREC_ADMIN_TOKEN; "
        "with neither, the admin endpoints answer 404)",
    )
    live = p.add_argument_group(
        "live events",
        "each worker follows an events topic itself and serves the snapshot plus everything since it",
    )
    live.add_argument(
        "--live-bootstrap",
        metavar="HOST:PORT",
        help="Kafka bootstrap servers of the events topic (default: off, the snapshot alone)",
    )
    live.add_argument("--live-topic", default="events", help="events topic (default: %(default)s)")
    live.add_argument(
        "--live-start",
        choices=["snapshot", "earliest"],
        default="snapshot",
        help="read from a minute before the snapshot's newest event, or the whole topic "
        "(default: %(default)s)",
    )
    live.add_argument(
        "--live-walk-refresh",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="fold the live graph for the random walks (Pixie, SALSA, PPR) at most this often, on a "
        "background thread per worker (and at least 5x the last fold's time apart); 0: the walks "
        "read the snapshot alone (default: %(default)s)",
    )
    live.add_argument(
        "--compact-every",
        type=float,
        metavar="SECONDS",
        help="every SECONDS, fold the events since the served snapshot into a new snapshot and model "
        "(`graphrec compact` in a child process, embeddings carried over and folded in) and reload onto "
        "it: the live segments stay bounded (default: off; a reload is then up to you)",
    )
    live.add_argument("--compact-dir", help="where --compact-every writes its outputs (gen-1, gen-2, ...)")
    p.set_defaults(func=cmd_serve)


def cmd_serve(args) -> int:
    from pathlib import Path

    from graphrec.serve.settings import ModelPaths, ServeSettings, read_admin_token
    from graphrec.serve.workers import serve

    def _path(value):
        return Path(value) if value else None

    settings = ServeSettings(
        paths=ModelPaths(Path(args.snapshot), _path(args.model), _path(args.config), _path(args.embeddings)),
        host=args.host,
        port=args.port,
        workers=args.workers,
        deadline_ms=args.deadline_ms,
        max_batch=args.max_batch,
        admin_token=read_admin_token(args.admin_token_file),
        live=_live_settings(args),
        compact_every_s=args.compact_every,
        compact_dir=_path(args.compact_dir),
    )

    def listening(host, port, model) -> None:
        where = f"[{host}]" if ":" in host else host
        admin = "on" if settings.admin_token else "off (no token)"
        print(
            f"serving snapshot {model.snapshot_id} on http://{where}:{port} with {settings.workers} "
            f"worker(s); admin endpoints {admin}; docs at /docs",
            flush=True,
        )

    return serve(settings, listening)


def _live_settings(args):
    if not args.live_bootstrap:
        return None
    from graph.kafka_client import confluent
    from graphrec.serve.live_feed import LiveSettings

    confluent()  # the Kafka client is installed, or a clear error before anything starts
    return LiveSettings(
        args.live_bootstrap,
        topic=args.live_topic,
        start=args.live_start,
        walk_refresh_s=args.live_walk_refresh,
    )


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="tune the recommender's source weights on validation data; write a config",
        description="Fit the recommender's sources on the graph minus 20% of a sample of users' items and "
        "pick the fusion weights that recall those items best (gated coordinate ascent: a weight is kept "
        "only if it also pays on a leave-one-out carve of another seed). Writes a JSON config for "
        "`graphrec recommend --config` / `Recommender.load(config_path=...)`.",
    )
    p.add_argument("--store", default=DEFAULT_STORE, help=STORE_HELP)
    p.add_argument("--snapshot", help="use this saved snapshot instead of exporting the store")
    p.add_argument("--out", required=True, help="config JSON to write")
    p.add_argument(
        "--tasks",
        "--kinds",
        dest="tasks",
        default="tweets,follows",
        help="what to tune: tweets, follows or both (default: %(default)s)",
    )
    p.add_argument(
        "--val-users", type=int, default=2000, help="validation users sampled per task (default: %(default)s)"
    )
    p.add_argument(
        "--seed",
        type=int,
        default=0,
        help="seed of the validation carve; the second carve uses seed+1 (default: %(default)s)",
    )
    p.add_argument(
        "--embeddings",
        help="the embedding artifact (`graphrec embed --out`) the recommender will serve: its source is "
        "switched off, with the reason in the config, when the model does not beat popularity on validation",
    )
    p.set_defaults(func=cmd_tune)


def cmd_tune(args) -> int:
    import json
    from pathlib import Path

    from retrieval.autotune import tune_config

    if args.snapshot:
        from graph.snapshot import GraphSnapshot

        snap = GraphSnapshot.load(args.snapshot)
    else:
        from graph.export import export_snapshot
        from graph.store import open_store

        with open_store(args.store) as store:
            snap = export_snapshot(store, progress=False)
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    metrics = None
    if args.embeddings:
        from gnn.artifacts import load_artifact

        metrics = load_artifact(args.embeddings, snapshot_id=snap.snapshot_id).metrics
    config, report = tune_config(
        snap, tasks=tasks, val_users=args.val_users, seed=args.seed, embedding_metrics=metrics
    )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    config.save(out)
    for task, rep in report.items():
        if "embedding" in rep:
            print(f"{task}: embedding source {rep['embedding']}")
        if "skipped" in rep:
            print(f"{task}: skipped ({rep['skipped']})")
            continue
        single = rep["single_source_val_recall@20"]
        best = max(single, key=single.get)
        print(
            f"{task}: weights {json.dumps({n: w for n, w in rep['weights'].items() if w})}; "
            f"validation recall@20 {rep['val_recall@20']:.4f} (best single source {best} {single[best]:.4f}; "
            f"{rep['val_users']} users, {rep['seconds']:.1f}s)"
        )
    print(f"config written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser, sub = command_parser(
        "graphrec",
        "Graph-based recommendations (who to follow, tweet candidates) over Neo4j or a local store.",
    )
    _add_ingest(sub)
    _add_snapshot(sub)
    _add_demo(sub)
    _add_recommend(sub)
    _add_fit(sub)
    _add_serve(sub)
    _add_tune(sub)
    from evaluation.cli import add_evaluate_parser
    from gnn.cli import add_embed_parser

    add_evaluate_parser(sub)
    add_embed_parser(sub)
    from graphrec.stream_cli import add_stream_parsers

    add_stream_parsers(sub)
    from graphrec.batch_cli import add_batch_parser

    add_batch_parser(sub)
    return parser


# ---------------------------------------------------------------------------
# commands


def _load_columns(args):
    """(the columns to write, a note for the summary: how many bad event rows were skipped)."""
    from graph.ingest import GraphColumns

    if args.events:
        from graph.events import read_events

        # every row is parsed and validated before anything is written; --skip-bad rows are
        # logged one by one (warnings) and counted in the summary cmd_ingest prints
        ev = read_events(args.events, skip_bad=args.skip_bad)
        note = f" (skipped {ev.skipped:,} bad event rows of {ev.rows:,})" if args.skip_bad else ""
        return GraphColumns.from_events(ev), note
    if args.dataset == "synthetic":
        from graph.synthetic import generate, users_for_edges

        n_users = users_for_edges(args.edges) if args.edges else args.users
        return GraphColumns.from_synthetic(generate(n_users, seed=args.seed)), ""
    from graph.datasets import load_dataset

    splits = tuple(s.strip() for s in args.splits.split(",") if s.strip())
    bad = set(splits) - {"train", "val", "test"}
    if bad:
        raise GraphRecError(f"--splits: unknown split(s) {sorted(bad)}; use train, val, test")
    return GraphColumns.from_dataset(load_dataset(args.dataset, args.data_dir), splits), ""


def cmd_ingest(args) -> int:
    from graph.ingest import ingest
    from graph.store import open_store

    cols, note = _load_columns(args)
    t0 = time.perf_counter()
    if args.neo4j_import_home:
        from graph.neo4j_bulk import bulk_import

        res = bulk_import(cols, args.neo4j_import_home)
        print(
            f"imported {cols.n_relationships:,} relationships into {res['home']} in {res['total_s']:.1f}s "
            f"(CSV {res['csv_s']:.1f}s, import tool {res['import_s']:.1f}s), then created constraints and indexes "
            f"in {res['schema_s']:.1f}s{note}"
        )
        return 0
    with open_store(args.store, create=True) as store:
        sent = ingest(store, cols, batch_size=args.batch_size, progress=not args.no_progress)
        counts = store.counts()
    dt = time.perf_counter() - t0
    print(f"ingested {sum(sent.values()):,} rows into {store} in {dt:.1f}s{note}")
    _print_table("store now holds", counts)
    return 0


def cmd_snapshot(args) -> int:
    from graph.export import export_snapshot
    from graph.store import open_store

    with open_store(args.store) as store:
        snap = export_snapshot(store, batch_size=args.batch_size, progress=not args.no_progress)
    snap.save(args.out)
    print(f"snapshot {snap.snapshot_id} written to {args.out} ({snap.nbytes / 1e6:.1f} MB of arrays)")
    _print_table("snapshot", snap.stats())
    return 0


def cmd_demo(args) -> int:
    from graphrec.demo import run_demo

    return run_demo(
        args.dataset,
        args.data_dir,
        args.store,
        user=args.user,
        evaluate=not args.no_eval,
        progress=not args.no_progress,
    )


def load_recommender(args):
    """A Recommender from --snapshot/--embeddings/--config, or from the store's current graph."""
    from retrieval.recommender import Recommender, RecommenderConfig

    if args.model:
        if not args.snapshot:
            raise GraphRecError("--model needs --snapshot (the snapshot the model was fitted on)")
        if args.config or args.embeddings:
            raise GraphRecError("--model already holds its config and embeddings; drop --config/--embeddings")
        return Recommender.load(args.model, args.snapshot)
    if args.snapshot:
        return Recommender.from_artifacts(
            args.snapshot, embeddings_dir=args.embeddings, config_path=args.config
        )
    if args.embeddings:
        raise GraphRecError("--embeddings needs --snapshot (the snapshot the embeddings were trained on)")
    from graph.store import open_store

    config = RecommenderConfig.load(args.config) if args.config else None
    with open_store(args.store) as store:
        return Recommender.from_store(store, config=config)


def cmd_recommend(args) -> int:
    import json

    from retrieval.filters import FilterOptions
    from retrieval.recommender import check_k

    check_k(args.k)  # before the minutes a fit can take, not after
    rec = load_recommender(args)
    max_age = args.max_age_days * 86_400 if args.max_age_days is not None else None
    filters = FilterOptions(exclude=args.exclude, max_age_seconds=max_age)
    if args.task == "follows":
        results = rec.who_to_follow(args.user, args.k, filters=filters, strict=args.strict)
    else:
        results = rec.tweet_candidates(
            args.user, args.k, filters=filters, strict=args.strict, per_author_cap=args.per_author_cap
        )
    if args.json:
        print(json.dumps([r.to_dict() for r in results], indent=2))
        return 0
    noun = "accounts to follow" if args.task == "follows" else "tweet candidates"
    print(f"{noun} for user {args.user}:")
    for rank, r in enumerate(results, start=1):
        line = f"{rank:>3}. {r.id:>12}  score {r.score:.3f}"
        if args.explain:
            parts = ", ".join(f"{k}={v:.2f}" for k, v in sorted(r.sources.items(), key=lambda kv: -kv[1]))
            line += f"  {r.reason}  [{parts}]"
        print(line)
    return 0


def _print_table(title: str, values: dict) -> None:
    print(title)
    width = max(len(k) for k in values) if values else 0
    for key, value in values.items():
        text = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        print(f"  {key:<{width}}  {text:>14}")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return run_command(args, f"graphrec {args.command}")


if __name__ == "__main__":
    sys.exit(main())
