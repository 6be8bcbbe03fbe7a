"""LightGCN on sparse, long-tailed catalogues (issue 21): per-epoch validation curves per variant.

    nice -n 19 flock /tmp/graphrec-cpu.lock python scripts/bench_gnn_sparse.py curve \\
        --dataset synthetic-tail --variant defaults
    python scripts/bench_gnn_sparse.py baselines --dataset synthetic-tail
    python scripts/bench_gnn_sparse.py plot

Datasets (all through :func:`evaluation.splits.build_protocol`, so the test split and its
validation carve are the standard protocol's):

* ``synthetic-tail``: :func:`graph.synthetic.generate` with 7,000 users, 15 tweets per user
  and 80 engagements per user, then thinned (below), follows dropped (the catalogue of issue
  21 came as engagements only): 105k tweets, 168k training (user, tweet) pairs, two thirds of
  the engaged tweets seen once; ``holdout`` split (20% of each user's tweets).
* ``lastfm-thin`` / ``flickr-thin``: the real sets with their shipped split, thinned.
* ``flickr``: flickr as shipped (31% of its items seen once).

Thinning: each item keeps at most ``cap`` of its (user, item) pairs, chosen at random, with
caps drawn from a discrete power law ``P(cap >= c) = c^-a`` (``a = log2 3``, so a cap is 1 for
two thirds of the items) and handed out by popularity rank (the most engaged items get the
largest caps): the head stays, two thirds of the items are seen once.

``start`` measures the spectral warm start alone (no training) on the plain and on the
degree-regularised normalisation. ``curve`` trains :func:`gnn.pipeline.fit_lightgcn` on the protocol's test-time training
snapshot with ``LIGHTGCN_DEFAULTS`` plus the variant's overrides and records, after every
epoch, the validation recall@20 on LightGCN's own early-stopping carve (what early stopping
sees), popularity on that same carve, and test recall@20 (measured outside the training
loop). Results are merged into ``docs/img/bench_gnn_sparse.json``; ``plot`` draws them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from evaluation.splits import Protocol, _DatasetSource, _SyntheticSource, build_protocol  # noqa: E402
from gnn.ranking import evaluate_embeddings  # noqa: E402

OUT = ROOT / "docs" / "img" / "bench_gnn_sparse.json"
DATASETS = ("synthetic-tail", "lastfm-thin", "flickr-thin", "flickr", "gowalla")

#: Each variant changes one thing against LIGHTGCN_DEFAULTS (``epochs`` / ``patience`` only where
#: the point is to see the curve past the default's early stop). ``before`` is the recipe as it
#: was before issue 21 (spectral warm start on the plain normalisation, no start evaluation).
BEFORE = {"init_degree_reg": 0, "eval_start": False}
LONG = {"patience": 1000, "epochs": 16}
VARIANTS: dict[str, dict] = {
    "defaults": {},
    "long": LONG,  # the defaults, no early stop: the whole curve
    "before": BEFORE,
    "before_long": {**BEFORE, **LONG},
    "before_uniform_negatives": {**BEFORE, **LONG, "hard_negative_candidates": 1},
    "before_no_decoupled_decay": {**BEFORE, **LONG, "decoupled_weight_decay": 0.0},
    "before_uniform_no_decay": {
        **BEFORE,
        **LONG,
        "hard_negative_candidates": 1,
        "decoupled_weight_decay": 0.0,
    },
    "before_lr_0.001": {**BEFORE, **LONG, "lr": 0.001},
    "before_random_init": {**BEFORE, **LONG, "init": "random"},
}


def thin(user: np.ndarray, item: np.ndarray, *, once: float = 2 / 3, seed: int = 0) -> np.ndarray:
    """Mask over rows keeping, for each item, at most its power-law cap of (user, item) pairs
    (every row of a kept pair stays)."""
    rng = np.random.default_rng(seed)
    n_items = int(item.max()) + 1
    key = user.astype(np.int64) * n_items + item
    pair = np.unique(key)
    pi = pair % n_items
    deg = np.bincount(pi, minlength=n_items)
    seen = np.flatnonzero(deg > 0)
    alpha = np.log2(1.0 / (1.0 - once))
    caps = np.sort(np.floor((1.0 - rng.random(len(seen))) ** (-1.0 / alpha)).astype(np.int64))[::-1]
    cap = np.zeros(n_items, np.int64)
    cap[seen[np.lexsort((rng.random(len(seen)), -deg[seen]))]] = caps
    order = np.lexsort((rng.random(len(pair)), pi))
    rank = np.empty(len(pair), np.int64)
    rank[order] = np.arange(len(pair)) - np.searchsorted(pi[order], pi[order])
    return np.isin(key, pair[rank < cap[pi]])


def make_protocol(name: str, data_dir: str, seed: int = 0) -> Protocol:
    if name == "synthetic-tail":
        from graph.synthetic import generate

        g = generate(7000, tweets_per_user=15, avg_engagements=80, seed=seed, with_text=False)
        keep = thin(g.eng_user, g.eng_tweet, seed=seed)
        cols = {f: getattr(g, f)[keep] for f in ("eng_user", "eng_tweet", "eng_kind", "eng_ts", "eng_weight")}
        # no follow graph: the catalogue of issue 21 came in the gowalla format (engagements only)
        cols.update({f: getattr(g, f)[:0] for f in ("follow_src", "follow_dst", "follow_ts")})
        g = dataclasses.replace(g, **cols)
        return build_protocol("synthetic", "tweets", source=_SyntheticSource(g, 7000, seed), seed=seed)
    if name == "gowalla":  # the dense reference: its shipped split, unchanged
        return build_protocol("gowalla", "tweets", data_dir, seed=seed)
    from graph.datasets import load_dataset

    base = name.removesuffix("-thin")
    ds = load_dataset(base, data_dir)
    if name.endswith("-thin"):
        sizes = [len(ds.train_user), len(ds.val_user), len(ds.test_user)]
        keep = thin(
            np.concatenate([ds.train_user, ds.val_user, ds.test_user]),
            np.concatenate([ds.train_item, ds.val_item, ds.test_item]),
            seed=seed,
        )
        k_tr, k_va, k_te = np.split(keep, np.cumsum(sizes)[:-1])
        ds = dataclasses.replace(
            ds,
            train_user=ds.train_user[k_tr],
            train_item=ds.train_item[k_tr],
            train_weight=ds.train_weight[k_tr],
            val_user=ds.val_user[k_va],
            val_item=ds.val_item[k_va],
            test_user=ds.test_user[k_te],
            test_item=ds.test_item[k_te],
        )
    src = _DatasetSource(ds)
    src.name = name
    return build_protocol(base, "tweets", source=src, seed=seed, cold_users="drop")


def shape(protocol: Protocol) -> dict:
    """Catalogue shape of the test-time training data."""
    from graph.tasks import interaction_matrix

    x = interaction_matrix(protocol.test.train, "tweets")
    deg = np.asarray(x.sum(axis=0)).ravel()
    udeg = np.diff(x.indptr)
    seen = deg[deg > 0]
    return {
        "users": int(x.shape[0]),
        "items": int(x.shape[1]),
        "train_pairs": int(x.nnz),
        "items_with_training_pairs": int(len(seen)),
        "share_of_those_seen_once": round(float((seen == 1).mean()), 3),
        "user_degree_p50_p90_p99_max": [float(v) for v in np.percentile(udeg, [50, 90, 99, 100])],
        "test_users": int(len(protocol.test.users)),
        "test_pairs": protocol.test.n_pairs,
        "test_pairs_on_items_without_training_pairs": int((deg[protocol.test.truth.indices] == 0).sum()),
    }


def run_curve(args) -> dict:
    from gnn.pipeline import LIGHTGCN_DEFAULTS, fit_lightgcn

    protocol = make_protocol(args.dataset, args.data_dir, args.seed)
    test = protocol.test
    params = {**LIGHTGCN_DEFAULTS, **VARIANTS[args.variant], **json.loads(args.params or "{}")}
    params["progress"] = False
    params["seed"] = args.seed
    nu = test.train.n_users
    truth_full = _full_truth(test)
    curve = []
    t0 = time.perf_counter()

    def on_eval(rec: dict) -> None:
        model = rec["model"]
        was = model.training
        model.eval()
        with torch.no_grad():
            e = model()
        model.train(was)
        m = evaluate_embeddings(e[:nu], e[nu:], truth_full, test.exclude, 20, users=test.users)
        point = {
            k: rec.get(k)
            for k in ("epoch", "loss", "seconds", "val_recall@20", "val_ndcg@20", "refit", "lr")
            if k in rec
        }
        point["test_recall@20"] = m["recall@20"]
        point["test_ndcg@20"] = m["ndcg@20"]
        point["tail_share@20"] = _tail_share(e[:nu], e[nu:], test)
        curve.append(point)
        print(json.dumps(point), flush=True)

    res = fit_lightgcn(test.train, "tweets", params=params, on_eval=on_eval)
    final = _final_test(res, test, truth_full, args.seed)
    out = {
        "dataset": args.dataset,
        "variant": args.variant,
        "params": {k: v for k, v in params.items() if k != "progress"},
        "curve": curve,
        "final_test": final,
        "guard": {
            k: res.metrics.get(k) for k in ("val_recall@20", "popularity_val_recall@20", "beats_popularity")
        },
        "start_val": res.metrics.get("start_metric"),
        "best_epoch": res.metrics["best_epoch"],
        "best_val": res.metrics["best_metric"],
        "epochs_run": res.metrics["epochs_run"],
        "stopped": res.metrics["stopped"],
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "threads": torch.get_num_threads(),
    }
    print(json.dumps({k: v for k, v in out.items() if k != "curve"}), flush=True)
    return out


def _final_test(res, test, truth_full, seed: int) -> dict:
    """Test recall@20 / NDCG@20 of the final embeddings with 95% bootstrap intervals over users
    (the same intervals ``graphrec evaluate`` reports)."""
    from evaluation.stats import bootstrap_ci
    from gnn.ranking import recall_ndcg, topk_scores

    ids, _ = topk_scores(
        torch.from_numpy(res.user_vectors), torch.from_numpy(res.tweet_vectors), test.users, 20, test.exclude
    )
    rec, nd = recall_ndcg(ids, truth_full, test.users, 20)
    return {
        "recall@20": float(rec.mean()),
        "recall@20_ci": list(bootstrap_ci(rec, n_boot=1000, seed=seed)),
        "ndcg@20": float(nd.mean()),
        "ndcg@20_ci": list(bootstrap_ci(nd, n_boot=1000, seed=seed)),
        "users": len(test.users),
    }


def _full_truth(split):
    """The split's truth as a users x items matrix indexed by dense user (rows of non-test users empty)."""
    import scipy.sparse as sp

    t = split.truth.tocoo()
    return sp.csr_matrix(
        (t.data, (split.users[t.row], t.col)), shape=(split.train.n_users, split.truth.shape[1])
    )


def _tail_share(uv: torch.Tensor, tv: torch.Tensor, split, n: int = 2000) -> float:
    """Share of recommended items (top 20) that have at most one training pair."""
    from gnn.ranking import topk_scores

    deg = np.asarray(split.exclude.sum(axis=0)).ravel()
    users = split.users[:n]
    ids, _ = topk_scores(uv, tv, users, 20, split.exclude)
    ids = ids[ids >= 0]
    return float((deg[ids] <= 1).mean()) if len(ids) else 0.0


def run_start(args) -> dict:
    """The spectral warm start alone (no training), on the plain and on the degree-regularised
    normalisation: test recall@20, share of recommended items seen at most once, and the top
    of the spectrum it decomposes (eigenvalues near 1 = nearly separate pieces of the graph)."""
    from scipy.sparse.linalg import eigsh

    from gnn.data import joint_adjacency, positives
    from gnn.models import Propagation, spectral_init

    protocol = make_protocol(args.dataset, args.data_dir, args.seed)
    test = protocol.test
    snap = test.train
    nu, nt = snap.n_users, snap.n_tweets
    tw, fo = positives(snap, "tweets"), positives(snap, "follows")
    plain = joint_adjacency(nu, nt, tw, fo)
    truth = _full_truth(test)
    out = {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for tau in (0, "mean"):
        adj = joint_adjacency(nu, nt, tw, fo, degree_reg=tau)
        vals = eigsh(adj.astype(np.float64), k=64, which="LA", tol=1e-4, v0=np.ones(adj.shape[0]))[0]
        vals = np.sort(vals)[::-1]
        e = torch.from_numpy(spectral_init(adj, 64, seed=args.seed, scale=1.0))
        e = Propagation(plain, 3).apply(e)  # what LightGCN's forward makes of the start
        m = evaluate_embeddings(e[:nu], e[nu:], truth, test.exclude, 20, users=test.users)
        row = {
            "test_recall@20": m["recall@20"],
            "test_ndcg@20": m["ndcg@20"],
            "tail_share@20": _tail_share(e[:nu], e[nu:], test),
            "eigenvalues_1_2_3_64": [round(float(v), 4) for v in (vals[0], vals[1], vals[2], vals[-1])],
            "eigenvalues_above_0.999": int((vals > 0.999).sum()),
        }
        out[f"tau={tau}"] = row
        print(f"tau={tau}", json.dumps(row), flush=True)
    return out


def run_baselines(args) -> dict:
    from evaluation.runner import evaluate

    protocol = make_protocol(args.dataset, args.data_dir, args.seed)
    out = {"shape": shape(protocol), "methods": {}, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for name in args.methods.split(","):
        r = evaluate(protocol, name, seed=args.seed, n_boot=args.bootstrap)
        m, ci = r.record["metrics"], r.record["intervals"]
        out["methods"][name] = {
            "recall@20": m["recall@20"],
            "recall@20_ci": ci["recall@20"],
            "ndcg@20": m["ndcg@20"],
            "ndcg@20_ci": ci["ndcg@20"],
            "fit_s": r.record["timings"]["fit_s"],
            "params": r.record["params"] if name != "lightgcn" else None,
        }
        print(name, json.dumps(out["methods"][name]), flush=True)
    print(json.dumps(out["shape"]))
    return out


def merge(path: Path, dataset: str, key: str, value) -> None:
    data = json.loads(path.read_text()) if path.exists() else {}
    data.setdefault(dataset, {}).setdefault(key.split("/")[0], {})
    if "/" in key:
        data[dataset][key.split("/")[0]][key.split("/")[1]] = value
    else:
        data[dataset][key] = value
    path.write_text(json.dumps(data, indent=1))


def plot(path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads(path.read_text())
    names = [d for d in DATASETS if d in data and data[d].get("curves")]
    fig, axes = plt.subplots(2, len(names), figsize=(4.6 * len(names), 6.4), squeeze=False)
    for col, ds in enumerate(names):
        curves = data[ds]["curves"]
        pop_val = next(
            (c["guard"]["popularity_val_recall@20"] for c in curves.values() if c.get("guard")), None
        )
        pop_test = data[ds].get("baselines", {}).get("methods", {}).get("popular", {}).get("recall@20")
        for row, (metric, ref, what) in enumerate(
            (("val_recall@20", pop_val, "validation carve"), ("test_recall@20", pop_test, "test"))
        ):
            ax = axes[row][col]
            for name, c in curves.items():
                pts = [p for p in c["curve"] if p.get(metric) is not None]
                ax.plot(
                    [p["epoch"] for p in pts], [p[metric] for p in pts], marker="o", ms=2, lw=1, label=name
                )
            if ref is not None:
                ax.axhline(ref, color="black", ls="--", lw=1, label="popularity")
            ax.set_title(f"{ds}: {what}", fontsize=9)
            ax.set_xlabel("epoch", fontsize=8)
            ax.set_ylabel(f"recall@20 ({what})", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
        axes[0][col].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(png, dpi=70)
    print(f"wrote {png}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["curve", "baselines", "start", "plot", "shape"])
    ap.add_argument("--dataset", default="synthetic-tail", choices=DATASETS)
    ap.add_argument("--variant", default="defaults", choices=list(VARIANTS))
    ap.add_argument("--params", help="JSON overrides on top of the variant")
    ap.add_argument("--tag", help="name the result is stored under (default: the variant)")
    ap.add_argument("--methods", default="popular,userknn,itemknn")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument(
        "--data-dir", default=os.environ.get("GRAPHREC_DATA_DIR", str(ROOT.parent / "shared" / "datasets"))
    )
    ap.add_argument("--out", default=str(OUT))
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-save", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.part == "curve":
        r = run_curve(args)
        if not args.no_save:
            merge(out, args.dataset, f"curves/{args.tag or args.variant}", r)
    elif args.part == "baselines":
        r = run_baselines(args)
        if not args.no_save:
            merge(out, args.dataset, "baselines", r)
    elif args.part == "start":
        r = run_start(args)
        if not args.no_save:
            merge(out, args.dataset, "start", r)
    elif args.part == "shape":
        print(json.dumps(shape(make_protocol(args.dataset, args.data_dir, args.seed)), indent=1))
    else:
        plot(out, out.with_suffix(".png"))


if __name__ == "__main__":
    main()
