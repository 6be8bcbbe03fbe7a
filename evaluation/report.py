"""Reports from result records: quality tables (with published reference rows) and recall@k plots.

``python -m evaluation.report results/*.json --out results/report.md --img-dir docs/img``
rebuilds the tables and plots from saved ``graphrec evaluate --json`` files.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

#: Published all-item top-20 numbers on the same gowalla split (shared/datasets/README.md).
PUBLISHED: dict[tuple[str, str], list[dict]] = {
    ("gowalla", "tweets"): [
        {"method": "NGCF", "recall@20": 0.1570, "ndcg@20": 0.1327, "source": "LightGCN paper"},
        {
            "method": "MF-BPR (tuned re-run)",
            "recall@20": 0.1627,
            "ndcg@20": 0.1378,
            "source": "BARS open benchmark",
        },
        {"method": "Mult-VAE", "recall@20": 0.1641, "ndcg@20": 0.1335, "source": "LightGCN paper"},
        {"method": "EASE^R", "recall@20": 0.1765, "ndcg@20": 0.1467, "source": "BARS"},
        {"method": "LightGCN", "recall@20": 0.1830, "ndcg@20": 0.1554, "source": "LightGCN paper"},
        {
            "method": "GF-CF (training-free graph filter)",
            "recall@20": 0.1849,
            "ndcg@20": 0.1518,
            "source": "GF-CF, CIKM 2021",
        },
        {"method": "UltraGCN", "recall@20": 0.1862, "ndcg@20": 0.1580, "source": "UltraGCN, CIKM 2021"},
        {"method": "SimpleX", "recall@20": 0.1872, "ndcg@20": 0.1557, "source": "BARS"},
        {"method": "BSPM-EM", "recall@20": 0.1920, "ndcg@20": 0.1597, "source": "BSPM, SIGIR 2023"},
    ]
}


def _ci(rec: dict, key: str) -> str:
    v = rec["metrics"].get(key)
    ci = rec.get("intervals", {}).get(key)
    if v is None:
        return "n/a"
    return f"{v:.4f} [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else f"{v:.4f}"


def quality_table(records: list[dict], k: int = 20, *, published: dict | None = None) -> str:
    """Markdown: per dataset and task, published reference rows then measured rows (with CI and command)."""
    published = PUBLISHED if published is None else published
    groups: dict[tuple[str, str, str], list[dict]] = defaultdict(list)
    for rec in records:
        groups[(rec["dataset"], rec["task"], rec["protocol"]["split"])].append(rec)
    out = []
    for (dataset, task, split), recs in sorted(groups.items()):
        recs = sorted(recs, key=lambda r: -(r["metrics"].get(f"recall@{k}") or 0.0))
        proto = recs[0]["protocol"]
        out.append(f"### {dataset} / {task} ({split} split)\n")
        out.append(
            f"{proto['description']}. {proto['test_users']:,} test users, {proto['test_pairs']:,} test pairs, "
            f"{proto['n_items']:,} items.\n"
        )
        out.append(f"| method | recall@{k} [95% CI] | ndcg@{k} [95% CI] | source / command |")
        out.append("|---|---|---|---|")
        for ref in published.get((dataset, task), []) if k == 20 and split == "fixed" else []:
            out.append(
                f"| {ref['method']} (published) | {ref['recall@20']:.4f} | {ref['ndcg@20']:.4f} | {ref['source']} |"
            )
        for rec in recs:
            cmd = rec.get("command") or ""
            out.append(
                f"| **{rec['method']}** (measured) | {_ci(rec, f'recall@{k}')} | {_ci(rec, f'ndcg@{k}')} | `{cmd}` |"
            )
        out.append("")
        extra = [
            f"hit_rate@{k}",
            f"map@{k}",
            f"mrr@{k}",
            f"coverage@{k}",
            f"novelty@{k}",
            f"ild@{k}",
            f"exposure_tail@{k}",
        ]
        present = [m for m in extra if any(m in r["metrics"] for r in recs)]
        if present:
            out.append("| method | " + " | ".join(present) + " | settings | fit s | rank s |")
            out.append("|---|" + "---|" * (len(present) + 3))
            for rec in recs:
                vals = " | ".join(
                    "n/a" if rec["metrics"].get(m) is None else f"{rec['metrics'][m]:.4f}" for m in present
                )
                params = json.dumps(
                    {p: v for p, v in rec["params"].items() if p not in ("seed", "num_threads")}
                )
                t = rec["timings"]
                out.append(
                    f"| {rec['method']} | {vals} | `{params}` ({'tuned on validation' if rec.get('tuned') else 'defaults'}) "
                    f"| {t['fit_s']:.1f} | {t['recommend_s']:.1f} |"
                )
            out.append("")
        notes = sorted({n for r in recs for n in r.get("notes", [])})
        for n in notes:
            out.append(f"- {n}")
        if notes:
            out.append("")
    return "\n".join(out)


def plot_recall_curves(records: list[dict], path: str | Path, *, title: str = "") -> Path:
    """PNG of recall@k for k = 1..100, one line per method (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=110)
    for rec in sorted(records, key=lambda r: -(r["curve"]["recall"][-1] if r["curve"]["recall"] else 0)):
        label = rec["method"]
        if rec["n_users"] < rec["protocol"]["test_users"]:
            label += f" ({rec['n_users']:,} of {rec['protocol']['test_users']:,} users)"
        ax.plot(rec["curve"]["k"], rec["curve"]["recall"], label=label, linewidth=1.6)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_xlim(1, max((len(r["curve"]["k"]) for r in records), default=100))
    ax.set_ylim(bottom=0)
    ax.grid(True, alpha=0.3)
    ax.set_title(title or "recall@k")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.report", description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", help="JSON files written by graphrec evaluate --json")
    parser.add_argument("--out", help="markdown file to write (default: print)")
    parser.add_argument("--img-dir", help="write recall@k plots here, one per dataset and task")
    parser.add_argument("--k", type=int, default=20)
    args = parser.parse_args(argv)
    records = []
    for f in args.results:
        rec = json.loads(Path(f).read_text())
        if "metrics" in rec and "curve" in rec:
            records.append(rec)
    text = quality_table(records, args.k)
    if args.img_dir:
        groups = defaultdict(list)
        for rec in records:
            groups[(rec["dataset"], rec["task"])].append(rec)
        for (dataset, task), recs in groups.items():
            png = plot_recall_curves(
                recs, Path(args.img_dir) / f"recall_{dataset}_{task}.png", title=f"{dataset} / {task}"
            )
            text += f"\n![recall@k, {dataset} / {task}]({png})\n"
    if args.out:
        Path(args.out).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
