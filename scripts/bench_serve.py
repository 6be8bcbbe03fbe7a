"""Benchmark: `graphrec serve` over HTTP (latency, throughput, errors, a reload under load).

It builds the dataset's snapshot and fits the recommender (both kept in --model-cache, so a
rerun skips them), starts ``graphrec serve --model`` as a real subprocess on a free loopback
port with an admin token, waits for /readyz, and then drives it from this process (the load
generator shares the machine's cores with the server) with a bounded asyncio client:
``--concurrency`` keep-alive connections (or a new connection per request with
``--new-connections``), ``--requests`` requests over a seeded mix of known
users (80%), unknown users on the cold-start path (10%, 200 expected) and unknown users with
``strict=true`` (10%, 404 expected: counted as correct), the two GET endpoints evenly. Halfway
through it calls ``POST /admin/reload`` once. An error is any other status or a connection
error. A short warm-up (not counted) comes first.

Usage::

    python scripts/bench_serve.py --dataset lastfm --data-dir ../shared/datasets --json OUT
    python scripts/bench_serve.py --dataset synthetic --edges 10000000 --workers 2 --json OUT
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

ENDPOINTS = ("who-to-follow", "tweet-candidates")


def _snapshot(args):
    if args.dataset == "synthetic":
        from graph.synthetic import generate, users_for_edges

        return generate(users_for_edges(args.edges), seed=args.seed, with_text=True).snapshot()
    from graph.datasets import dataset_snapshot, load_dataset

    return dataset_snapshot(load_dataset(args.dataset, args.data_dir))


def prepare(args) -> tuple[Path, Path, float | None]:
    """The cached snapshot and model directories (built when missing) and the fit seconds."""
    name = args.dataset if args.dataset != "synthetic" else f"synthetic-{args.edges}-{args.seed}"
    cache = Path(args.model_cache) / name
    snap_dir, model_dir = cache / "snapshot", cache / "model"
    if (snap_dir / "meta.json").is_file() and (model_dir / "meta.json").is_file():
        print(f"using the cached snapshot and model in {cache}")
        return snap_dir, model_dir, None
    from retrieval.recommender import Recommender

    snap = _snapshot(args)
    snap.save(snap_dir)
    t0 = time.perf_counter()
    Recommender(snap).save(model_dir)
    fit_s = time.perf_counter() - t0
    print(f"fitted in {fit_s:.1f}s; cached in {cache}")
    return snap_dir, model_dir, fit_s


def start_server(args, snap_dir: Path, model_dir: Path, token_file: Path, log_dir: Path):
    env = {k: v for k, v in os.environ.items() if k != "GRAPHREC_ADMIN_TOKEN"}
    env["PYTHONPATH"] = str(ROOT)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    out, err = log_dir / "server.out", log_dir / "server.err"
    cmd = [
        sys.executable,
        "-m",
        "graphrec",
        "serve",
        "--snapshot",
        str(snap_dir),
        "--model",
        str(model_dir),
        "--workers",
        str(args.workers),
        "--port",
        "0",
        "--admin-token-file",
        str(token_file),
    ]
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, cwd=ROOT, env=env)
    deadline = time.monotonic() + 600
    while not (found := re.search(r"http://127\.0\.0\.1:(\d+)", out.read_text())):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"graphrec serve did not start:\n{err.read_text()}")
        time.sleep(0.1)
    return proc, f"http://127.0.0.1:{found.group(1)}", err


async def wait_ready(session, base: str) -> None:
    import aiohttp

    for _ in range(6000):
        try:
            async with session.get(f"{base}/readyz") as resp:
                if resp.status == 200:
                    return
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.1)
    raise SystemExit("the server never got ready")


def request_mix(user_ids: np.ndarray, n: int, seed: int, k: int) -> list[tuple[str, str, int]]:
    """(endpoint, path, expected status) for ``n`` requests: 80% known, 10% cold, 10% strict unknown."""
    rng = np.random.default_rng(seed)
    unknown_base = int(user_ids.max()) + 1_000_000
    kinds = rng.choice(3, size=n, p=[0.8, 0.1, 0.1])
    known = user_ids[rng.integers(0, len(user_ids), size=n)]
    out = []
    for i in range(n):
        endpoint = ENDPOINTS[i % 2]
        if kinds[i] == 0:
            uid, query, expect = int(known[i]), f"k={k}", 200
        elif kinds[i] == 1:
            uid, query, expect = unknown_base + i, f"k={k}", 200
        else:
            uid, query, expect = unknown_base + i, f"k={k}&strict=true", 404
        out.append((endpoint, f"/v1/users/{uid}/{endpoint}?{query}", expect))
    return out


async def drive(base: str, mix, concurrency: int, token: str, warmup, new_connections: bool = False) -> dict:
    import aiohttp

    # Keep-alive: each connection stays with the worker that accepted it, so a few connections can
    # pile onto one worker; a new connection per request goes to whichever worker accepts first.
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=new_connections)
    timeout = aiohttp.ClientTimeout(total=60)
    records: list[tuple[str, float, bool, float]] = []  # endpoint, ms, ok, start (perf_counter)
    reload: dict = {}
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await wait_ready(session, base)
        for _, path, _ in warmup:
            async with session.get(base + path) as resp:
                await resp.read()
        queue = iter(enumerate(mix))
        half = len(mix) // 2

        async def do_reload():  # its own connection: not queued behind the load's connection pool
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600)) as admin:
                t0 = time.perf_counter()
                async with admin.post(
                    f"{base}/admin/reload", headers={"Authorization": f"Bearer {token}"}
                ) as resp:
                    body = await resp.text()
                    end = time.perf_counter()
                    reload.update(status=resp.status, seconds=end - t0, body=body[:300], window=(t0, end))
                    if resp.status == 200:
                        reload["server"] = json.loads(
                            body
                        )  # snapshot_id, generation, seconds, workers_behind

        reload_task: list[asyncio.Task] = []

        async def client():
            for i, (endpoint, path, expect) in queue:
                if i == half:
                    reload_task.append(asyncio.create_task(do_reload()))
                t0 = time.perf_counter()
                try:
                    async with session.get(base + path) as resp:
                        await resp.read()
                        ok = resp.status == expect
                except (TimeoutError, aiohttp.ClientError):
                    ok = False
                records.append((endpoint, (time.perf_counter() - t0) * 1000, ok, t0))

        t0 = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
        if reload_task:
            await reload_task[0]
        async with session.get(f"{base}/metrics") as resp:
            metrics = await resp.text()
    return {"records": records, "elapsed": elapsed, "reload": reload, "metrics": metrics}


def summarise(records, elapsed: float) -> dict:
    def stats(rows):
        lat = np.array([r[1] for r in rows]) if rows else np.zeros(1)
        return {
            "requests": len(rows),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "rps": len(rows) / elapsed,
            "errors": sum(1 for r in rows if not r[2]),
        }

    out = {e: stats([r for r in records if r[0] == e]) for e in ENDPOINTS}
    out["overall"] = stats(records)
    return out


def split_by_reload(records, window, elapsed: float) -> dict:
    """p50/p99 of the requests started while the reload ran (and for 2 s after, while the old
    workers drain) and of all the others: what a reload costs, apart from the steady state."""
    if not window:
        return {}
    lo, hi = window[0], window[1] + 2.0
    during = [r for r in records if lo <= r[3] <= hi]
    steady = [r for r in records if not lo <= r[3] <= hi]
    out = {}
    for name, rows in (("during_reload", during), ("steady", steady)):
        lat = np.array([r[1] for r in rows]) if rows else np.zeros(1)
        out[name] = {
            "requests": len(rows),
            "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)),
            "errors": sum(1 for r in rows if not r[2]),
        }
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", required=True, choices=["gowalla", "lastfm", "flickr", "synthetic"])
    p.add_argument("--data-dir", default="../shared/datasets")
    p.add_argument("--edges", type=int, default=10_000_000, help="synthetic: relationships")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--requests", type=int, default=20_000, help="timed requests (default: %(default)s)")
    p.add_argument(
        "--new-connections",
        action="store_true",
        help="a new connection per request instead of keep-alive (spreads requests over the workers)",
    )
    p.add_argument(
        "--concurrency", type=int, default=16, help="concurrent connections (default: %(default)s)"
    )
    p.add_argument("--workers", type=int, default=2, help="server worker processes (default: %(default)s)")
    p.add_argument("-k", type=int, default=20)
    p.add_argument(
        "--model-cache", default=".graphrec/bench-serve", help="snapshot + model cache (default: %(default)s)"
    )
    p.add_argument("--json", help="write figures here")
    args = p.parse_args()

    snap_dir, model_dir, fit_s = prepare(args)
    user_ids = np.load(snap_dir / "user_ids.npy")
    mix = request_mix(user_ids, args.requests, args.seed, args.k)
    warmup = request_mix(user_ids, min(400, max(args.requests // 10, 20)), args.seed + 1, args.k)
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        tmp = Path(tmp)
        token = os.urandom(16).hex()
        (tmp / "token").write_text(token)
        proc, base, err = start_server(args, snap_dir, model_dir, tmp / "token", tmp)
        try:
            run = asyncio.run(drive(base, mix, args.concurrency, token, warmup, args.new_connections))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                code = proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = proc.wait()
        server_log = err.read_text()
    results = summarise(run["records"], run["elapsed"])
    reload = run["reload"]
    by_reload = split_by_reload(run["records"], reload.pop("window", None), run["elapsed"])
    print(
        f"{args.dataset}: {args.requests} requests, concurrency {args.concurrency}, {args.workers} workers, "
        f"k={args.k} ({run['elapsed']:.1f}s)"
    )
    print(f"{'endpoint':>18} {'requests':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8} {'errors':>7}")
    for name, r in results.items():
        print(
            f"{name:>18} {r['requests']:>9} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['rps']:>8.0f} {r['errors']:>7}"
        )
    server_side = reload.get("server", {})
    print(
        f"reload: status {reload.get('status')} in {reload.get('seconds', float('nan')):.2f}s "
        f"(server-side {server_side.get('seconds', float('nan')):.2f}s, workers behind "
        f"{server_side.get('workers_behind')}); server exit code {code}"
    )
    for name, r in by_reload.items():
        print(
            f"{name:>18} {r['requests']:>9} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {'':>8} {r['errors']:>7}"
        )
    if code != 0 or "Traceback" in server_log:
        print(f"server stderr:\n{server_log[-3000:]}", file=sys.stderr)
    out = {
        "dataset": args.dataset,
        "requests": args.requests,
        "concurrency": args.concurrency,
        "new_connections": args.new_connections,
        "workers": args.workers,
        "k": args.k,
        "fit_s": fit_s,
        "elapsed_s": run["elapsed"],
        "endpoints": results,
        "reload": reload,
        "reload_s": reload.get("seconds"),
        "by_reload": by_reload,
        "server_exit_code": code,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
        **{f"{n}_{m}": results[n][m] for n in results for m in ("p50_ms", "p99_ms", "rps", "errors")},
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    failed = results["overall"]["errors"] or reload.get("status") != 200 or code != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
