"""Benchmark: a live graph end to end (real Kafka broker, real Neo4j, the serving process).

Run it where ``NEO4J_URI`` and ``KAFKA_BOOTSTRAP`` point at a server and a broker (the local
launchers set them)::

    python scripts/neo4j_local.py run -- python scripts/kafka_local.py run -- \\
        python scripts/bench_stream.py --users 20000 --rate 10000 --seconds 30 --json OUT

It loads a synthetic base graph into Neo4j, exports the snapshot and fits the recommender,
then starts ``graphrec stream`` (events topic -> Neo4j, durable) and ``graphrec serve
--live-bootstrap`` (each worker follows the topic into its live segments) as real processes.
A producer thread writes a Twitter-like stream (follows by in-degree, engagements by
popularity, new tweets, a share of new users) at ``--rate`` events per second for
``--seconds``; meanwhile probes measure freshness: a probe asks for a user's who-to-follow,
produces a follow of the first account proposed, and polls over HTTP (new connections, so any
worker answers) until three answers in a row no longer propose it. After the producer stops it
waits for the durable store to hold every event and reports:

* ``events_per_s`` produced and applied into the live segments (from the workers' /metrics),
  and the store's catch-up time after the producer stopped;
* ``freshness_p50_ms`` / ``freshness_p99_ms`` (event produced -> its effect in every answer);
* ``lost`` / ``duplicated``: the store's follows and engagements against the de-duplicated
  produced events plus the base graph (both must be 0), and the same check for every
  worker's live edges;
* ``bytes_per_live_edge`` from the workers' /metrics.
"""

from __future__ import annotations

import argparse
import atexit
import http.client
import json
import os
import platform
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

from graph.schema import KINDS  # noqa: E402

KIND_NAMES = {v: k for k, v in KINDS.items()}


def base_graph(args):
    from graph.ingest import GraphColumns, ingest
    from graph.store import open_store
    from graph.synthetic import generate

    g = generate(args.users, seed=args.seed, with_text=False)
    store = open_store(os.environ["NEO4J_URI"])
    store.clear()
    t0 = time.perf_counter()
    ingest(store, GraphColumns.from_synthetic(g), progress=False)
    print(f"base graph into Neo4j in {time.perf_counter() - t0:.1f}s", flush=True)
    return store


def events_for(snap, n: int, seed: int) -> list[dict]:
    """``n`` events as the topic carries them (JSON objects), from bench_live's generator."""
    from bench_live import stream

    cols = stream(snap, n, seed)
    out: list[dict] = []
    for t, a, c in zip(cols.tweet_ids.tolist(), cols.tweet_authors.tolist(), cols.tweet_created.tolist()):
        out.append({"event": "tweet", "user": a, "target": t, "ts": c})
    for s, d, ts in zip(cols.follow_src.tolist(), cols.follow_dst.tolist(), cols.follow_ts.tolist()):
        out.append({"event": "follow", "user": s, "target": d, "ts": ts})
    for u, t, k, ts in zip(
        cols.eng_user.tolist(), cols.eng_tweet.tolist(), cols.eng_kind.tolist(), cols.eng_ts.tolist()
    ):
        out.append({"event": KIND_NAMES[k], "user": u, "target": t, "ts": ts})
    rng = np.random.default_rng(seed)
    tweets = [e for e in out if e["event"] == "tweet"]
    rest = [out[i] for i in rng.permutation(len(out)) if out[i]["event"] != "tweet"]
    # a tweet is produced before the events that engage with it: spread tweets evenly ahead
    merged, step = [], max(len(rest) // max(len(tweets), 1), 1)
    for i, e in enumerate(rest):
        if i % step == 0 and tweets:
            merged.append(tweets.pop(0))
        merged.append(e)
    return merged + tweets


class Probe:
    """HTTP on new connections (so the kernel spreads them over the workers)."""

    def __init__(self, base: str):
        self.host, self.port = base.removeprefix("http://").split(":")

    def who(self, uid: int, k: int = 5) -> list[int]:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        try:
            conn.request("GET", f"/v1/users/{uid}/who-to-follow?k={k}&explain=false")
            resp = conn.getresponse()
            body = resp.read()
        finally:
            conn.close()
        if resp.status != 200:
            raise RuntimeError(f"who-to-follow {uid}: {resp.status} {body[:200]!r}")
        return [item["id"] for item in json.loads(body)["items"]]

    def metrics(self) -> str:
        conn = http.client.HTTPConnection(self.host, int(self.port), timeout=30)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()


def start(cmd: list[str], log: Path, env: dict) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=open(log, "w"), stderr=subprocess.STDOUT, cwd=ROOT, env=env)


def wait_for(pattern: str, log: Path, proc: subprocess.Popen, timeout: float) -> re.Match:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.search(pattern, log.read_text())
        if found:
            return found
        if proc.poll() is not None:
            raise SystemExit(f"{proc.args[:4]} exited:\n{log.read_text()[-3000:]}")
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {pattern!r} in {log}")


def expected_counts(snap, produced: list[dict]) -> dict:
    """Follows and engagements the store must hold (the base plus the de-duplicated events), and
    the live edges every worker must hold: the produced events put through a live graph of
    their own (first write wins against the snapshot and earlier events)."""
    from graph.events import EventColumns, add_event
    from graph.ingest import GraphColumns
    from graph.live import LiveGraph

    cols = EventColumns()
    for event in produced:
        add_event(cols, event)
    live = LiveGraph(snap)
    live.add(GraphColumns.from_events(cols))
    return {
        "follows": snap.n_follows + len(live.follows),
        "engagements": snap.n_engagements + len(live.engagements),
        "live_edges": live.n_edges,
    }


def _kill_left_behind(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.kill()


def metric_values(text: str, name: str) -> list[float]:
    return [float(v) for v in re.findall(rf"^{name}\{{[^}}]*\}} (\S+)$", text, re.M)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--users", type=int, default=20_000, help="synthetic base graph users")
    p.add_argument("--rate", type=int, default=10_000, help="events produced per second")
    p.add_argument("--seconds", type=float, default=30.0, help="how long the producer runs")
    p.add_argument("--probes-per-s", type=float, default=4.0)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write figures here")
    args = p.parse_args()
    for var in ("NEO4J_URI", "KAFKA_BOOTSTRAP"):
        if not os.environ.get(var):
            raise SystemExit(
                f"{var} is not set: run under scripts/neo4j_local.py run / scripts/kafka_local.py run"
            )
    bootstrap = os.environ["KAFKA_BOOTSTRAP"]

    from graph.export import export_snapshot
    from graph.kafka_client import PRODUCER_DEFAULTS, client_config, confluent, ensure_topics, event_key
    from retrieval.recommender import Recommender

    store = base_graph(args)
    snap = export_snapshot(store, progress=False)
    rec = Recommender(snap)
    work = Path(tempfile.mkdtemp(prefix="bench-stream-"))
    snap.save(work / "snap")
    rec.save(work / "model")
    print(
        f"snapshot {snap.snapshot_id}: {snap.n_users:,} users, {snap.n_follows:,} follows, "
        f"{snap.n_engagements:,} engagements; fitted",
        flush=True,
    )
    topic = f"events-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {topic: args.partitions, topic + ".dlq": 1})
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    streamer = start(
        [
            py,
            "-m",
            "graphrec",
            "stream",
            "--bootstrap",
            bootstrap,
            "--topic",
            topic,
            "--group",
            "bench",
            "--store",
            os.environ["NEO4J_URI"],
        ],
        work / "stream.log",
        env,
    )
    server = start(
        [
            py,
            "-m",
            "graphrec",
            "serve",
            "--snapshot",
            str(work / "snap"),
            "--model",
            str(work / "model"),
            "--port",
            "0",
            "--workers",
            str(args.workers),
            "--live-bootstrap",
            bootstrap,
            "--live-topic",
            topic,
            "--live-start",
            "earliest",
        ],
        work / "serve.log",
        env,
    )
    atexit.register(_kill_left_behind, [streamer, server])  # a failing run leaves no process behind
    base = "http://127.0.0.1:" + wait_for(
        r"http://127\.0\.0\.1:(\d+)", work / "serve.log", server, 300
    ).group(1)
    probe = Probe(base)
    while True:
        try:
            probe.who(int(snap.user_ids[0]))
            break
        except (OSError, RuntimeError):
            time.sleep(0.2)

    events = events_for(snap, int(args.rate * args.seconds), args.seed + 1)
    ck = confluent()
    producer = ck.Producer(client_config(bootstrap, None, **PRODUCER_DEFAULTS))
    produced: list[dict] = []
    lock = threading.Lock()

    def send(event: dict) -> None:
        value = json.dumps(event).encode()
        while True:
            try:
                producer.produce(topic, value=value, key=event_key(value))
                break
            except BufferError:
                producer.poll(0.05)
        with lock:
            produced.append(event)

    stop = threading.Event()

    def produce_at_rate() -> None:
        t0, i, tick = time.perf_counter(), 0, 0.01
        while i < len(events) and not stop.is_set():
            due = int((time.perf_counter() - t0) * args.rate)
            while i < min(due, len(events)):
                send(events[i])
                i += 1
            producer.poll(0)
            time.sleep(tick)
        producer.flush(60)

    rng = np.random.default_rng(args.seed + 2)
    freshness: list[float] = []
    probe_errors = 0
    t_start = time.perf_counter()
    thread = threading.Thread(target=produce_at_rate)
    thread.start()
    metrics_before = probe.metrics()
    while thread.is_alive():
        uid = int(snap.user_ids[rng.integers(0, snap.n_users)])
        try:
            top = probe.who(uid)
        except RuntimeError as exc:
            print(exc, flush=True)
            probe_errors += 1
            continue
        if not top:
            continue
        t0 = time.perf_counter()
        send({"event": "follow", "user": uid, "target": top[0], "ts": int(time.time())})
        producer.poll(0)
        streak = 0
        while streak < 3:
            if time.perf_counter() - t0 > 30:
                probe_errors += 1
                break
            try:
                answer = probe.who(uid)
            except RuntimeError as exc:  # an error answer (e.g. a 504): counted, and the probe ends
                print(exc, flush=True)
                probe_errors += 1
                break
            if top[0] in answer:
                streak = 0
                time.sleep(0.005)
            else:
                streak += 1
        else:
            freshness.append((time.perf_counter() - t0) * 1000)
        time.sleep(max(0.0, 1.0 / args.probes_per_s - (time.perf_counter() - t0)))
    produce_s = time.perf_counter() - t_start
    metrics_after = probe.metrics()
    stop.set()
    thread.join()

    # what the store and the live segments must hold: the base plus the de-duplicated events
    want = expected_counts(snap, produced)
    t_stop = time.perf_counter()
    caught_up_s = None
    while time.perf_counter() - t_stop < 120:
        counts = store.counts()
        if counts["follows"] >= want["follows"] and counts["engagements"] >= want["engagements"]:
            caught_up_s = time.perf_counter() - t_stop
            break
        time.sleep(0.5)
    counts = store.counts()
    lost = max(want["follows"] - counts["follows"], 0) + max(want["engagements"] - counts["engagements"], 0)
    duplicated = max(counts["follows"] - want["follows"], 0) + max(
        counts["engagements"] - want["engagements"], 0
    )
    time.sleep(1.5)  # the workers publish their feed figures every half second
    final = probe.metrics()
    live_edges = metric_values(final, "graphrec_live_edges")
    live_bytes = metric_values(final, "graphrec_live_bytes")
    applied = [
        a - b
        for a, b in zip(
            metric_values(metrics_after, "graphrec_live_events_applied_total"),
            metric_values(metrics_before, "graphrec_live_events_applied_total"),
        )
    ]
    live_lost = [max(want["live_edges"] - e, 0) for e in live_edges]
    live_dup = [max(e - want["live_edges"], 0) for e in live_edges]

    for proc in (server, streamer):
        proc.send_signal(signal.SIGTERM)
    codes = [proc.wait(60) for proc in (server, streamer)]
    out = {
        "users": args.users,
        "rate": args.rate,
        "seconds": args.seconds,
        "events_produced": len(produced),
        "events_per_s": len(produced) / produce_s,
        "live_events_per_s_per_worker": [a / produce_s for a in applied],
        "store_caught_up_s": caught_up_s,
        "freshness_p50_ms": float(np.percentile(freshness, 50)) if freshness else None,
        "freshness_p99_ms": float(np.percentile(freshness, 99)) if freshness else None,
        "freshness_max_ms": float(np.max(freshness)) if freshness else None,
        "probes": len(freshness),
        "probe_timeouts": probe_errors,
        "lost": lost,
        "duplicated": duplicated,
        "live_lost": live_lost,
        "live_duplicated": live_dup,
        "bytes_per_live_edge": [b / max(e, 1) for b, e in zip(live_bytes, live_edges)],
        "exit_codes": codes,
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": " ".join(sys.argv),
    }
    print(json.dumps(out, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    ok = lost == 0 and duplicated == 0 and not any(live_lost) and not any(live_dup) and not probe_errors
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
