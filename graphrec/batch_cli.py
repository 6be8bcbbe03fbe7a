"""``graphrec batch recommend``: candidates for every user of a snapshot, on Ray (:mod:`graphrec.batch`)."""

from __future__ import annotations

import json
from pathlib import Path

from graph.errors import GraphRecError


def add_batch_parser(sub) -> None:
    """Register ``graphrec batch`` and its sub-commands."""
    p = sub.add_parser(
        "batch",
        help="batch jobs on Ray (local by default, or a Ray cluster): candidates for every user",
        description="Batch jobs on a distributed engine (Ray). Local mode by default; "
        "--engine-address runs the same job on a Ray cluster.",
    )
    batch_sub = p.add_subparsers(dest="batch_command", required=True, metavar="JOB")
    r = batch_sub.add_parser(
        "recommend",
        help="who-to-follow and tweet candidates for every user, written as Parquet",
        description="Run the served recommender for every user of the snapshot (or --users / --sample), "
        "partitioned over Ray workers; each worker builds the recommender once from the memory-mapped "
        "snapshot (and model) and writes OUT/<task>/part-NNNNN.parquet with the columns "
        "user, rank, target, score, reason. The output does not depend on the number of workers.",
        epilog="example: graphrec batch recommend --snapshot snap --model model --out recs --workers 2; "
        "on a cluster (snapshot and model on shared storage): ray start --head, then "
        "graphrec batch recommend ... --engine-address auto",
    )
    r.add_argument("--snapshot", required=True, help="saved snapshot directory (`graphrec snapshot --out`)")
    r.add_argument(
        "--model", help="fitted recommender (`graphrec fit --out`): loaded memory-mapped, no fit per worker"
    )
    r.add_argument("--config", help="tuned recommender config JSON, when fitting (`graphrec tune --out`)")
    r.add_argument("--embeddings", help="embedding artifact directory, when fitting (`graphrec embed --out`)")
    r.add_argument("--out", required=True, help="output directory (Parquet files per task)")
    r.add_argument(
        "--overwrite", action="store_true", help="replace the outputs in a non-empty --out directory"
    )
    r.add_argument(
        "--tasks",
        default="follows,tweets",
        help="follows, tweets or both (default: %(default)s)",
    )
    r.add_argument("--k-follows", type=int, default=20, help="accounts per user (default: %(default)s)")
    r.add_argument("--k-tweets", type=int, default=50, help="tweets per user (default: %(default)s)")
    r.add_argument("--users", metavar="FILE", help="user ids to run, one per line (default: every user)")
    r.add_argument("--sample", type=int, help="run a seeded random sample of this many users")
    r.add_argument("--seed", type=int, default=0, help="seed of --sample (default: %(default)s)")
    r.add_argument(
        "--partition-size",
        type=int,
        default=2000,
        help="users per partition (one file per task each; default: %(default)s)",
    )
    r.add_argument(
        "--engine",
        choices=["ray", "local"],
        default="ray",
        help="ray, or local: the same partitions in this one process, without Ray (default: %(default)s)",
    )
    r.add_argument(
        "--engine-address",
        help="Ray cluster to run on: auto (the one `ray start` started), HOST:PORT or ray://HOST:PORT "
        "(default: a local Ray with --workers CPUs, started and stopped by this command)",
    )
    r.add_argument(
        "--workers",
        type=int,
        help="Ray actors, one CPU each (default: the CPUs of the local machine/cluster)",
    )
    r.add_argument("--no-explain", action="store_true", help="leave the reason column empty (faster)")
    r.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    r.set_defaults(func=cmd_batch_recommend)


def cmd_batch_recommend(args) -> int:
    from tqdm.auto import tqdm

    from graphrec.batch import BatchJob, run_batch, select_users
    from graphrec.serve.settings import ModelPaths

    def _path(value):
        return Path(value) if value else None

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    k = {"follows": args.k_follows, "tweets": args.k_tweets}
    unknown = sorted(set(tasks) - set(k))
    if unknown or not tasks:
        raise GraphRecError(f"--tasks: unknown task(s) {unknown}; use follows, tweets")
    job = BatchJob(
        ModelPaths(Path(args.snapshot), _path(args.model), _path(args.config), _path(args.embeddings)),
        k={t: k[t] for t in tasks},
        partition_size=args.partition_size,
        explain=not args.no_explain,
    )
    if not (Path(args.snapshot) / "meta.json").is_file():
        raise GraphRecError(f"--snapshot {args.snapshot}: not a saved snapshot (no meta.json)")
    users = select_users(args.snapshot, users_file=args.users, sample=args.sample, seed=args.seed)
    with tqdm(total=len(users), unit="user", desc="batch recommend", disable=args.no_progress) as bar:
        result = run_batch(
            job,
            args.out,
            users,
            engine=args.engine,
            workers=args.workers,
            address=args.engine_address,
            overwrite=args.overwrite,
            progress=bar.update,
        )
    rows = ", ".join(f"{n:,} {task} rows" for task, n in result.rows.items())
    print(
        f"{result.users:,} users in {result.partitions} partitions on {result.workers} {result.engine} "
        f"worker(s): {rows} written to {result.out} in {result.setup_s + result.run_s:.1f}s "
        f"(setup {result.setup_s:.1f}s, then {result.users_per_s:,.1f} users/s)"
    )
    if args.verbose:
        print(json.dumps(result.to_dict(), indent=2))
    return 0
