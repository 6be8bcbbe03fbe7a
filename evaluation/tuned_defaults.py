"""Defaults that match the tuned figures: each method's defaults are the settings its ``--tune``
runs pick across the benchmark datasets.

The evidence is the committed result files (``results/<dataset>-<task>-<method>.json``, one per
``graphrec evaluate --tune`` run of ``scripts/run_baselines.py``), each holding every validation
trial. One vote per dataset and task, from its standard split (``split_label ==
"<dataset>-<task>"``; the time-ordered variant of the same data is a protocol, not another
dataset). Only the parameters the tuning searched are considered. Two rules:

- **every dataset tried the same configurations** (a full grid): the default is the
  configuration with the best validation recall relative to each dataset's best, averaged over
  the datasets. A per-parameter count would be misled by ties: lastfm's friendships are
  undirected, so its SALSA trials score "out" and "undirected" identically and its pick between
  them is a tie-break, while on flickr "out" halves recall;
- **otherwise** (coordinate ascent tried different configurations per dataset): each parameter's
  most-picked value; a tie goes to the pick on the largest dataset (:data:`DATASET_PRIORITY`).

``scripts/pick_defaults.py`` prints the table; ``tests/test_tuned_defaults.py`` fails when a
method's code default drifts from what its tuning picks.
"""

from __future__ import annotations

import inspect
import json
from collections import Counter
from pathlib import Path

from evaluation.registry import get_method

#: tie-break order, largest training graph first
DATASET_PRIORITY = ("gowalla", "flickr", "lastfm", "synthetic")

_WEIGHTING = "weighting"


def tuned_runs(results_dir: str | Path) -> dict[str, list[dict]]:
    """method -> [{"dataset", "task", "params", "trials"}] for every tuned run on a standard split;
    ``trials`` maps each tried configuration (JSON) to its validation recall@20."""
    runs: dict[str, list[dict]] = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or not rec.get("tuned") or "method" not in rec:
            continue
        if rec.get("split_label") != f"{rec.get('dataset')}-{rec.get('task')}":
            continue  # a protocol variant (e.g. the time-ordered split) of a dataset already voting
        tuning = rec.get("tuning") or {}
        trials = {
            json.dumps(t["config"], sort_keys=True): float(t["val"]["recall@20"])
            for t in tuning.get("trials", [])
            if isinstance(t, dict) and "config" in t and (t.get("val") or {}).get("recall@20") is not None
        }
        runs.setdefault(rec["method"], []).append(
            {
                "dataset": rec["dataset"],
                "task": rec["task"],
                "params": rec.get("params", {}),
                "trials": trials,
            }
        )
    return runs


def tuned_parameters(method: str) -> tuple[str, ...]:
    """The parameters ``--tune`` searches for ``method``: its grid's keys (a data-dependent
    ``grid()`` varies the same keys), plus the weighting when the method offers binary/log."""
    cls = get_method(method)
    keys = list(getattr(cls, "param_grid", None) or {})
    if _WEIGHTING in code_defaults(method) and _WEIGHTING not in keys:
        keys.append(_WEIGHTING)
    return tuple(keys)


def code_defaults(method: str) -> dict:
    """The defaults a method runs with when nothing is passed: its constructor's defaults, and
    for methods that wrap a candidate source, the source function's defaults."""
    cls = get_method(method)
    out = {
        name: p.default
        for name, p in inspect.signature(cls.__init__).parameters.items()
        if p.default is not inspect.Parameter.empty and name != "seed"
    }
    source_cls = getattr(cls, "source_cls", None)
    batch = getattr(source_cls, "_batch", None)
    if batch is not None:
        for name, p in inspect.signature(batch).parameters.items():
            if p.default is not inspect.Parameter.empty and name not in ("k", "seed"):
                out.setdefault(name, p.default)
    return out


def _pick(votes: list[tuple[str, object]]) -> object:
    counts = Counter(json.dumps(v, sort_keys=True) for _, v in votes)
    best = max(counts.values())
    tied = {key for key, n in counts.items() if n == best}
    order = {name: i for i, name in enumerate(DATASET_PRIORITY)}
    for _dataset, value in sorted(votes, key=lambda dv: order.get(dv[0], len(order))):
        if json.dumps(value, sort_keys=True) in tied:
            return value
    raise AssertionError("unreachable: a tied value always has a vote")


def best_common_configuration(runs: list[dict]) -> dict | None:
    """The configuration every run tried with the best mean validation recall relative to each
    run's best; None when the runs did not all try each other's picks (not a full grid)."""
    if len(runs) < 2 or not all(r["trials"] for r in runs):
        return None
    common = set.intersection(*(set(r["trials"]) for r in runs))
    best_of = [max(r["trials"], key=r["trials"].get) for r in runs]
    if not common or any(b not in common for b in best_of):
        return None

    def mean_relative(config: str) -> float:
        return sum(r["trials"][config] / max(max(r["trials"].values()), 1e-12) for r in runs) / len(runs)

    return json.loads(max(sorted(common), key=mean_relative))


def tuned_picks(results_dir: str | Path) -> dict[str, dict[str, dict]]:
    """method -> parameter -> {"pick", "rule", "votes": {value: [dataset/task, ...]}, "default"}."""
    table: dict[str, dict[str, dict]] = {}
    for method, runs in tuned_runs(results_dir).items():
        try:
            params = tuned_parameters(method)
            defaults = code_defaults(method)
        except Exception:  # noqa: BLE001 - a result of a method no longer registered is skipped
            continue
        common = best_common_configuration(runs)
        for name in params:
            voting = [r for r in runs if name in r["params"]]
            if not voting:
                continue
            votes = [(r["dataset"], r["params"][name]) for r in voting]
            by_value: dict[str, list[str]] = {}
            for run in voting:
                by_value.setdefault(json.dumps(run["params"][name]), []).append(
                    f"{run['dataset']}/{run['task']}"
                )
            if common is not None and name in common:
                pick, rule = common[name], f"best mean relative validation recall over {len(runs)} datasets"
            else:
                pick, rule = _pick(votes), "most picked"
            table.setdefault(method, {})[name] = {
                "pick": pick,
                "rule": rule,
                "votes": by_value,
                "default": defaults.get(name),
            }
    return table


def mismatches(results_dir: str | Path) -> list[str]:
    """One line per (method, parameter) whose code default is not its tuning's pick."""
    out = []
    for method, params in sorted(tuned_picks(results_dir).items()):
        for name, row in params.items():
            if row["default"] != row["pick"]:
                out.append(
                    f"{method}.{name}: default {row['default']!r}, tuning picks {row['pick']!r} ({row['votes']})"
                )
    return out
