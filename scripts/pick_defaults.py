"""Print each method's tuned parameters: the value its ``--tune`` runs pick on every benchmark
dataset, the default the rule gives and the code default (see :mod:`evaluation.tuned_defaults`).

    python scripts/pick_defaults.py [--results results] [--compare results/defaults]

Exit status 1 when a code default differs from the rule's. ``--compare DIR`` adds a table of
recall@20 with the defaults (``run_baselines.py --no-tune --out DIR``) against the tuned runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evaluation.tuned_defaults import tuned_picks  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default="results", help="folder of `graphrec evaluate --tune` JSON results")
    ap.add_argument(
        "--compare", help="folder of `run_baselines.py --no-tune` results to set against the tuned ones"
    )
    args = ap.parse_args(argv)
    table = tuned_picks(args.results)
    print("| method | parameter | picks (dataset/task) | default by the rule | rule | code default |")
    print("|---|---|---|---|---|---|")
    bad = 0
    for method, params in sorted(table.items()):
        for name, row in params.items():
            votes = "; ".join(f"{v}: {', '.join(ds)}" for v, ds in row["votes"].items())
            same = row["default"] == row["pick"]
            bad += not same
            mark = "" if same else " (differs)"
            print(
                f"| {method} | {name} | {votes} | {json.dumps(row['pick'])} | {row['rule']} "
                f"| {json.dumps(row['default'])}{mark} |"
            )
    if args.compare:
        print()
        compare(Path(args.results), Path(args.compare))
    return 1 if bad else 0


def _metric(path: Path) -> tuple[float, list[float]] | None:
    try:
        rec = json.loads(path.read_text())
        return rec["metrics"]["recall@20"], rec["intervals"]["recall@20"]
    except (OSError, ValueError, KeyError):
        return None


def compare(tuned_dir: Path, defaults_dir: Path) -> None:
    """recall@20 [95% CI] with defaults vs tuned, per dataset/task and method."""
    print("| dataset / task | method | defaults | tuned | defaults - tuned |")
    print("|---|---|---|---|---|")
    for path in sorted(defaults_dir.glob("*.json")):
        if path.name.startswith("paired-"):
            continue
        got, tuned = _metric(path), _metric(tuned_dir / path.name)
        if got is None or tuned is None:
            continue
        rec = json.loads(path.read_text())
        (d, (dlo, dhi)), (t, (tlo, thi)) = got, tuned
        label = path.stem.removesuffix("-" + rec["method"]).replace("-", " / ")
        print(
            f"| {label} | {rec['method']} | {d:.4f} [{dlo:.4f}, {dhi:.4f}] | {t:.4f} [{tlo:.4f}, {thi:.4f}] | {d - t:+.4f} |"
        )


if __name__ == "__main__":
    sys.exit(main())
