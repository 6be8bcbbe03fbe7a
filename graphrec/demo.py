"""``graphrec demo``: the whole pipeline on the embedded local store, end to end.

ingest a real dataset -> snapshot -> random walks -> GNN embeddings -> recommendations with
reasons -> an evaluation table. Talks to the terminal (it is an entry point).
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from graph.errors import GraphRecError
from graph.export import export_snapshot
from graph.ingest import GraphColumns, ingest
from graph.local_store import LocalStore

EVAL_METHODS = {
    "tweets": ("popular", "itemknn", "pixie", "lightgcn", "hybrid"),
    "follows": ("adamic-adar", "ppr", "hybrid"),
}


def _step(title: str) -> float:
    print(f"\n== {title}")
    return time.perf_counter()


def run_demo(
    dataset: str,
    data_dir: str,
    store_dir: str,
    *,
    user: int | None = None,
    evaluate: bool = True,
    embed_epochs: int | None = None,
    progress: bool = True,
) -> int:
    """Run every stage and print what it produced; returns a process exit code."""
    t_start = time.perf_counter()
    t0 = _step(f"1. ingest {dataset} (training data) into the local store {store_dir}")
    if dataset == "synthetic":
        from graph.synthetic import generate

        cols = GraphColumns.from_synthetic(generate(2000, seed=0))
    else:
        from graph.datasets import load_dataset

        ds = load_dataset(dataset, data_dir)
        splits = ("train", "val") if len(ds.val_user) else ("train",)
        cols = GraphColumns.from_dataset(ds, splits)
    with LocalStore(Path(store_dir)) as store:
        ingest(store, cols, progress=progress)
        print(f"   store holds {store.counts()}  ({time.perf_counter() - t0:.1f}s)")
        t0 = _step("2. export an immutable snapshot")
        snap = export_snapshot(store, progress=progress)
    snap_dir = snap.save(Path(store_dir) / "snapshot")
    stats = snap.stats()
    print(
        f"   snapshot {snap.snapshot_id} -> {snap_dir} ({snap.nbytes / 1e6:.1f} MB, {time.perf_counter() - t0:.1f}s)"
    )
    for key in ("users", "tweets", "follows", "engagements", "mean_followees", "reciprocated_follows"):
        value = stats[key]
        print(f"   {key:<22} {value:>12,.2f}" if isinstance(value, float) else f"   {key:<22} {value:>12,}")

    if user is None:  # the most active user with follows, so every source has something to say
        activity = np.diff(snap.eng_user_indptr) + np.diff(snap.follow_out_indptr)
        uidx = int(np.argmax(activity))
    else:
        uidx = int(snap.user_index([user])[0])
    uid = int(snap.user_ids[uidx])

    t0 = _step(f"3. random walks from user {uid}")
    from retrieval.walk_sources import pixie_candidates, ppr_candidates

    ids, scores = pixie_candidates(snap, uidx, 5)
    print("   Pixie tweet candidates:", _pairs(snap.tweet_ids, ids, scores))
    if snap.n_follows:
        ids, scores = ppr_candidates(snap, uidx, 5)
        print("   personalized PageRank accounts:", _pairs(snap.user_ids, ids, scores))
    print(f"   ({time.perf_counter() - t0:.1f}s)")

    t0 = _step("4. GNN embeddings (LightGCN on PyTorch Geometric)")
    user_vectors = tweet_vectors = None
    try:
        from gnn.pipeline import fit_lightgcn
    except ImportError as exc:
        print(f"   skipped: {exc}")
    else:
        params = {} if embed_epochs is None else {"epochs": embed_epochs}
        result = fit_lightgcn(snap, "both", params=params)
        user_vectors, tweet_vectors = result.user_vectors, result.tweet_vectors
        print(
            f"   {user_vectors.shape[1]}-d embeddings for {len(user_vectors):,} users and "
            f"{len(tweet_vectors):,} tweets ({time.perf_counter() - t0:.1f}s)"
        )

    t0 = _step(f"5. recommendations for user {uid}, with reasons")
    from retrieval.recommender import Recommender

    rec = Recommender(snap, user_vectors=user_vectors, tweet_vectors=tweet_vectors)
    print("   who to follow:")
    for r in rec.who_to_follow(uid, k=5):
        print(f"     {r.id:>8}  {r.score:.3f}  {r.reason}")
    print("   tweet candidates:")
    for r in rec.tweet_candidates(uid, k=5):
        print(f"     {r.id:>8}  {r.score:.3f}  {r.reason}")
    print(f"   ({time.perf_counter() - t0:.1f}s)")

    if evaluate and dataset != "synthetic":
        t0 = _step(f"6. evaluation on {dataset} (all-item ranking, training items masked, 95% bootstrap CIs)")
        from evaluation.runner import evaluate as run_eval
        from evaluation.splits import build_protocol

        for task, methods in EVAL_METHODS.items():
            if task == "follows" and not snap.n_follows:
                continue
            protocol = build_protocol(dataset, task, data_dir, cold_users="drop")
            print(f"   task {task} ({len(protocol.test.users):,} test users)")
            print(f"     {'method':<12} {'recall@20':>26} {'ndcg@20':>26} {'time':>7}")
            for name in methods:
                t1 = time.perf_counter()
                try:
                    rec_ = run_eval(protocol, name, n_boot=200).record
                except (ImportError, GraphRecError) as exc:  # e.g. a method whose module is not installed
                    print(f"     {name:<12} skipped ({exc})")
                    continue
                cells = []
                for m in ("recall@20", "ndcg@20"):
                    lo, hi = rec_["intervals"][m]
                    cells.append(f"{rec_['metrics'][m]:.4f} [{lo:.4f}, {hi:.4f}]")
                print(f"     {name:<12} {cells[0]:>26} {cells[1]:>26} {time.perf_counter() - t1:>6.1f}s")
        print(f"   ({time.perf_counter() - t0:.1f}s)")
    print(f"\ndemo finished in {time.perf_counter() - t_start:.1f}s")
    return 0


def _pairs(vocab: np.ndarray, ids: np.ndarray, scores: np.ndarray) -> str:
    ids, scores = np.asarray(ids).ravel(), np.asarray(scores).ravel()
    return ", ".join(f"{int(vocab[i])} ({s:.3g})" for i, s in zip(ids, scores) if i >= 0) or "(none)"
