"""Vector search that agrees with the model (issue 19, item 4): the in-process approximate index
against exact dot-product search, and Neo4j's vector index before / after the augmentation.

    flock /tmp/graphrec-cpu.lock python scripts/bench_vectors.py --json results/bench_vectors.json \\
        --data-dir ../shared/datasets --neo4j bolt://127.0.0.1:PORT

(without ``--neo4j`` a server is started for the run by ``scripts/neo4j_local.py run -- ...``.)

**Vectors.** LightGCN embeddings (the library's ``fit_lightgcn`` with its defaults, dot-product
BPR, within ``--train-budget`` seconds) of lastfm, flickr and gowalla, trained once and cached
under ``.graphrec/bench-vectors/``; and a synthetic catalogue of ``--synthetic-items`` (1M)
vectors: 64-d, 1,024 Gaussian clusters, norms from a heavy-tailed popularity (as LightGCN's
popular items get long vectors), queries drawn the same way (:func:`synthetic_vectors`).

**ANN** (``--ann-catalogues``): for each catalogue and backend (hnswlib HNSW, faiss HNSW,
faiss IVF-Flat, usearch HNSW; every one on the augmented vectors of :mod:`graph.mips` with L2,
so that neighbours are the model's top dot products), build time (2 threads), index size,
then for each search setting (ef / nprobe) recall@20 against the exact dot-product top 20 and
the latency of one user's query (1 thread, p50 / p99 over ``--queries`` users); the exact
search (``u @ T.T`` and a top-20 selection) is timed the same way in the same run. The
operating point of a backend is its cheapest setting with recall@20 >= 0.95.

**Neo4j** (``--neo4j-datasets``): the dataset's users and items are created as nodes, the
vectors written with :func:`graph.embeddings_store.write_embeddings` three ways: ``mips=False``
(the plain cosine index on the model's vectors, what the write-back did before), one norm range
(the plain augmentation), and the norm ranges (the default). For ``--neo4j-users`` users, the
top 20 of ``db.index.vector.queryNodes`` (plain index: k = 20 and k = 100, the index's own
order) and of :func:`graph.embeddings_store.vector_query` (the indexes' candidates through
``queryNodes`` with a search list ``ef``, ranked by dot product in Cypher) are compared with the
exact dot-product top 20 over all items: overlap = shared / 20; latency per call.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph.mips import augment_queries, augment_targets  # noqa: E402

CACHE = ROOT / ".graphrec" / "bench-vectors"
K = 20


# ---------------------------------------------------------------------------
# vectors


def lightgcn_vectors(name: str, data_dir: str, budget: float) -> dict:
    """LightGCN user and item vectors of dataset ``name`` (cached), with the node ids."""
    path = CACHE / f"{name}.npz"
    if not path.is_file():
        from gnn.pipeline import fit_lightgcn
        from graph.datasets import dataset_snapshot, load_dataset

        ds = load_dataset(name, data_dir)
        snap = dataset_snapshot(ds)
        t0 = time.perf_counter()
        res = fit_lightgcn(snap, "tweets", params={"time_budget_s": budget, "progress": False})
        CACHE.mkdir(parents=True, exist_ok=True)
        np.savez(
            path,
            user=res.user_vectors,
            tweet=res.tweet_vectors,
            user_ids=snap.user_ids,
            tweet_ids=snap.tweet_ids,
            train_seconds=time.perf_counter() - t0,
        )
    z = np.load(path)
    return {k: z[k] for k in z.files}


def synthetic_vectors(n_items: int, n_users: int, dim: int = 64, seed: int = 0) -> dict:
    """Clustered vectors with heavy-tailed norms: 1,024 Gaussian centres, each item its centre
    plus noise, scaled by popularity^0.25 (Pareto popularity); users drawn the same way."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((1024, dim)).astype(np.float32)

    def draw(n: int, noise: float) -> np.ndarray:
        out = np.empty((n, dim), np.float32)
        for s in range(0, n, 262_144):
            m = min(262_144, n - s)
            c = centres[rng.integers(len(centres), size=m)]
            out[s : s + m] = c + noise * rng.standard_normal((m, dim)).astype(np.float32)
        return out

    items = draw(n_items, 1.0)
    items *= ((rng.pareto(1.2, n_items) + 1.0) ** 0.25).astype(np.float32)[:, None]
    users = draw(n_users, 1.5)
    return {"user": users, "tweet": items}


def exact_top(users: np.ndarray, items: np.ndarray, k: int = K) -> np.ndarray:
    """Exact top-``k`` item indices by dot product, best first (ties by lower index)."""
    out = np.empty((len(users), k), np.int64)
    for s in range(0, len(users), 256):
        sc = users[s : s + 256] @ items.T
        part = np.argpartition(-sc, k, axis=1)[:, :k]
        vals = np.take_along_axis(sc, part, axis=1)
        order = np.lexsort((part, -vals), axis=1)
        out[s : s + 256] = np.take_along_axis(part, order, axis=1)
    return out


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f.tolist()) & set(t.tolist())) / len(t) for f, t in zip(found, truth)]))


def pct(times: list[float]) -> dict:
    a = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99))}


def rss_mib() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# ---------------------------------------------------------------------------
# ANN backends (each on the augmented vectors, L2)


class Backend:
    """One backend at one metric: ``ip`` (the model's vectors, inner product: HNSW graphs built
    on the similarity itself, ip-NSW) or ``l2aug`` (the augmented vectors of :mod:`graph.mips`, L2)."""

    name = ""
    knob = ""

    def __init__(self, metric: str = "ip", m: int = 16, ef_construction: int = 100):
        self.metric, self.m, self.efc = metric, m, ef_construction

    def build(self, aug: np.ndarray, threads: int) -> None: ...
    def set(self, value: int) -> None: ...
    def search(self, q: np.ndarray, k: int) -> np.ndarray: ...
    def nbytes(self) -> int: ...


class Hnswlib(Backend):
    name, knob = "hnswlib-hnsw", "ef"

    def build(self, aug, threads):
        import hnswlib

        self.index = hnswlib.Index(space="ip" if self.metric == "ip" else "l2", dim=aug.shape[1])
        self.index.init_index(max_elements=len(aug), M=self.m, ef_construction=self.efc, random_seed=0)
        self.index.set_num_threads(threads)
        self.index.add_items(aug, np.arange(len(aug)))
        self.index.set_num_threads(1)

    def set(self, value):
        self.index.set_ef(int(value))

    def search(self, q, k):
        return self.index.knn_query(q, k)[0].astype(np.int64)

    def nbytes(self):
        with tempfile.TemporaryDirectory() as d:
            self.index.save_index(f"{d}/i")
            return os.path.getsize(f"{d}/i")


class FaissHNSW(Backend):
    name, knob = "faiss-hnsw", "efSearch"

    def build(self, aug, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        self.index = faiss.IndexHNSWFlat(aug.shape[1], self.m, metric)
        self.index.hnsw.efConstruction = self.efc
        self.index.add(aug)
        faiss.omp_set_num_threads(1)

    def set(self, value):
        self.index.hnsw.efSearch = int(value)

    def search(self, q, k):
        return self.index.search(q, k)[1]

    def nbytes(self):
        import faiss

        return len(faiss.serialize_index(self.index))


class FaissIVF(Backend):
    name, knob = "faiss-ivf", "nprobe"

    def build(self, aug, threads):
        import faiss

        faiss.omp_set_num_threads(threads)
        nlist = int(max(16, min(4 * np.sqrt(len(aug)), 65536)))
        metric = faiss.METRIC_INNER_PRODUCT if self.metric == "ip" else faiss.METRIC_L2
        quant = faiss.IndexFlatIP(aug.shape[1]) if self.metric == "ip" else faiss.IndexFlatL2(aug.shape[1])
        self.index = faiss.IndexIVFFlat(quant, aug.shape[1], nlist, metric)
        rng = np.random.default_rng(0)
        sample = aug[rng.choice(len(aug), size=min(len(aug), 64 * nlist), replace=False)]
        self.index.train(sample)
        self.index.add(aug)
        self.nlist = nlist
        faiss.omp_set_num_threads(1)

    def set(self, value):
        self.index.nprobe = int(value)

    def search(self, q, k):
        return self.index.search(q, k)[1]

    def nbytes(self):
        import faiss

        return len(faiss.serialize_index(self.index))


class USearch(Backend):
    name, knob = "usearch-hnsw", "expansion_search"

    def build(self, aug, threads):
        from usearch.index import Index

        self.index = Index(
            ndim=aug.shape[1],
            metric="ip" if self.metric == "ip" else "l2sq",
            dtype="f32",
            connectivity=self.m,
            expansion_add=self.efc,
        )
        self.index.add(np.arange(len(aug)), aug, threads=threads)

    def set(self, value):
        self.index.expansion_search = int(value)

    def search(self, q, k):
        return np.asarray(self.index.search(q, k, threads=1).keys, np.int64).reshape(len(q), -1)

    def nbytes(self):
        return int(self.index.memory_usage)


BACKENDS = {"hnswlib": Hnswlib, "faiss-hnsw": FaissHNSW, "faiss-ivf": FaissIVF, "usearch": USearch}
SWEEP = {
    "hnswlib": [20, 40, 80, 160, 320, 640],
    "faiss-hnsw": [20, 40, 80, 160, 320, 640],
    "usearch": [20, 40, 80, 160, 320, 640],
    "faiss-ivf": [1, 2, 4, 8, 16, 32, 64, 128],
}


def time_exact(users: np.ndarray, items: np.ndarray, queries: np.ndarray) -> dict:
    times = []
    for u in queries:
        t0 = time.perf_counter()
        sc = items @ users[u]
        part = np.argpartition(-sc, K)[:K]
        part[np.argsort(-sc[part])]
        times.append(time.perf_counter() - t0)
    return pct(times)


def bench_ann(name: str, vec: dict, backends: list[str], n_queries: int, threads: int) -> dict:
    users, items = vec["user"].astype(np.float32), vec["tweet"].astype(np.float32)
    rng = np.random.default_rng(0)
    qu = rng.choice(len(users), size=min(n_queries, len(users)), replace=False)
    truth = exact_top(users[qu], items)
    exact = time_exact(users, items, qu)
    out = {
        "items": len(items),
        "dim": int(items.shape[1]),
        "queries": len(qu),
        "exact": exact,
        "backends": {},
    }
    print(
        f"[{name}] {len(items):,} items, exact per user p50 {exact['p50_ms']:.3f} ms p99 {exact['p99_ms']:.3f} ms"
    )
    aug, _ = augment_targets(items)
    for spec in backends:
        b, _, metric = spec.partition(":")
        metric = metric or "ip"
        idx = BACKENDS[b](metric)
        x, q = (items, users[qu]) if metric == "ip" else (aug, augment_queries(users[qu]))
        r0 = rss_mib()
        t0 = time.perf_counter()
        idx.build(x, threads)
        build = time.perf_counter() - t0
        row = {
            "build_s": build,
            "index_mib": idx.nbytes() / 2**20,
            "rss_delta_mib": rss_mib() - r0,
            "sweep": [],
        }
        if b == "faiss-ivf":
            row["nlist"] = idx.nlist
        for v in SWEEP[b]:
            idx.set(v)
            found = idx.search(q, K)  # batch, for recall
            times = []
            for i in range(len(q)):
                t1 = time.perf_counter()
                idx.search(q[i : i + 1], K)
                times.append(time.perf_counter() - t1)
            rec = recall(found, truth)
            lat = pct(times)
            row["sweep"].append({idx.knob: v, "recall@20": rec, **lat})
            print(
                f"  {spec:16s} {idx.knob}={v:<4d} recall@20 {rec:.4f}  p50 {lat['p50_ms']:.3f} ms  "
                f"p99 {lat['p99_ms']:.3f} ms"
            )
            if rec >= 0.995:
                break
        ok = [s for s in row["sweep"] if s["recall@20"] >= 0.95]
        if ok:
            best = min(ok, key=lambda s: s["p50_ms"])
            row["operating_point"] = {
                **best,
                "speedup_p50_vs_exact": exact["p50_ms"] / best["p50_ms"],
                "speedup_p99_vs_exact": exact["p99_ms"] / best["p99_ms"],
            }
        print(
            f"  {spec}: build {build:.1f} s, index {row['index_mib']:.0f} MiB, rss +{row['rss_delta_mib']:.0f} MiB, "
            f"operating point {row.get('operating_point')}"
        )
        out["backends"][spec] = row
        del idx
    return out


# ---------------------------------------------------------------------------
# Neo4j


def bench_neo4j(name: str, vec: dict, uri: str, n_users: int) -> dict:
    from graph import cypher
    from graph.embeddings_store import index_name, vector_query, write_embeddings
    from graph.ingest import GraphColumns, ingest
    from graph.neo4j_store import Neo4jStore

    users, items = vec["user"].astype(np.float32), vec["tweet"].astype(np.float32)
    uids, tids = np.asarray(vec["user_ids"], np.int64), np.asarray(vec["tweet_ids"], np.int64)
    e = np.zeros(0, np.int64)
    cols = GraphColumns(
        users=uids,
        tweet_ids=tids,
        tweet_authors=np.full(len(tids), -1, np.int64),
        tweet_created=np.zeros(len(tids), np.int64),
        tweet_texts=None,
        follow_src=e,
        follow_dst=e,
        follow_ts=e,
        eng_user=e,
        eng_tweet=e,
        eng_kind=np.zeros(0, np.int8),
        eng_ts=e,
        eng_weight=np.zeros(0, np.float32),
    )
    store = Neo4jStore.connect(uri)
    out = {"users": len(users), "items": len(items), "dim": int(items.shape[1]), "query_users": 0}
    try:
        store.clear()
        store.ensure_schema()
        ingest(store, cols, progress=False)
        rng = np.random.default_rng(0)
        qu = rng.choice(len(users), size=min(n_users, len(users)), replace=False)
        qu = qu[np.abs(users[qu]).sum(axis=1) > 0]
        out["query_users"] = len(qu)
        truth = exact_top(users[qu], items)
        norms = np.linalg.norm(items, axis=1)
        out["item_norm_max_over_median"] = float(norms.max() / np.median(norms))
        modes = (
            ("before_cosine", {"mips": False}, (100,)),
            ("one_range", {"mips": True, "norm_quantiles": ()}, (20, 100)),
            ("after_norm_ranges", {"mips": True}, (20, 50, 100)),
        )
        for mode, write_kw, efs in modes:
            t0 = time.perf_counter()
            write_embeddings(store, "Tweet", tids, items, f"bench-{mode}", **write_kw)
            row = {"write_and_index_s": time.perf_counter() - t0}
            if not write_kw["mips"]:  # the index's own answer, as the write-back served it before
                for k in (K, 5 * K):
                    found = []
                    for u in qu:
                        vec = users[u].astype(np.float64).tolist()
                        rows = store.cypher(
                            cypher.QUERY_VECTOR_INDEX, index=index_name("Tweet", mips=False), k=k, vector=vec
                        )
                        found.append(np.searchsorted(tids, [r["id"] for r in rows][:K]))
                    row[f"overlap@20_queryNodes_k{k}"] = recall(found, truth)
            for ef in efs:
                found, times = [], []
                for u in qu:
                    t1 = time.perf_counter()
                    ids, _ = vector_query(store, "Tweet", users[u], K, mips=write_kw["mips"], ef=ef)
                    times.append(time.perf_counter() - t1)
                    found.append(np.searchsorted(tids, ids))
                row[f"vector_query_ef{ef}"] = {"overlap@20": recall(found, truth), **pct(times)}
            out[mode] = row
            print(f"[neo4j {name}] {mode}: {json.dumps(row)}")
    finally:
        store.clear()
        store.close()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the measurements here")
    ap.add_argument(
        "--data-dir", default=os.environ.get("GRAPHREC_DATA_DIR", str(ROOT.parent / "shared/datasets"))
    )
    ap.add_argument("--ann-catalogues", default="gowalla,synthetic")
    ap.add_argument(
        "--backends",
        default="hnswlib:ip,faiss-hnsw:ip,faiss-ivf:ip,usearch:ip,hnswlib:l2aug",
        help="backend:metric, metric ip (the model's vectors) or l2aug (graph.mips augmentation, L2)",
    )
    ap.add_argument("--synthetic-items", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--threads", type=int, default=2, help="build threads")
    ap.add_argument("--neo4j-datasets", default="lastfm,flickr")
    ap.add_argument("--neo4j-users", type=int, default=200)
    ap.add_argument("--neo4j", help="bolt:// URI (default: a server started for this run)")
    ap.add_argument("--train-budget", type=float, default=300.0, help="LightGCN budget per dataset, s")
    args = ap.parse_args(argv)

    if args.neo4j_datasets and not args.neo4j and not os.environ.get("NEO4J_URI"):
        cmd = [sys.executable, str(ROOT / "scripts/neo4j_local.py"), "run", "--", sys.executable, *sys.argv]
        return subprocess.call(cmd)
    uri = args.neo4j or os.environ.get("NEO4J_URI")

    report = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "versions": _versions(),
        "ann": {},
        "neo4j": {},
    }
    for cat in filter(None, args.ann_catalogues.split(",")):
        if cat == "synthetic":
            vec = synthetic_vectors(args.synthetic_items, args.queries)
            key = f"synthetic-{args.synthetic_items}"
        else:
            vec, key = lightgcn_vectors(cat, args.data_dir, args.train_budget), cat
        report["ann"][key] = bench_ann(key, vec, args.backends.split(","), args.queries, args.threads)
    for name in filter(None, args.neo4j_datasets.split(",")):
        vec = lightgcn_vectors(name, args.data_dir, args.train_budget)
        report["neo4j"][name] = bench_neo4j(name, vec, uri, args.neo4j_users)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("numpy", "hnswlib", "faiss-cpu", "usearch", "neo4j"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


if __name__ == "__main__":
    raise SystemExit(main())
