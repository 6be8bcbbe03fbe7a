"""The fault matrix of the live graph (issue 17, item 4): nothing lost, nothing doubled.

Each scenario produces a seeded event stream (every event type, repeats, engagements of tweets
published later, a few malformed messages) at ``--rate`` events per second into a fresh topic
of a broker of its own, while the real ``graphrec stream`` process writes it into a Neo4j
server of its own and a serving worker's live feed (:class:`graphrec.serve.live_feed.LiveFeed`,
the code ``graphrec serve --live-bootstrap`` runs) applies it to live segments over a base
snapshot. Faults, one kind per scenario:

* ``kill``: the stream process is SIGKILLed at ``--kills`` seeded random moments and restarted;
* ``neo4j``: Neo4j is stopped for ``--neo4j-down-s`` seconds (default 30) mid-run, then started
  again on the same port and store;
* ``broker``: the Kafka broker is stopped and started again (same port and log) mid-run;
* ``malformed``: a burst of ``--burst`` malformed messages in the middle of the stream.

After each: the store must equal a batch ingest of the base plus every valid event produced
(no row lost, none stored twice, no tweet changed), every malformed message must have a dead
letter (counted by key: a crash may send one again), and ``fold(live)`` must equal the snapshot
exported from that batch ingest (:func:`graph.stream_checks.snapshot_diff`). Recovery time of a
fault: from its end (process restarted, server back) to the stream's next offset commit.

    python scripts/fault_stream.py --json results/faults.json            # the full matrix
    python scripts/fault_stream.py --scenarios kill --kills 3 --seconds 10

It starts its own Kafka broker and Neo4j server (temporary directories, loopback ports), so it
disturbs no other server. Exit status 0 when every scenario holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from graph.stream_checks import MALFORMED  # noqa: E402

log = logging.getLogger("fault_stream")
SCENARIOS = ("kill", "kill-static", "neo4j", "broker", "malformed")
#: The producer sends at least ``--events`` and goes on (up to this many times as many) until the
#: faults are over, so every fault lands in a running stream.
EVENTS_CAP = 4


# -- the services ------------------------------------------------------------------------------


class Services:
    """A Kafka broker and a Neo4j server of our own, each restartable on the same port and data.
    ``bootstrap`` / ``neo4j_uri`` given: use those (not restartable: no broker/neo4j faults)."""

    def __init__(self, work: Path, *, bootstrap: str | None = None, neo4j_uri: str | None = None):
        self.work = work
        self.broker = self.neo4j = None
        self.bootstrap, self.neo4j_uri = bootstrap, neo4j_uri
        self._broker_port = self._neo4j_port = None

    def start(self, *, broker: bool = True, neo4j: bool = True) -> Services:
        from graph.kafka_local import free_port

        if broker and self.bootstrap is None:
            self._broker_port = free_port()
            self.start_broker()
        if neo4j and self.neo4j_uri is None:
            self._neo4j_port = free_port()
            self.start_neo4j()
        return self

    def start_broker(self) -> float:
        from graph.kafka_local import LocalKafka

        t0 = time.monotonic()
        self.broker = self.broker or LocalKafka()
        self.broker.start(data_dir=self.work / "kafka", port=self._broker_port)
        self.bootstrap = self.broker.bootstrap
        return time.monotonic() - t0

    def stop_broker(self) -> None:
        self.broker.stop()

    def start_neo4j(self) -> float:
        from graph.neo4j_local import LocalNeo4j

        t0 = time.monotonic()
        self.neo4j = self.neo4j or LocalNeo4j()
        self.neo4j.start(data_dir=self.work / "neo4j", port=self._neo4j_port, heap="512m", pagecache="128m")
        self.neo4j_uri = self.neo4j.uri
        return time.monotonic() - t0

    def stop_neo4j(self) -> None:
        self.neo4j.stop()

    def close(self) -> None:
        for server in (self.broker, self.neo4j):
            if server is not None:
                server.stop()


# -- the processes and clients -------------------------------------------------------------------


class StreamProcess:
    """``graphrec stream`` as a subprocess, restarted by :meth:`ensure` when it died (a supervisor
    would); every start appends to one log."""

    def __init__(self, cmd: list[str], log_path: Path):
        self.cmd, self.log_path = cmd, log_path
        self.proc: subprocess.Popen | None = None
        self.starts = self.kills = self.unplanned_exits = 0
        self.exit_codes: list[int] = []

    def start(self) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        with open(self.log_path, "ab") as out:
            out.write(f"=== start {self.starts + 1} at {time.strftime('%H:%M:%S')}\n".encode())
            out.flush()
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env)
        self.starts += 1

    def kill(self) -> None:
        """SIGKILL: no clean-up, no last commit, the group membership left behind."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.exit_codes.append(self.proc.wait())
        self.kills += 1

    def ensure(self) -> None:
        """Start it again if it exited by itself (counted)."""
        if self.proc is not None and self.proc.poll() is not None:
            self.exit_codes.append(self.proc.returncode)
            self.unplanned_exits += 1
            log.warning("the stream process exited with %s; starting it again", self.proc.returncode)
            self.start()

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def log_count(self, text: str) -> int:
        return self.log_path.read_text(errors="replace").count(text)


class Offsets:
    """The group's committed offsets and the topic's end offsets (None while the broker is away)."""

    def __init__(self, bootstrap: str, topic: str, group: str, partitions: int):
        from graph.kafka_client import confluent

        self.ck = confluent()
        self.tps = [self.ck.TopicPartition(topic, p) for p in range(partitions)]
        self.consumer = self.ck.Consumer(
            {"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False}
        )

    def committed(self) -> int | None:
        try:
            got = self.consumer.committed(self.tps, timeout=5)
        except self.ck.KafkaException:
            return None
        return sum(max(tp.offset, 0) for tp in got)

    def ends(self) -> int | None:
        try:
            return sum(self.consumer.get_watermark_offsets(tp, timeout=5)[1] for tp in self.tps)
        except (self.ck.KafkaException, TypeError):
            return None

    def close(self) -> None:
        self.consumer.close()


class Producer(threading.Thread):
    """Produces ``messages`` at ``rate`` per second, keyed as ``graphrec produce`` keys them;
    ``acked`` holds the indices the broker acknowledged (a broker restart only delays them)."""

    def __init__(self, bootstrap: str, topic: str, messages: list[bytes], rate: float):
        super().__init__(daemon=True)
        from graph.kafka_client import PRODUCER_DEFAULTS, client_config, confluent

        self.topic, self.messages, self.rate = topic, messages, rate
        self.producer = confluent().Producer(
            client_config(bootstrap, None, **PRODUCER_DEFAULTS, **{"message.timeout.ms": 600_000})
        )
        self.acked: set[int] = set()
        self.failed: list[str] = []
        self.done_at: float | None = None
        self.sent = 0
        #: Set: stop once ``at_least`` messages were sent (the faults are over).
        self.may_stop = threading.Event()
        self.at_least = len(messages)

    def run(self) -> None:
        from graph.kafka_client import event_key

        t0, i = time.monotonic(), 0
        while i < len(self.messages) and not (self.may_stop.is_set() and i >= self.at_least):
            due = min(len(self.messages), int((time.monotonic() - t0) * self.rate) + 1)
            while i < due:
                self._send(i, self.messages[i], event_key(self.messages[i]))
                i += 1
                self.sent = i
            self.producer.poll(0)
            time.sleep(0.005)
        left = self.producer.flush(600)
        if left:
            self.failed.append(f"{left} not delivered")
        self.done_at = time.monotonic()

    def _send(self, i: int, value: bytes, key: bytes | None) -> None:
        def delivered(err, msg, i=i) -> None:
            if err is None:
                self.acked.add(i)
            else:
                self.failed.append(str(err))

        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=delivered)
                return
            except BufferError:
                self.producer.poll(0.05)


def read_dead_letters(bootstrap: str, topic: str) -> list[tuple[str, dict]]:
    """Every dead letter in ``topic`` as (key, document): each partition read from its start
    to its end offset (no group to join)."""
    from graph.kafka_client import confluent

    ck = confluent()
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"dlq-reader-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    out: list[tuple[str, dict]] = []
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(ck.TopicPartition(topic, p), timeout=10)[1] for p in parts}
        consumer.assign([ck.TopicPartition(topic, p, ck.OFFSET_BEGINNING) for p in parts])
        seen = dict.fromkeys(parts, -1)
        deadline = time.monotonic() + 60
        while any(seen[p] + 1 < ends[p] for p in parts) and time.monotonic() < deadline:
            for m in consumer.consume(1000, 0.2):
                if m.error() is None:
                    out.append((m.key().decode(), json.loads(m.value())))
                    seen[m.partition()] = m.offset()
    finally:
        consumer.close()
    return out


# -- one scenario ------------------------------------------------------------------------------------


@dataclass
class Plan:
    """What one scenario does."""

    name: str
    kind: str  # one of SCENARIOS
    events: int = 20_000  # valid events streamed (the base graph is extra)
    base_events: int = 5_000
    users: int = 2_000
    rate: float = 1_000.0  # messages per second
    kills: int = 5
    neo4j_down_s: float = 30.0
    broker_down_s: float = 5.0
    burst: int = 500
    malformed_every: int = 1_000  # one malformed message per this many, in every scenario
    partitions: int = 3
    seed: int = 0
    stream_args: list[str] = field(default_factory=list)


@dataclass
class Result:
    scenario: str
    messages: int = 0
    valid_events: int = 0
    malformed: int = 0
    faults: list = field(default_factory=list)
    lost: int = -1
    duplicated: int = -1
    changed: int = -1
    by_part: dict = field(default_factory=dict)
    dead_letters: int = 0  # distinct (by key)
    dead_letter_messages: int = 0  # including repeats after a crash
    dead_letters_missing: int = -1
    recovery_s: list = field(default_factory=list)
    drain_s: float | None = None  # last fault / producer end -> everything committed
    live_equal: bool = False
    live_diff: list = field(default_factory=list)
    live_applied: int = 0
    stream_starts: int = 0
    stream_kills: int = 0
    stream_unplanned_exits: int = 0
    store_retries_logged: int = 0
    commit_failures_logged: int = 0
    final_exit_code: int | None = None
    produce_failures: int = 0
    wall_s: float = 0.0
    ok: bool = False

    def as_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


def messages_for(plan: Plan) -> tuple[list[dict], list[bytes], list[dict | None]]:
    """(base events, messages to produce, the event of each message or None if malformed)."""
    from graph.stream_checks import sample_events

    total = plan.base_events + plan.events * EVENTS_CAP
    events = sample_events(plan.seed, n=total, n_users=plan.users, repeats=total // 20)
    rng = random.Random(plan.seed + 1)
    base, streamed = events[: plan.base_events], events[plan.base_events :]
    messages: list[bytes] = []
    parsed: list[dict | None] = []
    burst_at = plan.events // 2 if plan.kind == "malformed" else -1
    for i, e in enumerate(streamed):
        if i == burst_at:
            for j in range(plan.burst):
                messages.append(MALFORMED[j % len(MALFORMED)][0])
                parsed.append(None)
        if plan.malformed_every and i % plan.malformed_every == plan.malformed_every // 2:
            messages.append(rng.choice(MALFORMED)[0])
            parsed.append(None)
        messages.append(json.dumps(e).encode())
        parsed.append(e)
    return base, messages, parsed


def run_scenario(plan: Plan, services: Services, work: Path) -> Result:
    from graph.export import export_snapshot
    from graph.ingest import ingest
    from graph.kafka_client import ensure_topics
    from graph.live import fold
    from graph.neo4j_store import Neo4jStore
    from graph.stream_checks import (
        LiveSink,
        batch_graph,
        events_columns,
        graph_diff,
        snapshot_diff,
        store_graph,
    )
    from graphrec.serve.live_feed import LiveFeed, LiveSettings

    t_start = time.monotonic()
    res = Result(plan.name)
    base, messages, parsed = messages_for(plan)

    # the base graph in the store, and its snapshot under the live segments
    store = Neo4jStore.connect(services.neo4j_uri)
    store.clear()
    store.ensure_schema()
    ingest(store, events_columns(base), progress=False)
    snap = export_snapshot(store, progress=False)
    store.close()

    topic = f"faults-{plan.name}-{uuid.uuid4().hex[:8]}"
    group = f"graphrec-{topic}"
    ensure_topics(services.bootstrap, {topic: plan.partitions, topic + ".dlq": 1})
    sink = LiveSink(snap)
    feed = LiveFeed(
        LiveSettings(services.bootstrap, topic, start="earliest", max_wait_ms=50), sink, 0
    ).start()
    cmd = [sys.executable, "-m", "graphrec", "stream", "--bootstrap", services.bootstrap, "--topic", topic]
    cmd += ["--group", group, "--store", services.neo4j_uri, "--log-every-s", "2", *plan.stream_args]
    stream = StreamProcess(cmd, work / f"stream-{plan.name}.log")
    stream.start()
    offsets = Offsets(services.bootstrap, topic, group, plan.partitions)
    producer = Producer(services.bootstrap, topic, messages, plan.rate)
    producer.at_least = min(len(messages), plan.events + (plan.burst if plan.kind == "malformed" else 0))
    produce_s = producer.at_least / plan.rate
    rng = random.Random(plan.seed + 2)
    t0 = time.monotonic()
    producer.start()

    def at(seconds: float) -> None:  # sleep until ``seconds`` into the production, keeping the stream up
        while time.monotonic() - t0 < seconds:
            stream.ensure()
            time.sleep(0.05)

    def recovered_after(before: int | None, since: float, timeout: float = 180.0) -> float | None:
        """Seconds from ``since`` until the group commits past ``before`` (or, once the producer
        is done, until it has committed everything)."""
        while time.monotonic() - since < timeout:
            stream.ensure()
            now = offsets.committed()
            idle = producer.done_at is not None and now is not None and now == offsets.ends()
            if now is not None and (before is None or now > before or idle):
                return round(time.monotonic() - since, 2)
            time.sleep(0.05)
        return None

    try:
        if plan.kind in ("kill", "kill-static"):
            # each kill a seeded random time after the previous recovery: any point of a batch
            # (consuming, writing, dead-lettering, committing), or of the start-up
            for _ in range(plan.kills):
                at(time.monotonic() - t0 + rng.uniform(0.2, produce_s / (plan.kills + 1)))
                if producer.done_at is not None and offsets.committed() == offsets.ends():
                    res.faults.append({"fault": "SIGKILL stream (skipped: nothing left to do)"})
                    continue
                stream.kill()
                before = offsets.committed()
                t_fault = time.monotonic()
                stream.start()
                res.faults.append({"fault": "SIGKILL stream", "at_s": round(t_fault - t0, 2)})
                res.recovery_s.append(recovered_after(before, t_fault))
        elif plan.kind == "neo4j":
            at(0.3 * produce_s)
            t_fault = time.monotonic()
            services.stop_neo4j()
            at(t_fault - t0 + plan.neo4j_down_s)
            took = services.start_neo4j()
            back = time.monotonic()
            res.faults.append(
                {
                    "fault": f"Neo4j stopped {back - t_fault - took:.1f} s",
                    "at_s": round(t_fault - t0, 2),
                    "restart_s": round(took, 2),
                }
            )
            res.recovery_s.append(recovered_after(offsets.committed(), back))
        elif plan.kind == "broker":
            at(0.4 * produce_s)
            t_fault = time.monotonic()
            services.stop_broker()
            time.sleep(plan.broker_down_s)
            took = services.start_broker()
            back = time.monotonic()
            res.faults.append(
                {
                    "fault": f"broker stopped {back - t_fault - took:.1f} s",
                    "at_s": round(t_fault - t0, 2),
                    "restart_s": round(took, 2),
                }
            )
            res.recovery_s.append(recovered_after(offsets.committed(), back))
        elif plan.kind == "malformed":
            res.faults.append({"fault": f"burst of {plan.burst} malformed", "at_s": round(produce_s / 2, 2)})
        else:
            raise SystemExit(f"unknown scenario kind {plan.kind!r}")
        producer.may_stop.set()
        producer.join()
        n_sent = producer.sent
        res.messages, res.malformed = n_sent, sum(p is None for p in parsed[:n_sent])
        res.valid_events = res.messages - res.malformed
        res.produce_failures = len(producer.failed)
        # everything committed by the stream, everything applied by the live feed
        t_drain = time.monotonic()
        end = t_drain + 300
        while time.monotonic() < end:
            stream.ensure()
            ends, done = offsets.ends(), offsets.committed()
            if ends is not None and ends == done and ends >= n_sent:
                res.drain_s = round(time.monotonic() - t_drain, 2)
                break
            time.sleep(0.1)
        while time.monotonic() < end and feed.stats.applied + feed.stats.invalid < n_sent:
            time.sleep(0.05)
    finally:
        res.final_exit_code = stream.terminate()
        feed.stop()
        offsets.close()
    res.stream_starts, res.stream_kills = stream.starts, stream.kills
    res.stream_unplanned_exits = stream.unplanned_exits
    res.store_retries_logged = stream.log_count("retrying the batch")
    res.commit_failures_logged = stream.log_count("committing offsets failed")
    res.live_applied = feed.stats.applied

    # the checks
    acked = [parsed[i] for i in sorted(producer.acked) if parsed[i] is not None]
    malformed_acked = sum(1 for i in producer.acked if parsed[i] is None)
    expected, fresh = batch_graph(base + acked, work / f"batch-{plan.name}", snapshot=True)
    store = Neo4jStore.connect(services.neo4j_uri)
    try:
        actual = store_graph(store)
    finally:
        store.close()
    diff = graph_diff(actual, expected)
    res.lost, res.duplicated, res.changed, res.by_part = (
        diff["lost"],
        diff["duplicated"],
        diff["changed"],
        diff["by_part"],
    )
    letters = read_dead_letters(services.bootstrap, topic + ".dlq")
    keys = {k for k, _ in letters}
    res.dead_letter_messages, res.dead_letters = len(letters), len(keys)
    malformed_offsets = {k for k, doc in letters if doc.get("reason")}
    res.dead_letters_missing = max(malformed_acked - len(malformed_offsets), 0)
    res.live_diff = snapshot_diff(fold(sink.live), fresh) if sink.live is not None else ["no live graph"]
    res.live_equal = not res.live_diff
    res.wall_s = round(time.monotonic() - t_start, 1)
    res.ok = (
        res.lost == 0
        and res.duplicated == 0
        and res.changed == 0
        and res.dead_letters == malformed_acked
        and res.live_equal
        and res.final_exit_code == 0
        and not res.produce_failures
        and len(producer.acked) == n_sent
        and all(r is not None for r in res.recovery_s)
    )
    return res


def markdown_table(out: dict) -> str:
    """The results as a BENCHMARKS.md table."""
    lines = [
        "| scenario | events produced | faults injected | lost | duplicated | dead letters | recovery s "
        "| drain s | live == fold |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in out["scenarios"]:
        faults = [f["fault"] for f in r["faults"] if "skipped" not in f["fault"]]
        if r["scenario"].startswith("kill"):
            static = " (--instance-id)" if r["scenario"] == "kill-static" else ""
            desc = f"{len(faults)} x SIGKILL of the stream, restarted{static}"
        else:
            desc = "; ".join(faults)
        rec = [x for x in r["recovery_s"] if x is not None]
        rec_s = (
            "-"
            if not r["recovery_s"]
            else (f"{max(rec):.1f}" if len(rec) == 1 else f"{min(rec):.1f}-{max(rec):.1f}")
        )
        if len(rec) != len(r["recovery_s"]):
            rec_s += " (not all)"
        live = "yes" if r["live_equal"] else "NO (" + ", ".join(r["live_diff"][:3]) + ")"
        lines.append(
            f"| {r['scenario']} | {r['messages']:,} ({r['malformed']} malformed) | {desc} | {r['lost']} | "
            f"{r['duplicated']} | {r['dead_letters']} | {rec_s} | {r['drain_s']} | {live} |"
        )
    return "\n".join(lines)


# -- the command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--scenarios", default=",".join(SCENARIOS), help="comma-separated: " + ", ".join(SCENARIOS)
    )
    p.add_argument("--events", type=int, default=30_000, help="valid events streamed per scenario")
    p.add_argument("--base-events", type=int, default=5_000, help="events in the base graph (batch-ingested)")
    p.add_argument("--users", type=int, default=2_000)
    p.add_argument("--rate", type=float, default=1_000.0, help="messages produced per second")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs of the stream process (kill)")
    p.add_argument("--neo4j-down-s", type=float, default=30.0, help="how long Neo4j is stopped (neo4j)")
    p.add_argument("--broker-down-s", type=float, default=5.0, help="how long the broker is stopped (broker)")
    p.add_argument("--burst", type=int, default=500, help="malformed messages in the burst (malformed)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--stream-arg", action="append", default=[], help="an extra `graphrec stream` argument")
    p.add_argument("--keep", action="store_true", help="keep the work directory (logs, data)")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--markdown", metavar="JSON", help="print the table of an earlier --json and exit")
    args = p.parse_args(argv)
    if args.markdown:
        print(markdown_table(json.loads(Path(args.markdown).read_text())))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    kinds = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    unknown = set(kinds) - set(SCENARIOS)
    if unknown:
        raise SystemExit(f"unknown scenarios {sorted(unknown)}; choose from {SCENARIOS}")
    work = Path(tempfile.mkdtemp(prefix="fault-stream-"))
    print(f"work directory {work}", flush=True)
    services = Services(work).start()
    results = []
    try:
        for i, kind in enumerate(kinds):
            plan = Plan(
                name=kind,
                kind=kind,
                events=args.events,
                base_events=args.base_events,
                users=args.users,
                rate=args.rate,
                kills=args.kills,
                neo4j_down_s=args.neo4j_down_s,
                broker_down_s=args.broker_down_s,
                burst=args.burst,
                seed=args.seed + 10 * i,
                stream_args=list(args.stream_arg)
                + (["--instance-id", f"fault-stream-{i}"] if kind == "kill-static" else []),
            )
            res = run_scenario(plan, services, work)
            results.append(res.as_dict())
            print(json.dumps(res.as_dict()), flush=True)
    finally:
        services.close()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    out = {
        "scenarios": results,
        "ok": all(r["ok"] for r in results),
        "date": time.strftime("%Y-%m-%d"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "command": "python scripts/fault_stream.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    print(f"{'scenario':10} {'messages':>8} {'lost':>5} {'dup':>4} {'dead':>5} {'recovery s':>12} live==fold")
    for r in results:
        rec = max((x for x in r["recovery_s"] if x is not None), default=None)
        print(
            f"{r['scenario']:10} {r['messages']:8} {r['lost']:5} {r['duplicated']:4} {r['dead_letters']:5} "
            f"{rec if rec is not None else '-':>12} {r['live_equal']}"
        )
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0 if out["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
