"""The evaluation runner: tune on validation, fit on training, rank for test users, measure.

Everything here is batched: the method ranks ``batch_size`` users per call and the metrics
are array functions, so there is no Python loop per user. The result is a JSON-friendly dict
(metrics, bootstrap intervals, the recall curve, timings, configuration, git commit) plus the
per-user metric values, which the paired test between two methods needs.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import inspect
import logging
import math
import os
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from evaluation import metrics as em
from evaluation.registry import get_method
from evaluation.splits import Protocol, Split
from evaluation.stats import bootstrap_ci, paired_test
from graph.errors import GraphRecError, InputError
from graph.tasks import interaction_matrix

log = logging.getLogger(__name__)

MAX_K = 1000
CURVE_MAX_K = 100
#: metrics the paired test compares (the headline numbers)
PAIRED_METRICS = ("recall", "ndcg")


@dataclass
class RunResult:
    """One method evaluated on one split: the JSON-friendly record plus per-user values."""

    record: dict
    users: np.ndarray
    per_user: dict[str, np.ndarray] = field(repr=False)

    @property
    def metrics(self) -> dict[str, float]:
        return self.record["metrics"]


# ---------------------------------------------------------------------------
# helpers


def check_k(k: int, n_items: int | None = None) -> int:
    """``k`` as an int in [1, min(MAX_K, n_items)], or :class:`InputError` saying what to pass."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer):
        raise InputError(f"--k must be an integer, got {k!r}")
    hi = MAX_K if n_items is None else min(MAX_K, n_items)
    if not 1 <= k <= hi:
        what = f"the number of items ({n_items:,})" if n_items is not None and n_items < MAX_K else f"{MAX_K}"
        raise InputError(f"--k {k} is out of range: pass an integer between 1 and {hi} ({what})")
    return int(k)


def make_method(name: str, params: dict | None = None, *, seed: int = 0):
    """Instantiate a registered method, with ``seed`` filled in when it takes one."""
    cls = get_method(name)
    params = dict(params or {})
    try:
        sig = inspect.signature(cls.__init__)
    except (TypeError, ValueError):  # pragma: no cover - builtins
        sig = None
    accepted = [p for p in sig.parameters if p != "self"] if sig else []
    takes_kwargs = sig is not None and any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
    if "seed" in accepted and "seed" not in params:
        params["seed"] = seed
    unknown = [p for p in params if p not in accepted] if sig is not None and not takes_kwargs else []
    if unknown:
        raise InputError(
            f"method {name!r} has no parameter(s) {', '.join(unknown)}; it accepts: "
            f"{', '.join(p for p in accepted if sig.parameters[p].kind is not inspect.Parameter.VAR_KEYWORD)}"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise InputError(f"method {name!r}: bad parameters {params}: {exc}") from None


def method_params(method) -> dict:
    """The hyper-parameters of a method instance, for the record."""
    if hasattr(method, "get_params"):
        return _jsonable(method.get_params())
    if hasattr(method, "params") and isinstance(method.params, dict):
        return _jsonable(method.params)
    return {}


def method_grid(cls, train, task: str) -> list[dict]:
    """The configurations ``--tune`` tries for ``cls`` ([] when it declares none)."""
    if hasattr(cls, "grid"):
        return list(cls.grid(train, task))
    grid = getattr(cls, "param_grid", None) or {}
    if not grid:
        return []  # nothing to tune (not one empty configuration: that would fit the method for nothing)
    import itertools

    keys = list(grid)
    return [dict(zip(keys, v)) for v in itertools.product(*(grid[k] for k in keys))]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if math.isnan(float(obj)) else float(obj)
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return repr(obj)


def git_info() -> dict:
    """Commit of the checkout this code runs from, and whether it has local changes."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {"commit": "unknown", "dirty": None}
    return {"commit": commit or "unknown", "dirty": bool(dirty)}


def environment() -> dict:
    import implicit
    import networkx
    import scipy

    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "implicit": implicit.__version__,
        "networkx": networkx.__version__,
        "cpus": os.cpu_count(),
        "host": platform.node(),
    }


def validate_output(
    name: str, ids: np.ndarray, scores: np.ndarray, users: np.ndarray, k: int, split: Split
) -> None:
    """Check a method's ``recommend`` output against the contract; :class:`GraphRecError` if broken."""
    n_items = split.truth.shape[1]
    if ids.shape != (len(users), k) or scores.shape != (len(users), k):
        raise GraphRecError(
            f"method {name!r} returned ids {ids.shape} and scores {scores.shape}; the contract is ({len(users)}, {k})"
        )
    if ids.size and (ids.min() < -1 or ids.max() >= n_items):
        raise GraphRecError(f"method {name!r} returned item ids outside [-1, {n_items})")
    s = np.sort(np.where(ids >= 0, ids, -np.arange(1, k + 1)[None, :] - 1), axis=1)
    if (np.diff(s, axis=1) == 0).any():
        raise GraphRecError(f"method {name!r} returned the same item twice in one list")
    masked = em.hit_matrix(ids, split.exclude[users])
    if masked.any():
        row = int(np.flatnonzero(masked.any(axis=1))[0])
        raise GraphRecError(
            f"method {name!r} recommended training items (e.g. to user index {int(users[row])}); "
            "the contract says training items are excluded"
        )


def rank(
    method, users: np.ndarray, k: int, *, batch_size: int = 2048, progress: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` ids for ``users``, asking the method ``batch_size`` users at a time."""
    from tqdm.auto import tqdm

    ids = np.empty((len(users), k), dtype=np.int64)
    scores = np.empty((len(users), k), dtype=np.float32)
    starts = range(0, len(users), batch_size)
    for start in tqdm(starts, desc=f"rank {getattr(method, 'name', '')}", disable=not progress, leave=False):
        ub = users[start : start + batch_size]
        i, s = method.recommend(ub, k)
        ids[start : start + len(ub)] = np.asarray(i)
        scores[start : start + len(ub)] = np.asarray(s)
    return ids, scores


def _split_context(split: Split, task: str) -> dict:
    """Training-side arrays the beyond-accuracy metrics need."""
    x = interaction_matrix(split.train, task)
    pop = np.asarray(x.sum(axis=0)).ravel()
    return {
        "item_popularity": pop,
        "n_train_users": int(split.train.n_users),
        "item_features": sp.csr_matrix(x.T),
        "item_group": em.popularity_groups(pop),
    }


def _eval_users(method, split: Split, seed: int, notes: list[str], what: str) -> Split:
    limit = getattr(method, "max_eval_users", None)
    if limit is not None and len(split.users) > limit:
        notes.append(
            f"{getattr(method, 'name', 'method')}: {what} on a seeded random sample of {limit:,} of "
            f"{len(split.users):,} users (max_eval_users={limit}; the method scores one user at a time)"
        )
        return split.subsample_users(limit, seed)
    return split


# ---------------------------------------------------------------------------
# tuning


def tune(
    name: str,
    protocol: Protocol,
    *,
    k: int = 20,
    fixed: dict | None = None,
    seed: int = 0,
    val_max_users: int | None = 10_000,
    select_by: str = "recall",
    progress: bool = False,
    max_trials: int = 12,
) -> dict:
    """Search the method's grid on the validation split: every combination when there are at most
    ``max_trials``, else coordinate ascent over the same values. Returns {"best": params, "trials": [...], ...}."""
    cls = get_method(name)
    fixed = dict(fixed or {})
    val = protocol.val
    if len(val.users) == 0:
        raise InputError(f"{protocol.dataset}/{protocol.task}: the validation split is empty; cannot tune")
    grid = method_grid(cls, val.train, protocol.task)
    configs, seen = [], set()
    for cfg in grid or [{}]:
        merged = {**cfg, **fixed}
        key = repr(sorted(merged.items()))
        if key not in seen:
            seen.add(key)
            configs.append(merged)
    notes: list[str] = []
    base = val.subsample_users(val_max_users, seed)
    if len(base.users) < len(val.users):
        notes.append(f"validation on a seeded sample of {len(base.users):,} of {len(val.users):,} users")
    key = f"{select_by}@{k}"
    other = f"ndcg@{k}" if select_by == "recall" else f"recall@{k}"
    trials: list[dict] = []
    done: dict[str, dict] = {}

    def trial(cfg: dict) -> dict:
        cache_key = repr(sorted(cfg.items()))
        if cache_key in done:
            return done[cache_key]
        method = make_method(name, cfg, seed=seed)
        t0 = time.perf_counter()
        method.fit(val.train, protocol.task)
        fit_s = time.perf_counter() - t0
        split = _eval_users(method, base, seed, notes, "validation")
        ids, _ = rank(method, split.users, k, progress=progress)
        hits = em.hit_matrix(ids, split.truth)
        n_rel = np.diff(split.truth.indptr)
        vals = {
            f"recall@{k}": float(em.recall_at_k(hits, n_rel, k).mean()),
            f"ndcg@{k}": float(em.ndcg_at_k(hits, n_rel, k).mean()),
        }
        t = {
            "params": method_params(method),
            "config": cfg,
            "val": vals,
            "fit_s": round(fit_s, 2),
            "total_s": round(time.perf_counter() - t0, 2),
        }
        trials.append(t)
        done[cache_key] = t
        log.info("tune %s %s: %s (%.1fs)", name, cfg, vals, time.perf_counter() - t0)
        return t

    def score(t: dict) -> tuple[float, float]:
        return (t["val"][key], t["val"][other])

    if len(configs) <= max_trials:
        search = "grid"
        for cfg in configs:
            trial(cfg)
    else:
        # Too many combinations to fit each: one-parameter-at-a-time sweeps (coordinate ascent)
        # over the same values, from the middle of the grid, until a full round changes nothing.
        search = "coordinate"
        values = {p: sorted({c[p] for c in configs if p in c}, key=repr) for p in configs[0]}
        current = {p: v[len(v) // 2] for p, v in values.items()}
        best_t = trial(current)
        for _ in range(3):
            changed = False
            for p, vs in values.items():
                for v in vs:
                    t = trial({**current, p: v})
                    if score(t) > score(best_t):
                        best_t, current, changed = t, {**current, p: v}, True
            if not changed:
                break
        notes.append(f"coordinate search over the grid ({len(trials)} of {len(configs)} combinations fitted)")
    best = max(trials, key=score)
    return {
        "selected_by": f"validation {key}",
        "search": search,
        "best": best["params"],
        "best_config": best["config"],  # the constructor arguments that produced "best"
        "best_val": best["val"],
        "trials": trials,
        "val_users": int(len(base.users)),
        "notes": sorted(set(notes)),
    }


# ---------------------------------------------------------------------------
# evaluation


def evaluate(
    protocol: Protocol,
    name: str,
    params: dict | None = None,
    *,
    k: int = 20,
    tune_params: bool = False,
    seed: int = 0,
    n_boot: int = 1000,
    curve_max_k: int = CURVE_MAX_K,
    batch_size: int = 2048,
    val_max_users: int | None = 10_000,
    users: np.ndarray | None = None,
    progress: bool = False,
    command: str | None = None,
    load_s: float | None = None,
) -> RunResult:
    """Evaluate method ``name`` on ``protocol``'s test split (optionally tuned on validation first).

    ``users`` restricts the test users (dense indices, e.g. to pair two runs); by default every
    test user is evaluated (or the method's seeded ``max_eval_users`` sample).
    """
    t_start = time.perf_counter()
    k = check_k(k, protocol.n_items)
    cls = get_method(name)
    tasks = getattr(cls, "tasks", ())
    if protocol.task not in tasks:
        raise InputError(
            f"method {name!r} supports task(s) {', '.join(tasks) or 'none'}, not {protocol.task!r}; "
            f"pick another --method or --task"
        )
    params = dict(params or {})
    make_method(name, params, seed=seed)  # fail fast on bad parameters, before any tuning
    notes = list(protocol.notes)
    tuning = None
    t0 = time.perf_counter()
    if tune_params and not method_grid(cls, protocol.val.train, protocol.task):
        tuning = {"note": f"{name} declares no parameter grid; nothing to tune"}
        tune_params = False
    elif tune_params:
        tuning = tune(
            name, protocol, k=k, fixed=params, seed=seed, val_max_users=val_max_users, progress=progress
        )
        # the winning trial's constructor arguments: a method's reported parameters may include
        # outputs of fitting (e.g. the hybrid's tuned weights) that it does not accept as input
        params = dict(tuning["best_config"])
    tune_s = time.perf_counter() - t0

    method = make_method(name, params, seed=seed)
    split = protocol.test
    if users is not None:
        keep = np.isin(split.users, users)
        split = dataclasses.replace(split, users=split.users[keep], truth=split.truth[keep])

    t0 = time.perf_counter()
    method.fit(split.train, protocol.task)
    fit_s = time.perf_counter() - t0
    split = _eval_users(method, split, seed, notes, "test evaluation")
    if hasattr(method, "timings") and isinstance(method.timings, dict):
        method.timings = {key: 0.0 for key in method.timings}  # count test-time scoring only
    k_eval = max(k, min(curve_max_k, protocol.n_items))
    t0 = time.perf_counter()
    ids, scores = rank(method, split.users, k_eval, batch_size=batch_size, progress=progress)
    recommend_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    validate_output(name, ids, scores, split.users, k_eval, split)
    validate_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    ctx = _split_context(split, protocol.task)
    per_user, system, extra = em.ranking_metrics(
        ids, split.truth, k, n_candidates=split.n_candidates(), curve_max_k=curve_max_k, **ctx
    )
    metrics_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    intervals = {m: list(bootstrap_ci(v, n_boot=n_boot, seed=seed)) for m, v in per_user.items()}
    bootstrap_s = time.perf_counter() - t0

    reported = getattr(method, "timings", None) or {}
    score_s = float(reported.get("score_s", recommend_s))
    total_s = time.perf_counter() - t_start + (load_s or 0.0)
    timings = {
        "load_s": load_s,
        "tune_s": tune_s,
        "fit_s": fit_s,
        "recommend_s": recommend_s,
        "method_score_s": score_s,
        "select_s": float(reported.get("select_s", 0.0)),
        "validate_s": validate_s,
        "metrics_s": metrics_s,
        "bootstrap_s": bootstrap_s,
        "total_s": total_s,
        # what evaluating costs beyond the method's own work (fit, tuning, scoring)
        "evaluation_overhead_s": total_s - tune_s - fit_s - score_s,
    }
    metric_values = {m: float(np.nanmean(v)) if np.isfinite(v).any() else None for m, v in per_user.items()}
    metric_values.update(system)
    record = {
        "dataset": protocol.dataset,
        "task": protocol.task,
        "method": name,
        "k": k,
        "params": method_params(method),
        "tuned": bool(tune_params),
        "tuning": tuning,
        "protocol": protocol.info(),
        "n_users": int(len(split.users)),
        "metrics": metric_values,
        "intervals": intervals,
        "interval_method": f"percentile bootstrap over users, {n_boot} resamples, 95%",
        "curve": {
            "k": list(range(1, len(extra["recall_curve"]) + 1)),
            "recall": extra["recall_curve"].tolist(),
        },
        "timings": {key: (round(v, 3) if isinstance(v, float) else v) for key, v in timings.items()},
        "notes": notes,
        "command": command,
        "seed": seed,
        "git": git_info(),
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "environment": environment(),
    }
    return RunResult(record=_jsonable(record), users=split.users, per_user=per_user)


def compare(a: RunResult, b: RunResult, *, k: int, seed: int = 0, n_perm: int = 10_000) -> dict:
    """Paired test of run ``a`` against run ``b`` on the users both evaluated."""
    common, ia, ib = np.intersect1d(a.users, b.users, return_indices=True)
    if len(common) == 0:
        raise InputError("the two runs share no users; a paired test needs the same users")
    out = {
        "method_a": a.record["method"],
        "method_b": b.record["method"],
        "n_users": int(len(common)),
        "tests": {},
    }
    for m in PAIRED_METRICS:
        key = f"{m}@{k}"
        out["tests"][key] = paired_test(a.per_user[key][ia], b.per_user[key][ib], seed=seed, n_perm=n_perm)
    return _jsonable(out)
