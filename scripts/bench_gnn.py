"""GNN benchmarks: time-to-quality on gowalla (fast recipe vs the plain way) and cold start on flickr.

    flock /tmp/graphrec-cpu.lock python scripts/bench_gnn.py gowalla --data-dir ../shared/datasets
    flock /tmp/graphrec-cpu.lock python scripts/bench_gnn.py coldstart --data-dir ../shared/datasets

``gowalla`` runs each recipe in its own process (so peak memory is per recipe), evaluates the
test split (all-item ranking, training items masked, top-20) after each validation, outside
the timed part, and writes ``docs/img/bench_gnn_gowalla.{json,png}``: recall@20 and NDCG@20
against training wall time, with the LightGCN paper's numbers as reference lines.

* ``fast``: :func:`gnn.pipeline.fit_lightgcn` with the defaults of ``graphrec evaluate
  --method lightgcn`` (spectral warm start, cached adjacency, large batches, BPR with 2 hard negatives, AdamW decay, refit epochs,
  early stopping on a validation split carved from train).
* ``plain``: PyG's ``LightGCN`` trained as in PyG's example (full-graph propagation through
  ``edge_index`` every step, BPR, batch 8192, lr 1e-3, 3 layers, dim 64).

``coldstart`` holds out 10% of flickr's items entirely (no edge, no ID embedding), trains the
inductive SAGE model on the rest, then reveals each held-out item's first ``--reveal``
engagements (random ones: flickr has no timestamps) and ranks the held-out items for every
user with remaining engagements on them, against popularity (revealed counts) and the
oracle popularity (all engagements), with 95% bootstrap intervals over users.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn.ranking import evaluate_embeddings, recall_ndcg, topk_scores  # noqa: E402
from graph.datasets import dataset_snapshot, load_dataset  # noqa: E402
from graph.snapshot import build_snapshot  # noqa: E402
from graph.tasks import exclusion_matrix  # noqa: E402

PAPER = {"recall@20": 0.1830, "ndcg@20": 0.1554}


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def test_matrix(ds, snap) -> sp.csr_matrix:
    u, t = snap.user_index(ds.test_user), snap.tweet_index(ds.test_item)
    m = sp.csr_matrix((np.ones(len(u), np.float32), (u, t)), shape=(snap.n_users, snap.n_tweets))
    m.sum_duplicates()
    m.data[:] = 1
    return m


# ---------------------------------------------------------------------------
# gowalla recipes (each in its own process)


def run_fast(args) -> dict:
    from evaluation.embedding_methods import LightGCNMethod
    from gnn.pipeline import fit_lightgcn

    t_start = time.perf_counter()
    ds = load_dataset("gowalla", args.data_dir)
    snap = dataset_snapshot(ds)
    te, ex = test_matrix(ds, snap), exclusion_matrix(snap, "tweets")
    nu = snap.n_users
    curve = []
    params = dict(LightGCNMethod(cache_dir=None).params)
    params.update(json.loads(args.params or "{}"))
    params["progress"] = False

    def on_eval(rec):
        model = rec["model"]
        model.eval()
        with torch.no_grad():
            e = model()
        if params.get("loss", "softmax") in ("softmax", "full_softmax") and params.get("cosine", True):
            e = torch.nn.functional.normalize(e, dim=1)
        m = evaluate_embeddings(e[:nu], e[nu:], te, ex, 20)
        point = {
            "seconds": rec["seconds"],
            "epoch": rec["epoch"],
            "recall@20": m["recall@20"],
            "ndcg@20": m["ndcg@20"],
            "val_recall@20": rec.get("val_recall@20"),  # None for refit epochs
            "refit": rec.get("refit", 0),
            "wall_since_start": time.perf_counter() - t_start,
            "rss_gib": peak_rss_gib(),
        }
        curve.append(point)
        print(json.dumps(point), flush=True)

    res = fit_lightgcn(snap, "tweets", params=params, on_eval=on_eval)
    final = evaluate_embeddings(
        torch.from_numpy(res.user_vectors), torch.from_numpy(res.tweet_vectors), te, ex, 20
    )
    # wall time of a user's `graphrec evaluate --method lightgcn` training: load + prepare + train
    return {
        "recipe": "fast",
        "params": params,
        "curve": curve,
        "final": final,
        "best_epoch": res.metrics["best_epoch"],
        "epochs_run": res.metrics["epochs_run"],
        "train_seconds": res.metrics["train_seconds"],
        "prepare_seconds": res.metrics["prepare_seconds"],
        "stopped": res.metrics["stopped"],
        "peak_rss_gib": peak_rss_gib(),
    }


def run_plain(args) -> dict:
    """PyG's LightGCN as in its example: edge_index propagation every step, BPR, batch 8192."""
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    ds = load_dataset("gowalla", args.data_dir)
    snap = dataset_snapshot(ds)
    te, ex = test_matrix(ds, snap), exclusion_matrix(snap, "tweets")
    nu, nt = snap.n_users, snap.n_tweets
    indptr = np.asarray(snap.eng_user_indptr)
    u = torch.from_numpy(np.repeat(np.arange(nu), np.diff(indptr)).astype(np.int64))
    t = torch.from_numpy(np.asarray(snap.eng_user_indices, np.int64))
    edge_index = torch.cat([torch.stack([u, t + nu]), torch.stack([t + nu, u])], dim=1)
    torch.manual_seed(0)
    model = PygLightGCN(num_nodes=nu + nt, embedding_dim=64, num_layers=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    curve, train_s, epoch = [], 0.0, 0
    while train_s < args.plain_budget:
        t0 = time.perf_counter()
        perm = torch.randperm(len(u))
        total = 0.0
        for start in range(0, len(u), 8192):
            idx = perm[start : start + 8192]
            src, pos = u[idx], t[idx] + nu
            neg = torch.randint(nu, nu + nt, (len(idx),))
            opt.zero_grad()
            emb = model.get_embedding(edge_index)
            pos_rank = (emb[src] * emb[pos]).sum(-1)
            neg_rank = (emb[src] * emb[neg]).sum(-1)
            loss = model.recommendation_loss(
                pos_rank, neg_rank, node_id=torch.cat([src, pos, neg]), lambda_reg=1e-4
            )
            loss.backward()
            opt.step()
            total += float(loss) * len(idx)
        train_s += time.perf_counter() - t0
        epoch += 1
        if epoch % args.plain_eval_every == 0 or train_s >= args.plain_budget:
            with torch.no_grad():
                emb = model.get_embedding(edge_index)
            m = evaluate_embeddings(emb[:nu], emb[nu:], te, ex, 20)
            point = {
                "seconds": train_s,
                "epoch": epoch,
                "recall@20": m["recall@20"],
                "ndcg@20": m["ndcg@20"],
                "loss": total / len(u),
                "rss_gib": peak_rss_gib(),
            }
            curve.append(point)
            print(json.dumps(point), flush=True)
    return {
        "recipe": "plain",
        "curve": curve,
        "epochs_run": epoch,
        "train_seconds": train_s,
        "peak_rss_gib": peak_rss_gib(),
        "seconds_per_epoch": train_s / max(epoch, 1),
    }


def bench_gowalla(args) -> None:
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for recipe in args.recipes.split(","):
        tmp = out_dir / f".bench_gnn_{recipe}.json"
        cmd = [
            sys.executable,
            __file__,
            "_run",
            recipe,
            "--data-dir",
            str(args.data_dir),
            "--json",
            str(tmp),
            "--threads",
            str(args.threads),
            "--plain-budget",
            str(args.plain_budget),
            "--plain-eval-every",
            str(args.plain_eval_every),
        ]
        if args.params:
            cmd += ["--params", args.params]
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True)
        results[recipe] = json.loads(tmp.read_text())
        results[recipe]["process_wall_seconds"] = time.perf_counter() - t0
        tmp.unlink()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "threads": args.threads,
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "paper": PAPER,
    }
    data = {"meta": meta, "results": results}
    (out_dir / "bench_gnn_gowalla.json").write_text(json.dumps(data, indent=2))
    plot(data, out_dir / "bench_gnn_gowalla.png")
    for name, r in results.items():
        last = r["curve"][-1] if r["curve"] else {}
        print(
            f"{name}: {r['epochs_run']} epochs, {r['train_seconds']:.0f}s training, peak RSS {r['peak_rss_gib']:.2f} GiB, last test recall@20 {last.get('recall@20', float('nan')):.4f} ndcg@20 {last.get('ndcg@20', float('nan')):.4f}"
        )
        if "final" in r:
            print(f"  final embeddings: {r['final']}")


def plot(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, metric in zip(axes, ("recall@20", "ndcg@20")):
        for name, r in data["results"].items():
            xs = [p["seconds"] / 60 for p in r["curve"]]
            ys = [p[metric] for p in r["curve"]]
            label = {
                "fast": "fast recipe (spectral init, big batch, BPR, 2 hard negatives of 32, AdamW decay, refit)",
                "plain": "plain PyG LightGCN (BPR, batch 8192)",
            }.get(name, name)
            ax.plot(xs, ys, marker="o", ms=3, label=label)
        ax.axhline(PAPER[metric], color="gray", ls="--", lw=1, label=f"LightGCN paper {PAPER[metric]}")
        ax.axvline(20, color="red", ls=":", lw=1, label="20 min budget")
        ax.set_xlabel("training wall time (min)")
        ax.set_ylabel(f"test {metric}")
        ax.set_title(f"gowalla, {data['meta']['threads']} CPU threads")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)


# ---------------------------------------------------------------------------
# cold start on flickr


def bootstrap(values: np.ndarray, n: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    rng = np.random.default_rng(seed)
    means = np.array([values[rng.integers(0, len(values), len(values))].mean() for _ in range(n)])
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def bench_coldstart(args) -> None:
    from gnn.pipeline import embed_snapshot_inductive, fit_sage

    t0 = time.perf_counter()
    ds = load_dataset(args.dataset, args.data_dir)
    rng = np.random.default_rng(args.seed)
    items = np.asarray(ds.item_ids)
    cold = np.sort(rng.choice(items, size=int(round(0.1 * len(items))), replace=False))
    all_u = np.concatenate([ds.train_user, ds.val_user, ds.test_user])
    all_i = np.concatenate([ds.train_item, ds.val_item, ds.test_item])
    pairs = np.unique(all_u * (items.max() + 1) + all_i)  # de-duplicated (user, item) pairs
    all_u, all_i = pairs // (items.max() + 1), pairs % (items.max() + 1)
    is_cold = np.isin(all_i, cold)
    # training graph: the train split without any cold item
    tr = np.isin(ds.train_item, cold, invert=True)
    warm_items = np.setdiff1d(items, cold)

    def snapshot(item_ids, eu, ei):
        return build_snapshot(
            user_ids=ds.user_ids,
            tweet_ids=item_ids,
            follow_src=ds.follow_src,
            follow_dst=ds.follow_dst,
            follow_ts=np.zeros(len(ds.follow_src), np.int64),
            eng_user=eu,
            eng_tweet=ei,
            eng_kind=np.full(len(eu), 4, np.int8),
            eng_ts=np.zeros(len(eu), np.int64),
            eng_weight=np.ones(len(eu), np.float32),
            tweet_author=np.full(len(item_ids), -1, np.int64),
            tweet_created=np.zeros(len(item_ids), np.int64),
        )

    train = snapshot(warm_items, ds.train_user[tr], ds.train_item[tr])
    params = {"epochs": args.epochs, "dim": 64, "cold_reveal": args.reveal, "progress": True}
    params.update(json.loads(args.params or "{}"))
    res = fit_sage(train, "tweets", params=params)
    t_train = time.perf_counter() - t0

    # reveal the first `reveal` engagements of each cold item (random order: no timestamps)
    cu, ci = all_u[is_cold], all_i[is_cold]
    order = np.lexsort((rng.random(len(ci)), ci))
    cu, ci = cu[order], ci[order]
    first = np.searchsorted(ci, ci, side="left")
    rank = np.arange(len(ci)) - first
    revealed = rank < args.reveal
    new = snapshot(
        items,
        np.concatenate([ds.train_user[tr], cu[revealed]]),
        np.concatenate([ds.train_item[tr], ci[revealed]]),
    )
    _, tweet_vecs = embed_snapshot_inductive(res, new)
    user_vecs, _ = embed_snapshot_inductive(res, new)

    cold_idx = new.tweet_index(cold)
    uidx = new.user_index(cu)
    local = np.searchsorted(cold, ci)  # position of each cold pair's item among the cold items
    n_cold = len(cold)
    truth = sp.csr_matrix(
        (np.ones((~revealed).sum(), np.float32), (uidx[~revealed], local[~revealed])),
        shape=(new.n_users, n_cold),
    )
    seen = sp.csr_matrix(
        (np.ones(revealed.sum(), np.float32), (uidx[revealed], local[revealed])), shape=(new.n_users, n_cold)
    )
    truth = (truth - truth.multiply(seen)).tocsr()
    truth.eliminate_zeros()
    users = np.flatnonzero(np.diff(truth.indptr) > 0)

    def score(name, uvec, tvec):
        ids, _ = topk_scores(torch.from_numpy(uvec), torch.from_numpy(tvec), users, 20, seen)
        rec, nd = recall_ndcg(ids, truth, users, 20)
        return name, rec, nd

    tie = rng.random(n_cold).astype(np.float32) * 1e-3  # random tie-break among equal counts
    revealed_pop = np.bincount(local[revealed], minlength=n_cold).astype(np.float32) + tie
    oracle_pop = np.bincount(local, minlength=n_cold).astype(np.float32) + tie
    ones = np.ones((new.n_users, 1), np.float32)
    rows = [
        score("sage (inductive)", user_vecs, tweet_vecs[cold_idx]),
        score("popularity (revealed engagements)", ones, revealed_pop[:, None]),
        score("popularity (oracle: all engagements)", ones, oracle_pop[:, None]),
        score("random", ones, rng.random((n_cold, 1)).astype(np.float32)),
    ]
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "cold_items": n_cold,
        "eval_users": len(users),
        "reveal": args.reveal,
        "train_seconds": t_train,
        "params": params,
        "sage_history": res.metrics["history"],
        "peak_rss_gib": peak_rss_gib(),
        "methods": {},
    }
    sage_rec = rows[0][1]
    for name, rec, nd in rows:
        entry = {"recall@20": bootstrap(rec), "ndcg@20": bootstrap(nd)}
        if name != rows[0][0]:
            entry["sage_minus_this_recall@20"] = bootstrap(sage_rec - rec)
        report["methods"][name] = entry
        print(
            f"{name:40s} recall@20 {entry['recall@20'][0]:.4f} [{entry['recall@20'][1]:.4f}, {entry['recall@20'][2]:.4f}]  "
            f"ndcg@20 {entry['ndcg@20'][0]:.4f} [{entry['ndcg@20'][1]:.4f}, {entry['ndcg@20'][2]:.4f}]"
        )
    print(
        f"{n_cold} cold items, {len(users)} users with held-out engagements on them, reveal={args.reveal}, trained in {t_train:.0f}s"
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"bench_gnn_coldstart_{args.dataset}_reveal{args.reveal}.json").write_text(
        json.dumps(report, indent=2)
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["gowalla", "coldstart", "_run"])
    ap.add_argument("recipe", nargs="?", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "datasets"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "img"))
    ap.add_argument("--recipes", default="fast,plain")
    ap.add_argument("--params", help="JSON overrides of the fast recipe / SAGE parameters")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument(
        "--plain-budget", type=float, default=1200.0, help="seconds of training for the plain way"
    )
    ap.add_argument("--plain-eval-every", type=int, default=2)
    ap.add_argument("--reveal", type=int, default=2, help="coldstart: engagements revealed per held-out item")
    ap.add_argument("--epochs", type=int, default=30, help="coldstart: SAGE epochs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dataset", default="flickr", help="coldstart: dataset (default: %(default)s)")
    ap.add_argument("--json", help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.part == "gowalla":
        bench_gowalla(args)
    elif args.part == "coldstart":
        bench_coldstart(args)
    else:
        result = run_fast(args) if args.recipe == "fast" else run_plain(args)
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
