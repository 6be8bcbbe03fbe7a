"""Benchmark: the live segments in process (graph.live + the recommender's live stage).

On a fitted recommender (the 10M-edge synthetic graph by default, its snapshot and model taken
from ``scripts/bench_serve.py``'s cache, else built), it generates a Twitter-like stream of new
events on top of the snapshot (follows to accounts drawn by in-degree, engagements with tweets
drawn by popularity, new tweets; a share of new users) and measures, in the same run:

* ``events_per_s``: events applied to the live graph in micro-batches of ``--batch`` (parse
  excluded: the columns are ready), one thread;
* ``bytes_per_edge``: the live segments' memory per live edge;
* per-call latency p50 / p99 of ``who_to_follow`` and ``tweet_candidates`` for users with live
  history, with the live stage and without it (the same recommender detached): the cost of
  reading base + live;
* ``walk_fold_s``: one fold of the live graph for the walks (snapshot + walk graphs), its size,
  and the call latency with the walks on the fold;
* with ``--compaction``: a compaction's fold and refit (``graphrec compact`` minus the topic read);
* ``visible_p50_ms`` / ``visible_p99_ms``: from applying a new follow to the first answer that
  no longer proposes the followed account (the in-process part of freshness).

Usage::

    python scripts/bench_live.py --edges 10000000 --live-events 1000000 --json OUT
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from graph.ingest import GraphColumns  # noqa: E402
from graph.schema import KINDS  # noqa: E402


def load(args):
    from retrieval.recommender import Recommender

    cache = Path(args.model_cache) / f"synthetic-{args.edges}-{args.seed}"
    if (cache / "model" / "meta.json").is_file():
        return Recommender.load(cache / "model", cache / "snapshot")
    from graph.synthetic import generate, users_for_edges

    snap = generate(users_for_edges(args.edges), seed=args.seed, with_text=True).snapshot()
    rec = Recommender(snap)
    snap.save(cache / "snapshot")
    rec.save(cache / "model")
    return Recommender.load(cache / "model", cache / "snapshot")


def stream(snap, n: int, seed: int, new_user_share: float = 0.02) -> GraphColumns:
    """``n`` new events: 40% follows, 50% engagements, 10% new tweets; ids of new users and
    tweets above the snapshot's."""
    rng = np.random.default_rng(seed)
    users, tweets = np.asarray(snap.user_ids), np.asarray(snap.tweet_ids)
    n_f, n_t = int(0.4 * n), int(0.1 * n)
    n_e = n - n_f - n_t
    new_users = int(users.max()) + 1 + np.arange(max(int(new_user_share * len(users)), 1))

    def actors(m):
        pick = users[rng.integers(0, len(users), m)]
        fresh = rng.random(m) < new_user_share
        pick[fresh] = new_users[rng.integers(0, len(new_users), int(fresh.sum()))]
        return pick

    f_dst = users[snap.follow_out_indices[rng.integers(0, snap.n_follows, n_f)]]  # by in-degree
    new_tweets = int(tweets.max()) + 1 + np.arange(n_t)
    pop = tweets[snap.eng_user_indices[rng.integers(0, snap.n_engagements, n_e)]]  # by popularity
    fresh = rng.random(n_e) < 0.2  # a fifth of engagements go to tweets born in the stream
    pop[fresh] = new_tweets[rng.integers(0, max(n_t, 1), int(fresh.sum()))] if n_t else pop[fresh]
    t0 = int(np.asarray(snap.tweet_created).max()) + 1
    src = actors(n_f)
    keep = src != f_dst
    return GraphColumns(
        users=new_users,
        tweet_ids=new_tweets,
        tweet_authors=actors(n_t),
        tweet_created=t0 + np.arange(n_t),
        tweet_texts=None,
        follow_src=src[keep],
        follow_dst=f_dst[keep],
        follow_ts=t0 + np.arange(int(keep.sum())),
        eng_user=actors(n_e),
        eng_tweet=pop,
        eng_kind=rng.choice([KINDS["like"], KINDS["retweet"], KINDS["reply"]], n_e).astype(np.int8),
        eng_ts=t0 + np.arange(n_e),
        eng_weight=np.ones(n_e, np.float32),
    )


def batches(cols: GraphColumns, size: int):
    """Micro-batches in arrival order (tweets first, so engagements find them)."""
    n = max(len(cols.follow_src), len(cols.eng_user), len(cols.tweet_ids))
    parts = max(1, -(-n // size))
    for p in range(parts):

        def cut(a, p=p):
            step = -(-len(a) // parts)
            return a[p * step : (p + 1) * step]

        yield GraphColumns(
            users=cut(cols.users),
            tweet_ids=cut(cols.tweet_ids),
            tweet_authors=cut(cols.tweet_authors),
            tweet_created=cut(cols.tweet_created),
            tweet_texts=None,
            follow_src=cut(cols.follow_src),
            follow_dst=cut(cols.follow_dst),
            follow_ts=cut(cols.follow_ts),
            eng_user=cut(cols.eng_user),
            eng_tweet=cut(cols.eng_tweet),
            eng_kind=cut(cols.eng_kind),
            eng_ts=cut(cols.eng_ts),
            eng_weight=cut(cols.eng_weight),
        )


def latency(rec, uids, k: int) -> dict:
    out = {}
    for name, call in (("who_to_follow", rec.who_to_follow), ("tweet_candidates", rec.tweet_candidates)):
        times = []
        for uid in uids:
            t0 = time.perf_counter()
            call(int(uid), k)
            times.append((time.perf_counter() - t0) * 1000)
        out[name] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic base graph size")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--live-events", type=int, default=1_000_000, help="events in the live stream")
    p.add_argument("--batch", type=int, default=1_000, help="events per micro-batch")
    p.add_argument("--users", type=int, default=500, help="users timed per call kind")
    p.add_argument("-k", type=int, default=20)
    p.add_argument("--model-cache", default=".graphrec/bench-serve")
    p.add_argument("--json", help="write figures here")
    p.add_argument(
        "--compaction", action="store_true", help="also time a compaction's fold and refit (minutes at 10M)"
    )
    args = p.parse_args()

    from graph.live import LiveGraph

    t0 = time.perf_counter()
    rec = load(args)
    snap = rec.snap
    print(f"loaded {snap.n_users:,} users / {snap.n_tweets:,} tweets in {time.perf_counter() - t0:.1f}s")
    cols = stream(snap, args.live_events, args.seed + 1)
    live = LiveGraph(snap)
    n_events = 0
    t0 = time.perf_counter()
    for batch in batches(cols, args.batch):
        live.add(batch)
        n_events += len(batch.tweet_ids) + len(batch.follow_src) + len(batch.eng_user)
    apply_s = time.perf_counter() - t0
    events_per_s = n_events / apply_s
    bytes_per_edge = live.nbytes / max(live.n_edges, 1)
    print(
        f"applied {n_events:,} events in {apply_s:.2f}s: {events_per_s:,.0f} events/s; "
        f"{live.n_edges:,} live edges, {bytes_per_edge:.1f} bytes/edge, "
        f"{len(live.follows.sealed) + len(live.engagements.sealed)} sealed segments"
    )

    rng = np.random.default_rng(args.seed + 2)
    active = np.unique(np.concatenate([cols.follow_src, cols.eng_user]))
    active = active[np.isin(active, snap.user_ids)]
    uids = rng.choice(active, min(args.users, len(active)), replace=False)
    for uid in uids[:20]:  # compile and warm both paths
        rec.who_to_follow(int(uid), args.k)
        rec.tweet_candidates(int(uid), args.k)
    base = latency(rec, uids, args.k)
    rec.attach_live(live)
    for uid in uids[:20]:
        rec.who_to_follow(int(uid), args.k)
        rec.tweet_candidates(int(uid), args.k)
    with_live = latency(rec, uids, args.k)
    for name in base:
        print(
            f"{name:>17}: p50 {base[name]['p50_ms']:.2f} -> {with_live[name]['p50_ms']:.2f} ms, "
            f"p99 {base[name]['p99_ms']:.2f} -> {with_live[name]['p99_ms']:.2f} ms (snapshot alone -> with live)"
        )

    # the walk view: the live graph folded for the walks (what the background thread does)
    t0 = time.perf_counter()
    rec.refresh_walks()
    walk_fold_s = time.perf_counter() - t0
    fold_snap = rec.overlay.walks.snap
    fold_bytes = sum(np.asarray(a).nbytes for a in fold_snap.arrays.values()) if fold_snap is not None else 0
    for uid in uids[:20]:
        rec.who_to_follow(int(uid), args.k)
        rec.tweet_candidates(int(uid), args.k)
    with_walks = latency(rec, uids, args.k)
    print(
        f"walk view: fold + walk graphs in {walk_fold_s:.2f}s ({fold_bytes / 2**20:,.0f} MiB); "
        f"next fold not before {max(1.0, 5 * walk_fold_s):.1f}s"
    )
    for name in base:
        print(
            f"{name:>17}: p50 {with_walks[name]['p50_ms']:.2f} ms, p99 {with_walks[name]['p99_ms']:.2f} ms "
            "(walks on the fold)"
        )

    compaction = None
    if args.compaction:  # what `graphrec compact` does after reading the topic: fold, refit
        from graph.live import fold
        from retrieval.live import extend_vectors
        from retrieval.recommender import Recommender

        t0 = time.perf_counter()
        folded = fold(live)
        fold_s = time.perf_counter() - t0
        vectors = extend_vectors(snap, folded, rec.user_vectors, rec.tweet_vectors)
        Recommender(folded, config=rec.config, user_vectors=vectors[0], tweet_vectors=vectors[1])
        compaction = {"fold_s": fold_s, "total_s": time.perf_counter() - t0}
        print(f"compaction: fold {fold_s:.1f}s, fold + refit {compaction['total_s']:.1f}s")

    visible = []  # apply one follow of the top candidate, then ask again
    for uid in uids[:200]:
        top = rec.who_to_follow(int(uid), args.k, explain=False)
        if not top:
            continue
        t0 = time.perf_counter()
        live.add(
            GraphColumns(
                users=np.zeros(0, np.int64),
                tweet_ids=np.zeros(0, np.int64),
                tweet_authors=np.zeros(0, np.int64),
                tweet_created=np.zeros(0, np.int64),
                tweet_texts=None,
                follow_src=np.array([uid], np.int64),
                follow_dst=np.array([top[0].id], np.int64),
                follow_ts=np.zeros(1, np.int64),
                eng_user=np.zeros(0, np.int64),
                eng_tweet=np.zeros(0, np.int64),
                eng_kind=np.zeros(0, np.int8),
                eng_ts=np.zeros(0, np.int64),
                eng_weight=np.zeros(0, np.float32),
            )
        )
        again = rec.who_to_follow(int(uid), args.k, explain=False)
        visible.append((time.perf_counter() - t0) * 1000)
        if top[0].id in {r.id for r in again}:
            raise SystemExit(f"user {uid}: the account just followed is still proposed")
    print(
        f"a new follow leaves the answer: p50 {np.percentile(visible, 50):.2f} ms, "
        f"p99 {np.percentile(visible, 99):.2f} ms (apply + the next call)"
    )
    out = {
        "edges": args.edges,
        "live_events": n_events,
        "batch": args.batch,
        "events_per_s": events_per_s,
        "live_edges": live.n_edges,
        "bytes_per_edge": bytes_per_edge,
        "latency_snapshot_only": base,
        "latency_with_live": with_live,
        "walk_fold_s": walk_fold_s,
        "walk_fold_mib": fold_bytes / 2**20,
        "latency_walks_on_fold": with_walks,
        "compaction": compaction,
        "visible_p50_ms": float(np.percentile(visible, 50)),
        "visible_p99_ms": float(np.percentile(visible, 99)),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
