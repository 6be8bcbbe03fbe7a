#!/usr/bin/env python
"""Speed of the random-walk kernels (graph.walks), with baselines measured in the same run.

Figures:

* Pixie walk steps per second on ``--threads`` threads (a step = one edge traversal),
  batch of ``--queries`` users with ``--steps`` steps each, early stopping off;
* Monte Carlo PPR steps per second over the follow graph (synthetic) or the
  user-item graph (gowalla, which has no follows);
* single-query latency (one thread) of ``pixie_candidates`` with ``--steps`` steps: p50/p99;
* a plain NumPy implementation of the same walk (vectorised over walkers): steps/s and
  single-query latency, and the speed-up ratios;
* networkx personalized PageRank against our power iteration and Monte Carlo PPR on the
  same graph (capped at ``--nx-max-edges``: an induced subgraph when larger), with the L1
  gap between the answers;
* the machine's memory latency (pointer chasing) and random-load throughput, and how close
  the walks on a graph larger than the caches get to them.
* ``--recall`` (gowalla): recall@20 / ndcg@20 of Pixie on the LightGCN test split.

Examples::

    flock /tmp/graphrec-cpu.lock python scripts/bench_walks.py --dataset gowalla \\
        --data-dir ../shared/datasets --json results/bench_walks_gowalla.json --recall
    flock /tmp/graphrec-cpu.lock python scripts/bench_walks.py --dataset synthetic \\
        --edges 50000000 --cache /tmp/graphrec-synth --json results/bench_walks_synthetic.json
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

log = logging.getLogger("bench_walks")


# ---------------------------------------------------------------------------
# graphs


def load_graph(args):
    """The snapshot to benchmark, and a note on where it came from."""
    from graph.snapshot import GraphSnapshot

    if args.dataset == "gowalla":
        from graph.datasets import dataset_snapshot, load_dataset

        ds = load_dataset("gowalla", args.data_dir)
        return dataset_snapshot(ds), ds, "gowalla (LightGCN split), training engagements"
    from graph.synthetic import generate, users_for_edges

    n_users = users_for_edges(args.edges)
    cache = Path(args.cache) / f"synthetic-{args.edges}-{args.seed}" if args.cache else None
    note = f"graph.synthetic.generate({n_users} users, seed={args.seed}, with_text=False)"
    if cache is not None and (cache / "meta.json").is_file():
        log.info("loading cached synthetic snapshot %s", cache)
        return GraphSnapshot.load(cache, mmap=False), None, note + f", cached in {cache}"
    t = time.perf_counter()
    snap = generate(n_users, seed=args.seed, with_text=False).snapshot()
    log.info("generated %s in %.0f s", note, time.perf_counter() - t)
    if cache is not None:
        snap.save(cache)
    return snap, None, note


def homogeneous_csr(snap, use_follows: bool):
    """(indptr, indices) of the graph PPR runs on: the follow graph, or the user-item graph
    with items as nodes n_users.. and edges both ways."""
    if use_follows:
        return np.asarray(snap.follow_out_indptr), np.asarray(snap.follow_out_indices)
    nu = snap.n_users
    u_indptr, u_ind = np.asarray(snap.eng_user_indptr), np.asarray(snap.eng_user_indices)
    t_indptr, t_ind = np.asarray(snap.eng_tweet_indptr), np.asarray(snap.eng_tweet_indices)
    indptr = np.concatenate([u_indptr, u_indptr[-1] + t_indptr[1:]])
    indices = np.concatenate([u_ind.astype(np.int64) + nu, t_ind.astype(np.int64)]).astype(np.int32)
    return indptr, indices


def induced_subgraph(indptr, indices, max_edges: int, rng):
    """The graph itself if small enough, else the subgraph induced by a random node subset
    with about ``max_edges`` edges (a fraction f of nodes keeps about f^2 of the edges)."""
    n, m = len(indptr) - 1, len(indices)
    if m <= max_edges:
        return indptr, indices, "full graph"
    frac = float(np.sqrt(max_edges / m))
    keep = np.sort(rng.choice(n, int(n * frac), replace=False))
    new_id = np.full(n, -1, np.int64)
    new_id[keep] = np.arange(len(keep))
    src = np.repeat(np.arange(n), np.diff(indptr))
    ok = (new_id[src] >= 0) & (new_id[indices] >= 0)
    s, d = new_id[src[ok]], new_id[indices[ok]]
    sub_indptr = np.zeros(len(keep) + 1, np.int64)
    np.cumsum(np.bincount(s, minlength=len(keep)), out=sub_indptr[1:])
    return sub_indptr, d.astype(np.int32), f"induced subgraph of {len(keep)} random nodes ({frac:.2f} of all)"


# ---------------------------------------------------------------------------
# plain NumPy baseline: the same walk, vectorised over walkers


def numpy_pixie(g, queries, n_steps, restart_prob, rng, walkers_per_query=1024):
    """Pixie walks of ``n_steps`` per query (user -> tweet -> user, restart after a tweet
    visit), every walker crossing one edge per round, weighted rows through the same
    alias tables, visits counted with bincount. Returns (visit counts per query x tweet,
    steps)."""
    nq = len(queries)
    W = walkers_per_query
    qidx = np.repeat(np.arange(nq), W)
    home = np.repeat(np.asarray(queries, np.int64), W)
    pos, at_user = home.copy(), np.ones(nq * W, bool)
    sides = [(g.ut_indptr, g.ut_indices, g.ut_sampler), (g.tu_indptr, g.tu_indices, g.tu_sampler)]
    keys, steps, n_items = [], 0, len(g.tu_indptr) - 1
    # the kernel's walkers cross one edge per round: rounds = steps per query / walkers
    for _ in range(max(1, n_steps // W)):
        nxt = np.empty_like(pos)
        for side, (indptr, indices, sampler) in enumerate(sides):
            sel = np.flatnonzero(at_user if side == 0 else ~at_user)
            start = indptr[pos[sel]]
            deg = indptr[pos[sel] + 1] - start
            f = rng.random(len(sel)) * deg
            off = np.minimum(f.astype(np.int64), deg - 1)
            j = start + off
            if sampler is not None:
                prob, alias = sampler
                j = np.where(f - off < prob[j], j, start + alias[j])
            nxt[sel] = indices[j]
        steps += len(pos)
        visit = at_user
        keys.append(qidx[visit] * n_items + nxt[visit])
        restart = visit & (rng.random(len(pos)) < restart_prob)
        pos = np.where(restart, home, nxt)
        at_user = np.where(visit, restart, True)
    counts = np.bincount(np.concatenate(keys))
    return counts, steps


# ---------------------------------------------------------------------------
# memory probes


def memory_probes(threads: int, mib: int, rng):
    import numba
    from numba import njit, prange

    @njit(cache=False)
    def chase(nxt, n):
        x = 0
        for _ in range(n):
            x = nxt[x]
        return x

    @njit(parallel=True, cache=False)
    def gather(a, idx, n_chunks):
        out = np.zeros(n_chunks, np.int64)
        m = idx.shape[0]
        for c in prange(n_chunks):
            s = 0
            for i in range(c * m // n_chunks, (c + 1) * m // n_chunks):
                s += a[idx[i]]
            out[c] = s
        return out

    n = mib * 2**20 // 8
    perm = rng.permutation(n)
    nxt = np.empty(n, np.int64)
    nxt[perm] = np.roll(perm, -1)  # one cycle through every slot
    del perm
    chase(nxt, 1000)
    loads = 5_000_000
    t = time.perf_counter()
    chase(nxt, loads)
    latency_ns = (time.perf_counter() - t) / loads * 1e9
    idx = rng.integers(0, n, 20_000_000)
    numba.set_num_threads(threads)
    gather(nxt, idx[:1000], threads)
    t = time.perf_counter()
    gather(nxt, idx, threads)
    gather_per_s = len(idx) / (time.perf_counter() - t)
    return latency_ns, gather_per_s


# ---------------------------------------------------------------------------
# the benchmark


def pct(a, q):
    return float(np.percentile(np.asarray(a), q))


def run(args) -> dict:
    import networkx as nx

    from graph import walks
    from retrieval import walk_sources as ws

    rng = np.random.default_rng(args.seed)
    res: dict = {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "dataset": args.dataset,
        "threads": args.threads,
        "steps_per_query": args.steps,
        "loadavg_before": os.getloadavg(),
    }
    t = time.perf_counter()
    snap, ds, note = load_graph(args)
    res["graph"] = {
        "source": note,
        "users": snap.n_users,
        "tweets": snap.n_tweets,
        "follows": snap.n_follows,
        "engagements": snap.n_engagements,
        "edges_total": snap.n_follows + snap.n_engagements + int((snap.tweet_author >= 0).sum()),
        "load_s": round(time.perf_counter() - t, 1),
    }
    print(f"graph: {res['graph']}")
    g = ws.pixie_graph(snap)
    res["graph"]["weighted_walk"] = g.ut_sampler is not None
    args_csr = (g.ut_indptr, g.ut_indices, g.tu_indptr, g.tu_indices, g.fo_indptr, g.fo_indices)
    pix = dict(ut_sampler=g.ut_sampler, tu_sampler=g.tu_sampler, exclude=(g.ut_indptr, g.ut_indices), n_p=0)
    active = np.flatnonzero(np.diff(g.ut_indptr) > 0)
    queries = np.sort(rng.choice(active, min(args.queries, len(active)), replace=False))
    walks.pixie_walks(*args_csr, queries[:4], 10, n_steps=1000, **pix, n_threads=args.threads)  # compile

    # 1) throughput, all threads
    rates = []
    for _ in range(args.repeats):
        t = time.perf_counter()
        _, _, steps = walks.pixie_walks(
            *args_csr, queries, 100, n_steps=args.steps, **pix, n_threads=args.threads
        )
        rates.append(steps.sum() / (time.perf_counter() - t))
    res["steps_per_s"] = float(np.median(rates))
    res["steps_per_s_runs"] = [round(r) for r in rates]
    print(
        f"pixie walk: {res['steps_per_s'] / 1e6:.1f} M steps/s on {args.threads} threads ({len(queries)} queries)"
    )

    # 1b) memory-level parallelism: walkers interleaved per query, one thread
    sweep_q = queries[: max(1, min(len(queries), args.queries // 10))]
    res["walkers_sweep_1_thread"] = {}
    for nw in (1, 4, 16, 32):
        t = time.perf_counter()
        _, _, steps = walks.pixie_walks(
            *args_csr, sweep_q, 100, n_steps=args.steps, **pix, n_walkers=nw, n_threads=1
        )
        res["walkers_sweep_1_thread"][nw] = steps.sum() / (time.perf_counter() - t)
    print(
        "walkers per query (1 thread): "
        + ", ".join(f"{nw}: {r / 1e6:.1f}M" for nw, r in res["walkers_sweep_1_thread"].items())
        + " steps/s"
    )

    # 2) single-query latency, one thread
    lat_users = rng.choice(active, args.latency_queries, replace=True)
    ws.pixie_candidates(snap, int(lat_users[0]), 100, n_steps=args.steps, n_p=0, n_threads=1)
    times = []
    for u in lat_users:
        t = time.perf_counter()
        ws.pixie_candidates(snap, int(u), 100, n_steps=args.steps, n_p=0, n_threads=1)  # no early stop
        times.append((time.perf_counter() - t) * 1e3)
    res["p50_ms"], res["p99_ms"], res["max_ms"] = pct(times, 50), pct(times, 99), float(max(times))
    res["single_thread_steps_per_s"] = args.steps / (np.mean(times) / 1e3)
    print(
        f"pixie_candidates latency ({args.steps} steps, 1 thread): p50 {res['p50_ms']:.2f} ms, "
        f"p99 {res['p99_ms']:.2f} ms, max {res['max_ms']:.2f} ms"
    )

    # 3) plain NumPy, same walk
    nq_np = max(1, min(64, len(queries)))
    t = time.perf_counter()
    _, np_steps = numpy_pixie(g, queries[:nq_np], args.steps, 0.5, rng)
    res["numpy_steps_per_s"] = np_steps / (time.perf_counter() - t)
    np_times = []
    for u in lat_users[: args.numpy_latency_queries]:
        t = time.perf_counter()
        numpy_pixie(g, [int(u)], args.steps, 0.5, rng)
        np_times.append((time.perf_counter() - t) * 1e3)
    res["numpy_p50_ms"], res["numpy_p99_ms"] = pct(np_times, 50), pct(np_times, 99)
    res["speedup_vs_numpy_throughput"] = res["steps_per_s"] / res["numpy_steps_per_s"]
    res["speedup_vs_numpy_latency_p50"] = res["numpy_p50_ms"] / res["p50_ms"]
    print(
        f"numpy walk: {res['numpy_steps_per_s'] / 1e6:.2f} M steps/s (1 thread, {nq_np} queries x 1024 walkers), "
        f"single query p50 {res['numpy_p50_ms']:.1f} ms -> numba is {res['speedup_vs_numpy_throughput']:.0f}x "
        f"(throughput), {res['speedup_vs_numpy_latency_p50']:.0f}x (latency p50)"
    )

    # 4) Monte Carlo PPR throughput over the follow graph (or the user-item graph)
    use_follows = snap.n_follows > 0
    h_indptr, h_indices = homogeneous_csr(snap, use_follows)
    res["ppr_graph"] = "follow graph" if use_follows else "user-item graph, both directions"
    h_active = np.flatnonzero(np.diff(h_indptr) > 0)
    h_queries = np.sort(rng.choice(h_active, min(args.queries, len(h_active)), replace=False))
    walks.ppr_montecarlo(h_indptr, h_indices, h_queries[:4], 10, n_steps=1000, n_threads=args.threads)
    t = time.perf_counter()
    _, _, steps = walks.ppr_montecarlo(
        h_indptr, h_indices, h_queries, 100, n_steps=args.steps, n_threads=args.threads
    )
    res["ppr_mc_steps_per_s"] = steps.sum() / (time.perf_counter() - t)
    print(f"PPR Monte Carlo ({res['ppr_graph']}): {res['ppr_mc_steps_per_s'] / 1e6:.1f} M steps/s")

    # 5) networkx personalized PageRank vs ours on the same graph
    s_indptr, s_indices, sub_note = induced_subgraph(h_indptr, h_indices, args.nx_max_edges, rng)
    n_sub = len(s_indptr) - 1
    t = time.perf_counter()
    G = nx.DiGraph()
    G.add_nodes_from(range(n_sub))
    src = np.repeat(np.arange(n_sub), np.diff(s_indptr))
    G.add_edges_from(zip(src.tolist(), s_indices.tolist()))
    build_s = time.perf_counter() - t
    res["networkx"] = {
        "graph": sub_note,
        "nodes": n_sub,
        "edges": int(len(s_indices)),
        "build_s": round(build_s, 1),
    }
    sub_active = np.flatnonzero(np.diff(s_indptr) > 0)
    nx_ms, pw_ms, mc_ms, l1, l1_mc = [], [], [], [], []
    # Same stopping rule for both (networkx: L1 change < N * tol), tight enough that both
    # are close to the exact answer and the L1 gap between them is meaningful.
    nx_tol = 1e-10
    walks.ppr_power(s_indptr, s_indices, sub_active[:1], 10, n_threads=1)
    for u in rng.choice(sub_active, args.nx_queries, replace=False):
        u = int(u)
        t = time.perf_counter()
        pr = nx.pagerank(G, alpha=0.85, personalization={u: 1.0}, tol=nx_tol, max_iter=300)
        nx_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        ids, scores, iters = walks.ppr_power(
            s_indptr, s_indices, [u], n_sub, restart_prob=0.15, n_iter=300, tol=nx_tol * n_sub, n_threads=1
        )
        pw_ms.append((time.perf_counter() - t) * 1e3)
        t = time.perf_counter()
        mids, mscores, _ = walks.ppr_montecarlo(
            s_indptr, s_indices, [u], n_sub, restart_prob=0.15, n_steps=args.steps, n_threads=1
        )
        mc_ms.append((time.perf_counter() - t) * 1e3)
        theirs = np.fromiter((pr[i] for i in range(n_sub)), float, n_sub)
        for ids_, scores_, out in ((ids, scores, l1), (mids, mscores, l1_mc)):
            ours = np.zeros(n_sub)
            ok = ids_[0] >= 0
            ours[ids_[0][ok]] = scores_[0][ok]
            out.append(float(np.abs(ours - theirs).sum()))
    res["networkx"].update(
        tol=f"L1 change < {nx_tol:g} * N",
        pagerank_ms=float(np.median(nx_ms)),
        ppr_power_ms=float(np.median(pw_ms)),
        ppr_power_iterations=int(iters[0]),
        ppr_mc_ms=float(np.median(mc_ms)),
        speedup_power_vs_networkx=float(np.median(nx_ms) / np.median(pw_ms)),
        speedup_mc_vs_networkx=float(np.median(nx_ms) / np.median(mc_ms)),
        l1_power_vs_networkx=max(l1),
        l1_mc_vs_networkx=max(l1_mc),
    )
    x = res["networkx"]
    print(
        f"networkx pagerank ({sub_note}, {n_sub} nodes, {len(s_indices)} edges): {x['pagerank_ms']:.0f} ms/query; "
        f"ppr_power {x['ppr_power_ms']:.1f} ms ({x['speedup_power_vs_networkx']:.0f}x), "
        f"ppr_montecarlo {x['ppr_mc_ms']:.1f} ms ({x['speedup_mc_vs_networkx']:.0f}x); "
        f"L1 gap to networkx: power {x['l1_power_vs_networkx']:.1e} ({x['ppr_power_iterations']} iterations), "
        f"Monte Carlo {x['l1_mc_vs_networkx']:.2f}"
    )
    del G

    # 6) memory: how close to the machine's limits
    if args.memory_mib > 0:
        lat_ns, gather = memory_probes(args.threads, args.memory_mib, rng)
        # a walk step needs the row bounds, then the neighbour (+ the alias slot when weighted):
        # dependent DRAM accesses when the graph is larger than the caches
        per_step = 3 if res["graph"]["weighted_walk"] else 2
        res["memory"] = {
            "probe_mib": args.memory_mib,
            "latency_ns": lat_ns,
            "random_loads_per_s": gather,
            "dram_accesses_per_step": per_step,
            "latency_bound_steps_per_s": args.threads / (per_step * lat_ns * 1e-9),
            "throughput_bound_steps_per_s": gather / per_step,
        }
        m = res["memory"]
        m["fraction_of_throughput_bound"] = res["steps_per_s"] / m["throughput_bound_steps_per_s"]
        m["multiple_of_latency_bound"] = res["steps_per_s"] / m["latency_bound_steps_per_s"]
        print(
            f"memory: latency {lat_ns:.0f} ns, random loads {gather / 1e6:.0f} M/s on {args.threads} threads; "
            f"one walker per thread would cap at {m['latency_bound_steps_per_s'] / 1e6:.1f} M steps/s, "
            f"random-load throughput at {m['throughput_bound_steps_per_s'] / 1e6:.1f} M steps/s; "
            f"pixie reaches {m['fraction_of_throughput_bound']:.0%} of the latter"
        )

    # 7) quality (gowalla)
    if args.recall:
        res["recall"] = recall_at_20(snap, ds, args)
    res["loadavg_after"] = os.getloadavg()
    return res


def recall_at_20(snap, ds, args) -> dict:
    """recall@20 / ndcg@20 of Pixie on the dataset's test split (training items masked)."""
    from retrieval.walk_sources import PixieMethod

    if ds is None:
        raise SystemExit("--recall needs --dataset gowalla")
    tu, ti = snap.user_index(ds.test_user), snap.tweet_index(ds.test_item)
    order = np.argsort(tu, kind="stable")
    tu, ti = tu[order], ti[order]
    users, start = np.unique(tu, return_index=True)
    bounds = np.append(start, len(tu))
    m = PixieMethod(seed=args.seed, n_threads=args.threads).fit(snap, "tweets")
    t = time.perf_counter()
    ids, _ = m.recommend(users, 20)
    secs = time.perf_counter() - t
    disc = 1.0 / np.log2(np.arange(2, 22))
    rec, ndcg = [], []
    for i, row in enumerate(ids):
        truth = set(ti[bounds[i] : bounds[i + 1]].tolist())
        hit = np.array([x in truth for x in row.tolist()])
        rec.append(hit.sum() / len(truth))
        ndcg.append((hit * disc).sum() / disc[: min(len(truth), 20)].sum())
    out = {
        "method": repr(m),
        "users": len(users),
        "recall@20": float(np.mean(rec)),
        "ndcg@20": float(np.mean(ndcg)),
        "seconds": round(secs, 1),
    }
    print(f"quality: {out}")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::")[1],
    )
    p.add_argument("--dataset", choices=["gowalla", "synthetic"], default="gowalla")
    p.add_argument(
        "--data-dir",
        default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets"),
        help="datasets folder (default: %(default)s)",
    )
    p.add_argument("--json", metavar="OUT", help="write the figures as JSON to OUT")
    p.add_argument("--threads", type=int, default=2, help="threads for the throughput figures (default: 2)")
    p.add_argument("--steps", type=int, default=100_000, help="walk steps per query (default: 100000)")
    p.add_argument(
        "--queries", type=int, default=2_000, help="queries in the throughput batch (default: 2000)"
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="throughput runs; the median is reported (default: 3)"
    )
    p.add_argument("--latency-queries", type=int, default=1_000, help="single queries timed (default: 1000)")
    p.add_argument(
        "--numpy-latency-queries", type=int, default=30, help="numpy single queries timed (default: 30)"
    )
    p.add_argument(
        "--edges", type=int, default=50_000_000, help="synthetic graph size in edges (default: 50M)"
    )
    p.add_argument("--cache", help="folder to keep the generated synthetic snapshot in, reused when present")
    p.add_argument(
        "--nx-max-edges",
        type=int,
        default=2_000_000,
        help="largest graph handed to networkx; larger graphs are subsampled (default: 2M)",
    )
    p.add_argument("--nx-queries", type=int, default=3, help="networkx PageRank queries timed (default: 3)")
    p.add_argument(
        "--memory-mib", type=int, default=1024, help="memory probe size, 0 to skip (default: 1024)"
    )
    p.add_argument(
        "--recall", action="store_true", help="also measure Pixie recall@20 on gowalla's test split"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    res = run(args)
    if args.json:
        out = Path(args.json)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2, default=float))
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
