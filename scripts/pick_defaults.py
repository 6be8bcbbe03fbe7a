"""Print each method's tuned parameters: the value its ``--tune`` runs pick on every benchmark
dataset, the default the rule gives and the code default (see :mod:`evaluation.tuned_defaults`).

    python scripts/pick_defaults.py [--results results] [--markdown]

Exit status 1 when a default differs from the most-picked value.
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
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
