"""``graphrec stream`` (events topic -> store) and ``graphrec produce`` (event file -> topic)."""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time

from graph.errors import InputError
from graphrec.cli import DEFAULT_STORE, STORE_HELP

log = logging.getLogger("graphrec")
BOOTSTRAP_HELP = "Kafka bootstrap servers HOST:PORT[,HOST:PORT...] (default: $KAFKA_BOOTSTRAP)"


def _kafka_settings(pairs: list[str] | None) -> dict[str, str]:
    out = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--kafka-config {pair!r}: expected KEY=VALUE (a librdkafka setting)")
        out[key.strip()] = value
    return out


def _bootstrap(args) -> str:
    from graph.kafka_local import BOOTSTRAP_ENV, kafka_bootstrap_from_env

    bootstrap = args.bootstrap or kafka_bootstrap_from_env()
    if not bootstrap:
        raise InputError(f"no Kafka broker: pass --bootstrap HOST:PORT or set {BOOTSTRAP_ENV}")
    return bootstrap


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap", help=BOOTSTRAP_HELP)
    p.add_argument("--topic", default="events", help="the events topic (default: %(default)s)")
    p.add_argument(
        "--kafka-config",
        action="append",
        metavar="KEY=VALUE",
        help="an extra librdkafka client setting, e.g. security.protocol=SASL_SSL (repeatable)",
    )
    p.add_argument(
        "--create-topics",
        action="store_true",
        help="create missing topics (with --partitions partitions, one replica) instead of failing",
    )
    p.add_argument(
        "--partitions",
        type=int,
        default=3,
        help="partitions of topics created by --create-topics (default: %(default)s)",
    )


def add_stream_parsers(sub) -> None:
    """Register ``stream``, ``produce`` and ``compact`` on the ``graphrec`` sub-command collection."""
    p = sub.add_parser(
        "stream",
        help="consume an events topic (Kafka) into a store, durably and idempotently",
        description="Consume the events topic into the store in micro-batches. Each message is one event, a JSON "
        "object with the fields of an event file (event, user, target, ts, weight, text). Valid events are written "
        "with the idempotent batched ingest (first write wins); an invalid event goes to the dead-letter topic "
        "with the reason and its topic/partition/offset, and the stream goes on. Offsets are committed only after "
        "the write (at-least-once delivery; redelivered events add nothing). Progress, lag and dead letters are "
        "logged every --log-every-s seconds. SIGTERM / Ctrl-C finish the current batch and stop.",
        epilog="Example: graphrec stream --bootstrap 127.0.0.1:9092 --topic events --store .graphrec/store "
        "--create-topics",
    )
    _common(p)
    p.add_argument("--group", default="graphrec-ingest", help="consumer group (default: %(default)s)")
    p.add_argument("--store", default=DEFAULT_STORE, help=STORE_HELP)
    p.add_argument("--dead-letter-topic", help="where invalid events go (default: TOPIC.dlq)")
    p.add_argument(
        "--batch-size", type=int, default=5000, help="most events per micro-batch (default: %(default)s)"
    )
    p.add_argument(
        "--max-wait-ms",
        type=int,
        default=500,
        help="longest wait to fill a micro-batch (default: %(default)s)",
    )
    p.add_argument(
        "--write-batch-size",
        type=int,
        default=20_000,
        help="rows per store transaction (default: %(default)s)",
    )
    p.add_argument(
        "--store-retry-s",
        type=float,
        default=60.0,
        help="retry an unavailable store this long before giving up (default: %(default)s)",
    )
    p.add_argument(
        "--session-timeout-ms",
        type=int,
        default=10_000,
        help="how long the broker waits for a consumer that died without leaving before it hands its "
        "partitions to another or to its restart (default: %(default)s)",
    )
    p.add_argument(
        "--instance-id",
        help="static group membership: a restart with the same id takes its partitions back at once "
        "(no rebalance, no session timeout); give each stream process its own",
    )
    p.add_argument(
        "--log-every-s", type=float, default=10.0, help="progress log interval (default: %(default)s)"
    )
    p.add_argument("--max-events", type=int, help="stop after handling this many messages (tests, backfills)")
    p.add_argument(
        "--idle-exit-s", type=float, help="stop after this many seconds without a message (tests, backfills)"
    )
    p.set_defaults(func=cmd_stream)

    p = sub.add_parser(
        "produce",
        help="send a JSON Lines event file to an events topic (tests, benchmarks, backfills)",
        description="Produce each non-empty line of the event files as one message, keyed by its user id (so a "
        "user's events stay in order on one partition). Lines are not validated here: `graphrec stream` does, and "
        "dead-letters what is invalid.",
    )
    _common(p)
    p.add_argument(
        "--events", nargs="+", required=True, metavar="FILE", help="JSON Lines event files (.jsonl)"
    )
    p.set_defaults(func=cmd_produce)

    p = sub.add_parser(
        "compact",
        help="fold the events since a snapshot into the next snapshot and model (no store read)",
        description="Read the events topic from where the previous compaction stopped (--from, its output "
        "directory; without it, a minute before the snapshot's newest event) to the topic's end, fold them into a "
        "new snapshot (the one a batch export of the same events gives), fit the recommender on it with the "
        "model's config (its embeddings carried over, users and tweets born since folded in), and write "
        "OUT/snapshot, OUT/model and OUT/offsets.json, all or nothing. `graphrec serve --compact-every S` runs it "
        "for you and swaps the result in.",
        epilog="Example: graphrec compact --bootstrap 127.0.0.1:9092 --snapshot snap --model model --out gen-1",
    )
    p.add_argument("--bootstrap", help=BOOTSTRAP_HELP)
    p.add_argument("--topic", default="events", help="the events topic (default: %(default)s)")
    p.add_argument("--snapshot", required=True, help="the snapshot the events follow")
    p.add_argument("--model", help="the served model (config and embeddings carry over)")
    p.add_argument("--config", help="a tuned config file, without --model (default: the defaults)")
    p.add_argument("--embeddings", help="an embedding artifact trained on --snapshot, without --model")
    p.add_argument("--from", dest="from_dir", help="the previous compaction's output (its offsets.json)")
    p.add_argument(
        "--start",
        choices=["snapshot", "earliest"],
        default="snapshot",
        help="without --from: read from a minute before the snapshot's newest event, or the whole topic "
        "(default: %(default)s)",
    )
    p.add_argument("--out", required=True, help="the new directory to write")
    p.add_argument(
        "--timeout-s",
        type=float,
        default=600.0,
        help="give up when the topic is not read to its end in this time (default: %(default)s)",
    )
    p.set_defaults(func=cmd_compact)


def _ensure(args, bootstrap: str, topics: list[str], settings: dict) -> None:
    if args.create_topics:
        from graph.kafka_client import ensure_topics

        if args.partitions < 1:
            raise InputError(f"--partitions must be >= 1, got {args.partitions}")
        ensure_topics(bootstrap, dict.fromkeys(topics, args.partitions), config=settings)


def cmd_stream(args) -> int:
    from graph.store import open_store
    from graph.stream import StreamConfig, StreamIngestor

    bootstrap, settings = _bootstrap(args), _kafka_settings(args.kafka_config)
    config = StreamConfig(
        bootstrap=bootstrap,
        topic=args.topic,
        group=args.group,
        dead_letter_topic=args.dead_letter_topic,
        batch_size=args.batch_size,
        max_wait_ms=args.max_wait_ms,
        write_batch_size=args.write_batch_size,
        store_retry_s=args.store_retry_s,
        session_timeout_ms=args.session_timeout_ms,
        instance_id=args.instance_id,
        log_every_s=args.log_every_s,
        client_config=settings,
    )
    config.check()
    _ensure(args, bootstrap, [config.topic, config.dlq], settings)
    progress = logging.getLogger("graph.stream")
    level = progress.level
    if not logging.getLogger().isEnabledFor(logging.INFO):
        progress.setLevel(logging.INFO)  # progress lines even without -v
    stop = threading.Event()

    def on_signal(signum, frame) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now (the batch is delivered again on restart)
            raise KeyboardInterrupt
        log.info("stopping after the current batch (again to stop at once)")
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    t0 = time.perf_counter()
    try:
        with open_store(args.store, create=True) as store, StreamIngestor(store, config) as stream:
            stats = stream.run(max_events=args.max_events, idle_exit_s=args.idle_exit_s, stop=stop)
    finally:
        progress.setLevel(level)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(
        f"streamed {stats.consumed:,} events from {config.topic} in {time.perf_counter() - t0:.1f}s: "
        f"{stats.written:,} written to {store}, {stats.dead_letters:,} dead letters to {config.dlq}, "
        f"lag {'unknown' if stats.lag is None else f'{stats.lag:,}'}"
    )
    return 0


def cmd_compact(args) -> int:
    from pathlib import Path

    from graphrec.compact import compact, read_offsets
    from graphrec.serve.live_feed import LiveSettings

    if args.model and (args.config or args.embeddings):
        raise InputError("--model already holds its config and embeddings; drop --config/--embeddings")
    settings = LiveSettings(_bootstrap(args), topic=args.topic, start=args.start)
    offsets = read_offsets(Path(args.from_dir), args.topic) if args.from_dir else None
    if args.from_dir and offsets is None:
        raise InputError(
            f"--from {args.from_dir}: no {args.from_dir}/offsets.json (not a compaction's output)"
        )
    result = compact(
        Path(args.snapshot),
        settings,
        Path(args.out),
        model=Path(args.model) if args.model else None,
        config=Path(args.config) if args.config else None,
        embeddings=Path(args.embeddings) if args.embeddings else None,
        start_offsets=offsets,
        catch_up_timeout_s=args.timeout_s,
    )
    print(
        f"compacted {result.events:,} events ({result.live_edges:,} new edges) into snapshot "
        f"{result.snapshot_id} at {result.out} in {result.seconds:.1f}s"
    )
    return 0


def cmd_produce(args) -> int:
    from graph.kafka_client import produce_event_file

    bootstrap, settings = _bootstrap(args), _kafka_settings(args.kafka_config)
    _ensure(args, bootstrap, [args.topic], settings)
    t0 = time.perf_counter()
    total = sum(produce_event_file(bootstrap, args.topic, path, config=settings) for path in args.events)
    print(f"produced {total:,} events to {args.topic} in {time.perf_counter() - t0:.1f}s")
    return 0
