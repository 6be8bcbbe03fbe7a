"""``graphrec evaluate``: evaluate one method (optionally against others) on a dataset and task.

Hooked into the ``graphrec`` command by :func:`add_evaluate_parser`; ``python -m evaluation``
runs the same command on its own.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from pathlib import Path

from evaluation.registry import METHODS
from evaluation.splits import COLD_POLICIES, DATASET_NAMES, SPLIT_KINDS
from graph.errors import InputError, command_parser, run_command
from graph.tasks import TASKS

log = logging.getLogger(__name__)

DEFAULT_DATA_DIR = os.environ.get("GRAPHREC_DATA_DIR", "../shared/datasets")


def add_evaluate_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``evaluate`` sub-command to an argparse ``subparsers`` object."""
    p = subparsers.add_parser(
        "evaluate",
        help="offline evaluation of a recommendation method (metrics, bootstrap intervals, JSON)",
        description=(
            "All-item ranking with training items masked, on the dataset's fixed split (tweets) or a "
            "seeded 20% hold-out of follow edges (follows). Prints a table; --json writes metrics, "
            "95% bootstrap intervals, timings, configuration and the git commit."
        ),
    )
    p.add_argument("--dataset", help=f"one of {', '.join(DATASET_NAMES)}")
    p.add_argument(
        "--data-dir", default=DEFAULT_DATA_DIR, help="folder holding the datasets (default: %(default)s)"
    )
    p.add_argument("--task", help=f"one of {', '.join(TASKS)}")
    p.add_argument("--method", help="method name (see --list-methods)")
    p.add_argument("--k", type=int, default=20, help="cut-off of the reported metrics (default: %(default)s)")
    p.add_argument("--json", metavar="OUT", help="write the results as JSON to OUT")
    p.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="method hyper-parameter (repeatable), e.g. --param factors=128",
    )
    p.add_argument(
        "--tune", action="store_true", help="grid-search the method's parameters on validation data first"
    )
    p.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="METHOD",
        help="also evaluate METHOD (default parameters, tuned with --tune) on the same users and run a paired test",
    )
    p.add_argument(
        "--split",
        default="default",
        help=f"protocol: {', '.join(SPLIT_KINDS)} (default: per dataset and task)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of splits, sampling and methods (default: %(default)s)"
    )
    p.add_argument(
        "--cold-users",
        default="error",
        help=f"test users without training items: {', '.join(COLD_POLICIES)} (default: %(default)s)",
    )
    p.add_argument(
        "--synthetic-users", type=int, default=5000, help="synthetic: number of users (default: %(default)s)"
    )
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples (default: %(default)s)")
    p.add_argument(
        "--batch-size", type=int, default=2048, help="users ranked per call (default: %(default)s)"
    )
    p.add_argument("--plot", metavar="PNG", help="also plot recall@k for k = 1..100 to PNG")
    p.add_argument("--list-methods", action="store_true", help="list registered methods and exit")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run_evaluate)
    return p


def _parse_params(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise InputError(f"--param {item!r}: expected KEY=VALUE, e.g. --param factors=128")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        params[key.strip()] = value
    return params


def _command_line() -> str:
    prog = Path(sys.argv[0]).name
    head = "python -m evaluation" if prog == "__main__.py" else "graphrec"
    return " ".join([head, *(shlex.quote(a) for a in sys.argv[1:])])


def _require(args) -> None:
    missing = [f"--{n}" for n in ("dataset", "task", "method") if not getattr(args, n)]
    if missing:
        raise InputError(
            f"missing {', '.join(missing)}; e.g. graphrec evaluate --dataset gowalla --data-dir ../shared/datasets "
            "--task tweets --method itemknn"
        )
    if args.dataset not in DATASET_NAMES:
        raise InputError(f"unknown dataset {args.dataset!r}; choose one of {', '.join(DATASET_NAMES)}")
    if args.task not in TASKS:
        raise InputError(f"unknown task {args.task!r}; choose one of {', '.join(TASKS)}")
    for name in [args.method, *args.compare]:
        if name not in METHODS:
            raise InputError(f"unknown method {name!r}; available: {', '.join(METHODS)} (see --list-methods)")
    if args.bootstrap < 10:
        raise InputError(f"--bootstrap {args.bootstrap}: use at least 10 resamples (1000 is the default)")
    if args.batch_size < 1:
        raise InputError(f"--batch-size must be positive, got {args.batch_size}")


def _fmt(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.4f}" if abs(v) < 100 else f"{v:,.1f}"


def print_table(records: list[dict], k: int, file=None) -> None:
    """Metrics table: one block per method, value and 95% interval per metric."""
    file = file or sys.stdout
    for rec in records:
        print(
            f"\n{rec['method']}  ({rec['dataset']} / {rec['task']}, {rec['n_users']:,} test users)", file=file
        )
        print(f"  params: {json.dumps(rec['params'], sort_keys=True)}", file=file)
        width = max(len(m) for m in rec["metrics"])
        for m, v in rec["metrics"].items():
            ci = rec["intervals"].get(m)
            ci_text = f"[{_fmt(ci[0])}, {_fmt(ci[1])}]" if ci else ""
            print(f"  {m:<{width}}  {_fmt(v):>10}  {ci_text}", file=file)
        t = rec["timings"]
        print(
            f"  time: fit {t['fit_s']:.1f}s, rank {t['recommend_s']:.1f}s, metrics+bootstrap "
            f"{t['metrics_s'] + t['bootstrap_s']:.1f}s, evaluation overhead {t['evaluation_overhead_s']:.1f}s",
            file=file,
        )
        for note in rec.get("notes", []):
            print(f"  note: {note}", file=file)


def run_evaluate(args) -> int:
    """Run ``graphrec evaluate`` from parsed arguments; returns the exit code."""
    from evaluation.registry import available_methods

    if args.list_methods:
        ok = set(available_methods())
        for name, target in METHODS.items():
            print(f"{name:<18} {target}{'' if name in ok else '   (module not in this checkout)'}")
        return 0
    _require(args)
    params = _parse_params(args.param)
    from evaluation.runner import check_k, compare, evaluate
    from evaluation.splits import build_protocol

    if isinstance(args.k, int):
        check_k(args.k)
    t0 = time.perf_counter()
    protocol = build_protocol(
        args.dataset,
        args.task,
        args.data_dir,
        split=args.split,
        seed=args.seed,
        cold_users=args.cold_users,
        synthetic_users=args.synthetic_users,
    )
    load_s = time.perf_counter() - t0
    command = _command_line()
    common = dict(
        k=args.k,
        tune_params=args.tune,
        seed=args.seed,
        n_boot=args.bootstrap,
        batch_size=args.batch_size,
        progress=not args.no_progress,
    )
    main = evaluate(protocol, args.method, params, command=command, load_s=load_s, **common)
    others = [evaluate(protocol, name, None, command=command, **common) for name in args.compare]
    print(f"{protocol.description}")
    print_table([main.record] + [o.record for o in others], args.k)
    record = dict(main.record)
    if others:
        record["comparisons"] = []
        for other in others:
            test = compare(main, other, k=args.k, seed=args.seed)
            record["comparisons"].append({"run": other.record, "paired_test": test})
            for metric, res in test["tests"].items():
                print(
                    f"\npaired test {args.method} - {other.record['method']} on {test['n_users']:,} users, {metric}: "
                    f"diff {res['diff']:+.4f} [{res['diff_ci'][0]:+.4f}, {res['diff_ci'][1]:+.4f}], "
                    f"p = {res['p_value']:.4g} (sign-flip), {res['p_value_ttest']:.4g} (t-test)"
                )
    if args.plot:
        from evaluation.report import plot_recall_curves

        plot_recall_curves(
            [main.record] + [o.record for o in others],
            args.plot,
            title=f"{protocol.dataset} / {protocol.task}",
        )
        print(f"plot written to {args.plot}")
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps(record, indent=2))
        tmp.replace(out)
        print(f"results written to {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m evaluation [evaluate] ...``"""
    parser, sub = command_parser("python -m evaluation", "offline evaluation")
    add_evaluate_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("evaluate", "-h", "--help", "-v", "--verbose"):
        argv = ["evaluate", *argv]
    elif argv[0] in ("-v", "--verbose") and (len(argv) < 2 or argv[1] != "evaluate"):
        argv = [argv[0], "evaluate", *argv[1:]]
    args = parser.parse_args(argv)
    return run_command(args, "evaluate")
