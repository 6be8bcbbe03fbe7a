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
import hashlib
import json
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gnn.ranking import evaluate_embeddings, recall_ndcg  # noqa: E402
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


@dataclass
class ColdTask:
    """One cold-start ranking problem: a graph in which each cold item has only its revealed
    engagements, and for the users with hidden engagements on cold items, the truth."""

    snap: object  # GraphSnapshot with the revealed edges
    cold: np.ndarray  # external ids of the cold items (sorted)
    cold_idx: np.ndarray  # their dense indices in snap
    users: np.ndarray  # dense user indices with hidden engagements on cold items
    truth: sp.csr_matrix  # n_users x n_cold: hidden engagements
    seen: sp.csr_matrix  # n_users x n_cold: revealed engagements (masked from the ranking)
    revealed_pop: np.ndarray  # revealed engagements per cold item


def make_task(snapshot, rng, item_ids, base_u, base_i, cold, cu, ci, reveal) -> ColdTask:
    """``base_*``: edges of the warm items; ``cu, ci``: every (user, cold item) pair, of which
    ``reveal`` random ones per item go into the graph and the rest are the truth."""
    order = np.lexsort((rng.random(len(ci)), ci))
    cu, ci = cu[order], ci[order]
    rank = np.arange(len(ci)) - np.searchsorted(ci, ci, side="left")
    revealed = rank < reveal
    snap = snapshot(item_ids, np.concatenate([base_u, cu[revealed]]), np.concatenate([base_i, ci[revealed]]))
    uidx, local, n_cold = snap.user_index(cu), np.searchsorted(cold, ci), len(cold)

    def pairs(mask):
        m = sp.csr_matrix(
            (np.ones(mask.sum(), np.float32), (uidx[mask], local[mask])), shape=(snap.n_users, n_cold)
        )
        m.sum_duplicates()
        m.data[:] = 1
        return m

    truth, seen = pairs(~revealed), pairs(revealed)
    truth = (truth - truth.multiply(seen)).tocsr()
    truth.eliminate_zeros()
    return ColdTask(
        snap=snap,
        cold=cold,
        cold_idx=snap.tweet_index(cold),
        users=np.flatnonzero(np.diff(truth.indptr) > 0),
        truth=truth,
        seen=seen,
        revealed_pop=np.bincount(local[revealed], minlength=n_cold).astype(np.float32),
    )


def neighbourhood_scores(task: ColdTask) -> dict[str, sp.csr_matrix]:
    """The project's own neighbourhood sources (retrieval/sources.py), fitted on the graph with
    the revealed edges, scoring the cold items for the task's users (users x cold items)."""
    from retrieval.sources import CoEngagementSource, FolloweeEngagementSource, SimilarUsersSource

    sources = {
        "co_engagement": CoEngagementSource(),  # item-kNN through the revealed edges
        "userknn": SimilarUsersSource(follow_weight=0.0),  # users similar to the first engagers
        "similar_users": SimilarUsersSource(),  # the same, users compared on follows too
    }
    if task.snap.n_follows:
        sources["followee_engagement"] = FolloweeEngagementSource()  # followees among the first engagers
    out = {}
    for name, source in sources.items():
        t0 = time.perf_counter()
        s = source.fit(task.snap).scores(task.users)
        out[name] = sp.csr_matrix(s)[:, task.cold_idx].tocsr()
        log(f"  {name}: {time.perf_counter() - t0:.1f}s")
    return out, sources["similar_users"]


#: shares of the embedding term in the cold-start scorer tried on the validation carve
#: (weights: similar_users 1 - a, engagers_embedding a)
EMBEDDING_SHARE_GRID = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
#: the neighbourhood baselines (retrieval/sources.py); the best on validation is the bar
NEIGHBOURHOOD = ("co_engagement", "userknn", "similar_users", "followee_engagement")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def rank_dense(task: ColdTask, scores, tie: np.ndarray, k: int = 20):
    """Per-user recall@k / NDCG@k of ranking the cold items by ``scores`` (users x cold, dense
    or sparse), revealed pairs masked, ties (e.g. the zeros of a sparse source) broken at random."""
    from graph.ranking import mask_rows, top_k

    dense = scores.toarray() if sp.issparse(scores) else np.array(scores, np.float32, copy=True)
    dense = dense.astype(np.float32) + tie[None, :]
    mask_rows(dense, task.seen[task.users])
    ids, _ = top_k(dense, k)
    return recall_ndcg(ids, task.truth, task.users, k)


def candidate_lists(task: ColdTask, scores, depth: int) -> sp.csr_matrix:
    """A source's normalised candidate lists over the cold items, as the recommender fuses them."""
    from graph.ranking import select_candidates
    from retrieval.fusion import normalised_lists

    ids, vals = select_candidates(scores, depth, task.seen[task.users])
    return normalised_lists(ids, vals, len(task.cold))


def save_sage_result(res, path: Path) -> None:
    """A trained SAGE result for ``--reuse-model``: its weights and everything else but the module."""
    import dataclasses

    path.parent.mkdir(parents=True, exist_ok=True)
    state = {"result": dataclasses.replace(res, model=None), "weights": res.model.state_dict()}
    torch.save(state, path)


def load_sage_result(path: Path):
    import dataclasses

    from gnn.models import HeteroSAGE

    state = torch.load(path, weights_only=False)
    res = state["result"]
    cfg = {k: v for k, v in res.config.items() if k not in ("model", "train", "normalized")}
    model = HeteroSAGE(cfg.pop("n_users"), cfg.pop("n_tweets"), **cfg)
    model.load_state_dict(state["weights"])
    return dataclasses.replace(res, model=model)


def bench_coldstart(args) -> None:
    from gnn.pipeline import embed_snapshot_inductive, fit_sage
    from retrieval.coldstart import COLD_WEIGHTS, cold_scores, engager_scores
    from retrieval.tuning import coordinate_ascent

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
    tr_u, tr_i = ds.train_user[tr], ds.train_item[tr]

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

    # Validation carve from training only (never the test items): 10% of the warm items become
    # cold the same way (``reveal`` random training engagements kept, the rest hidden). The
    # inductive model trains on this carved graph, so the hidden pairs are unseen by every
    # method when the fusion weights are chosen on them.
    vrng = np.random.default_rng(args.seed + 1)
    vcold = np.sort(vrng.choice(warm_items, size=int(round(0.1 * len(warm_items))), replace=False))
    v_is = np.isin(tr_i, vcold)
    val = make_task(
        snapshot, vrng, warm_items, tr_u[~v_is], tr_i[~v_is], vcold, tr_u[v_is], tr_i[v_is], args.reveal
    )
    params = {"epochs": args.epochs, "dim": 64, "cold_reveal": args.reveal, "progress": False}
    params.update(json.loads(args.params or "{}"))
    cache = (
        Path(args.out)
        / ".cache"
        / (
            f"sage_{args.dataset}_seed{args.seed}_reveal{args.reveal}_"
            + hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
            + ".pt"
        )
    )
    if args.reuse_model and cache.is_file():  # a model this same carve trained before
        res = load_sage_result(cache)
    else:
        res = fit_sage(val.snap, "tweets", params=params)
        save_sage_result(res, cache)
    t_train = time.perf_counter() - t0
    log(f"trained SAGE on the carved graph in {t_train:.0f}s")

    test = make_task(snapshot, rng, items, tr_u, tr_i, cold, all_u[is_cold], all_i[is_cold], args.reveal)

    def method_scores(task: ColdTask) -> tuple[dict, dict]:
        """The single methods' scores, and the cold-start scorer's terms (retrieval.coldstart)."""
        user_vecs, tweet_vecs = embed_snapshot_inductive(res, task.snap)
        out = {"sage": user_vecs[task.users] @ tweet_vecs[task.cold_idx].T}
        nb, similar = neighbourhood_scores(task)
        out.update(nb)
        terms = engager_scores(similar.neighbours(task.users), task.seen.T.tocsr(), user_vecs, task.users)
        out["engagers_embedding"] = terms["engagers_embedding"]
        return out, terms

    def mix(a: float) -> dict:
        return {"similar_users": round(1.0 - a, 3), "engagers_embedding": a}

    def sweep(task: ColdTask, terms: dict, tie: np.ndarray) -> dict:
        """Recall@20 of the cold-start scorer for each share of the embedding term."""
        return {
            a: float(rank_dense(task, cold_scores(terms, mix(a)), tie)[0].mean())
            for a in EMBEDDING_SHARE_GRID
        }

    depth = 300  # the recommender's candidates per source (retrieval.catalogue.DEFAULT_DEPTH)
    log("validation carve: scoring")
    v_scores, v_terms = method_scores(val)
    v_tie = vrng.random(len(vcold)).astype(np.float32) * 1e-6
    v_sweep = sweep(val, v_terms, v_tie)
    w_emb = max(v_sweep, key=v_sweep.get)
    log(f"validation: cold-start scorer by embedding weight {v_sweep}: {w_emb} chosen")
    v_lists = {name: candidate_lists(val, s, depth) for name, s in v_scores.items()}
    weights, v_best, v_single = coordinate_ascent(v_lists, val.truth[val.users], 20)
    log(f"validation: single {v_single}, fused {v_best:.4f} with {weights}")

    log("test: scoring")
    t_scores, t_terms = method_scores(test)
    n_cold = len(cold)
    tie = rng.random(n_cold).astype(np.float32) * 1e-6  # random tie-break among equal scores
    ones = np.ones((len(test.users), 1), np.float32)
    t_lists = {name: candidate_lists(test, s, depth) for name, s in t_scores.items()}
    fused = None
    for name, w in weights.items():
        if w:
            fused = t_lists[name] * w if fused is None else fused + t_lists[name] * w
    oracle_pop = np.asarray(test.truth.sum(axis=0)).ravel() + test.revealed_pop
    rows = {}
    for name, s in t_scores.items():
        rows[name] = rank_dense(test, s, tie)
    rows["fusion (weights chosen on the validation carve)"] = rank_dense(test, fused, tie)
    rows["cold-start scorer (retrieval.coldstart.COLD_WEIGHTS)"] = rank_dense(test, cold_scores(t_terms), tie)
    chosen = f"cold-start scorer (embedding share {w_emb}, chosen on validation)"
    rows[chosen] = rank_dense(test, cold_scores(t_terms, mix(w_emb)), tie)
    t_sweep = sweep(test, t_terms, tie)
    rows["popularity (revealed engagements)"] = rank_dense(test, ones * test.revealed_pop[None, :], tie * 1e3)
    rows["popularity (oracle: all engagements)"] = rank_dense(test, ones * oracle_pop[None, :], tie * 1e3)
    rows["random"] = rank_dense(test, ones * rng.random(n_cold)[None, :].astype(np.float32), tie)
    v_single.update({n: float(rank_dense(val, v_scores[n], v_tie)[0].mean()) for n in v_scores})
    best_nb = max((n for n in NEIGHBOURHOOD if n in v_scores), key=lambda n: v_single[n])
    report = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "dataset": args.dataset,
        "cold_items": n_cold,
        "eval_users": len(test.users),
        "val_cold_items": len(vcold),
        "val_users": len(val.users),
        "reveal": args.reveal,
        "train_seconds": t_train,
        "wall_seconds": time.perf_counter() - t0,
        "params": params,
        "fusion_weights": weights,
        "cold_weights": COLD_WEIGHTS,
        "embedding_weight_sweep": {"validation": v_sweep, "test (not used to choose)": t_sweep},
        "validation_recall@20": {"single (dense ranking)": v_single, "fused": v_best},
        "best_neighbourhood_on_validation": best_nb,
        "sage_history": res.metrics["history"],
        "peak_rss_gib": peak_rss_gib(),
        "methods": {},
    }
    for name, (rec, nd) in rows.items():
        entry = {"recall@20": bootstrap(rec), "ndcg@20": bootstrap(nd)}
        if name != best_nb:
            entry[f"this_minus_{best_nb}_recall@20"] = bootstrap(rec - rows[best_nb][0])
        report["methods"][name] = entry
        print(
            f"{name:50s} recall@20 {entry['recall@20'][0]:.4f} [{entry['recall@20'][1]:.4f}, {entry['recall@20'][2]:.4f}]  "
            f"ndcg@20 {entry['ndcg@20'][0]:.4f} [{entry['ndcg@20'][1]:.4f}, {entry['ndcg@20'][2]:.4f}]"
        )
    best_test = max((n for n in NEIGHBOURHOOD if n in rows), key=lambda n: rows[n][0].mean())
    report["best_neighbourhood_on_test"] = best_test
    for name in ("cold-start scorer (retrieval.coldstart.COLD_WEIGHTS)", chosen):
        d = bootstrap(rows[name][0] - rows[best_test][0])
        report["methods"][name][f"this_minus_{best_test}_recall@20"] = d
        print(
            f"{name} minus {best_test} (best neighbourhood source on test): {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
        )
    for name in (
        "cold-start scorer (retrieval.coldstart.COLD_WEIGHTS)",
        chosen,
        "engagers_embedding",
        "sage",
        "fusion (weights chosen on the validation carve)",
    ):
        d = bootstrap(rows[name][0] - rows[best_nb][0])
        print(
            f"{name} minus {best_nb} (best neighbourhood source on validation): {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
        )
    print(f"embedding weight sweep: validation {v_sweep}; test {t_sweep}")
    print(
        f"{args.dataset}: {n_cold} cold items, {len(test.users)} users with held-out engagements on them, "
        f"reveal={args.reveal}, SAGE trained in {t_train:.0f}s, weights {weights}"
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
    ap.add_argument(
        "--reuse-model",
        action="store_true",
        help="coldstart: reuse the SAGE model an earlier run trained on the same carve (OUT/.cache)",
    )
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
