"""Run every baseline on every dataset and task, tuned on validation data; write results and plots.

    flock /tmp/graphrec-cpu.lock python scripts/run_baselines.py --data-dir ../shared/datasets

Writes one JSON per run under ``results/`` (the same object ``graphrec evaluate --json`` writes,
with ``command`` = the equivalent ``graphrec evaluate`` line), paired tests of every method against
the best one per dataset and task (``results/paired-<dataset>-<task>.json``), the quality tables
(``results/report.md``) and recall@k plots (``docs/img/recall_<dataset>_<task>.png``).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.registry import BASELINES  # noqa: E402
from evaluation.report import plot_recall_curves, quality_table  # noqa: E402
from evaluation.runner import compare, evaluate  # noqa: E402
from evaluation.splits import build_protocol  # noqa: E402
from graph.errors import GraphRecError  # noqa: E402

#: (dataset, task, split) combinations; lastfm has two test users without training listens
RUNS = [
    ("gowalla", "tweets", "default"),
    ("lastfm", "tweets", "default"),
    ("lastfm", "follows", "default"),
    ("flickr", "tweets", "default"),
    ("flickr", "follows", "default"),
    ("synthetic", "tweets", "default"),
    ("synthetic", "follows", "default"),
    ("synthetic", "follows", "time"),
]
COLD = {("lastfm", "tweets"): "drop"}


def graphrec_command(dataset, task, split, method, data_dir, out, k, seed, synthetic_users, tune) -> str:
    parts = ["graphrec evaluate", f"--dataset {dataset}"]
    if dataset != "synthetic":
        parts.append(f"--data-dir {data_dir}")
    else:
        parts.append(f"--synthetic-users {synthetic_users}")
    parts += [f"--task {task}", f"--method {method}"]
    if split != "default":
        parts.append(f"--split {split}")
    if (dataset, task) in COLD:
        parts.append(f"--cold-users {COLD[dataset, task]}")
    if tune:
        parts.append("--tune")
    if k != 20:
        parts.append(f"--k {k}")
    if seed:
        parts.append(f"--seed {seed}")
    parts.append(f"--json {out}")
    return " ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--datasets", default="gowalla,lastfm,flickr,synthetic")
    p.add_argument("--tasks", default="tweets,follows")
    p.add_argument(
        "--methods",
        default="",
        help="comma-separated methods (default: every baseline of the task); any registered method "
        "may be named, e.g. pixie,salsa,ppr,hybrid; those that do not support a task are skipped",
    )
    p.add_argument("--out", default="results", help="folder for JSON results and report.md")
    p.add_argument("--img-dir", default="docs/img", help="folder for recall@k plots")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--synthetic-users", type=int, default=5000)
    p.add_argument(
        "--no-tune", action="store_true", help="default parameters instead of tuning on validation"
    )
    p.add_argument("--val-max-users", type=int, default=10_000, help="validation users sampled for tuning")
    p.add_argument("--skip-existing", action="store_true", help="keep results whose JSON already exists")
    p.add_argument("-v", "--verbose", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    out_dir, img_dir = Path(args.out), Path(args.img_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    datasets, tasks = args.datasets.split(","), args.tasks.split(",")
    only = [m for m in args.methods.split(",") if m]
    t_all = time.perf_counter()
    for dataset, task, split in RUNS:
        if dataset not in datasets or task not in tasks:
            continue
        label = f"{dataset}-{task}" + ("" if split == "default" else f"-{split}")
        t0 = time.perf_counter()
        protocol = build_protocol(
            dataset,
            task,
            args.data_dir,
            split=split,
            seed=args.seed,
            cold_users=COLD.get((dataset, task), "error"),
            synthetic_users=args.synthetic_users,
        )
        load_s = time.perf_counter() - t0
        print(f"\n== {label}: {protocol.description} ({len(protocol.test.users):,} test users)", flush=True)
        runs = {}
        for method in only or BASELINES[task]:
            path = out_dir / f"{label}-{method}.json"
            if args.skip_existing and path.is_file():
                print(f"  {method}: kept {path}")
                continue
            cmd = graphrec_command(
                dataset,
                task,
                split,
                method,
                args.data_dir,
                path,
                args.k,
                args.seed,
                args.synthetic_users,
                not args.no_tune,
            )
            t1 = time.perf_counter()
            try:
                res = evaluate(
                    protocol,
                    method,
                    k=args.k,
                    tune_params=not args.no_tune,
                    seed=args.seed,
                    val_max_users=args.val_max_users,
                    command=cmd,
                    load_s=load_s,
                )
            except GraphRecError as exc:
                print(f"  {method}: skipped: {exc}", flush=True)
                continue
            rec = dict(res.record)
            rec["produced_by"] = "python scripts/run_baselines.py " + " ".join(
                sys.argv[1:] if argv is None else argv
            )
            rec["split_label"] = label
            path.write_text(json.dumps(rec, indent=2))
            runs[method] = res
            m = rec["metrics"]
            ci = rec["intervals"]
            print(
                f"  {method:<17} recall@{args.k} {m[f'recall@{args.k}']:.4f} "
                f"[{ci[f'recall@{args.k}'][0]:.4f}, {ci[f'recall@{args.k}'][1]:.4f}]  ndcg@{args.k} "
                f"{m[f'ndcg@{args.k}']:.4f}  params {json.dumps(rec['params'])}  "
                f"({time.perf_counter() - t1:.0f}s; tune {rec['timings']['tune_s']:.0f}s, fit {rec['timings']['fit_s']:.1f}s)",
                flush=True,
            )
        if len(runs) > 1:
            best = max(runs, key=lambda n: runs[n].metrics[f"recall@{args.k}"])
            paired = [compare(runs[best], runs[n], k=args.k, seed=args.seed) for n in runs if n != best]
            # a run of chosen methods keeps its own file, so it never replaces the full baseline set's
            suffix = "" if not only else "-" + "+".join(only)
            (out_dir / f"paired-{label}{suffix}.json").write_text(json.dumps(paired, indent=2))
    # tables and plots from every result file present (also the kept ones)
    records = [
        json.loads(f.read_text()) for f in sorted(out_dir.glob("*.json")) if not f.name.startswith("paired-")
    ]
    records = [r for r in records if "metrics" in r and "curve" in r]
    by_label: dict[str, list] = {}
    for r in records:
        by_label.setdefault(r.get("split_label", f"{r['dataset']}-{r['task']}"), []).append(r)
    text = ["# Baselines: measured quality\n", quality_table(records, args.k)]
    for label, recs in sorted(by_label.items()):
        png = plot_recall_curves(
            recs, img_dir / f"recall_{label.replace('-', '_')}.png", title=label.replace("-", " / ")
        )
        text.append(f"![recall@k {label}]({png})\n")
    for f in sorted(out_dir.glob("paired-*.json")):
        text.append(
            f"\n## Paired tests ({f.stem[7:]}): best method vs each other, recall@{args.k} and ndcg@{args.k}\n"
        )
        text.append("| A | B | users | metric | diff A-B [95% CI] | p (sign-flip) | p (t-test) |")
        text.append("|---|---|---|---|---|---|---|")
        for c in json.loads(f.read_text()):
            for metric, t in c["tests"].items():
                text.append(
                    f"| {c['method_a']} | {c['method_b']} | {c['n_users']:,} | {metric} | {t['diff']:+.4f} "
                    f"[{t['diff_ci'][0]:+.4f}, {t['diff_ci'][1]:+.4f}] | {t['p_value']:.2g} | {t['p_value_ttest']:.2g} |"
                )
    (out_dir / "report.md").write_text("\n".join(text) + "\n")
    print(f"\nreport: {out_dir / 'report.md'}; plots in {img_dir}; total {time.perf_counter() - t_all:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
